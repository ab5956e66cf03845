package certs_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/podfim/podfim/internal/testwait"
	"github.com/podfim/podfim/internal/webhook/certs"
	"github.com/podfim/podfim/internal/webhook/certs/certstest"
)

var names = certs.Names{DNS: []string{"podfim-webhook.podfim.svc"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}}

func TestEnsureCreatesAndReuses(t *testing.T) {
	api := certstest.New()
	s := &certs.Store{API: api, Namespace: "podfim", Name: "podfim-webhook-tls", Names: names}
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
	if sec := api.Secrets["podfim/podfim-webhook-tls"]; sec.Type != corev1.SecretTypeTLS || len(sec.Data[certs.KeyCAKey]) == 0 {
		t.Errorf("secret %+v", sec)
	}
}

// TestEnsureRace: replicas starting together end up with one CA.
func TestEnsureRace(t *testing.T) {
	api := certstest.New()
	var gate sync.WaitGroup
	const replicas = 4
	gate.Add(replicas)
	var calls atomic.Int32
	api.BeforeGet = func() {
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
			s := &certs.Store{API: api, Namespace: "podfim", Name: "tls", Names: names}
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
	if got := string(api.Secrets["podfim/tls"].Data[certs.KeyCACert]); got != cas[0] {
		t.Error("the replicas' CA is not the stored one")
	}
}

func TestEnsureRenews(t *testing.T) {
	api := certstest.New()
	now := time.Now()
	s := &certs.Store{API: api, Namespace: "ns", Name: "tls", Names: names, Now: func() time.Time { return now }}
	b1, err := s.Ensure(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Close to expiry: a new serving certificate from the same CA.
	now = now.Add(certs.ServingLifetime - certs.RenewBefore + time.Hour)
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
	sec := api.Secrets["ns/tls"]
	sec.Data[certs.KeyCAKey] = []byte("garbage")
	b4, err := s.Ensure(context.Background())
	if err != nil || string(b4.CACert) == string(b3.CACert) || b4.Check(now, s.Names) != nil {
		t.Errorf("broken CA: %v", err)
	}
}

func TestPublishCA(t *testing.T) {
	api := certstest.New()
	ctx := context.Background()
	if _, err := certs.PublishCA(ctx, api, "podfim", []byte("CA")); !errors.Is(err, certs.ErrNotFound) {
		t.Errorf("missing configuration: %v", err)
	}
	api.Configs["podfim"] = &admregv1.MutatingWebhookConfiguration{Webhooks: []admregv1.MutatingWebhook{
		{Name: "ns.inject.podfim.io"}, {Name: "pod.inject.podfim.io", ClientConfig: admregv1.WebhookClientConfig{CABundle: []byte("old")}},
	}}
	api.Configs["someone-else"] = &admregv1.MutatingWebhookConfiguration{Webhooks: []admregv1.MutatingWebhook{{Name: "x"}}}
	patched, err := certs.PublishCA(ctx, api, "podfim", []byte("CA"))
	if err != nil || !patched {
		t.Fatalf("patched %v, %v", patched, err)
	}
	for _, w := range api.Configs["podfim"].Webhooks {
		if string(w.ClientConfig.CABundle) != "CA" {
			t.Errorf("%s: caBundle %q", w.Name, w.ClientConfig.CABundle)
		}
	}
	if api.Configs["someone-else"].Webhooks[0].ClientConfig.CABundle != nil {
		t.Error("another configuration was changed")
	}
	// In place already: no patch.
	if patched, err := certs.PublishCA(ctx, api, "podfim", []byte("CA")); err != nil || patched {
		t.Errorf("second publish: %v, %v", patched, err)
	}
}

// TestKeepPublished: a configuration created late is patched once it
// appears, and a caBundle reset (the object replaced) is put back.
func TestKeepPublished(t *testing.T) {
	api := certstest.New()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	states := make(chan bool, 100)
	go certs.KeepPublished(ctx, api, "podfim", func() []byte { return []byte("CA") }, 20*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)), func(ok bool) { states <- ok })
	if ok := <-states; ok {
		t.Fatal("published without a configuration")
	}
	api.Mu.Lock()
	api.Configs["podfim"] = &admregv1.MutatingWebhookConfiguration{Webhooks: []admregv1.MutatingWebhook{{Name: "w"}}}
	api.Mu.Unlock()
	waitState(t, states, true)
	api.Mu.Lock()
	api.Configs["podfim"].Webhooks[0].ClientConfig.CABundle = nil
	api.Mu.Unlock()
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

// TestKeepFresh: a long-running replica renews its serving certificate when
// the clock nears its expiry, and learns of it through changed.
func TestKeepFresh(t *testing.T) {
	api := certstest.New()
	var mu sync.Mutex
	now := time.Now()
	s := &certs.Store{API: api, Namespace: "ns", Name: "tls", Names: names, Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }}
	first, err := s.Ensure(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Each check reads the Secret first: once three checks have started,
	// the first two have decided.
	var gets atomic.Int64
	api.BeforeGet = func() { gets.Add(1) }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan certs.Bundle, 10)
	go s.KeepFresh(ctx, first, 10*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)), func(b certs.Bundle) { got <- b })
	testwait.Eventually(t, 5*time.Second, time.Millisecond, "three checks", testwait.True(func() bool { return gets.Load() >= 3 }))
	select {
	case <-got:
		t.Fatal("changed without a renewal")
	default:
	}
	mu.Lock()
	now = now.Add(certs.ServingLifetime - certs.RenewBefore + time.Hour)
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
