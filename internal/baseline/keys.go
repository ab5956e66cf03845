package baseline

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// PEM block types of the key files: the standard ones, so that openssl and
// other tools read them too.
const (
	privateKeyType = "PRIVATE KEY" // PKCS #8
	publicKeyType  = "PUBLIC KEY"  // PKIX
	maxKeyFileSize = 16 << 10
)

// GenerateKey creates a new signing key pair: the private key at privPath
// (PKCS #8 PEM, mode 0600) and the public key at pubPath (PKIX PEM, mode
// 0644). It refuses to overwrite either file: losing a signing key to a typo
// would invalidate every baseline signed with it.
func GenerateKey(privPath, pubPath string) (ed25519.PublicKey, error) {
	if privPath == pubPath {
		return nil, fmt.Errorf("failed to generate key: private and public key paths are both %q", privPath)
	}
	for _, p := range []string{privPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return nil, fmt.Errorf("failed to generate key: %q already exists", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("failed to generate key: %w", err)
		}
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("failed to generate key: %w", err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("failed to generate key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("failed to generate key: %w", err)
	}
	if err := createFile(privPath, pem.EncodeToMemory(&pem.Block{Type: privateKeyType, Bytes: privDER}), 0o600); err != nil {
		return nil, fmt.Errorf("failed to write private key %q: %w", privPath, err)
	}
	if err := createFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: publicKeyType, Bytes: pubDER}), 0o644); err != nil {
		os.Remove(privPath)
		return nil, fmt.Errorf("failed to write public key %q: %w", pubPath, err)
	}
	return pub, nil
}

// createFile writes a new file with exactly mode perm (the umask may only
// have narrowed it, but Chmod makes it exact), failing if it exists.
func createFile(path string, data []byte, perm fs.FileMode) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Sync()
}

// LoadPrivateKey reads a private key written by GenerateKey (or any PKCS #8
// PEM ed25519 key).
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	block, err := readPEM(path)
	if err != nil {
		return nil, fmt.Errorf("failed to load private key %q: %w", path, err)
	}
	if block.Type != privateKeyType {
		return nil, fmt.Errorf("failed to load private key %q: PEM block is %q, want %q", path, block.Type, privateKeyType)
	}
	priv, err := parsePrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("failed to load private key %q: %w", path, err)
	}
	return priv, nil
}

// LoadPublicKey reads a public key written by GenerateKey. It also accepts
// the private key file and derives the public key from it, so that a signer
// can check its own output without a second file.
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	block, err := readPEM(path)
	if err != nil {
		return nil, fmt.Errorf("failed to load public key %q: %w", path, err)
	}
	switch block.Type {
	case publicKeyType:
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("failed to load public key %q: %w", path, err)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("failed to load public key %q: %T is not an ed25519 key", path, k)
		}
		return pub, nil
	case privateKeyType:
		priv, err := parsePrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("failed to load public key %q: %w", path, err)
		}
		return priv.Public().(ed25519.PublicKey), nil
	}
	return nil, fmt.Errorf("failed to load public key %q: PEM block is %q, want %q", path, block.Type, publicKeyType)
}

func parsePrivateKey(der []byte) (ed25519.PrivateKey, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, err
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%T is not an ed25519 key", k)
	}
	return priv, nil
}

// readPEM reads a file holding exactly one PEM block. Anything else next to
// it (a second key, say) is rejected rather than guessed about.
func readPEM(path string) (*pem.Block, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("file is larger than %d bytes; not a key", maxKeyFileSize)
	}
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("no PEM block found")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("unexpected data after the PEM block")
	}
	if len(block.Headers) != 0 {
		// Encrypted PEM (Proc-Type headers) is not supported.
		return nil, fmt.Errorf("PEM block has headers; encrypted keys are not supported")
	}
	return block, nil
}
