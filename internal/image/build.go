package image

import (
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
)

// Apply applies the layers of im to t in order, base first, checking each
// layer's uncompressed bytes against the diff ID the configuration names
// it by: what is recorded is what the image's digest stands for. Each
// layer is streamed: nothing is written to disk, and no file content is
// held.
func (im *Image) Apply(ctx context.Context, t *Tree) error {
	layers, err := im.img.Layers()
	if err != nil {
		return fmt.Errorf("failed to list the layers: %w", err)
	}
	if len(layers) != len(im.diffIDs) {
		return fmt.Errorf("the image has %d layers, its configuration %d", len(layers), len(im.diffIDs))
	}
	for i, l := range layers {
		if err := ctx.Err(); err != nil {
			return err
		}
		rc, err := layerStream(l, im.stored)
		if err != nil {
			return fmt.Errorf("failed to read layer %d (%s): %w", i+1, im.Layers[i], err)
		}
		err = applyChecked(ctx, t, i+1, rc, im.diffIDs[i].String())
		rc.Close()
		if err != nil {
			return fmt.Errorf("layer %d (%s): %w", i+1, im.Layers[i], err)
		}
	}
	return nil
}

// applyChecked applies one uncompressed layer and checks its digest,
// reading it to the end.
func applyChecked(ctx context.Context, t *Tree, layer int, r io.Reader, diffID string) error {
	d := &digestReader{ctx: ctx, r: r, h: sha256.New()}
	if err := t.Apply(layer, d); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, d); err != nil {
		return err
	}
	if got := fmt.Sprintf("sha256:%x", d.h.Sum(nil)); got != diffID {
		return fmt.Errorf("%w: diff ID %s, content %s", ErrDigest, diffID, got)
	}
	return nil
}

// digestReader digests what is read through it, and stops when ctx ends.
type digestReader struct {
	ctx context.Context
	r   io.Reader
	h   hash.Hash
}

func (d *digestReader) Read(p []byte) (int, error) {
	if err := d.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := d.r.Read(p)
	d.h.Write(p[:n])
	return n, err
}
