// Package target owns finding the application container from the sidecar:
// it reads /proc, groups the processes it sees into containers, picks the one
// a Selector names, gives access to that container's root directory and
// follows it across restarts.
//
// In a pod with shareProcessNamespace the sidecar sees every process of the
// pod: the infra ("pause") process, its own processes and those of the other
// containers. Each container has its own mount namespace and its own cgroup.
// A process cannot leave its cgroup, but it may create mount namespaces (a
// sandboxed browser, bubblewrap, an unprivileged `unshare -Urm`), so a
// container is the set of processes sharing a container ID parsed from
// /proc/PID/cgroup, and only where no ID is known the set sharing a mount
// namespace.
//
// A container lives as long as its first process (the init the runtime
// started; the oldest of the group). Its identity (Key) therefore includes
// that process: namespace inode numbers are recycled by the kernel and podman
// restarts a container under the same ID, so neither alone tells a restart.
//
// Reading another process's root, exe or namespaces needs ptrace read access
// to it: CAP_SYS_PTRACE when the user IDs differ. Lacking it is an error
// (AccessError) that says so, never a silent skip of the application.
package target

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Process is one process of a container, as read from /proc.
type Process struct {
	PID int
	// StartTime is field 22 of /proc/PID/stat (clock ticks since boot). With
	// PID it identifies the process: a reused pid has a later start time.
	StartTime uint64
	// MountNS is the inode of the mount namespace (/proc/PID/ns/mnt).
	MountNS uint64
	// Exe is the executable (readlink /proc/PID/exe), a path inside the
	// container, without the kernel's " (deleted)" suffix.
	Exe string
	// ExeDeleted is true when the executable was deleted or replaced since
	// the process started it.
	ExeDeleted bool
	// ContainerID is the container ID parsed from /proc/PID/cgroup, "" if
	// none is recognised.
	ContainerID string
}

// RuntimeInit reports whether p is a container runtime's init on its way
// to exec what the container runs: runc 1.1 runs `runc init` from a bind
// mount of itself that it detached from every tree ("bindfd": the
// executable reads as "/", a directory no process can run), or, without
// the privilege to mount, from a sealed memfd ("/memfd:runc_cloned:...",
// deleted). Until it execs, the container's root may not be the image's.
func (p Process) RuntimeInit() bool {
	if p.ExeDeleted {
		return strings.HasPrefix(p.Exe, "/memfd:runc_cloned:")
	}
	return p.Exe == "/"
}

// same reports whether p and q are the same process (not merely the same
// pid).
func (p Process) same(q Process) bool { return p.PID == q.PID && p.StartTime == q.StartTime }

// Container is a group of processes that belong to one container.
type Container struct {
	// PID is the container's main process: the oldest one, the container's
	// init in practice. The container lives as long as it does.
	PID int
	// MountNS, Exe and ContainerID are those of the main process.
	MountNS     uint64
	Exe         string
	ContainerID string
	// Processes are every process of the container, sorted by PID, the main
	// one included. Processes in mount namespaces nested in the container
	// (same container ID, another MountNS) are included too.
	Processes []Process

	proc string // procfs mount the processes were read from
}

// Main returns the main process (the one whose PID is c.PID).
func (c *Container) Main() Process {
	for _, p := range c.Processes {
		if p.PID == c.PID {
			return p
		}
	}
	return Process{PID: c.PID, MountNS: c.MountNS, Exe: c.Exe, ContainerID: c.ContainerID}
}

// Key identifies the container instance: its mount namespace, its container
// ID and its main process. It changes when the container restarts, even
// where the runtime keeps the container ID (podman) and the kernel hands out
// the old namespace inode number again.
func (c *Container) Key() string {
	m := c.Main()
	return fmt.Sprintf("%d/%s/%d@%d", c.MountNS, c.ContainerID, m.PID, m.StartTime)
}

// ShortID is the container ID cut to 12 characters, as runtimes print it.
func (c *Container) ShortID() string {
	if len(c.ContainerID) > 12 {
		return c.ContainerID[:12]
	}
	return c.ContainerID
}

// String describes the container for messages: "exe /app pid 7 container
// 0123456789ab".
func (c *Container) String() string {
	s := "exe " + c.Exe + " pid " + strconv.Itoa(c.PID)
	if c.ContainerID != "" {
		s += " container " + c.ShortID()
	}
	return s
}

// rootCandidates lists the processes whose root is the container's root:
// those in its mount namespace, the main one first because it lives longest.
func (c *Container) rootCandidates() []Process {
	var ps []Process
	for _, p := range c.Processes {
		if p.MountNS != c.MountNS {
			continue
		}
		if p.PID == c.PID {
			ps = slices.Insert(ps, 0, p)
		} else {
			ps = append(ps, p)
		}
	}
	return ps
}

// Selector chooses the target container among the containers found. The zero
// Selector means "the only other container". When several fields are set,
// all must match.
type Selector struct {
	// Exe matches a container with a process running this executable (a
	// path inside the container, compared exactly; a deleted executable
	// still matches).
	Exe string
	// ContainerID matches a container whose ID starts with it: at least 12
	// hex digits, optionally with the "<runtime>://" prefix Kubernetes shows
	// in a pod's status (containerd://, cri-o://, docker://).
	ContainerID string
	// Resolver, when set, matches a container whose ID is one of those it
	// knows at the time of the poll: the IDs of a container known by name
	// to the Kubernetes API, which change when the container restarts.
	Resolver Resolver
}

// Resolver tells which container IDs the wanted container has now, as a
// source outside /proc knows them (the Kubernetes API's status of a named
// container). Follow consults it on every poll while it follows no
// container, so a restarted container is found once its new ID is known.
// Its methods are called from Follow's goroutine and must not block.
type Resolver interface {
	// ContainerIDs returns the known IDs, in order of preference: where
	// containers match several, the one matching the earliest wins (the
	// current container before the one it replaced). Each is a full ID or
	// a prefix of at least 12 hex digits, with or without a "<runtime>://"
	// prefix; others are ignored.
	ContainerIDs() []string
	// Missed says that no container matched: the IDs may be stale (a
	// restart), a hint to look them up again.
	Missed()
	// String describes what is resolved, for messages ("container name
	// app").
	String() string
}

// Flags that select the target, named in error messages.
const selectHint = "select one with --target-name, --target-exe or --target-container"

// IsZero reports whether s is the zero Selector.
func (s Selector) IsZero() bool { return s.Exe == "" && s.ContainerID == "" && s.Resolver == nil }

// Validate reports whether s is usable.
func (s Selector) Validate() error {
	if s.Exe != "" && !strings.HasPrefix(s.Exe, "/") {
		return fmt.Errorf("invalid target executable %q: must be an absolute path inside the container", s.Exe)
	}
	if s.ContainerID != "" {
		id := normalID(s.ContainerID)
		if !validID(id) {
			return fmt.Errorf("invalid target container ID %q: want 12 to 64 hex digits", s.ContainerID)
		}
	}
	return nil
}

// id is the ContainerID without a "<runtime>://" prefix, in lower case.
func (s Selector) id() string { return normalID(s.ContainerID) }

// normalID is id without a "<runtime>://" prefix, in lower case.
func normalID(id string) string {
	if i := strings.Index(id, "://"); i >= 0 {
		id = id[i+3:]
	}
	return strings.ToLower(id)
}

// validID reports whether a normalised id is a container ID or a prefix of
// one long enough to name a single container.
func validID(id string) bool { return len(id) >= 12 && len(id) <= 64 && isHex(id) }

// String describes s for messages.
func (s Selector) String() string {
	var parts []string
	if s.Resolver != nil {
		parts = append(parts, s.Resolver.String())
	}
	if s.Exe != "" {
		parts = append(parts, "exe "+s.Exe)
	}
	if s.ContainerID != "" {
		parts = append(parts, "container "+s.id())
	}
	if len(parts) == 0 {
		return "the only other container"
	}
	return strings.Join(parts, " and ")
}

// matcher is a Selector bound to one listing: the resolver's IDs are read
// once per choice, not once per container.
type matcher struct {
	sel Selector
	ids []string // the resolver's valid IDs, normalised
}

func (s Selector) matcher() matcher {
	m := matcher{sel: s}
	if s.Resolver != nil {
		for _, id := range s.Resolver.ContainerIDs() {
			if id = normalID(id); validID(id) {
				m.ids = append(m.ids, id)
			}
		}
	}
	return m
}

// rank tells whether c matches and, for a resolver, the index of the first
// of its IDs that c has (lower is preferred); 0 without a resolver.
func (m matcher) rank(c *Container) (int, bool) {
	s := m.sel
	if s.ContainerID != "" && (c.ContainerID == "" || !strings.HasPrefix(c.ContainerID, s.id())) {
		return 0, false
	}
	if s.Exe != "" && !slices.ContainsFunc(c.Processes, func(p Process) bool { return p.Exe == s.Exe }) {
		return 0, false
	}
	if s.Resolver == nil {
		return 0, true
	}
	if c.ContainerID == "" { // a resolver that knows no ID matches nothing
		return 0, false
	}
	i := slices.IndexFunc(m.ids, func(id string) bool { return strings.HasPrefix(c.ContainerID, id) })
	return i, i >= 0
}

// Errors.
var (
	// ErrNoTarget means no container matches (yet): the caller retries.
	ErrNoTarget = errors.New("no target container")
	// ErrAmbiguous means several containers match; see AmbiguousError.
	ErrAmbiguous = errors.New("ambiguous target container")
	// ErrGone means every process of a container has exited.
	ErrGone = errors.New("container has no live process")
)

// AmbiguousError lists the containers that match a selector when one is
// wanted. errors.Is(err, ErrAmbiguous) holds.
type AmbiguousError struct {
	Selector   Selector
	Candidates []Container
}

func (e *AmbiguousError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "found %d candidate containers", len(e.Candidates))
	if !e.Selector.IsZero() {
		fmt.Fprintf(&b, " matching %s", e.Selector)
	}
	b.WriteString(" (")
	for i := range e.Candidates {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(e.Candidates[i].String())
	}
	b.WriteString("); " + selectHint)
	return b.String()
}

// Is makes errors.Is(err, ErrAmbiguous) hold.
func (e *AmbiguousError) Is(target error) bool { return target == ErrAmbiguous }

// choose picks the one container of cs that sel matches. With a resolver,
// the containers matching its earliest ID are the candidates, and Missed is
// called when none matches.
func choose(sel Selector, cs []Container) (*Container, error) {
	m := sel.matcher()
	var found []Container
	best := -1
	for i := range cs {
		r, ok := m.rank(&cs[i])
		switch {
		case !ok || (best >= 0 && r > best):
			continue
		case best >= 0 && r < best:
			found = found[:0]
		}
		best = r
		found = append(found, cs[i])
	}
	switch len(found) {
	case 1:
		return &found[0], nil
	case 0:
		if sel.Resolver != nil {
			sel.Resolver.Missed()
		}
		return nil, noTarget(sel, cs)
	}
	return nil, &AmbiguousError{Selector: sel, Candidates: found}
}

func noTarget(sel Selector, cs []Container) error {
	if len(cs) == 0 {
		return fmt.Errorf("%w: no process outside the sidecar's and the infra container's mount namespaces (is shareProcessNamespace: true set on the pod?)", ErrNoTarget)
	}
	descs := make([]string, len(cs))
	for i := range cs {
		descs[i] = cs[i].String()
	}
	return fmt.Errorf("%w: none matches %s among %d (%s)", ErrNoTarget, sel, len(cs), strings.Join(descs, ", "))
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
