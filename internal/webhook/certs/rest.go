package certs

import (
	"context"
	"fmt"
	"time"

	admregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
)

// requestTimeout bounds one request of REST when its configuration sets no
// timeout (rest.InClusterConfig does not).
const requestTimeout = 30 * time.Second

// REST is the API over client-go's REST client, with a scheme of the two
// types it uses only (the generated clientset would register every API
// group and double the binary, as internal/kube explains).
type REST struct {
	core, admreg rest.Interface
}

// NewREST returns an API for cfg (rest.InClusterConfig in a pod). It sends
// no request.
func NewREST(cfg *rest.Config, userAgent string) (*REST, error) {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := admregv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	codecs := serializer.NewCodecFactory(scheme).WithoutConversion()
	client := func(gv schema.GroupVersion, apiPath string) (rest.Interface, error) {
		c := rest.CopyConfig(cfg)
		c.GroupVersion, c.APIPath, c.NegotiatedSerializer = &gv, apiPath, codecs
		if c.UserAgent == "" {
			c.UserAgent = userAgent
		}
		if c.Timeout == 0 {
			// A request that hangs would stall KeepPublished and
			// KeepFresh for good, the readiness they report with them.
			c.Timeout = requestTimeout
		}
		if c.WarningHandler == nil && c.WarningHandlerWithContext == nil {
			c.WarningHandler = rest.NoWarnings{}
		}
		return rest.RESTClientFor(c)
	}
	core, err := client(corev1.SchemeGroupVersion, "/api")
	if err != nil {
		return nil, fmt.Errorf("failed to create a Kubernetes API client: %w", err)
	}
	admreg, err := client(admregv1.SchemeGroupVersion, "/apis")
	if err != nil {
		return nil, fmt.Errorf("failed to create a Kubernetes API client: %w", err)
	}
	return &REST{core: core, admreg: admreg}, nil
}

// classify wraps the API server's error in this package's sentinels.
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case apierrors.IsNotFound(err):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case apierrors.IsAlreadyExists(err):
		return fmt.Errorf("%w: %w", ErrExists, err)
	case apierrors.IsConflict(err):
		return fmt.Errorf("%w: %w", ErrConflict, err)
	}
	return err
}

func (r *REST) GetSecret(ctx context.Context, namespace, name string) (*corev1.Secret, error) {
	var s corev1.Secret
	err := r.core.Get().Namespace(namespace).Resource("secrets").Name(name).Do(ctx).Into(&s)
	return &s, classify(err)
}

func (r *REST) CreateSecret(ctx context.Context, s *corev1.Secret) (*corev1.Secret, error) {
	var out corev1.Secret
	err := r.core.Post().Namespace(s.Namespace).Resource("secrets").VersionedParams(&metav1.CreateOptions{}, metav1.ParameterCodec).Body(s).Do(ctx).Into(&out)
	return &out, classify(err)
}

func (r *REST) UpdateSecret(ctx context.Context, s *corev1.Secret) (*corev1.Secret, error) {
	var out corev1.Secret
	err := r.core.Put().Namespace(s.Namespace).Resource("secrets").Name(s.Name).Body(s).Do(ctx).Into(&out)
	return &out, classify(err)
}

func (r *REST) GetWebhookConfig(ctx context.Context, name string) (*admregv1.MutatingWebhookConfiguration, error) {
	var c admregv1.MutatingWebhookConfiguration
	err := r.admreg.Get().Resource("mutatingwebhookconfigurations").Name(name).Do(ctx).Into(&c)
	return &c, classify(err)
}

func (r *REST) PatchWebhookConfig(ctx context.Context, name string, jsonPatch []byte) error {
	err := r.admreg.Patch(types.JSONPatchType).Resource("mutatingwebhookconfigurations").Name(name).Body(jsonPatch).Do(ctx).Error()
	return classify(err)
}
