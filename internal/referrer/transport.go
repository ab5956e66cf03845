package referrer

import (
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// boundedTransport bounds every response body a registry sends, by what
// the request asked for: a manifest or referrers index, a blob, or
// anything else (a token, an error). go-containerregistry bounds manifests
// at 100 MiB and blobs not at all; a hostile registry must not make the
// sidecar read more than its limits.
type boundedTransport struct {
	next                 http.RoundTripper
	maxManifest, maxBlob int64
}

func newBoundedTransport(next http.RoundTripper, maxManifest, maxBlob int64) http.RoundTripper {
	if next == nil {
		t := remote.DefaultTransport.(*http.Transport).Clone()
		t.ResponseHeaderTimeout = responseHeaderTimeout
		next = t
	}
	return &boundedTransport{next: next, maxManifest: maxManifest, maxBlob: maxBlob}
}

func (t *boundedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil || resp.Body == nil {
		return resp, err
	}
	limit := t.limit(req)
	if resp.ContentLength > limit {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: %s %s announces %d bytes, more than %d", ErrTooLarge, req.Method, req.URL.Redacted(), resp.ContentLength, limit)
	}
	resp.Body = &limitedBody{rc: resp.Body, left: limit, limit: limit, what: req.Method + " " + req.URL.Redacted()}
	return resp, nil
}

// limit is the most bytes a response to req may hold.
func (t *boundedTransport) limit(req *http.Request) int64 {
	if req.Method == http.MethodGet && strings.HasPrefix(req.URL.Path, "/v2/") {
		switch {
		case strings.Contains(req.URL.Path, "/manifests/"), strings.Contains(req.URL.Path, "/referrers/"):
			return t.maxManifest
		case strings.Contains(req.URL.Path, "/blobs/"):
			return t.maxBlob
		}
	}
	// A blob redirected to storage (S3, GCS) arrives from another path.
	if req.Method == http.MethodGet && req.Response != nil {
		return t.maxBlob
	}
	return maxOtherBytes
}

// limitedBody fails a read past its limit with ErrTooLarge instead of
// ending early: a truncated manifest must not look like a short one.
type limitedBody struct {
	rc          io.ReadCloser
	left, limit int64
	what        string
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more tells a body of exactly the limit from a longer one.
		var one [1]byte
		n, err := io.ReadFull(b.rc, one[:])
		if n > 0 {
			return 0, fmt.Errorf("%w: %s sent more than %d bytes", ErrTooLarge, b.what, b.limit)
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }
