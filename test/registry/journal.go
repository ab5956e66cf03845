package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"sync"
)

// maxManifestBytes bounds a manifest the journal records (and so a line
// of it): ggcr's registry takes larger ones, this test registry does not
// need them.
const maxManifestBytes = 4 << 20

// manifestPath matches /v2/<name>/manifests/<reference>.
var manifestPath = regexp.MustCompile(`^/v2/(.+)/manifests/([^/]+)$`)

// record is one journalled manifest request: a PUT (with its body) or a
// DELETE that the registry accepted.
type record struct {
	Method      string `json:"method"`
	Path        string `json:"path"`
	ContentType string `json:"content_type,omitempty"`
	Body        []byte `json:"body,omitempty"`
}

// journal makes ggcr's registry, which keeps manifests (and so tags and
// referrers) in memory, keep them across restarts: every manifest PUT or
// DELETE it accepts is appended to a file (one JSON line each, synced),
// and replay sends them to a new registry in the same order. Blobs are on
// disk already (registry.NewDiskBlobHandler), so a replayed manifest finds
// its blobs; referrers are derived by the registry from the manifests'
// subjects, so they come back with them.
type journal struct {
	mu sync.Mutex
	f  *os.File
}

// openJournal replays the journal at path into h and opens it for
// appending.
func openJournal(path string, h http.Handler) (*journal, int, error) {
	n, err := replay(path, h)
	if err != nil {
		return nil, 0, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, 0, err
	}
	return &journal{f: f}, n, nil
}

// replay sends every record of the journal at path to h and returns how
// many there were. A request the registry refuses now is an error: the
// state on disk is not what the registry held.
func replay(path string, h http.Handler) (int, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 2*maxManifestBytes)
	n := 0
	for sc.Scan() {
		var rec record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return n, fmt.Errorf("%s line %d: %w", path, n+1, err)
		}
		req := httptest.NewRequest(rec.Method, rec.Path, bytes.NewReader(rec.Body))
		if rec.ContentType != "" {
			req.Header.Set("Content-Type", rec.ContentType)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 300 {
			return n, fmt.Errorf("%s line %d: replaying %s %s: %d %s", path, n+1, rec.Method, rec.Path, w.Code, w.Body.String())
		}
		n++
	}
	return n, sc.Err()
}

// wrap returns h with every accepted manifest PUT and DELETE journalled.
func (j *journal) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !manifestPath.MatchString(r.URL.Path) || (r.Method != http.MethodPut && r.Method != http.MethodDelete) {
			h.ServeHTTP(w, r)
			return
		}
		rec := record{Method: r.Method, Path: r.URL.Path, ContentType: r.Header.Get("Content-Type")}
		if r.Method == http.MethodPut {
			body, err := io.ReadAll(io.LimitReader(r.Body, maxManifestBytes+1))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if len(body) > maxManifestBytes {
				http.Error(w, "manifest too large for the test registry", http.StatusRequestEntityTooLarge)
				return
			}
			rec.Body = body
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		sw := &statusWriter{ResponseWriter: w}
		// Held across the request: records are appended in the order the
		// registry applied them.
		j.mu.Lock()
		defer j.mu.Unlock()
		h.ServeHTTP(sw, r)
		if sw.code >= 200 && sw.code < 300 {
			if err := j.append(rec); err != nil {
				// The registry holds it, the disk does not: say so loudly,
				// a restart would lose it.
				fmt.Fprintf(os.Stderr, "registry: failed to journal %s %s: %v\n", rec.Method, rec.Path, err)
			}
		}
	})
}

func (j *journal) append(rec record) error {
	line, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if _, err := j.f.Write(append(line, '\n')); err != nil {
		return err
	}
	return j.f.Sync()
}

func (j *journal) Close() error { return j.f.Close() }

// statusWriter remembers the status code written.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}
