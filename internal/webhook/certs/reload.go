package certs

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"
)

// reloadEvery bounds how often the files are looked at: a handshake costs
// at most two stat calls per second.
const reloadEvery = time.Second

// Files serves the certificate in CertFile and KeyFile (cert-manager's
// Secret, mounted), and picks up a new pair as soon as both files change:
// kubelet swaps a Secret volume's files atomically (a symlink swap), and a
// pair that does not load (one file written, the other not yet) keeps the
// last good one.
type Files struct {
	CertFile, KeyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string
	checked time.Time
}

// Load reads the pair; an error is fatal at start.
func (f *Files) Load() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reload(time.Now(), true)
}

// GetCertificate is for tls.Config.GetCertificate.
func (f *Files) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if now := time.Now(); now.Sub(f.checked) >= reloadEvery {
		_ = f.reload(now, false) // keep serving the last good pair
	}
	if f.cert == nil {
		return nil, fmt.Errorf("no serving certificate loaded from %s", f.CertFile)
	}
	return f.cert, nil
}

// Current returns the certificate in use (nil before Load).
func (f *Files) Current() *tls.Certificate {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cert
}

func (f *Files) reload(now time.Time, force bool) error {
	f.checked = now
	stamp := ""
	for _, p := range []string{f.CertFile, f.KeyFile} {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("failed to read %s: %w", p, err)
		}
		stamp += fmt.Sprintf("%d.%d.%d;", fi.ModTime().UnixNano(), fi.Size(), inode(fi))
	}
	if !force && stamp == f.stamp {
		return nil
	}
	pair, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return fmt.Errorf("failed to load the serving certificate %s and key %s: %w", f.CertFile, f.KeyFile, err)
	}
	f.cert, f.stamp = &pair, stamp
	return nil
}

// Static serves one certificate (the self-signed mode's), swapped by Set.
type Static struct {
	mu   sync.Mutex
	cert *tls.Certificate
}

// Set replaces the certificate.
func (s *Static) Set(b Bundle) error {
	pair, err := tls.X509KeyPair(b.Cert, b.Key)
	if err != nil {
		return fmt.Errorf("invalid serving certificate: %w", err)
	}
	s.mu.Lock()
	s.cert = &pair
	s.mu.Unlock()
	return nil
}

// GetCertificate is for tls.Config.GetCertificate.
func (s *Static) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cert == nil {
		return nil, fmt.Errorf("no serving certificate yet")
	}
	return s.cert, nil
}
