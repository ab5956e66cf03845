package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
)

// fakeAPI is an in-memory API server for one namespace: resource versions,
// create conflicts and JSON patches (test and add) like the real one.
type fakeAPI struct {
	mu        sync.Mutex
	secrets   map[string]*corev1.Secret
	configs   map[string]*admregv1.MutatingWebhookConfiguration
	rv        int
	patchErr  error
	beforeGet func() // runs before each GetSecret (races)
}

func newFake() *fakeAPI {
	return &fakeAPI{secrets: map[string]*corev1.Secret{}, configs: map[string]*admregv1.MutatingWebhookConfiguration{}}
}

func (f *fakeAPI) GetSecret(_ context.Context, ns, name string) (*corev1.Secret, error) {
	if f.beforeGet != nil {
		f.beforeGet()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.secrets[ns+"/"+name]
	if !ok {
		return nil, fmt.Errorf("%w: secret %s", ErrNotFound, name)
	}
	return s.DeepCopy(), nil
}

func (f *fakeAPI) CreateSecret(_ context.Context, s *corev1.Secret) (*corev1.Secret, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := s.Namespace + "/" + s.Name
	if _, ok := f.secrets[k]; ok {
		return nil, fmt.Errorf("%w: secret %s", ErrExists, s.Name)
	}
	f.rv++
	s = s.DeepCopy()
	s.ResourceVersion = strconv.Itoa(f.rv)
	f.secrets[k] = s
	return s.DeepCopy(), nil
}

func (f *fakeAPI) UpdateSecret(_ context.Context, s *corev1.Secret) (*corev1.Secret, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := s.Namespace + "/" + s.Name
	cur, ok := f.secrets[k]
	if !ok {
		return nil, ErrNotFound
	}
	if cur.ResourceVersion != s.ResourceVersion {
		return nil, fmt.Errorf("%w: resourceVersion %s is not %s", ErrConflict, s.ResourceVersion, cur.ResourceVersion)
	}
	f.rv++
	s = s.DeepCopy()
	s.ResourceVersion = strconv.Itoa(f.rv)
	f.secrets[k] = s
	return s.DeepCopy(), nil
}

func (f *fakeAPI) GetWebhookConfig(_ context.Context, name string) (*admregv1.MutatingWebhookConfiguration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.configs[name]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	return c.DeepCopy(), nil
}

func (f *fakeAPI) PatchWebhookConfig(_ context.Context, name string, patch []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.patchErr != nil {
		return f.patchErr
	}
	c, ok := f.configs[name]
	if !ok {
		return ErrNotFound
	}
	var ops []struct {
		Op, Path string
		Value    json.RawMessage
	}
	if err := json.Unmarshal(patch, &ops); err != nil {
		return err
	}
	c = c.DeepCopy()
	for _, op := range ops {
		var i int
		var field string
		if _, err := fmt.Sscanf(op.Path, "/webhooks/%d/%s", &i, &field); err != nil || i >= len(c.Webhooks) {
			return fmt.Errorf("bad path %s", op.Path)
		}
		switch {
		case op.Op == "test" && field == "name":
			var n string
			_ = json.Unmarshal(op.Value, &n)
			if c.Webhooks[i].Name != n {
				return fmt.Errorf("test failed: webhook %d is %s", i, c.Webhooks[i].Name)
			}
		case op.Op == "add" && field == "clientConfig/caBundle":
			if err := json.Unmarshal(op.Value, &c.Webhooks[i].ClientConfig.CABundle); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unexpected op %s %s", op.Op, op.Path)
		}
	}
	f.configs[name] = c
	return nil
}

var names = Names{DNS: []string{"podfim-webhook.podfim.svc"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}}

func TestEnsureCreatesAndReuses(t *testing.T) {
	api := newFake()
	s := &Store{API: api, Namespace: "podfim", Name: "podfim-webhook-tls", Names: names}
	b1, err := s.Ensure(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := b1.Check(time.Now(), names); err != nil {
		t.Fatalf("fresh bundle: %v", err)
	}
	b2, err := s.Ensure(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if string(b2.CACert) != string(b1.CACert) || string(b2.Cert) != string(b1.Cert) {
		t.Error("a second Ensure made a new bundle instead of reading the Secret")
	}
	if sec := api.secrets["podfim/podfim-webhook-tls"]; sec.Type != corev1.SecretTypeTLS || len(sec.Data[KeyCAKey]) == 0 {
		t.Errorf("secret %+v", sec)
	}
}

// TestEnsureRace: replicas starting together end up with one CA.
func TestEnsureRace(t *testing.T) {
	api := newFake()
	var gate sync.WaitGroup
	const replicas = 4
	gate.Add(replicas)
	var calls atomic.Int32
	api.beforeGet = func() {
		// Every replica's first Get sees no Secret: they all try to create.
		if calls.Add(1) <= replicas {
			gate.Done()
			gate.Wait()
		}
	}
	var wg sync.WaitGroup
	cas := make([]string, replicas)
	errs := make([]error, replicas)
	for i := range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := &Store{API: api, Namespace: "podfim", Name: "tls", Names: names}
			b, err := s.Ensure(context.Background())
			cas[i], errs[i] = string(b.CACert), err
		}()
	}
	wg.Wait()
	for i := range replicas {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if cas[i] != cas[0] {
			t.Fatalf("replica %d uses another CA than replica 0", i)
		}
	}
	if got := string(api.secrets["podfim/tls"].Data[KeyCACert]); got != cas[0] {
		t.Error("the replicas' CA is not the stored one")
	}
}

func TestEnsureRenews(t *testing.T) {
	api := newFake()
	now := time.Now()
	s := &Store{API: api, Namespace: "ns", Name: "tls", Names: names, Now: func() time.Time { return now }}
	b1, err := s.Ensure(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Close to expiry: a new serving certificate from the same CA.
	now = now.Add(ServingLifetime - RenewBefore + time.Hour)
	b2, err := s.Ensure(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if string(b2.CACert) != string(b1.CACert) || string(b2.Cert) == string(b1.Cert) {
		t.Error("renewal must keep the CA and replace the serving certificate")
	}
	if err := b2.Check(now, names); err != nil {
		t.Error(err)
	}
	// A new name (another Service): renewed too.
	s.Names.DNS = append(s.Names.DNS, "other.ns.svc")
	b3, err := s.Ensure(context.Background())
	if err != nil || string(b3.Cert) == string(b2.Cert) || b3.Check(now, s.Names) != nil {
		t.Errorf("new name: %v", err)
	}
	// A broken CA: replaced as a whole.
	sec := api.secrets["ns/tls"]
	sec.Data[KeyCAKey] = []byte("garbage")
	b4, err := s.Ensure(context.Background())
	if err != nil || string(b4.CACert) == string(b3.CACert) || b4.Check(now, s.Names) != nil {
		t.Errorf("broken CA: %v", err)
	}
}

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

func TestPublishCA(t *testing.T) {
	api := newFake()
	ctx := context.Background()
	if _, err := PublishCA(ctx, api, "podfim", []byte("CA")); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing configuration: %v", err)
	}
	api.configs["podfim"] = &admregv1.MutatingWebhookConfiguration{Webhooks: []admregv1.MutatingWebhook{
		{Name: "ns.inject.podfim.io"}, {Name: "pod.inject.podfim.io", ClientConfig: admregv1.WebhookClientConfig{CABundle: []byte("old")}},
	}}
	api.configs["someone-else"] = &admregv1.MutatingWebhookConfiguration{Webhooks: []admregv1.MutatingWebhook{{Name: "x"}}}
	patched, err := PublishCA(ctx, api, "podfim", []byte("CA"))
	if err != nil || !patched {
		t.Fatalf("patched %v, %v", patched, err)
	}
	for _, w := range api.configs["podfim"].Webhooks {
		if string(w.ClientConfig.CABundle) != "CA" {
			t.Errorf("%s: caBundle %q", w.Name, w.ClientConfig.CABundle)
		}
	}
	if api.configs["someone-else"].Webhooks[0].ClientConfig.CABundle != nil {
		t.Error("another configuration was changed")
	}
	// In place already: no patch.
	if patched, err := PublishCA(ctx, api, "podfim", []byte("CA")); err != nil || patched {
		t.Errorf("second publish: %v, %v", patched, err)
	}
}

// TestKeepPublished: a configuration created late is patched once it
// appears, and a caBundle reset (the object replaced) is put back.
func TestKeepPublished(t *testing.T) {
	api := newFake()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	states := make(chan bool, 100)
	go KeepPublished(ctx, api, "podfim", func() []byte { return []byte("CA") }, 20*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)), func(ok bool) { states <- ok })
	if ok := <-states; ok {
		t.Fatal("published without a configuration")
	}
	api.mu.Lock()
	api.configs["podfim"] = &admregv1.MutatingWebhookConfiguration{Webhooks: []admregv1.MutatingWebhook{{Name: "w"}}}
	api.mu.Unlock()
	waitState(t, states, true)
	api.mu.Lock()
	api.configs["podfim"].Webhooks[0].ClientConfig.CABundle = nil
	api.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, _ := api.GetWebhookConfig(ctx, "podfim")
		if string(c.Webhooks[0].ClientConfig.CABundle) == "CA" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the reset caBundle was not put back")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitState(t *testing.T, states chan bool, want bool) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ok := <-states:
			if ok == want {
				return
			}
		case <-timeout:
			t.Fatalf("never %v", want)
		}
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

// TestKeepFresh: a long-running replica renews its serving certificate when
// the clock nears its expiry, and learns of it through changed.
func TestKeepFresh(t *testing.T) {
	api := newFake()
	var mu sync.Mutex
	now := time.Now()
	s := &Store{API: api, Namespace: "ns", Name: "tls", Names: names, Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }}
	first, err := s.Ensure(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan Bundle, 10)
	go s.KeepFresh(ctx, first, 10*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)), func(b Bundle) { got <- b })
	select {
	case <-got:
		t.Fatal("changed without a renewal")
	case <-time.After(100 * time.Millisecond):
	}
	mu.Lock()
	now = now.Add(ServingLifetime - RenewBefore + time.Hour)
	mu.Unlock()
	select {
	case b := <-got:
		if string(b.Cert) == string(first.Cert) || string(b.CACert) != string(first.CACert) {
			t.Error("renewal must replace the serving certificate and keep the CA")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no renewal")
	}
}
