package scan

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podfim/podfim/internal/attr"
)

// makeBenchTree writes dirs directories of files files of 1-8 KiB each, and
// big files of bigSize bytes at the top.
func makeBenchTree(tb testing.TB, root string, dirs, files, big int, bigSize int) {
	tb.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 8<<10)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	for d := range dirs {
		dir := filepath.Join(root, fmt.Sprintf("d%04d", d/10), fmt.Sprintf("e%03d", d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			tb.Fatal(err)
		}
		for f := range files {
			n := 1<<10 + rng.IntN(7<<10+1)
			data[0], data[1], data[2] = byte(d), byte(d>>8), byte(f) // distinct contents
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%05d", f)), data[:n], 0o644); err != nil {
				tb.Fatal(err)
			}
		}
	}
	bigData := make([]byte, bigSize)
	for i := range bigData {
		bigData[i] = byte(rng.Uint32())
	}
	if big > 0 {
		if err := os.MkdirAll(filepath.Join(root, "big"), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	for i := range big {
		bigData[0] = byte(i)
		if err := os.WriteFile(filepath.Join(root, "big", fmt.Sprintf("b%02d", i)), bigData, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

type priorMap map[string]*attr.Entry

func (m priorMap) Lookup(p string) (*attr.Entry, bool) { e, ok := m[p]; return e, ok }

// BenchmarkTree scans 100,000 files of 1-8 KiB in 1,000 directories plus 20
// files of 16 MiB (warm cache). PODFIM_BENCH_TREE names an existing tree to
// scan instead (for measuring peak RSS without the generator).
func BenchmarkTree(b *testing.B) {
	root := os.Getenv("PODFIM_BENCH_TREE")
	if root == "" {
		root = b.TempDir()
		makeBenchTree(b, root, 1000, 100, 20, 16<<20)
	}
	ctx := context.Background()
	res, err := Tree(ctx, root, Options{}) // warm the cache, and a prior for quick mode
	if err != nil {
		b.Fatal(err)
	}
	prior := hashIndex{}
	// Make the prior look older than a second, as a real baseline is.
	for i := range res.Entries {
		e := &res.Entries[i]
		e.Racy = false
		prior[e.Path] = e
	}
	run := func(b *testing.B, opts Options) {
		var r *Result
		cpu0 := cpuTime()
		for b.Loop() {
			r, err = Tree(ctx, root, opts)
			if err != nil {
				b.Fatal(err)
			}
		}
		sec := b.Elapsed().Seconds() / float64(b.N)
		// CPU time too: on a shared machine it says more than wall time.
		b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N), "cpu-s/op")
		b.ReportMetric(float64(r.Stats.Entries)/sec, "files/s")
		b.ReportMetric(float64(r.Stats.HashedBytes)/sec/1e6, "MB/s")
		b.ReportMetric(float64(r.Stats.Entries), "entries")
	}
	b.Run("sha256", func(b *testing.B) { run(b, Options{}) })
	b.Run("blake3", func(b *testing.B) { run(b, Options{Matcher: setMatcher(attr.All&^attr.SHA256 | attr.BLAKE3)}) })
	b.Run("quick", func(b *testing.B) { run(b, Options{QuickHashes: prior}) })
	b.Run("sha256-1worker", func(b *testing.B) { run(b, Options{Workers: 1}) })
}

// cpuTime is the user+system time of the process so far.
func cpuTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// setMatcher collects one attribute set everywhere.
type setMatcher attr.Set

func (m setMatcher) Match(string) (attr.Set, bool) { return attr.Set(m), false }
