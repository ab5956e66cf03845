package baseline

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"io"
	"testing"
)

// Screen authenticates the header alone: it reads no further than the
// payload's start, refuses another key or image, and returns the signed
// serial.
func TestScreen(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	_, other, _ := ed25519.GenerateKey(nil)
	digest := "sha256:" + string(bytes.Repeat([]byte("a"), 64))
	b := &Baseline{Header: Header{Subject: digest, Serial: 7, Image: &Image{Manifest: digest, Config: "sha256:" + string(bytes.Repeat([]byte("c"), 64)), Platform: "linux/amd64"}}}
	var signed, wrong bytes.Buffer
	if err := Write(&signed, b, key); err != nil {
		t.Fatal(err)
	}
	if err := Write(&wrong, b, other); err != nil {
		t.Fatal(err)
	}
	pub := key.Public().(ed25519.PublicKey)
	r := bytes.NewReader(signed.Bytes())
	h, err := Screen(r, ReadOptions{VerifyKey: pub, Binding: Binding{ImageDigest: digest}})
	if err != nil || h.Serial != 7 {
		t.Fatalf("Screen: %+v, %v", h, err)
	}
	if rest, _ := io.ReadAll(r); len(rest) == 0 {
		t.Error("Screen read the payload too")
	}
	if _, err := Screen(bytes.NewReader(wrong.Bytes()), ReadOptions{VerifyKey: pub}); !errors.Is(err, ErrSignature) {
		t.Errorf("another key: %v", err)
	}
	if _, err := Screen(bytes.NewReader(signed.Bytes()), ReadOptions{VerifyKey: pub, Binding: Binding{ImageDigest: "sha256:" + string(bytes.Repeat([]byte("b"), 64))}}); !errors.Is(err, ErrBinding) {
		t.Errorf("another image: %v", err)
	}
	if _, err := Screen(bytes.NewReader([]byte("junk")), ReadOptions{VerifyKey: pub}); !errors.Is(err, ErrFormat) {
		t.Errorf("junk: %v", err)
	}
}
