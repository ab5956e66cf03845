package image

import (
	"bufio"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/gzip"
)

// Read-ahead buffers: decompression runs up to aheadBuffers*aheadSize bytes
// ahead of the tar reader and the hashes (1.5 MiB), whatever the layer size.
const (
	aheadSize    = 256 << 10
	aheadBuffers = 6
)

// layerStream returns the uncompressed tar stream of l, decompressing in
// a goroutine of its own so that decompression (most of the CPU time of
// an image baseline) overlaps parsing and hashing, as gzip and tar do in
// a `tar -xzf` pipeline. stored says l.Compressed gives the layer's blob
// as stored (a registry, an OCI layout): a gzip blob, nearly every layer,
// is then decompressed with klauspost/compress, about twice as fast as
// the standard library's compress/gzip that go-containerregistry uses;
// anything else (zstd, an uncompressed layer, a docker-archive's layers,
// which go-containerregistry compresses on the fly for Compressed) goes
// through Layer.Uncompressed.
func layerStream(l v1.Layer, stored bool) (io.ReadCloser, error) {
	if !stored {
		rc, err := l.Uncompressed()
		if err != nil {
			return nil, err
		}
		return readAhead(rc, rc), nil
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(rc, 64<<10)
	if magic, _ := br.Peek(2); len(magic) < 2 || magic[0] != 0x1f || magic[1] != 0x8b {
		rc.Close()
		u, err := l.Uncompressed()
		if err != nil {
			return nil, err
		}
		return readAhead(u, u), nil
	}
	zr, err := gzip.NewReader(br)
	if err != nil {
		rc.Close()
		return nil, err
	}
	return readAhead(zr, rc), nil
}

// aheadReader reads its source in a goroutine into a few reused buffers.
type aheadReader struct {
	src    io.Closer
	chunks chan []byte // filled buffers, in order; closed at the end
	free   chan []byte
	done   chan struct{} // closed by Close
	exited chan struct{} // closed when the goroutine returns
	err    error         // the source's error, set before chunks is closed
	cur    []byte        // unread part of buf
	buf    []byte        // the buffer being read, to give back
}

// readAhead starts reading r; Close stops it and closes src.
func readAhead(r io.Reader, src io.Closer) *aheadReader {
	a := &aheadReader{
		src:    src,
		chunks: make(chan []byte, aheadBuffers),
		free:   make(chan []byte, aheadBuffers),
		done:   make(chan struct{}),
		exited: make(chan struct{}),
	}
	for range aheadBuffers {
		a.free <- make([]byte, aheadSize)
	}
	go a.fill(r)
	return a
}

func (a *aheadReader) fill(r io.Reader) {
	defer close(a.exited)
	defer close(a.chunks)
	for {
		var b []byte
		select {
		case b = <-a.free:
		case <-a.done:
			return
		}
		n, err := io.ReadFull(r, b)
		if n > 0 {
			select {
			case a.chunks <- b[:n]:
			case <-a.done:
				return
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return
		}
		if err != nil {
			a.err = err
			return
		}
	}
}

func (a *aheadReader) Read(p []byte) (int, error) {
	for len(a.cur) == 0 {
		if a.buf != nil {
			a.free <- a.buf[:cap(a.buf)] // never blocks: free holds every buffer
			a.buf = nil
		}
		b, ok := <-a.chunks
		if !ok {
			if a.err != nil {
				return 0, a.err
			}
			return 0, io.EOF
		}
		a.buf, a.cur = b, b
	}
	n := copy(p, a.cur)
	a.cur = a.cur[n:]
	return n, nil
}

// Close stops the goroutine, closes the source (which ends a read it is
// blocked in) and waits for the goroutine to return.
func (a *aheadReader) Close() error {
	close(a.done)
	err := a.src.Close()
	<-a.exited
	return err
}
