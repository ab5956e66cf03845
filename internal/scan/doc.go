// Package scan owns reading a file tree: it walks a root directory that may be
// controlled by an attacker (a container's /proc/<pid>/root), confined to that
// root, and collects the attributes each path's policy asks for, hashing
// regular files in parallel. Root.Entry does the same for one path, for the
// watcher.
//
// Confinement rests on directory file descriptors: every object is reached by
// one name relative to the descriptor of its already opened and verified
// parent (openat with O_NOFOLLOW, fstatat with AT_SYMLINK_NOFOLLOW), never by a
// multi-component path, so no symlink planted in the tree is ever followed,
// not even an absolute one that would resolve against the scanner's own root.
// After an open, fstat must show the regular file or directory, and the
// inode, that was listed; a mismatch means the object was swapped during the
// scan: it is looked at again once, then recorded with a Warning.
//
// Only regular files are opened for reading; FIFOs, devices and sockets are
// recorded but never opened, not even one swapped in between the listing
// and the open: no open flag refuses a type, so a file is opened with
// O_PATH (which opens no object: no driver call, no FIFO reader a writer
// could notice), fstat'ed, and reopened for reading through /proc/self/fd
// only when it is a regular file (worker.openFile).
//
// Every limit is explicit (entries, depth, bytes per file): hitting one is a
// Warning or, for the entry count, an error wrapping ErrLimit, never a silent
// truncation.
//
// Speed comes from a fixed set of workers hashing batches of files handed
// over by the goroutine that lists the tree, per-worker buffers and hash
// states, no allocation per file beyond its path and digest (both carved
// from slabs), and no fstatat for a regular file the listing already names
// as one (see hashListed).
//
// The package is Linux-only.
package scan
