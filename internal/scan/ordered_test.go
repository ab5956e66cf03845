package scan

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podfim/podfim/internal/attr"
)

// skipSuffix skips the paths that end in its suffix.
type skipSuffix string

func (m skipSuffix) Match(p string) (attr.Set, bool) {
	return attr.All, strings.HasSuffix(p, string(m))
}

// TestOrderedLimitCountsWhatIsRecorded checks that the ordered walk, which
// lists a directory whole before it sorts it, counts against MaxFiles only
// the names the Matcher does not skip, and still stops a directory with too
// many of those.
func TestOrderedLimitCountsWhatIsRecorded(t *testing.T) {
	root := t.TempDir()
	for i := range 30 {
		write(t, filepath.Join(root, fmt.Sprintf("f%02d.skip", i)), "x")
	}
	for i := range 5 {
		write(t, filepath.Join(root, fmt.Sprintf("g%d", i)), "x")
	}
	res := scanT(t, root, Options{Matcher: skipSuffix(".skip"), MaxFiles: 6, Now: future})
	if len(res.Entries) != 6 {
		t.Errorf("%d entries: %q", len(res.Entries), paths(res))
	}
	if _, err := scanErr(t, root, Options{Matcher: skipSuffix(".skip"), MaxFiles: 4}); !errors.Is(err, ErrLimit) {
		t.Errorf("MaxFiles 4: err = %v, want ErrLimit", err)
	}
	if _, err := scanErr(t, root, Options{MaxFiles: 20}); !errors.Is(err, ErrLimit) {
		t.Errorf("MaxFiles 20, nothing skipped: err = %v, want ErrLimit", err)
	}
}
