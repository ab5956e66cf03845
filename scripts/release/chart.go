package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// maxChartBytes bounds what chart reads: podfim's packaged chart is ~20 KB.
const maxChartBytes = 16 << 20

// runChart rewrites a chart archive of `helm package` with every time set
// to -epoch: helm stamps each tar header with the time of packaging, so two
// packagings of one commit would differ. Names, order, modes and content
// stay as helm wrote them.
func runChart(args []string) error {
	fs := flag.NewFlagSet("chart", flag.ContinueOnError)
	epoch := fs.Int64("epoch", -1, "SOURCE_DATE_EPOCH")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 || *epoch < 0 {
		return fmt.Errorf("%w: chart -epoch N FILE.tgz", errUsage)
	}
	path := fs.Arg(0)
	in, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, err := normalizeChart(in, time.Unix(*epoch, 0).UTC())
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, out, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func normalizeChart(in []byte, mtime time.Time) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(in))
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	tr, tw := tar.NewReader(io.LimitReader(zr, maxChartBytes)), tar.NewWriter(zw)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		// Only the fields that say what the file is; helm writes no
		// owners, and PAX records of times would bring the time back.
		nh := &tar.Header{Typeflag: h.Typeflag, Name: h.Name, Linkname: h.Linkname, Mode: h.Mode,
			Size: h.Size, ModTime: mtime, Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(nh); err != nil {
			return nil, fmt.Errorf("%q: %w", h.Name, err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
