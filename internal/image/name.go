package image

import (
	"errors"
	"fmt"
	"strings"
)

// ErrUnsafe is wrapped by the error for a layer entry that a runtime must
// not apply as it stands: an absolute name, a ".." component, a name that
// goes through a symbolic link, a hard link to a directory or out of the
// tree. An image is input like any other and may be hostile: such a layer is
// refused, never applied in part.
var ErrUnsafe = errors.New("unsafe image layer entry")

// Limits of names, as the kernel has them (PATH_MAX, NAME_MAX): a runtime
// could not create a longer one, so an image holding one is refused.
const (
	maxPathLen = 4096
	maxNameLen = 255
)

// splitName returns the components of a tar entry name, relative to the
// image's root: "./usr/bin/" gives ["usr" "bin"], "." and "./" give none
// (the root itself). A leading "./" and a trailing "/" are how tar writers
// spell relative and directory names; anything else unusual is refused
// (unsafeError) rather than cleaned, because a cleaned name is not the name
// a runtime acts on.
func splitName(name string) ([]string, error) {
	switch {
	case name == "":
		return nil, unsafeError(name, "empty name")
	case len(name) > maxPathLen:
		return nil, unsafeError(name, fmt.Sprintf("name is %d bytes, more than %d", len(name), maxPathLen))
	case strings.IndexByte(name, 0) >= 0:
		return nil, unsafeError(name, "name contains a NUL byte")
	case name[0] == '/':
		return nil, unsafeError(name, "absolute name")
	}
	rest := strings.TrimPrefix(name, "./")
	rest = strings.TrimSuffix(rest, "/")
	if rest == "" || rest == "." {
		return nil, nil
	}
	parts := strings.Split(rest, "/")
	for _, p := range parts {
		switch {
		case p == "":
			return nil, unsafeError(name, "empty path component")
		case p == "..":
			return nil, unsafeError(name, `".." component`)
		case p == ".":
			return nil, unsafeError(name, `"." component`)
		case len(p) > maxNameLen:
			return nil, unsafeError(name, fmt.Sprintf("component is %d bytes, more than %d", len(p), maxNameLen))
		}
	}
	return parts, nil
}

// joinPath returns the baseline path ("/a/b") of components.
func joinPath(parts []string) string {
	if len(parts) == 0 {
		return "/"
	}
	return "/" + strings.Join(parts, "/")
}

// unsafeError explains why the entry name is refused; the name is quoted:
// it is the image's, and may hold anything.
func unsafeError(name, why string) error {
	return fmt.Errorf("%w %q: %s", ErrUnsafe, name, why)
}
