package image

import (
	"bytes"
	"errors"
	"io"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func TestLayerStream(t *testing.T) {
	data := bytes.Repeat([]byte("podfim layer "), 200_000) // 2.6 MB: several read-ahead buffers
	gz, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		stored bool
		layer  v1.Layer
	}{
		"gzip blob":         {true, gz},
		"gzip, not stored":  {false, gz},
		"uncompressed blob": {true, static.NewLayer(data, types.OCIUncompressedLayer)},
	} {
		t.Run(name, func(t *testing.T) {
			rc, err := layerStream(tc.layer, tc.stored)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read %d bytes, %v: want the %d uncompressed bytes", len(got), err, len(data))
			}
		})
	}
}

// errAfter fails after n bytes.
type errAfter struct{ n int }

var errBroken = errors.New("broken")

func (e *errAfter) Read(p []byte) (int, error) {
	if e.n == 0 {
		return 0, errBroken
	}
	k := min(len(p), e.n)
	e.n -= k
	return k, nil
}

type closeCount struct{ n int }

func (c *closeCount) Close() error { c.n++; return nil }

func TestReadAhead(t *testing.T) {
	c := &closeCount{}
	a := readAhead(&errAfter{n: 3 * aheadSize / 2}, c)
	n, err := io.Copy(io.Discard, a)
	if n != 3*aheadSize/2 || !errors.Is(err, errBroken) {
		t.Errorf("read %d, %v: want every byte, then the source's error", n, err)
	}
	a.Close()
	// Closed in the middle: the goroutine stops, the source is closed.
	c = &closeCount{}
	a = readAhead(bytes.NewReader(make([]byte, 10*aheadSize)), c)
	if _, err := io.ReadFull(a, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	a.Close()
	if c.n != 1 {
		t.Errorf("source closed %d times", c.n)
	}
}
