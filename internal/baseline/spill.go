package baseline

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// spill keeps an encoded body (see Writer.BeginUncounted) on disk as the sequence of calls a
// bodyEncoder makes, a frame each: a kind byte ('w' for Write, 'h' for a
// group's hash part, whose boundaries decide the stored blocks), the
// length as a uvarint, the bytes. Replaying the calls into a payloadWriter
// gives what writing them there at once would have.
type spill struct {
	f  *os.File
	bw *bufio.Writer
}

func newSpill(dir string) (*spill, error) {
	f, err := os.CreateTemp(dir, ".podfim-spill-*")
	if err != nil {
		return nil, err
	}
	// Unlinked at once: nothing is left behind, whatever happens next.
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, err
	}
	return &spill{f: f, bw: bufio.NewWriterSize(f, 64<<10)}, nil
}

func (s *spill) frame(kind byte, b []byte) error {
	var hdr [1 + binary.MaxVarintLen64]byte
	hdr[0] = kind
	n := binary.PutUvarint(hdr[1:], uint64(len(b)))
	if _, err := s.bw.Write(hdr[:1+n]); err != nil {
		return err
	}
	_, err := s.bw.Write(b)
	return err
}

// Write records a Write of the body.
func (s *spill) Write(b []byte) (int, error) {
	if err := s.frame('w', b); err != nil {
		return 0, err
	}
	return len(b), nil
}

// hashPart records a group's hash part.
func (s *spill) hashPart(b []byte) error { return s.frame('h', b) }

// replay makes the recorded calls on p, in order.
func (s *spill) replay(p *payloadWriter) error {
	if err := s.bw.Flush(); err != nil {
		return err
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	r := bufio.NewReaderSize(s.f, 64<<10)
	var buf []byte
	for {
		kind, err := r.ReadByte()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		n, err := binary.ReadUvarint(r)
		if err != nil {
			return fmt.Errorf("spilled body: %w", err)
		}
		if n > maxSpillFrame {
			return fmt.Errorf("spilled body: frame of %d bytes", n)
		}
		if uint64(cap(buf)) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return fmt.Errorf("spilled body: %w", err)
		}
		switch kind {
		case 'w':
			_, err = p.Write(buf)
		case 'h':
			err = p.hashPart(buf)
		default:
			err = errors.New("spilled body: bad frame")
		}
		if err != nil {
			return err
		}
	}
}

// maxSpillFrame bounds one frame read back: a group's entries or hashes.
const maxSpillFrame = 1 << 30

func (s *spill) close() {
	if s != nil {
		s.f.Close()
	}
}

// beginSpill starts the body of a Writer whose count is not known yet.
func (w *Writer) beginSpill() error {
	s, err := newSpill(filepath.Dir(w.tmp.Name()))
	if err != nil {
		return err
	}
	w.spill = s
	w.spillEnc = newEncoder(s, s.hashPart)
	return nil
}

// finishSpill writes the payload of a spilled body, now that the count is
// known: the count, the recorded calls, the end marker.
func (w *Writer) finishSpill() error {
	if err := w.spillEnc.flushGroup(); err != nil {
		return err
	}
	pw, err := newPayloadWriter(w.out)
	if err == nil {
		err = pw.begin(w.added)
	}
	if err == nil {
		err = w.spill.replay(pw)
	}
	if err != nil {
		return err
	}
	w.pw, w.spillEnc = pw, nil
	w.spill.close()
	w.spill = nil
	return nil
}
