package target

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// p builds a process: pid, start time, mount namespace, exe, container ID.
func p(pid int, start, ns uint64, exe, id string) Process {
	return Process{PID: pid, StartTime: start, MountNS: ns, Exe: exe, ContainerID: id}
}

func keys(cs []Container) []string {
	var ks []string
	for i := range cs {
		ks = append(ks, cs[i].Key())
	}
	return ks
}

func TestGroup(t *testing.T) {
	own := id2
	cs := group([]Process{
		// App: its main process, a worker, and a sandbox in a nested mount
		// namespace: one container, by ID.
		p(40, 100, 7, "/app", id1),
		p(41, 101, 7, "/app", id1),
		p(50, 150, 9, "/usr/bin/bwrap", id1),
		// No ID, or the sidecar's own: by namespace.
		p(60, 200, 11, "/bin/a", ""),
		p(61, 201, 11, "/bin/a", ""),
		p(70, 300, 12, "/bin/b", own),
		// Pids wrapped: the oldest process is the main one, not the
		// lowest pid.
		p(90, 400, 13, "/init", ""),
		p(5, 401, 13, "/worker", ""),
		// Containers whose main process is still runc init (from a
		// detached bind mount of itself, or a memfd): not started, left
		// out until they exec. One already started keeps a helper that
		// execs in it (kubectl exec).
		p(95, 500, 14, "/", strings.Repeat("c", 64)),
		{PID: 96, StartTime: 600, MountNS: 15, Exe: "/memfd:runc_cloned:/proc/self/exe", ExeDeleted: true},
		p(97, 700, 16, "/srv/app", ""),
		p(98, 701, 16, "/", ""),
	}, own, "/proc")
	want := []Container{
		{PID: 40, MountNS: 7, Exe: "/app", ContainerID: id1, Processes: []Process{
			p(40, 100, 7, "/app", id1), p(41, 101, 7, "/app", id1), p(50, 150, 9, "/usr/bin/bwrap", id1)}},
		{PID: 60, MountNS: 11, Exe: "/bin/a", Processes: []Process{p(60, 200, 11, "/bin/a", ""), p(61, 201, 11, "/bin/a", "")}},
		{PID: 70, MountNS: 12, Exe: "/bin/b", ContainerID: own, Processes: []Process{p(70, 300, 12, "/bin/b", own)}},
		{PID: 90, MountNS: 13, Exe: "/init", Processes: []Process{p(5, 401, 13, "/worker", ""), p(90, 400, 13, "/init", "")}},
		{PID: 97, MountNS: 16, Exe: "/srv/app", Processes: []Process{p(97, 700, 16, "/srv/app", ""), p(98, 701, 16, "/", "")}},
	}
	if len(cs) != len(want) {
		t.Fatalf("got %d containers, want %d: %+v", len(cs), len(want), cs)
	}
	for i := range want {
		c, w := cs[i], want[i]
		if c.PID != w.PID || c.MountNS != w.MountNS || c.Exe != w.Exe || c.ContainerID != w.ContainerID || !slices.Equal(c.Processes, w.Processes) || c.proc != "/proc" {
			t.Errorf("container %d:\n got %+v\nwant %+v", i, c, w)
		}
	}
	// The nested namespace's process is no root candidate; the main
	// process comes first.
	if rc := cs[0].rootCandidates(); len(rc) != 2 || rc[0].PID != 40 || rc[1].PID != 41 {
		t.Errorf("root candidates %+v", rc)
	}
	if rc := cs[3].rootCandidates(); len(rc) != 2 || rc[0].PID != 90 || rc[1].PID != 5 {
		t.Errorf("root candidates %+v", rc)
	}
}

func TestKey(t *testing.T) {
	c := group([]Process{p(40, 100, 7, "/app", id1)}, "", "")[0]
	same := group([]Process{p(40, 100, 7, "/app", id1), p(41, 120, 7, "/app", id1)}, "", "")[0]
	if c.Key() != same.Key() {
		t.Errorf("a new process changed the key: %s, %s", c.Key(), same.Key())
	}
	// podman restarts a container under the same ID, and the kernel may
	// hand out the same namespace inode: still a new key.
	restarted := group([]Process{p(40, 900, 7, "/app", id1)}, "", "")[0]
	if c.Key() == restarted.Key() {
		t.Errorf("restart kept the key %s", c.Key())
	}
	if got := c.String(); got != "exe /app pid 40 container 0e768f8db752" {
		t.Errorf("String() = %q", got)
	}
}

func TestSelector(t *testing.T) {
	for _, tc := range []struct {
		sel Selector
		ok  bool
	}{
		{Selector{}, true},
		{Selector{Exe: "/app"}, true},
		{Selector{Exe: "app"}, false},
		{Selector{ContainerID: id1[:12]}, true},
		{Selector{ContainerID: id1}, true},
		{Selector{ContainerID: "containerd://" + id1}, true},
		{Selector{ContainerID: "cri-o://" + strings.ToUpper(id1[:20])}, true},
		{Selector{ContainerID: id1[:11]}, false},
		{Selector{ContainerID: id1 + "0"}, false},
		{Selector{ContainerID: "app-container"}, false},
	} {
		if err := tc.sel.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v.Validate() = %v", tc.sel, err)
		}
	}
}

func TestChoose(t *testing.T) {
	a := group([]Process{p(7, 10, 70, "/bin/a", id1), p(8, 11, 70, "/bin/helper", id1)}, "", "")
	b := group([]Process{p(9, 20, 90, "/bin/b", id2)}, "", "")
	both := append(slices.Clone(a), b...)

	_, err := choose(Selector{}, both)
	var amb *AmbiguousError
	if !errors.As(err, &amb) || !errors.Is(err, ErrAmbiguous) {
		t.Fatalf("zero selector, two containers: %v", err)
	}
	want := "found 2 candidate containers (exe /bin/a pid 7 container 0e768f8db752, exe /bin/b pid 9 container abddff03dfd7); select one with --target-name, --target-exe or --target-container"
	if err.Error() != want {
		t.Errorf("got  %q\nwant %q", err, want)
	}
	noID := group([]Process{p(7, 10, 70, "/bin/a", "")}, "", "")
	noID = append(noID, group([]Process{p(9, 20, 90, "/bin/b", "")}, "", "")...)
	_, err = choose(Selector{}, noID)
	if want := "found 2 candidate containers (exe /bin/a pid 7, exe /bin/b pid 9); select one with --target-name, --target-exe or --target-container"; err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %q", err, want)
	}

	for _, tc := range []struct {
		sel  Selector
		pid  int
		fail error
	}{
		{Selector{}, 7, nil}, // with a only, below
		{Selector{Exe: "/bin/b"}, 9, nil},
		{Selector{Exe: "/bin/helper"}, 7, nil}, // any process of the container
		{Selector{ContainerID: id2[:12]}, 9, nil},
		{Selector{ContainerID: "containerd://" + id1}, 7, nil},
		{Selector{Exe: "/bin/a", ContainerID: id1[:12]}, 7, nil},
		{Selector{Exe: "/bin/a", ContainerID: id2[:12]}, 0, ErrNoTarget},
		{Selector{Exe: "/bin/c"}, 0, ErrNoTarget},
	} {
		cs := both
		if tc.sel.IsZero() {
			cs = a
		}
		c, err := choose(tc.sel, cs)
		switch {
		case tc.fail != nil && !errors.Is(err, tc.fail):
			t.Errorf("%v: got %v, want %v", tc.sel, err, tc.fail)
		case tc.fail == nil && (err != nil || c.PID != tc.pid):
			t.Errorf("%v: got %v, %v; want pid %d", tc.sel, c, err, tc.pid)
		}
	}
	if _, err := choose(Selector{}, nil); !errors.Is(err, ErrNoTarget) || !strings.Contains(err.Error(), "shareProcessNamespace") {
		t.Errorf("no containers: %v", err)
	}
}

// ctr builds a container from processes, as Containers would.
func ctr(ps ...Process) []Container { return group(ps, "", "") }

func TestFollower(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	type want struct {
		kind      EventKind
		pid, prev int
	}
	for _, tc := range []struct {
		name  string
		sel   Selector
		polls [][]Container
		want  [][]want // events per poll
		err   int      // index of the poll that fails with ErrAmbiguous, -1 if none
	}{
		{
			name: "found, still there, restarted in the same namespace inode under the same ID, lost, back",
			polls: [][]Container{
				nil,
				ctr(p(7, 10, 70, "/app", id1)),
				ctr(p(7, 10, 70, "/app", id1), p(8, 12, 70, "/app", id1)),
				ctr(p(9, 30, 70, "/app", id1)),
				nil,
				ctr(p(11, 50, 71, "/app", id2)),
			},
			want: [][]want{nil, {{Found, 7, 0}}, nil, {{Restarted, 9, 7}}, {{Lost, 0, 9}}, {{Restarted, 11, 9}}},
			err:  -1,
		},
		{
			name: "followed by identity: exec of another binary does not lose it",
			sel:  Selector{Exe: "/app"},
			polls: [][]Container{
				ctr(p(7, 10, 70, "/app", id1)),
				ctr(p(7, 10, 70, "/bin/sh", id1)),
			},
			want: [][]want{{{Found, 7, 0}}, nil},
			err:  -1,
		},
		{
			name: "another candidate later does not steal it",
			polls: [][]Container{
				ctr(p(7, 10, 70, "/app", id1)),
				append(ctr(p(7, 10, 70, "/app", id1)), ctr(p(9, 20, 90, "/other", id2))...),
			},
			want: [][]want{{{Found, 7, 0}}, nil},
			err:  -1,
		},
		{
			name: "overlapping restart: the old container's remnants are no candidate",
			polls: [][]Container{
				ctr(p(7, 10, 70, "/app", id1), p(8, 11, 70, "/app", id1)),
				// Main gone, worker lingering; the new container
				// started.
				append(ctr(p(8, 11, 70, "/app", id1)), ctr(p(9, 20, 90, "/app", id2))...),
			},
			want: [][]want{{{Found, 7, 0}}, {{Restarted, 9, 7}}},
			err:  -1,
		},
		{
			name: "podman restart: remnant and new processes share the ID",
			polls: [][]Container{
				ctr(p(7, 10, 70, "/app", id1), p(8, 11, 70, "/app", id1)),
				ctr(p(8, 11, 70, "/app", id1), p(9, 20, 71, "/app", id1)),
				ctr(p(9, 20, 71, "/app", id1)),
			},
			want: [][]want{{{Found, 7, 0}}, {{Lost, 0, 7}}, {{Restarted, 9, 7}}},
			err:  -1,
		},
		{
			name: "ambiguous beyond the grace period",
			polls: [][]Container{
				append(ctr(p(7, 10, 70, "/a", id1)), ctr(p(9, 20, 90, "/b", id2))...),
				append(ctr(p(7, 10, 70, "/a", id1)), ctr(p(9, 20, 90, "/b", id2))...),
				append(ctr(p(7, 10, 70, "/a", id1)), ctr(p(9, 20, 90, "/b", id2))...),
			},
			want: [][]want{nil, nil, nil},
			err:  2,
		},
		{
			name: "ambiguity that resolves",
			polls: [][]Container{
				append(ctr(p(7, 10, 70, "/a", id1)), ctr(p(9, 20, 90, "/b", id2))...),
				ctr(p(9, 20, 90, "/b", id2)),
			},
			want: [][]want{nil, {{Found, 9, 0}}},
			err:  -1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fl := follower{sel: tc.sel}
			for i, cs := range tc.polls {
				// Polls one second apart: the grace period (2 s) ends at
				// the third.
				evs, err := fl.step(cs, at(time.Duration(i)*time.Second))
				if i == tc.err {
					if !errors.Is(err, ErrAmbiguous) {
						t.Fatalf("poll %d: error %v, want ErrAmbiguous", i, err)
					}
				} else if err != nil {
					t.Fatalf("poll %d: %v", i, err)
				}
				var got []want
				for _, ev := range evs {
					w := want{kind: ev.Kind}
					if ev.Container != nil {
						w.pid = ev.Container.PID
					}
					if ev.Previous != nil {
						w.prev = ev.Previous.PID
					}
					got = append(got, w)
				}
				if !slices.Equal(got, tc.want[i]) {
					t.Errorf("poll %d (%v): got %v, want %v", i, keys(cs), got, tc.want[i])
				}
			}
		})
	}
}
