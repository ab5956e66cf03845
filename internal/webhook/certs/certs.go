// Package certs gives the admission webhook its serving certificate: either
// a CA and serving certificate it makes itself, shared by its replicas
// through a Secret and published in its MutatingWebhookConfiguration's
// caBundle, or certificate files mounted from a Secret (cert-manager),
// reloaded when they change.
//
// It talks to the Kubernetes API through the small API interface, so the
// logic is tested with plain values; REST is the client-go implementation.
package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"time"
)

// Lifetimes. The CA outlives many serving certificates, so that a renewal
// of the serving certificate never needs a new caBundle.
const (
	CALifetime      = 10 * 365 * 24 * time.Hour
	ServingLifetime = 365 * 24 * time.Hour
	// RenewBefore is how long before its expiry a serving certificate is
	// replaced.
	RenewBefore = 30 * 24 * time.Hour
)

// Keys of the Secret. tls.crt and tls.key are the standard kubernetes.io/tls
// keys; ca.key stays in the Secret so that any replica can renew.
const (
	KeyCACert = "ca.crt"
	KeyCAKey  = "ca.key"
	KeyCert   = "tls.crt"
	KeyKey    = "tls.key"
)

// Bundle is a CA and a serving certificate signed by it, PEM encoded.
type Bundle struct {
	CACert, CAKey, Cert, Key []byte
}

// Names are what the serving certificate must cover.
type Names struct {
	DNS []string
	IPs []net.IP
}

// NewCA makes a self-signed ECDSA P-256 CA.
func NewCA(now time.Time, commonName string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to generate the CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-time.Hour), // clock skew between replicas and the API server
		NotAfter:              now.Add(CALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to make the CA certificate: %w", err)
	}
	return encode(der, key)
}

// NewServing makes a serving certificate for names, signed by the CA.
func NewServing(now time.Time, caCertPEM, caKeyPEM []byte, names Names) (certPEM, keyPEM []byte, err error) {
	ca, err := tls.X509KeyPair(caCertPEM, caKeyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("invalid CA: %w", err)
	}
	caCert, err := x509.ParseCertificate(ca.Certificate[0])
	if err != nil {
		return nil, nil, fmt.Errorf("invalid CA certificate: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to generate the serving key: %w", err)
	}
	cn := "podfim-webhook"
	if len(names.DNS) > 0 {
		cn = names.DNS[0]
	}
	notAfter := now.Add(ServingLifetime)
	if notAfter.After(caCert.NotAfter) {
		notAfter = caCert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     names.DNS,
		IPAddresses:  names.IPs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, ca.PrivateKey)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to make the serving certificate: %w", err)
	}
	return encode(der, key)
}

// NewBundle makes a CA and a serving certificate.
func NewBundle(now time.Time, names Names) (Bundle, error) {
	caCert, caKey, err := NewCA(now, "podfim-webhook-ca")
	if err != nil {
		return Bundle{}, err
	}
	cert, key, err := NewServing(now, caCert, caKey, names)
	if err != nil {
		return Bundle{}, err
	}
	return Bundle{CACert: caCert, CAKey: caKey, Cert: cert, Key: key}, nil
}

// ErrRenew means the serving certificate must be replaced (it expires soon,
// does not cover the names, or does not chain to the CA); the CA is fine.
var ErrRenew = errors.New("the serving certificate needs renewal")

// Check verifies b at now: the CA must be a valid CA key pair (else an
// error that is not ErrRenew), the serving certificate must chain to it,
// cover names and not expire within RenewBefore (else ErrRenew).
func (b Bundle) Check(now time.Time, names Names) error {
	ca, err := tls.X509KeyPair(b.CACert, b.CAKey)
	if err != nil {
		return fmt.Errorf("invalid CA in the Secret: %w", err)
	}
	caCert, err := x509.ParseCertificate(ca.Certificate[0])
	if err != nil || !caCert.IsCA || now.After(caCert.NotAfter.Add(-RenewBefore)) {
		return errors.New("the CA in the Secret is not a CA or expires soon")
	}
	pair, err := tls.X509KeyPair(b.Cert, b.Key)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRenew, err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRenew, err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return fmt.Errorf("%w: %v", ErrRenew, err)
	}
	if now.After(cert.NotAfter.Add(-RenewBefore)) {
		return fmt.Errorf("%w: it expires at %s", ErrRenew, cert.NotAfter.Format(time.RFC3339))
	}
	for _, n := range names.DNS {
		if !slices.Contains(cert.DNSNames, n) {
			return fmt.Errorf("%w: it does not cover %q", ErrRenew, n)
		}
	}
	for _, ip := range names.IPs {
		if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
			return fmt.Errorf("%w: it does not cover %s", ErrRenew, ip)
		}
	}
	return nil
}

// Expiry returns when the first certificate of certPEM expires.
func Expiry(certPEM []byte) (time.Time, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return time.Time{}, errors.New("no PEM certificate")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return time.Time{}, err
	}
	return c.NotAfter, nil
}

func encode(der []byte, key *ecdsa.PrivateKey) ([]byte, []byte, error) {
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to encode the key: %w", err)
	}
	var c, k bytes.Buffer
	_ = pem.Encode(&c, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	_ = pem.Encode(&k, &pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	return c.Bytes(), k.Bytes(), nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		// crypto/rand does not fail on Linux (it blocks or panics itself).
		panic(err)
	}
	return n
}
