package target

import (
	"cmp"
	"slices"
	"strconv"
)

// group sorts processes into containers. Processes with the same container
// ID are one container whatever their mount namespaces; processes without an
// ID, or with ownID (the sidecar's own: where every process shows it, as in
// a test run inside one container, it tells containers apart no better than
// no ID), are grouped by mount namespace. Containers are sorted by main PID.
func group(procs []Process, ownID, proc string) []Container {
	byKey := make(map[string][]Process)
	for _, p := range procs {
		k := "mnt:" + strconv.FormatUint(p.MountNS, 10)
		if p.ContainerID != "" && p.ContainerID != ownID {
			k = "id:" + p.ContainerID
		}
		byKey[k] = append(byKey[k], p)
	}
	cs := make([]Container, 0, len(byKey))
	for _, ps := range byKey {
		slices.SortFunc(ps, func(a, b Process) int { return cmp.Compare(a.PID, b.PID) })
		main := ps[0]
		for _, p := range ps[1:] {
			if p.StartTime < main.StartTime {
				main = p
			}
		}
		if main.RuntimeInit() {
			// Not started yet: a full check of its root while runc init
			// set it up found /www removed, and the kill response killed
			// the container as it restarted. It is listed once it execs.
			continue
		}
		c := Container{
			PID:         main.PID,
			MountNS:     main.MountNS,
			Exe:         main.Exe,
			ContainerID: main.ContainerID,
			Processes:   ps,
			proc:        proc,
		}
		cs = append(cs, c)
	}
	slices.SortFunc(cs, func(a, b Container) int { return cmp.Compare(a.PID, b.PID) })
	return cs
}
