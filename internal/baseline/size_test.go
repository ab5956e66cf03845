package baseline

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/podfim/podfim/internal/attr"
)

// syntheticBaseline is a realistic tree of n regular files, 100 to a
// directory, with random sha256 hashes, paths like /d0123/f00045.dat and
// inode, size and time values like those of a real file system.
// imageLike trees have whole-second mtimes and one ctime, as files
// extracted from a container image layer do.
func syntheticBaseline(n int, imageLike bool) *Baseline {
	rng := rand.New(rand.NewPCG(42, uint64(n)))
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC).UnixNano()
	extracted := now - 3600e9 + 123456789
	inode := uint64(1 << 20)
	stamp := func() (mtime, ctime int64) {
		mtime = now - rng.Int64N(2*365*24*3600e9)
		if imageLike {
			return mtime / 1e9 * 1e9, extracted
		}
		ctime = mtime
		if rng.IntN(10) < 3 {
			ctime += rng.Int64N(30 * 24 * 3600e9)
		}
		return mtime, ctime
	}
	b := &Baseline{Header: Header{PolicyDigest: fmt.Sprintf("%064x", rng.Uint64())}}
	dirAttrs := attr.All &^ attr.SHA256
	b.Entries = append(b.Entries, attr.Entry{Path: "/", Attrs: dirAttrs, Type: attr.TypeDir, Mode: 0o755, Size: 4096, Inode: 2, Nlink: uint64(n/100 + 2)})
	for i := range n {
		if i%100 == 0 {
			inode += uint64(1 + rng.IntN(50))
			m, c := stamp()
			b.Entries = append(b.Entries, attr.Entry{Path: fmt.Sprintf("/d%04d", i/100), Attrs: dirAttrs, Type: attr.TypeDir,
				Mode: 0o755, Size: 4096, Inode: inode, Nlink: 2, Mtime: m, Ctime: c})
		}
		inode += uint64(1 + rng.IntN(3))
		m, c := stamp()
		e := attr.Entry{Path: fmt.Sprintf("/d%04d/f%05d.dat", i/100, i%100), Attrs: attr.All, Type: attr.TypeRegular,
			Mode: 0o644, Size: int64(math.Exp(rng.Float64() * 16)), Inode: inode, Nlink: 1, Mtime: m, Ctime: c,
			Hash: make([]byte, 32)}
		if rng.IntN(10) == 0 {
			e.Mode = 0o755
		}
		if rng.IntN(5) == 0 {
			e.UID, e.GID = 1000, 1000
		}
		for j := range e.Hash {
			e.Hash[j] = byte(rng.Uint32())
		}
		b.Entries = append(b.Entries, e)
	}
	return b
}

// TestSize100k measures the stored size of a realistic 100,000-file
// baseline. For comparison, AIDE 0.18.3 (Debian 12) with
// p+i+n+u+g+s+m+c+sha256 wrote 41.3 bytes per file for a real /usr of
// 149,501 files (podfim: 35.4), and 51.8 for a real tree shaped like this
// synthetic one (1000 directories of 100 files) with mtimes spread over
// two years (podfim: 44.2), keeping times to the second where podfim keeps
// nanoseconds.
func TestSize100k(t *testing.T) {
	for _, imageLike := range []bool{false, true} {
		b := syntheticBaseline(sweepFiles(), imageLike)
		data := encodeFile(t, b, nil)
		perEntry := float64(len(data)) / float64(len(b.Entries))
		t.Logf("imageLike=%v: %d entries, %d bytes, %.1f bytes/entry", imageLike, len(b.Entries), len(data), perEntry)
		if perEntry >= 50 {
			t.Errorf("%.1f bytes/entry, want less than 50 (AIDE: 51.8)", perEntry)
		}
	}
}

// TestDecodeAllocs100k bounds what decoding 100,000 entries allocates per
// entry, which is deterministic: an accidental quadratic or a copy per
// entry shows here on any machine. Its speed is BenchmarkRead100k's to
// print (a timed test failed under CI's load).
func TestDecodeAllocs100k(t *testing.T) {
	files := sweepFiles()
	entries := files + files/100 + 1
	data := encodeFile(t, syntheticBaseline(files, false), nil)
	var ms0, ms1 runtimeMem
	ms0.read()
	b, err := Read(bytes.NewReader(data), ReadOptions{})
	ms1.read()
	if err != nil || len(b.Entries) != entries {
		t.Fatalf("Read: %v", err)
	}
	alloc := ms1.totalAlloc - ms0.totalAlloc
	t.Logf("%d entries, %d bytes allocated (%d per entry)", entries, alloc, alloc/uint64(entries))
	if alloc/uint64(entries) > 400 {
		t.Errorf("decoding allocated %d bytes per entry, want at most 400", alloc/uint64(entries))
	}
}

func BenchmarkRead100k(b *testing.B) {
	data := encodeFile(b, syntheticBaseline(100_000, false), nil)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Read(bytes.NewReader(data), ReadOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWrite100k(b *testing.B) {
	bl := syntheticBaseline(100_000, false)
	var buf bytes.Buffer
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		if err := Write(&buf, bl, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(buf.Len()))
}

type runtimeMem struct{ totalAlloc uint64 }

func (m *runtimeMem) read() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m.totalAlloc = ms.TotalAlloc
}

// sweepFiles is the number of files of the synthetic baselines the size,
// speed and memory tests use: 100,000, or 25,000 when sweeps are sampled
// (see sampled), which changes the figures per entry by less than 1%.
func sweepFiles() int {
	if sampled() {
		return 25_000
	}
	return 100_000
}
