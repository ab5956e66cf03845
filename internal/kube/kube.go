// Package kube is podfim's seam to the Kubernetes API: it knows the
// sidecar's own pod (from the downward API), reads that pod's status, posts
// Events about it and labels or deletes it (Reporter, in the background).
// Besides it, only the webhook's certificate code (internal/webhook/certs)
// talks to the API, with a REST client of its own (core and
// admissionregistration types only).
//
// It uses client-go's REST client with a scheme of the core/v1 types only,
// not the generated typed clients: those register every API group's types
// (k8s.io/client-go/kubernetes/scheme) and more than double the size of the
// binary, for one GET.
//
// The sidecar's service account needs "get" on "pods" in its own namespace,
// "create" and "patch" on "events" for Events, "patch" on "pods" for
// quarantine and "delete" on "pods" for delete (docs/kubernetes.md); the
// pod needs these environment variables from the downward API:
//
//	env:
//	- name: POD_NAMESPACE
//	  valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
//	- name: POD_NAME
//	  valueFrom: {fieldRef: {fieldPath: metadata.name}}
//	- name: POD_UID # optional: tells a replaced pod of the same name
//	  valueFrom: {fieldRef: {fieldPath: metadata.uid}}
package kube

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/podfim/podfim/internal/metrics"
	"github.com/podfim/podfim/internal/version"
)

// Environment variables the downward API sets (see the package doc).
const (
	EnvNamespace = "POD_NAMESPACE"
	EnvName      = "POD_NAME"
	EnvUID       = "POD_UID"
)

// DefaultTimeout bounds one request to the API server.
const DefaultTimeout = 10 * time.Second

// Errors. Each is wrapped with the details of the request and the API
// server's message.
var (
	// ErrNoPod means POD_NAMESPACE or POD_NAME is not set.
	ErrNoPod = errors.New("the pod's namespace and name are unknown")
	// ErrForbidden means RBAC denies the request: a Role is missing.
	ErrForbidden = errors.New("forbidden by RBAC")
	// ErrUnauthorized means the API server rejected the credentials.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrPodNotFound means the pod named by the environment does not
	// exist, or is not the sidecar's pod any more (another UID).
	ErrPodNotFound = errors.New("pod not found")
	// ErrNoContainer means the pod has no container of that name.
	ErrNoContainer = errors.New("no container of that name in the pod")
)

// Pod names the sidecar's own pod.
type Pod struct {
	Namespace, Name string
	// UID is optional: when set, a pod of the same name but another UID
	// (the pod was deleted and recreated) is not ours.
	UID string
}

func (p Pod) String() string { return p.Namespace + "/" + p.Name }

// PodFromEnv reads the pod from POD_NAMESPACE, POD_NAME and POD_UID, which
// the pod spec sets from the downward API.
func PodFromEnv(getenv func(string) string) (Pod, error) {
	p := Pod{Namespace: getenv(EnvNamespace), Name: getenv(EnvName), UID: getenv(EnvUID)}
	var missing []string
	if p.Namespace == "" {
		missing = append(missing, EnvNamespace)
	}
	if p.Name == "" {
		missing = append(missing, EnvName)
	}
	if len(missing) > 0 {
		return p, fmt.Errorf("%w: set %s from the downward API (env valueFrom fieldRef metadata.namespace and metadata.name)", ErrNoPod, strings.Join(missing, " and "))
	}
	return p, nil
}

// Client reads the sidecar's pod from the API server.
type Client struct {
	pod  Pod
	rest rest.Interface
	m    *metrics.Sidecar // counts every request; nil counts nothing
}

// CountRequests makes c count its requests in m
// (podfim_kube_requests_total). Call it before the client is shared.
func (c *Client) CountRequests(m *metrics.Sidecar) { c.m = m }

// NewInCluster returns a client that uses the pod's service account
// (rest.InClusterConfig). It sends no request.
func NewInCluster(pod Pod) (*Client, error) {
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("no access to the Kubernetes API from this pod (is automountServiceAccountToken off, or is this not a pod?): %w", err)
	}
	return NewForConfig(cfg, pod)
}

// NewForConfig returns a client for cfg. A cfg without a user agent or a
// timeout gets podfim's ("podfim/<version>") and DefaultTimeout. It sends
// no request.
func NewForConfig(cfg *rest.Config, pod Pod) (*Client, error) {
	if pod.Namespace == "" || pod.Name == "" {
		return nil, fmt.Errorf("%w: empty namespace or name", ErrNoPod)
	}
	rc, err := newREST(cfg, DefaultTimeout)
	if err != nil {
		return nil, err
	}
	return &Client{pod: pod, rest: rc}, nil
}

// newREST is the REST client of the core/v1 types for cfg; timeout, when
// cfg has none, bounds each request (0: none, for watches).
func newREST(cfg *rest.Config, timeout time.Duration) (*rest.RESTClient, error) {
	c := rest.CopyConfig(cfg)
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	gv := corev1.SchemeGroupVersion
	c.GroupVersion = &gv
	c.APIPath = "/api"
	c.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	if c.UserAgent == "" {
		c.UserAgent = UserAgent()
	}
	if c.Timeout == 0 {
		c.Timeout = timeout
	}
	if c.WarningHandler == nil && c.WarningHandlerWithContext == nil {
		// Deprecation warnings would go to klog's stderr format, not the
		// sidecar's JSON log; a GET of a v1 pod has none worth reading.
		c.WarningHandler = rest.NoWarnings{}
	}
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("failed to create a Kubernetes API client: %w", err)
	}
	return rc, nil
}

// Pod returns the pod the client reads.
func (c *Client) Pod() Pod { return c.pod }

// UserAgent is "podfim/<version>", the version internal/version reports.
func UserAgent() string { return version.Get().UserAgent() }

// ContainerIDs returns the IDs of the pod's container called name, current
// first, then the one it replaced (lastState), without the runtime's
// "<runtime>://" prefix, and the image it runs. A container that has not
// started yet has no ID: ids is empty and err nil. Native sidecars (init
// containers that keep running) are found too.
func (c *Client) ContainerIDs(ctx context.Context, name string) (ids []string, image string, err error) {
	pod, err := c.GetPod(ctx)
	if err != nil {
		return nil, "", err
	}
	return containerIDs(pod, name)
}

// GetPod reads the sidecar's pod. A pod of the same name with another UID
// than Pod().UID is ErrPodNotFound: it replaced this one.
func (c *Client) GetPod(ctx context.Context) (*corev1.Pod, error) {
	var pod corev1.Pod
	err := c.rest.Get().Namespace(c.pod.Namespace).Resource("pods").Name(c.pod.Name).Do(ctx).Into(&pod)
	c.m.KubeRequest(metrics.KubeGetPod, err)
	if err != nil {
		return nil, c.apiError("get", "pods", err)
	}
	if c.pod.UID != "" && string(pod.UID) != c.pod.UID {
		return nil, fmt.Errorf("%w: pod %s has UID %s, this pod's is %s (%s): it was replaced", ErrPodNotFound, c.pod, pod.UID, c.pod.UID, EnvUID)
	}
	return &pod, nil
}

// ImageID returns the image ID (the digest the runtime resolved,
// status.containerStatuses[].imageID) of the container whose ID is
// containerID, as /proc shows it, and that container's name. ok is false
// when the pod's status does not show that container (yet).
func ImageID(pod *corev1.Pod, containerID string) (imageID, name string, ok bool) {
	containerID = stripRuntime(containerID)
	for _, statuses := range [][]corev1.ContainerStatus{pod.Status.ContainerStatuses, pod.Status.InitContainerStatuses} {
		for _, s := range statuses {
			if id := stripRuntime(s.ContainerID); id != "" && id == containerID && s.ImageID != "" {
				return s.ImageID, s.Name, true
			}
		}
	}
	return "", "", false
}

// ImageIDOf returns the image ID of the pod's container whose ID (as /proc
// shows it) is containerID; ok is false while the pod's status does not
// show that container.
func (c *Client) ImageIDOf(ctx context.Context, containerID string) (imageID string, ok bool, err error) {
	pod, err := c.GetPod(ctx)
	if err != nil {
		return "", false, err
	}
	imageID, _, ok = ImageID(pod, containerID)
	return imageID, ok, nil
}

// PatchPod applies a JSON merge patch to the sidecar's pod. The patch
// carries the pod's UID when known, so that a pod recreated under the same
// name is never patched (the API server answers 409 Conflict).
func (c *Client) PatchPod(ctx context.Context, patch []byte) error {
	err := c.rest.Patch(types.MergePatchType).Namespace(c.pod.Namespace).Resource("pods").Name(c.pod.Name).
		Body(patch).Do(ctx).Error()
	c.m.KubeRequest(metrics.KubePatchPod, err)
	if err != nil {
		return c.apiError("patch", "pods", err)
	}
	return nil
}

// GetConfigMap reads a ConfigMap of the pod's namespace (the node agent
// reads the baselines and keys a pod's annotations name).
func (c *Client) GetConfigMap(ctx context.Context, name string) (*corev1.ConfigMap, error) {
	var cm corev1.ConfigMap
	err := c.rest.Get().Namespace(c.pod.Namespace).Resource("configmaps").Name(name).Do(ctx).Into(&cm)
	if err != nil {
		return nil, c.apiError("get", "configmaps", err)
	}
	return &cm, nil
}

// PatchPodStatus applies a strategic merge patch to the status
// subresource of the pod (the node agent's readiness gate condition:
// conditions merge by type). As with PatchPod, a patch that carries the
// pod's UID is refused on a pod recreated under the same name.
func (c *Client) PatchPodStatus(ctx context.Context, patch []byte) error {
	err := c.rest.Patch(types.StrategicMergePatchType).Namespace(c.pod.Namespace).Resource("pods").Name(c.pod.Name).
		SubResource("status").Body(patch).Do(ctx).Error()
	c.m.KubeRequest(metrics.KubePatchPod, err)
	if err != nil {
		return c.apiError("patch", "pods/status", err)
	}
	return nil
}

// DeletePod deletes the sidecar's pod, on the condition that its UID is
// uid: a replacement of the same name (a StatefulSet's) is never deleted.
func (c *Client) DeletePod(ctx context.Context, uid string) error {
	opts := &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: (*types.UID)(&uid)}}
	err := c.rest.Delete().Namespace(c.pod.Namespace).Resource("pods").Name(c.pod.Name).
		Body(opts).Do(ctx).Error()
	c.m.KubeRequest(metrics.KubeDeletePod, err)
	if err != nil {
		return c.apiError("delete", "pods", err)
	}
	return nil
}

// CreateEvent creates a core/v1 Event in the pod's namespace.
func (c *Client) CreateEvent(ctx context.Context, ev *corev1.Event) (*corev1.Event, error) {
	out := &corev1.Event{}
	err := c.rest.Post().Namespace(ev.Namespace).Resource("events").Body(ev).Do(ctx).Into(out)
	c.m.KubeRequest(metrics.KubeWriteEvent, err)
	if err != nil {
		return nil, c.apiError("create", "events", err)
	}
	return out, nil
}

// PatchEvent applies the strategic merge patch client-go's EventCorrelator
// computed (a new count and last timestamp) to an existing Event.
func (c *Client) PatchEvent(ctx context.Context, ev *corev1.Event, patch []byte) (*corev1.Event, error) {
	out := &corev1.Event{}
	err := c.rest.Patch(types.StrategicMergePatchType).Namespace(ev.Namespace).Resource("events").Name(ev.Name).
		Body(patch).Do(ctx).Into(out)
	c.m.KubeRequest(metrics.KubeWriteEvent, err)
	if err != nil {
		return nil, c.apiError("patch", "events", err)
	}
	return out, nil
}

// ContainerIDsOf is Client.ContainerIDs of a pod already read (the node
// agent's informer cache).
func ContainerIDsOf(pod *corev1.Pod, name string) (ids []string, image string, err error) {
	return containerIDs(pod, name)
}

// containerIDs finds name in the pod's status, or at least in its spec.
func containerIDs(pod *corev1.Pod, name string) ([]string, string, error) {
	for _, statuses := range [][]corev1.ContainerStatus{pod.Status.ContainerStatuses, pod.Status.InitContainerStatuses} {
		for _, s := range statuses {
			if s.Name != name {
				continue
			}
			var ids []string
			add := func(id string) {
				if id = stripRuntime(id); id != "" && !slices.Contains(ids, id) {
					ids = append(ids, id)
				}
			}
			add(s.ContainerID)
			if t := s.State.Terminated; t != nil {
				add(t.ContainerID)
			}
			if t := s.LastTerminationState.Terminated; t != nil {
				add(t.ContainerID)
			}
			image := s.Image
			if image == "" {
				image = specImage(pod, name)
			}
			return ids, image, nil
		}
	}
	if i := slices.IndexFunc(specContainers(pod), func(c corev1.Container) bool { return c.Name == name }); i >= 0 {
		return nil, specContainers(pod)[i].Image, nil // no status yet
	}
	return nil, "", fmt.Errorf("%w: %q is not a container of pod %s/%s (containers: %s)", ErrNoContainer, name, pod.Namespace, pod.Name, strings.Join(containerNames(pod), ", "))
}

// stripRuntime removes the "containerd://", "cri-o://" or "docker://"
// prefix and folds the ID to lower case as /proc shows it.
func stripRuntime(id string) string {
	if _, after, ok := strings.Cut(id, "://"); ok {
		id = after
	}
	return strings.ToLower(id)
}

func specContainers(pod *corev1.Pod) []corev1.Container {
	return append(slices.Clip(pod.Spec.Containers), pod.Spec.InitContainers...)
}

func specImage(pod *corev1.Pod, name string) string {
	for _, c := range specContainers(pod) {
		if c.Name == name {
			return c.Image
		}
	}
	return ""
}

func containerNames(pod *corev1.Pod) []string {
	var names []string
	for _, c := range specContainers(pod) {
		names = append(names, c.Name)
	}
	for _, s := range append(slices.Clip(pod.Status.ContainerStatuses), pod.Status.InitContainerStatuses...) {
		if !slices.Contains(names, s.Name) {
			names = append(names, s.Name)
		}
	}
	return names
}

// apiError explains err for an operator: which permission is missing,
// which setting is wrong. The API server's error stays wrapped.
func (c *Client) apiError(verb, resource string, err error) error {
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Errorf("%w: the service account may not %q %q in namespace %q; grant it with a Role (verbs: [%s], resources: [%s]) and a RoleBinding: %w",
			ErrForbidden, verb, resource, c.pod.Namespace, verb, resource, err)
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("%w: the API server rejected the service account token: %w", ErrUnauthorized, err)
	case apierrors.IsNotFound(err) && resource == "pods":
		return fmt.Errorf("%w: %s (check %s and %s): %w", ErrPodNotFound, c.pod, EnvNamespace, EnvName, err)
	}
	return fmt.Errorf("kubernetes API: %s %s %s: %w", verb, resource, c.pod, err)
}
