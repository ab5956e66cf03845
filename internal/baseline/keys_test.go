package baseline

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestGenerateKey(t *testing.T) {
	// A strict umask must not change the modes, a loose one must not widen
	// the private key's.
	for _, umask := range []int{0o022, 0o077, 0} {
		old := syscall.Umask(umask)
		dir := t.TempDir()
		priv, pub := filepath.Join(dir, "podfim.key"), filepath.Join(dir, "podfim.pub")
		gen, err := GenerateKey(priv, pub)
		syscall.Umask(old)
		if err != nil {
			t.Fatal(err)
		}
		for path, want := range map[string]fs.FileMode{priv: 0o600, pub: 0o644} {
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != want {
				t.Errorf("umask %#o: %s has mode %v, want %v", umask, filepath.Base(path), st.Mode().Perm(), want)
			}
		}
		sk, err := LoadPrivateKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		pk, err := LoadPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		derived, err := LoadPublicKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		if !pk.Equal(gen) || !derived.Equal(gen) || !pubOf(sk).Equal(gen) {
			t.Fatal("loaded keys do not match the generated one")
		}

		// Sign with the loaded key; verify with the loaded public key,
		// reject with another.
		var buf bytes.Buffer
		if err := Write(&buf, sampleBaseline(), sk); err != nil {
			t.Fatal(err)
		}
		b, err := Read(bytes.NewReader(buf.Bytes()), ReadOptions{VerifyKey: pk})
		if err != nil {
			t.Fatal(err)
		}
		if b.KeyID != KeyID(pk) {
			t.Errorf("KeyID %q, want %q", b.KeyID, KeyID(pk))
		}
		if _, err := Read(bytes.NewReader(buf.Bytes()), ReadOptions{VerifyKey: pubOf(keyA())}); !errors.Is(err, ErrSignature) {
			t.Errorf("verified with another key: %v", err)
		}

		// No overwriting, of either file, and nothing left behind.
		other := filepath.Join(dir, "other")
		for _, paths := range [][2]string{{priv, other}, {other, pub}, {other, other}} {
			if _, err := GenerateKey(paths[0], paths[1]); err == nil {
				t.Errorf("GenerateKey(%q, %q) overwrote a file", paths[0], paths[1])
			}
			if _, err := os.Stat(other); err == nil {
				t.Fatalf("GenerateKey(%q, %q) left %q behind", paths[0], paths[1], other)
			}
		}
		if k2, err := LoadPublicKey(pub); err != nil || !k2.Equal(gen) {
			t.Error("a refused GenerateKey changed the public key")
		}
	}
}

func TestGenerateKeyCleansUp(t *testing.T) {
	dir := t.TempDir()
	priv := filepath.Join(dir, "k")
	// The public key's directory does not exist: the private key must not
	// be left without its public half.
	if _, err := GenerateKey(priv, filepath.Join(dir, "missing", "k.pub")); err == nil {
		t.Fatal("GenerateKey succeeded")
	}
	if _, err := os.Stat(priv); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("private key left behind: %v", err)
	}
}

func TestLoadKeyErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	ecPubDER, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	edDER, _ := x509.MarshalPKCS8PrivateKey(keyA())
	edPubDER, _ := x509.MarshalPKIXPublicKey(pubOf(keyA()))
	block := func(typ string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }
	good := write("good.key", block("PRIVATE KEY", edDER))
	goodPub := write("good.pub", block("PUBLIC KEY", edPubDER))
	if k, err := LoadPrivateKey(good); err != nil || !k.Equal(keyA()) {
		t.Fatalf("good key: %v", err)
	}
	if k, err := LoadPublicKey(goodPub); err != nil || !k.Equal(pubOf(keyA())) {
		t.Fatalf("good public key: %v", err)
	}
	for name, data := range map[string][]byte{
		"empty":       nil,
		"not pem":     []byte("hello"),
		"ecdsa":       block("PRIVATE KEY", ecDER),
		"ecdsa pub":   block("PUBLIC KEY", ecPubDER),
		"wrong type":  block("RSA PRIVATE KEY", edDER),
		"garbage der": block("PRIVATE KEY", []byte{1, 2, 3}),
		"two blocks":  append(block("PRIVATE KEY", edDER), block("PRIVATE KEY", edDER)...),
		"trailing":    append(block("PRIVATE KEY", edDER), "junk"...),
		"headers":     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: edDER}),
		"huge":        bytes.Repeat([]byte{'a'}, maxKeyFileSize+1),
	} {
		p := write(name, data)
		if _, err := LoadPrivateKey(p); err == nil {
			t.Errorf("LoadPrivateKey accepted %s", name)
		}
		if _, err := LoadPublicKey(p); err == nil {
			t.Errorf("LoadPublicKey accepted %s", name)
		}
	}
	if _, err := LoadPrivateKey(goodPub); err == nil {
		t.Error("LoadPrivateKey accepted a public key")
	}
	if _, err := LoadPrivateKey(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}
