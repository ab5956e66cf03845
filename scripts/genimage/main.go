// Command genimage writes the synthetic container image that
// scripts/bench-image.sh measures `podfim baseline --image` on: an OCI
// image layout holding one image of -layers gzip layers with -files files
// of -bytes bytes in all (by default 5,000 files, 100 MiB, 4 layers).
//
// The content is a pure function of -seed and each file's index (ChaCha8),
// drawn from 16 letters so that it compresses about as well as a real
// image's (gzip keeps about 55%). Every file is written once; a layer
// touches no file of another, so a plain tar extraction of the layers in
// order gives the image's tree.
//
// Next to the layout's index.json, layers.txt lists the layer blobs, base
// first, for the plain tar extraction the benchmark compares with.
// genimage refuses an existing -out, so a partial layout is never taken
// for a complete one.
package main

import (
	"archive/tar"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

type spec struct {
	out    string
	files  int
	bytes  int64
	layers int
	seed   uint64
}

func main() {
	var s spec
	flag.StringVar(&s.out, "out", "", "layout directory to create (must not exist)")
	flag.IntVar(&s.files, "files", 5000, "files in the image")
	flag.Int64Var(&s.bytes, "bytes", 100<<20, "bytes of file content in the image")
	flag.IntVar(&s.layers, "layers", 4, "layers")
	flag.Uint64Var(&s.seed, "seed", 1, "content seed")
	flag.Parse()
	if err := run(s); err != nil {
		fmt.Fprintln(os.Stderr, "genimage:", err)
		os.Exit(1)
	}
}

func run(s spec) error {
	if s.out == "" || s.files < 1 || s.layers < 1 || s.bytes < int64(s.files) {
		return errors.New("-out is required; -files, -layers >= 1; -bytes >= -files")
	}
	if _, err := os.Lstat(s.out); err == nil {
		return fmt.Errorf("%s exists", s.out)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(s.out), ".genimage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	img := empty.Image
	for l := range s.layers {
		path := filepath.Join(tmp, fmt.Sprintf("layer%d.tar", l))
		if err := writeLayer(s, l, path); err != nil {
			return err
		}
		layer, err := tarball.LayerFromFile(path)
		if err != nil {
			return err
		}
		if img, err = mutate.AppendLayers(img, layer); err != nil {
			return err
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Created = v1.Time{Time: time.Unix(1_700_000_000, 0).UTC()}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	lp, err := layout.Write(s.out, empty.Index)
	if err != nil {
		return err
	}
	if err := lp.AppendImage(img); err != nil {
		return err
	}
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	var list strings.Builder
	for _, l := range m.Layers {
		fmt.Fprintf(&list, "blobs/%s/%s\n", l.Digest.Algorithm, l.Digest.Hex)
	}
	return os.WriteFile(filepath.Join(s.out, "layers.txt"), []byte(list.String()), 0o644)
}

// writeLayer writes layer l's files, d<l>/<dir>/f<i>, to a tar file.
func writeLayer(s spec, l int, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	mtime := time.Unix(1_700_000_000+int64(l)*86400, 0)
	first, last := l*s.files/s.layers, (l+1)*s.files/s.layers
	avg := s.bytes / int64(s.files)
	dir := func(name string) error {
		return tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime, Format: tar.FormatPAX})
	}
	if err := dir(fmt.Sprintf("d%d/", l)); err != nil {
		return err
	}
	for i := first; i < last; i++ {
		if (i-first)%100 == 0 {
			if err := dir(fmt.Sprintf("d%d/%03d/", l, (i-first)/100)); err != nil {
				return err
			}
		}
		rng := rand.New(rand.NewChaCha8(seedOf(s.seed, i)))
		// Sizes from avg/2 to 3*avg/2 average avg; the last file takes
		// what rounding left, so the total is exact.
		size := avg/2 + rng.Int64N(avg+1)
		if i == s.files-1 {
			size = max(1, s.bytes-written(s, avg))
		}
		h := &tar.Header{Name: fmt.Sprintf("d%d/%03d/f%05d", l, (i-first)/100, i), Mode: 0o644, Size: size, ModTime: mtime, Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.CopyN(tw, letters{rng}, size); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}

// written returns the bytes of every file but the last.
func written(s spec, avg int64) int64 {
	var n int64
	for i := range s.files - 1 {
		rng := rand.New(rand.NewChaCha8(seedOf(s.seed, i)))
		n += avg/2 + rng.Int64N(avg+1)
	}
	return n
}

func seedOf(seed uint64, i int) [32]byte {
	var k [32]byte
	binary.LittleEndian.PutUint64(k[:], seed)
	binary.LittleEndian.PutUint64(k[8:], uint64(i))
	return k
}

// letters reads random bytes from a 16-letter alphabet.
type letters struct{ r *rand.Rand }

func (l letters) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a' + byte(l.r.Uint32()&15)
	}
	return len(p), nil
}
