// Package certstest is an in-memory Kubernetes API for the certs package's
// self-signed mode: Secrets with resource versions and create conflicts,
// MutatingWebhookConfigurations with the JSON patches (test, add of a
// caBundle) that certs sends. For tests of certs and of the webhook command.
package certstest

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"

	admregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/podfim/podfim/internal/webhook/certs"
)

// API is an in-memory certs.API for one namespace: resource versions,
// create conflicts and JSON patches (test and add) like the real one.
type API struct {
	// Mu guards the maps; hold it to change them while the API is in use.
	Mu sync.Mutex
	// Secrets by "namespace/name"; Configs by name.
	Secrets map[string]*corev1.Secret
	Configs map[string]*admregv1.MutatingWebhookConfiguration
	// PatchErr, when set, fails every patch.
	PatchErr error
	// BeforeGet runs before each GetSecret (to stage races).
	BeforeGet func()
	rv        int
}

func New() *API {
	return &API{Secrets: map[string]*corev1.Secret{}, Configs: map[string]*admregv1.MutatingWebhookConfiguration{}}
}

func (f *API) GetSecret(_ context.Context, ns, name string) (*corev1.Secret, error) {
	if f.BeforeGet != nil {
		f.BeforeGet()
	}
	f.Mu.Lock()
	defer f.Mu.Unlock()
	s, ok := f.Secrets[ns+"/"+name]
	if !ok {
		return nil, fmt.Errorf("%w: secret %s", certs.ErrNotFound, name)
	}
	return s.DeepCopy(), nil
}

func (f *API) CreateSecret(_ context.Context, s *corev1.Secret) (*corev1.Secret, error) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	k := s.Namespace + "/" + s.Name
	if _, ok := f.Secrets[k]; ok {
		return nil, fmt.Errorf("%w: secret %s", certs.ErrExists, s.Name)
	}
	f.rv++
	s = s.DeepCopy()
	s.ResourceVersion = strconv.Itoa(f.rv)
	f.Secrets[k] = s
	return s.DeepCopy(), nil
}

func (f *API) UpdateSecret(_ context.Context, s *corev1.Secret) (*corev1.Secret, error) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	k := s.Namespace + "/" + s.Name
	cur, ok := f.Secrets[k]
	if !ok {
		return nil, certs.ErrNotFound
	}
	if cur.ResourceVersion != s.ResourceVersion {
		return nil, fmt.Errorf("%w: resourceVersion %s is not %s", certs.ErrConflict, s.ResourceVersion, cur.ResourceVersion)
	}
	f.rv++
	s = s.DeepCopy()
	s.ResourceVersion = strconv.Itoa(f.rv)
	f.Secrets[k] = s
	return s.DeepCopy(), nil
}

func (f *API) GetWebhookConfig(_ context.Context, name string) (*admregv1.MutatingWebhookConfiguration, error) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	c, ok := f.Configs[name]
	if !ok {
		return nil, fmt.Errorf("%w: %s", certs.ErrNotFound, name)
	}
	return c.DeepCopy(), nil
}

func (f *API) PatchWebhookConfig(_ context.Context, name string, patch []byte) error {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	if f.PatchErr != nil {
		return f.PatchErr
	}
	c, ok := f.Configs[name]
	if !ok {
		return certs.ErrNotFound
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
	f.Configs[name] = c
	return nil
}
