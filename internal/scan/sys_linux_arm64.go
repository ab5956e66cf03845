package scan

import "golang.org/x/sys/unix"

// sysFstatat is the fstatat system call (newfstatat in the kernel).
const sysFstatat = unix.SYS_FSTATAT
