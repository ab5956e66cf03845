package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

var names = Names{DNS: []string{"podfim-webhook.podfim.svc"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}}

func TestCheck(t *testing.T) {
	now := time.Now()
	b, err := NewBundle(now, names)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewBundle(now, names)
	for _, tt := range []struct {
		name  string
		b     Bundle
		at    time.Time
		names Names
		renew bool
	}{
		{"expiring", b, now.Add(ServingLifetime - time.Hour), names, true},
		{"missing IP", b, now, Names{IPs: []net.IP{net.ParseIP("::1")}}, true},
		{"missing DNS", b, now, Names{DNS: []string{"x.svc"}}, true},
		{"other CA's cert", Bundle{CACert: b.CACert, CAKey: b.CAKey, Cert: other.Cert, Key: other.Key}, now, names, true},
	} {
		err := tt.b.Check(tt.at, tt.names)
		if err == nil || errors.Is(err, ErrRenew) != tt.renew {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
	if err := (Bundle{CACert: b.Cert, CAKey: b.Key, Cert: b.Cert, Key: b.Key}).Check(now, names); err == nil || errors.Is(err, ErrRenew) {
		t.Errorf("a serving cert as the CA: %v", err)
	}
}

func TestFilesReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	write := func(b Bundle) {
		t.Helper()
		if err := os.WriteFile(certFile, b.Cert, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, b.Key, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	f := &Files{CertFile: certFile, KeyFile: keyFile}
	if err := f.Load(); err == nil {
		t.Fatal("loaded missing files")
	}
	b1, _ := NewBundle(time.Now(), names)
	write(b1)
	if err := f.Load(); err != nil {
		t.Fatal(err)
	}
	serial := func() string {
		c, err := f.GetCertificate(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := x509.ParseCertificate(c.Certificate[0])
		return leaf.SerialNumber.String()
	}
	s1 := serial()
	b2, _ := NewBundle(time.Now(), names)
	write(b2)
	// A half-written pair (new key, old cert) keeps the last good one.
	if err := os.WriteFile(keyFile, b1.Key, 0o600); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.checked = time.Time{}
	f.mu.Unlock()
	if serial() != s1 {
		t.Error("a mismatched pair replaced the good one")
	}
	write(b2)
	f.mu.Lock()
	f.checked = time.Time{} // skip the once-a-second throttle
	f.mu.Unlock()
	if serial() == s1 {
		t.Error("the new certificate was not picked up")
	}
}

// TestRESTTimeout: in-cluster configurations set no timeout, and a hung
// request would stall the webhook's publishing and renewal loops for good.
func TestRESTTimeout(t *testing.T) {
	r, err := NewREST(&rest.Config{Host: "https://127.0.0.1:1"}, "podfim/test")
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]rest.Interface{"core": r.core, "admissionregistration": r.admreg} {
		if got := c.(*rest.RESTClient).Client.Timeout; got != requestTimeout {
			t.Errorf("%s client timeout %v, want %v", name, got, requestTimeout)
		}
	}
	r, err = NewREST(&rest.Config{Host: "https://127.0.0.1:1", Timeout: time.Second}, "podfim/test")
	if err != nil {
		t.Fatal(err)
	}
	if got := r.core.(*rest.RESTClient).Client.Timeout; got != time.Second {
		t.Errorf("a configured timeout was replaced: %v", got)
	}
}
