package scan

import "golang.org/x/sys/unix"

// sysFstatat is the fstatat system call, named newfstatat on amd64.
const sysFstatat = unix.SYS_NEWFSTATAT
