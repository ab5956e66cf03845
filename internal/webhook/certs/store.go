package certs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	admregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// API is what the self-signed mode needs from the Kubernetes API: its own
// Secret (get, create, update) and its own MutatingWebhookConfiguration
// (get, patch). RBAC grants exactly these, by resource name where
// Kubernetes allows it (create cannot be limited by name).
type API interface {
	GetSecret(ctx context.Context, namespace, name string) (*corev1.Secret, error)
	CreateSecret(ctx context.Context, s *corev1.Secret) (*corev1.Secret, error)
	UpdateSecret(ctx context.Context, s *corev1.Secret) (*corev1.Secret, error)
	GetWebhookConfig(ctx context.Context, name string) (*admregv1.MutatingWebhookConfiguration, error)
	PatchWebhookConfig(ctx context.Context, name string, jsonPatch []byte) error
}

// Errors an API returns (wrapped), so that the logic can tell them apart.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrConflict = errors.New("conflict")
)

// Store keeps the CA and serving certificate in a Secret shared by the
// webhook's replicas.
type Store struct {
	API             API
	Namespace, Name string
	Names           Names
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// maxAttempts bounds the read-modify-write loop of Ensure: each attempt
// after the first follows a conflict with another replica, which then holds
// a valid bundle.
const maxAttempts = 5

// Ensure returns a valid bundle from the Secret, creating the Secret if it
// is absent (the loser of a creation race reads the winner's) and renewing
// the serving certificate with the stored CA when it expires soon or lacks a
// name. A Secret whose CA is unusable is replaced, CA included.
func (s *Store) Ensure(ctx context.Context) (Bundle, error) {
	for attempt := 0; attempt < maxAttempts; attempt++ {
		sec, err := s.API.GetSecret(ctx, s.Namespace, s.Name)
		if errors.Is(err, ErrNotFound) {
			b, err := NewBundle(s.now(), s.Names)
			if err != nil {
				return Bundle{}, err
			}
			_, err = s.API.CreateSecret(ctx, s.secret(b, nil))
			if errors.Is(err, ErrExists) {
				continue // another replica won: use its CA
			}
			if err != nil {
				return Bundle{}, fmt.Errorf("failed to create Secret %s/%s: %w", s.Namespace, s.Name, err)
			}
			return b, nil
		}
		if err != nil {
			return Bundle{}, fmt.Errorf("failed to read Secret %s/%s: %w", s.Namespace, s.Name, err)
		}
		b := Bundle{CACert: sec.Data[KeyCACert], CAKey: sec.Data[KeyCAKey], Cert: sec.Data[KeyCert], Key: sec.Data[KeyKey]}
		err = b.Check(s.now(), s.Names)
		switch {
		case err == nil:
			return b, nil
		case errors.Is(err, ErrRenew):
			b.Cert, b.Key, err = NewServing(s.now(), b.CACert, b.CAKey, s.Names)
		default:
			b, err = NewBundle(s.now(), s.Names)
		}
		if err != nil {
			return Bundle{}, err
		}
		_, err = s.API.UpdateSecret(ctx, s.secret(b, sec))
		if errors.Is(err, ErrConflict) {
			continue // another replica renewed it first: read its result
		}
		if err != nil {
			return Bundle{}, fmt.Errorf("failed to update Secret %s/%s: %w", s.Namespace, s.Name, err)
		}
		return b, nil
	}
	return Bundle{}, fmt.Errorf("secret %s/%s: still changing after %d attempts", s.Namespace, s.Name, maxAttempts)
}

// secret is the Secret holding b; old, when set, is the version it replaces.
func (s *Store) secret(b Bundle, old *corev1.Secret) *corev1.Secret {
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name,
			Labels: map[string]string{"app.kubernetes.io/name": "podfim", "app.kubernetes.io/component": "webhook"}},
		Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{KeyCACert: b.CACert, KeyCAKey: b.CAKey, KeyCert: b.Cert, KeyKey: b.Key},
	}
	if old != nil {
		sec.ObjectMeta = *old.ObjectMeta.DeepCopy()
		sec.Type = old.Type
	}
	return sec
}

// patchOp is one RFC 6902 operation.
type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// PublishCA makes every webhook of the MutatingWebhookConfiguration name
// trust caPEM. It patches only the caBundle of webhooks that lack it, each
// guarded by a test of the webhook's name, so a concurrent edit of the list
// fails the patch instead of changing someone else's webhook. It reports
// whether it patched.
func PublishCA(ctx context.Context, api API, name string, caPEM []byte) (bool, error) {
	cfg, err := api.GetWebhookConfig(ctx, name)
	if err != nil {
		return false, fmt.Errorf("failed to read MutatingWebhookConfiguration %s: %w", name, err)
	}
	if len(cfg.Webhooks) == 0 {
		return false, fmt.Errorf("MutatingWebhookConfiguration %s has no webhooks", name)
	}
	var ops []patchOp
	for i, w := range cfg.Webhooks {
		if bytes.Equal(w.ClientConfig.CABundle, caPEM) {
			continue
		}
		p := "/webhooks/" + strconv.Itoa(i)
		ops = append(ops,
			patchOp{Op: "test", Path: p + "/name", Value: w.Name},
			patchOp{Op: "add", Path: p + "/clientConfig/caBundle", Value: caPEM}) // []byte: base64, as the API wants
	}
	if len(ops) == 0 {
		return false, nil
	}
	data, err := json.Marshal(ops)
	if err != nil {
		return false, err
	}
	if err := api.PatchWebhookConfig(ctx, name, data); err != nil {
		return false, fmt.Errorf("failed to patch the caBundle of MutatingWebhookConfiguration %s: %w", name, err)
	}
	return true, nil
}

// Log keys.
const (
	keyConfig = "config"
	keyError  = "error"
	keyRetry  = "retry_in"
)

// Backoff of KeepPublished's retries.
const (
	backoffMin = 500 * time.Millisecond
	backoffMax = 30 * time.Second
)

// KeepFresh runs Ensure every interval until ctx ends and calls changed
// with the bundle whenever it differs from last: a long-running replica
// renews its serving certificate (30 days before expiry) and picks up
// another replica's renewal. Errors are logged and retried next time; the
// current certificate stays in use.
func (s *Store) KeepFresh(ctx context.Context, last Bundle, interval time.Duration, log *slog.Logger, changed func(Bundle)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
		b, err := s.Ensure(ctx)
		if err != nil {
			log.Warn("failed to renew the serving certificate; keeping the current one", keyError, err)
			continue
		}
		if !bytes.Equal(b.Cert, last.Cert) || !bytes.Equal(b.CACert, last.CACert) {
			last = b
			changed(b)
		}
	}
}

// KeepPublished runs PublishCA now and then every interval until ctx ends,
// retrying failures with exponential backoff: the configuration may be
// created after the webhook starts, and a tool that replaces the object
// (kubectl replace, helm --force, a GitOps sync of the chart) resets the caBundle
// the chart leaves empty. published is called after each successful check
// (true: the caBundle is in place).
func KeepPublished(ctx context.Context, api API, name string, caPEM func() []byte, interval time.Duration, log *slog.Logger, published func(ok bool)) {
	wait := backoffMin
	var lastErr string
	for {
		patched, err := PublishCA(ctx, api, name, caPEM())
		next := interval
		if err != nil {
			published(false)
			if err.Error() != lastErr { // once per distinct error, not per retry
				log.Warn("failed to publish the CA in the webhook configuration; retrying", keyConfig, name, keyError, err, keyRetry, wait)
				lastErr = err.Error()
			}
			next, wait = wait, min(wait*2, backoffMax)
		} else {
			published(true)
			if patched {
				log.Info("published the CA in the webhook configuration", keyConfig, name)
			}
			wait, lastErr = backoffMin, ""
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(next):
		}
	}
}
