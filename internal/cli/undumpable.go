package cli

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// undumpable makes this process non-dumpable (prctl PR_SET_DUMPABLE 0).
// A process of the same uid without CAP_SYS_PTRACE may then not open its
// /proc/<pid>/root, mem or environ, nor ptrace it. That matters in
// restricted mode, where the app runs as the sidecar's uid: without it,
// the app could reach the sidecar's state volume (the first-sight
// baseline, restore's bytes) through /proc/<sidecar pid>/root. The sidecar
// keeps access to itself; the app's dumpability, not the sidecar's,
// governs the sidecar's access to the app (docs/security.md).
func undumpable() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fail(ExitError, fmt.Errorf("prctl(PR_SET_DUMPABLE, 0): %w", err))
	}
	return nil
}
