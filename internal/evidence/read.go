package evidence

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// ErrNotFound is returned for a record or object the directory does not
// hold.
var ErrNotFound = errors.New("no such evidence")

// maxRecordBytes bounds a record file read back: a record is a few KB.
const maxRecordBytes = 1 << 20

var (
	objectRE = regexp.MustCompile(`^sha256-[0-9a-f]{64}$`)
	idRE     = regexp.MustCompile(`^[0-9A-Za-z.\-]{1,100}$`)
)

// List returns the records of the evidence directory dir (the store's
// directory), oldest first: at most max of them (the newest), and how many
// more there are.
func List(dir string, max int) ([]Record, int, error) {
	ents, err := os.ReadDir(filepath.Join(dir, "records"))
	if err != nil {
		return nil, 0, fmt.Errorf("failed to read the evidence in %q: %w", dir, err)
	}
	var ids []string
	for _, e := range ents {
		if id, ok := strings.CutSuffix(e.Name(), ".json"); ok && e.Type().IsRegular() && idRE.MatchString(id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	more := 0
	if len(ids) > max {
		more = len(ids) - max
		ids = ids[more:]
	}
	recs := make([]Record, 0, len(ids))
	for _, id := range ids {
		r, err := Load(dir, id)
		if err != nil {
			return nil, 0, err
		}
		recs = append(recs, *r)
	}
	return recs, more, nil
}

// Load reads the record id of the evidence directory dir.
func Load(dir, id string) (*Record, error) {
	b, err := readRecord(dir, id)
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("evidence record %q: %w", id, err)
	}
	return &r, nil
}

func readRecord(dir, id string) ([]byte, error) {
	if !idRE.MatchString(id) {
		return nil, fmt.Errorf("%q: %w", id, ErrNotFound)
	}
	return readBounded(filepath.Join(dir, "records", id+".json"), maxRecordBytes)
}

// OpenObject opens the kept object name ("sha256-<hex>").
func OpenObject(dir, name string) (*os.File, error) {
	if !objectRE.MatchString(name) {
		return nil, fmt.Errorf("%q is not an object name: %w", name, ErrNotFound)
	}
	f, err := os.Open(filepath.Join(dir, "objects", name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("object %s: %w", name, ErrNotFound)
	}
	return f, err
}

func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", filepath.Base(path), ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("failed to read %q: %w", path, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%q is larger than %d bytes", path, max)
	}
	return b, nil
}
