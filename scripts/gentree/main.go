// Command gentree writes the synthetic tree that scripts/bench.sh measures
// podfim and AIDE on: by default 100,000 files of 1-8 KiB of random content
// in 1,000 leaf directories (10 parents of 100), and 20 files of 16 MiB.
//
// The content is a pure function of -seed and each file's index (ChaCha8
// seeded per file), so the tree is the same on every machine and does not
// depend on how the work is split between goroutines. The files are written
// in parallel, one goroutine per CPU.
//
// Layout under -root (which must not exist):
//
//	d0/d00/f000 ... d9/d99/f099   the small files (-files, spread over -dirs leaves)
//	big/b00 ... big/b19           the large files (-big of -bigsize bytes)
//
// gentree refuses an existing -root so that a partial tree is never mistaken
// for a complete one: bench.sh generates into a temporary name, renames it
// and then writes its completion marker.
package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"
)

type spec struct {
	root           string
	files, dirs    int
	minSize, maxSz int
	big            int
	bigSize        int64
	seed           uint64
}

func main() {
	var s spec
	flag.StringVar(&s.root, "root", "", "directory to create (must not exist)")
	flag.IntVar(&s.files, "files", 100000, "number of small files")
	flag.IntVar(&s.dirs, "dirs", 1000, "number of leaf directories for the small files (a multiple of 10)")
	flag.IntVar(&s.minSize, "min", 1024, "smallest small-file size in bytes")
	flag.IntVar(&s.maxSz, "max", 8192, "largest small-file size in bytes")
	flag.IntVar(&s.big, "big", 20, "number of large files")
	flag.Int64Var(&s.bigSize, "bigsize", 16<<20, "size of each large file in bytes")
	flag.Uint64Var(&s.seed, "seed", 1, "seed of the content")
	flag.Parse()
	if err := run(s); err != nil {
		fmt.Fprintln(os.Stderr, "gentree:", err)
		os.Exit(1)
	}
}

func (s spec) validate() error {
	switch {
	case s.root == "":
		return errors.New("-root is required")
	case s.files < 0 || s.big < 0 || s.bigSize < 0:
		return errors.New("-files, -big and -bigsize must not be negative")
	case s.dirs < 10 || s.dirs%10 != 0 || s.dirs > 1000:
		return errors.New("-dirs must be a multiple of 10 between 10 and 1000")
	case s.minSize < 0 || s.maxSz < s.minSize:
		return errors.New("need 0 <= -min <= -max")
	case s.big > 100:
		return errors.New("-big must be at most 100")
	}
	return nil
}

// rng returns the generator of file number i of a kind (0 small, 1 big).
func (s spec) rng(kind, i uint64) *rand.ChaCha8 {
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[0:], s.seed)
	binary.LittleEndian.PutUint64(seed[8:], kind)
	binary.LittleEndian.PutUint64(seed[16:], i)
	copy(seed[24:], "gentree1")
	return rand.NewChaCha8(seed)
}

// leaf returns the directory of leaf number d, relative to the root.
func (s spec) leaf(d int) string {
	per := s.dirs / 10
	width := len(fmt.Sprint(per - 1))
	return filepath.Join(fmt.Sprintf("d%d", d/per), fmt.Sprintf("d%0*d", width, d%per))
}

func run(s spec) error {
	if err := s.validate(); err != nil {
		return err
	}
	if _, err := os.Lstat(s.root); err == nil {
		return fmt.Errorf("%s exists; remove it first", s.root)
	}
	start := time.Now()
	if err := os.MkdirAll(s.root, 0o755); err != nil {
		return err
	}
	for d := 0; d < s.dirs; d++ {
		if err := os.MkdirAll(filepath.Join(s.root, s.leaf(d)), 0o755); err != nil {
			return err
		}
	}
	if s.big > 0 {
		if err := os.Mkdir(filepath.Join(s.root, "big"), 0o755); err != nil {
			return err
		}
	}

	// Jobs: each leaf directory's small files, then each big file. Big files
	// go first so that they do not finish last on one goroutine.
	type job struct {
		big bool
		n   int
	}
	jobs := make(chan job)
	var (
		mu       sync.Mutex
		firstErr error
		bytes    int64
		wg       sync.WaitGroup
	)
	setErr := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	workers := runtime.GOMAXPROCS(0)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1<<20)
			var n int64
			for j := range jobs {
				var err error
				var wrote int64
				if j.big {
					wrote, err = s.writeBig(j.n, buf)
				} else {
					wrote, err = s.writeLeaf(j.n, buf)
				}
				n += wrote
				if err != nil {
					setErr(err)
				}
			}
			mu.Lock()
			bytes += n
			mu.Unlock()
		}()
	}
	for i := 0; i < s.big; i++ {
		jobs <- job{big: true, n: i}
	}
	for d := 0; d < s.dirs; d++ {
		jobs <- job{n: d}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	fmt.Printf("gentree: wrote %d files (%d of %d bytes, %d small) in %d directories under %s: %.1f MiB in %.1fs\n",
		s.files+s.big, s.big, s.bigSize, s.files, s.dirs, s.root, float64(bytes)/(1<<20), time.Since(start).Seconds())
	return nil
}

// writeLeaf writes the small files of leaf directory d: files
// [d*files/dirs, (d+1)*files/dirs).
func (s spec) writeLeaf(d int, buf []byte) (int64, error) {
	lo, hi := d*s.files/s.dirs, (d+1)*s.files/s.dirs
	dir := filepath.Join(s.root, s.leaf(d))
	var total int64
	for i := lo; i < hi; i++ {
		r := s.rng(0, uint64(i))
		size := s.minSize + int(r.Uint64()%uint64(s.maxSz-s.minSize+1))
		b := buf[:size]
		r.Read(b)
		name := filepath.Join(dir, fmt.Sprintf("f%03d", i-lo))
		if err := os.WriteFile(name, b, 0o644); err != nil {
			return total, err
		}
		total += int64(size)
	}
	return total, nil
}

// writeBig writes large file i in chunks of len(buf).
func (s spec) writeBig(i int, buf []byte) (int64, error) {
	r := s.rng(1, uint64(i))
	f, err := os.OpenFile(filepath.Join(s.root, "big", fmt.Sprintf("b%02d", i)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return 0, err
	}
	var total int64
	for total < s.bigSize {
		b := buf
		if rest := s.bigSize - total; rest < int64(len(b)) {
			b = b[:rest]
		}
		r.Read(b)
		n, err := f.Write(b)
		total += int64(n)
		if err != nil {
			f.Close()
			return total, err
		}
	}
	return total, f.Close()
}
