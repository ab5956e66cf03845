package baseline

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBinding checks that an authentic baseline made for something else,
// too old, or rolled back is refused with ErrBinding, before any entry is
// decoded, by Read and by OpenFile alike.
func TestBinding(t *testing.T) {
	b := imageBaseline() // subject: the manifest digest; created 2026-12-03 08:30; serial 7
	data := encodeFile(t, b, keyA())
	path := filepath.Join(t.TempDir(), "b.pfb")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	at := func(s string) func() time.Time {
		return func() time.Time { tm, _ := time.Parse(time.RFC3339, s); return tm }
	}
	im := b.Image
	for name, tc := range map[string]struct {
		bind Binding
		want string // "" accepts
	}{
		"nothing required":   {Binding{}, ""},
		"subject":            {Binding{Subject: im.Manifest}, ""},
		"other subject":      {Binding{Subject: "web/www"}, `is for subject "sha256:`},
		"image by manifest":  {Binding{ImageDigest: im.Manifest}, ""},
		"image by index ref": {Binding{ImageDigest: "reg.local/app@" + im.Index}, ""},
		"image by config":    {Binding{ImageDigest: im.Config}, ""},
		"index, platform":    {Binding{ImageDigest: im.Index, Platform: "linux/amd64"}, ""},
		"index, variant":     {Binding{ImageDigest: im.Index, Platform: "linux/amd64/v3"}, ""},
		"index, other arch":  {Binding{ImageDigest: im.Index, Platform: "linux/arm64"}, "is for platform linux/amd64 of index sha256:"},
		"manifest, any arch": {Binding{ImageDigest: im.Manifest, Platform: "linux/arm64"}, ""},
		"other image":        {Binding{ImageDigest: im.Layers[0]}, "not sha256:"},
		"fresh":              {Binding{MaxAge: time.Hour, Now: at("2026-12-03T09:29:59Z")}, ""},
		"too old":            {Binding{MaxAge: time.Hour, Now: at("2026-12-03T09:31:00Z")}, "1h1m0s ago, more than the allowed 1h0m0s"},
		"skewed":             {Binding{MaxAge: time.Hour, Now: at("2026-12-03T08:26:00Z")}, ""},
		"future":             {Binding{MaxAge: time.Hour, Now: at("2026-12-03T08:20:00Z")}, "in the future"},
		"serial":             {Binding{MinSerial: 7}, ""},
		"rolled back":        {Binding{MinSerial: 8}, "serial 7 is older than the required 8"},
	} {
		t.Run(name, func(t *testing.T) {
			opts := ReadOptions{VerifyKey: pubOf(keyA()), Binding: tc.bind}
			_, err := Read(bytes.NewReader(data), opts)
			r, ferr := OpenFile(path, opts)
			if ferr == nil {
				r.Close()
			}
			for _, err := range []error{err, ferr} {
				switch {
				case tc.want == "" && err != nil:
					t.Fatalf("refused: %v", err)
				case tc.want != "" && (!errors.Is(err, ErrBinding) || !strings.Contains(err.Error(), tc.want)):
					t.Fatalf("err = %v, want ErrBinding saying %q", err, tc.want)
				}
			}
		})
	}
	// A baseline that records nothing (every version 1 file) satisfies no
	// requirement.
	plain := encodeFile(t, sampleBaseline(), nil)
	for _, bind := range []Binding{{Subject: "x"}, {ImageDigest: im.Manifest}, {MaxAge: time.Hour}, {MinSerial: 1}} {
		if _, err := Read(bytes.NewReader(plain), ReadOptions{Binding: bind}); !errors.Is(err, ErrBinding) {
			t.Errorf("%+v on a baseline without a header: err = %v, want ErrBinding", bind, err)
		}
	}
}
