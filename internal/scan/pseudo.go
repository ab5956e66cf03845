package scan

import "golang.org/x/sys/unix"

// Pseudo file systems are the kernel's views, not content: procfs, sysfs,
// the cgroup file systems and the like. Their files report size 0 and are
// read to EOF (a process's pagemap is 2^48 bytes of page table), their
// directories change with every process, and none of it is something a
// container or an image ships. A scan never enters one, nor hashes a file
// of one, unless a rule names its mount point or a path beneath it
// (Namer): they are detected by the file system's magic number (fstatfs),
// not by path, because a container or a policy may mount them anywhere,
// and fstatfs is called only where the device changes (a mount point), so
// it costs nothing per file.
//
// Magic numbers x/sys/unix does not define.
const (
	configfsMagic = 0x62656570
	mqueueMagic   = 0x19800202
	fusectlMagic  = 0x65735543
)

// isPseudo reports whether a statfs f_type is a pseudo file system's.
func isPseudo(magic int64) bool {
	switch uint32(magic) {
	case unix.PROC_SUPER_MAGIC, unix.SYSFS_MAGIC, unix.CGROUP_SUPER_MAGIC, unix.CGROUP2_SUPER_MAGIC,
		unix.DEBUGFS_MAGIC, unix.TRACEFS_MAGIC, unix.SECURITYFS_MAGIC, unix.BPF_FS_MAGIC,
		configfsMagic, unix.PSTOREFS_MAGIC, unix.SELINUX_MAGIC, unix.SMACK_MAGIC,
		unix.EFIVARFS_MAGIC, unix.BINFMTFS_MAGIC, fusectlMagic, unix.DEVPTS_SUPER_MAGIC,
		mqueueMagic, unix.NSFS_MAGIC, unix.RDTGROUP_SUPER_MAGIC:
		return true
	}
	return false
}

// pseudo reports whether fd (any descriptor, O_PATH too) is on a pseudo
// file system. An fstatfs that fails says no: the object is then scanned
// like any other, under the usual limits.
func pseudo(fd int) bool {
	var s unix.Statfs_t
	for {
		err := unix.Fstatfs(fd, &s)
		if err == unix.EINTR {
			continue
		}
		return err == nil && isPseudo(s.Type)
	}
}

// skipPseudo reports whether the object open as fd at path, whose device
// differs from its parent directory's (parentDev), is on a pseudo file
// system that no rule names, and counts it.
func (w *worker) skipPseudo(fd int, path string, dev, parentDev uint64) bool {
	if dev == parentDev || w.cfg.names(path) || !pseudo(fd) {
		return false
	}
	w.stats.Pseudo++
	return true
}

// namesFunc returns the Matcher's Names, or a func that names nothing.
func namesFunc(m Matcher) func(string) bool {
	if n, ok := m.(Namer); ok {
		return n.Names
	}
	return func(string) bool { return false }
}
