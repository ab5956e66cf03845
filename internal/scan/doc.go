// Package scan owns reading a file tree: it walks a root directory that may be
// controlled by an attacker (a container's /proc/<pid>/root), confined to that
// root, and collects the attributes each path's policy asks for, hashing
// regular files in parallel.
//
// Confinement rests on directory file descriptors: every object is reached by
// one name relative to the descriptor of its already opened and verified
// parent (openat with O_NOFOLLOW, fstatat with AT_SYMLINK_NOFOLLOW), never by a
// multi-component path, so no symlink planted in the tree is ever followed,
// not even an absolute one that would resolve against the scanner's own root.
// After an open, fstat must show the inode that was listed; a mismatch means
// the object was swapped during the scan. Only regular files are opened for
// reading; FIFOs, devices and sockets are recorded but never opened.
//
// Every limit is explicit (entries, depth, bytes per file): hitting one is a
// Warning or, for the entry count, an error wrapping ErrLimit, never a silent
// truncation.
//
// The package is Linux-only.
package scan
