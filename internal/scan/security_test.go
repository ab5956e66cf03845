package scan

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/podfim/podfim/internal/attr"
)

// TestTreeSymlinkEscape plants symlinks that lead out of the root, to the
// scanner's own files; the scan records their targets as text and neither
// lists nor reads anything through them.
func TestTreeSymlinkEscape(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	outside := filepath.Join(base, "outside")
	secret := "outside secret " + t.Name()
	write(t, filepath.Join(outside, "secret"), secret)
	write(t, filepath.Join(outside, "sub", "deeper"), secret+" 2")
	write(t, filepath.Join(root, "etc", "real"), "inside")
	links := map[string]string{
		"/passwd":           "/etc/passwd",
		"/environ":          "/proc/self/environ",
		"/etc/shadow":       "../../../etc/shadow",
		"/outdir":           outside,
		"/outfile":          filepath.Join(outside, "secret"),
		"/etc/up":           "../../outside",
		"/slash":            "/",
		"/self":             ".",
		"/etc/loop":         "loop",
		"/proc-root":        "/proc/self/root",
		"/etc/via-outdir":   "../outdir/secret",
		"/etc/proc-fd-root": "/proc/self/fd/3",
	}
	for name, target := range links {
		must(t, os.Symlink(target, filepath.Join(root, name)))
	}
	res := scanT(t, root, Options{Now: future})
	for name, target := range links {
		e := mustFind(t, res, name)
		if e.Type != attr.TypeSymlink || e.Target != target || e.Hash != nil {
			t.Errorf("%q: %+v, want a symlink to %q", name, e, target)
		}
	}
	secretHashes := [][]byte{sum256([]byte(secret)), sum256([]byte(secret + " 2"))}
	for _, e := range res.Entries {
		if strings.Contains(e.Path, "secret") || strings.Contains(e.Path, "deeper") ||
			strings.HasPrefix(e.Path, "/outdir/") || strings.HasPrefix(e.Path, "/slash/") || strings.HasPrefix(e.Path, "/self/") {
			t.Errorf("walked through a symlink: %q", e.Path)
		}
		for _, h := range secretHashes {
			if bytes.Equal(e.Hash, h) {
				t.Errorf("%q has the hash of a file outside the root", e.Path)
			}
		}
	}
	if want := 3 + len(links); len(res.Entries) != want { // "/", "/etc", "/etc/real"
		t.Errorf("got %d entries %q, want %d", len(res.Entries), paths(res), want)
	}
	if len(res.Warnings) != 0 {
		t.Errorf("warnings: %v", res.Warnings)
	}
	// The same through Entry: a symlink is described, never followed.
	r, err := OpenRoot(root)
	must(t, err)
	defer r.Close()
	for name, target := range links {
		e, err := r.Entry(name, attr.All)
		if err != nil || e.Type != attr.TypeSymlink || e.Target != target {
			t.Errorf("Entry(%q) = %+v, %v", name, e, err)
		}
	}
	for _, p := range []string{"/outdir/secret", "/slash/etc/passwd", "/self/etc/real", "/etc/up/secret", "/outdir/sub/deeper"} {
		if e, err := r.Entry(p, attr.All); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Entry(%q) = %+v, %v; want a not-exist error", p, e, err)
		}
	}
}

// TestTreeFIFONeverOpened: a FIFO with no writer would block an open for
// reading forever, and a writer notices a reader; a device's open runs its
// driver. Neither is opened, not even when it replaces a regular file
// between the listing (or lstat) and the open: inotify sees every open
// (IN_OPEN), and there must be none. The scan must also finish (scanT fails
// on a hang).
func TestTreeFIFONeverOpened(t *testing.T) {
	t.Run("fast", func(t *testing.T) { testFIFO(t, nil) })
	t.Run("careful", func(t *testing.T) { testFIFO(t, hashIndex{}) })
	t.Run("entry", func(t *testing.T) {
		root := t.TempDir()
		write(t, filepath.Join(root, "becomes-fifo"), "regular at first")
		r, err := OpenRoot(root)
		must(t, err)
		defer r.Close()
		w := newOpenWatcher(t)
		swapped := false
		e, err := r.EntryWith("/becomes-fifo", attr.All, Options{beforeOpen: func(path string) {
			if swapped {
				return
			}
			swapped = true
			p := filepath.Join(root, path)
			check(t, os.Remove(p))
			check(t, unix.Mkfifo(p, 0o644))
			w.add(p)
		}})
		if err != nil || e.Type != attr.TypeFIFO || e.Hash != nil {
			t.Errorf("EntryWith: %+v, %v; want the FIFO, unopened", e, err)
		}
		if n := w.opens(); n != 0 {
			t.Errorf("the FIFO was opened %d times", n)
		}
	})
}

func testFIFO(t *testing.T, quick QuickHashes) {
	root := t.TempDir()
	must(t, unix.Mkfifo(filepath.Join(root, "fifo"), 0o644))
	write(t, filepath.Join(root, "becomes-fifo"), "regular at first")
	write(t, filepath.Join(root, "becomes-dev"), "regular at first")
	w := newOpenWatcher(t)
	w.add(filepath.Join(root, "fifo"))
	opts := Options{Now: future, QuickHashes: quick, beforeOpen: func(path string) {
		p := filepath.Join(root, path)
		switch path {
		case "/becomes-fifo":
			check(t, os.Remove(p))
			check(t, unix.Mkfifo(p, 0o644))
		case "/becomes-dev":
			check(t, os.Remove(p))
			check(t, unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3)))) // /dev/null's numbers
		default:
			return
		}
		w.add(p)
	}}
	res := scanT(t, root, opts)
	for p, typ := range map[string]attr.FileType{"/fifo": attr.TypeFIFO, "/becomes-fifo": attr.TypeFIFO, "/becomes-dev": attr.TypeChar} {
		if e := mustFind(t, res, p); e.Type != typ || e.Hash != nil {
			t.Errorf("%q: %+v", p, e)
		}
	}
	if n := w.opens(); n != 0 {
		t.Errorf("FIFOs and devices were opened %d times", n)
	}
}

// TestTreeRenameRaceOpensNoFIFO races a swapper that exchanges regular files
// and FIFOs with renameat2(RENAME_EXCHANGE) as fast as it can against
// repeated scans, as an app would to make the scanner open its FIFOs: every
// open of a FIFO is an IN_OPEN event, and there must be none. The race is
// bounded in scans and time. Before files were opened with O_PATH first,
// this opened FIFOs in every one of 10 runs (129 to 768 opens each).
func TestTreeRenameRaceOpensNoFIFO(t *testing.T) {
	root := t.TempDir()
	w := newOpenWatcher(t)
	const pairs = 8
	var files, fifos [pairs]string
	for i := range pairs {
		files[i], fifos[i] = filepath.Join(root, fmt.Sprint("file", i)), filepath.Join(root, fmt.Sprint("fifo", i))
		write(t, files[i], "regular")
		must(t, unix.Mkfifo(fifos[i], 0o644))
		w.add(fifos[i])
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	swaps := 0
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			i := swaps % pairs
			check(t, unix.Renameat2(unix.AT_FDCWD, files[i], unix.AT_FDCWD, fifos[i], unix.RENAME_EXCHANGE))
			swaps++
		}
	})
	scans := 0
	for deadline := time.Now().Add(5 * time.Second); scans < 400 && time.Now().Before(deadline); scans++ {
		opts := Options{Now: future}
		if scans%2 == 1 {
			opts.QuickHashes = hashIndex{} // the careful path: lstat, then open
		}
		scanT(t, root, opts)
	}
	close(stop)
	wg.Wait()
	if n := w.opens(); n != 0 {
		t.Errorf("FIFOs were opened %d times in %d scans (%d swaps)", n, scans, swaps)
	}
	if scans < 20 || swaps < 1000 {
		t.Errorf("only %d scans and %d swaps: the race was not run", scans, swaps)
	}
}

// openWatcher counts the opens of files by inotify's IN_OPEN, which the
// kernel reports for every open for reading or writing (not for O_PATH,
// which opens nothing).
type openWatcher struct {
	t  *testing.T
	fd int
}

func newOpenWatcher(t *testing.T) *openWatcher {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	must(t, err)
	t.Cleanup(func() { unix.Close(fd) })
	return &openWatcher{t: t, fd: fd}
}

// add watches the inode at path, wherever it is renamed to.
func (w *openWatcher) add(path string) {
	if _, err := unix.InotifyAddWatch(w.fd, path, unix.IN_OPEN); err != nil {
		w.t.Errorf("inotify_add_watch %s: %v", path, err)
	}
}

// opens returns the number of IN_OPEN events queued so far.
func (w *openWatcher) opens() int {
	buf := make([]byte, 64<<10)
	n := 0
	for {
		r, err := unix.Read(w.fd, buf)
		if err == unix.EAGAIN {
			return n
		}
		if err != nil {
			w.t.Errorf("read inotify: %v", err)
			return n
		}
		for b := buf[:r]; len(b) >= unix.SizeofInotifyEvent; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&b[0]))
			if ev.Mask&unix.IN_OPEN != 0 {
				n++
			}
			b = b[unix.SizeofInotifyEvent+int(ev.Len):]
		}
	}
}

// TestTreeSwaps replaces objects between listing and opening, on the fast
// path (regular files opened as listed) and on the careful one (lstat first,
// as quick mode does).
func TestTreeSwaps(t *testing.T) {
	t.Run("fast", func(t *testing.T) { testSwaps(t, nil, 3) })
	t.Run("careful", func(t *testing.T) { testSwaps(t, hashIndex{}, 2) })
}

func testSwaps(t *testing.T, quick QuickHashes, wantFlips int) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	outside := filepath.Join(base, "outside")
	write(t, filepath.Join(outside, "secret"), "outside")
	write(t, filepath.Join(root, "gone"), "vanishes")
	must(t, os.Mkdir(filepath.Join(root, "gonedir"), 0o755))
	write(t, filepath.Join(root, "to-link"), "becomes a symlink")
	write(t, filepath.Join(root, "dir-to-link", "inner"), "becomes a symlink")
	write(t, filepath.Join(root, "flip"), "replaced at every open")
	write(t, filepath.Join(root, "to-dir"), "becomes a dir")
	write(t, filepath.Join(root, "stays"), "stays")
	flips := 0
	done := map[string]bool{}
	opts := Options{Now: future, Workers: 1, QuickHashes: quick, beforeOpen: func(path string) {
		p := filepath.Join(root, path)
		if done[path] && path != "/flip" {
			return // act once, not again on the retry
		}
		done[path] = true
		switch path {
		case "/gone", "/gonedir":
			check(t, os.Remove(p))
		case "/to-link":
			check(t, os.Remove(p))
			check(t, os.Symlink("/etc/passwd", p))
		case "/dir-to-link":
			check(t, os.RemoveAll(p))
			check(t, os.Symlink(outside, p))
		case "/flip":
			flips++
			// A new inode each time: never the one just lstat'ed.
			check(t, os.Rename(p, p+".old"))
			writeCheck(t, p, "flipped")
			check(t, os.Remove(p+".old"))
		case "/to-dir":
			check(t, os.Remove(p))
			writeCheck(t, filepath.Join(p, "child"), "in the new dir")
		}
	}}
	res := scanT(t, root, opts)
	if find(res, "/gone") != nil || find(res, "/gonedir") != nil {
		t.Errorf("vanished objects recorded: %q", paths(res))
	}
	if e := mustFind(t, res, "/to-link"); e.Type != attr.TypeSymlink || e.Target != "/etc/passwd" || e.Hash != nil {
		t.Errorf("/to-link: %+v", e)
	}
	if e := mustFind(t, res, "/dir-to-link"); e.Type != attr.TypeSymlink || e.Target != outside {
		t.Errorf("/dir-to-link: %+v", e)
	}
	if find(res, "/dir-to-link/inner") != nil || find(res, "/dir-to-link/secret") != nil {
		t.Errorf("walked into a directory swapped for a symlink: %q", paths(res))
	}
	if e := mustFind(t, res, "/flip"); e.Type != attr.TypeRegular || e.Hash != nil || !hasWarning(res, "/flip", "swap") || flips != wantFlips {
		t.Errorf("/flip: %+v, %d flips, warnings %v", e, flips, res.Warnings)
	}
	if e := mustFind(t, res, "/to-dir"); e.Type != attr.TypeDir || e.Hash != nil {
		t.Errorf("/to-dir: %+v", e)
	}
	if e := mustFind(t, res, "/to-dir/child"); !bytes.Equal(e.Hash, sum256([]byte("in the new dir"))) {
		t.Errorf("/to-dir/child: %+v", e)
	}
	if e := mustFind(t, res, "/stays"); !bytes.Equal(e.Hash, sum256([]byte("stays"))) {
		t.Errorf("/stays: %+v", e)
	}
	if len(res.Warnings) != 1 {
		t.Errorf("warnings: %v", res.Warnings)
	}
}

// TestTreeChangedWhileHashing: a file written during hashing is re-read once;
// one that keeps changing is recorded without a hash and with a Warning.
func TestTreeChangedWhileHashing(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "once"), "first")
	write(t, filepath.Join(root, "always"), "first")
	reads := map[string]int{}
	opts := Options{Now: future, afterRead: func(path string) {
		reads[path]++
		if path == "/always" || (path == "/once" && reads[path] == 1) {
			f, err := os.OpenFile(filepath.Join(root, path), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Error(err)
				return
			}
			_, err = f.WriteString(" more")
			check(t, err)
			check(t, f.Close())
		}
	}, Workers: 1}
	res := scanT(t, root, opts)
	if e := mustFind(t, res, "/once"); !bytes.Equal(e.Hash, sum256([]byte("first more"))) || e.Size != 10 || hasWarning(res, "/once", "changed") {
		t.Errorf("/once: %+v, warnings %v", e, res.Warnings)
	}
	if e := mustFind(t, res, "/always"); e.Hash != nil || !hasWarning(res, "/always", "changed") || reads["/always"] != 2 {
		t.Errorf("/always: %+v, %d reads, warnings %v", e, reads["/always"], res.Warnings)
	}
}

// TestTreeReplacedFiles replaces every file by a copy (a new inode) just
// before it is first opened: the fast path misses on each, falls back to the
// careful one, and is turned off after enough misses; every file is still
// recorded, with the hash of its content.
func TestTreeReplacedFiles(t *testing.T) {
	root := t.TempDir()
	const n = 600
	for i := range n {
		write(t, filepath.Join(root, fmt.Sprint(i%7), fmt.Sprint(i)), fmt.Sprint("content ", i))
	}
	var mu sync.Mutex
	done := map[string]bool{}
	opts := Options{Now: future, beforeOpen: func(path string) {
		mu.Lock()
		defer mu.Unlock()
		if done[path] || !strings.Contains(path[1:], "/") {
			return
		}
		done[path] = true
		p := filepath.Join(root, path)
		data, err := os.ReadFile(p)
		check(t, err)
		check(t, os.WriteFile(p+".new", data, 0o644))
		check(t, os.Rename(p+".new", p))
	}}
	res := scanT(t, root, opts)
	if res.Stats.Hashed != n || len(res.Warnings) != 0 || len(res.Entries) != n+8 {
		t.Errorf("stats %+v, %d entries, warnings %v", res.Stats, len(res.Entries), res.Warnings)
	}
	for i := range n {
		p := fmt.Sprintf("/%d/%d", i%7, i)
		if e := mustFind(t, res, p); !bytes.Equal(e.Hash, sum256(fmt.Appendf(nil, "content %d", i))) {
			t.Errorf("%s: hash %x", p, e.Hash)
		}
	}
}
