package kube

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// Node is the node agent's view of the API: the pods of its node and the
// namespaces (their opt-in label) through list and watch, and a Client per
// protected pod that shares one REST client (one connection pool).
//
// The agent's service account needs "get", "list" and "watch" on "pods"
// and "namespaces", "patch" on "pods/status" (the readiness gate
// condition), "create" and "patch" on "events", and what the responses
// need ("patch" on "pods" for quarantine, "delete" for delete).
type Node struct {
	rest  rest.Interface // DefaultTimeout per request
	watch rest.Interface // no timeout: the reflector bounds its watches
}

// Client-side rate limit of the agent's requests, when cfg sets none:
// client-go's default (5 per second, bursts of 10) spaced the readiness
// conditions of 30 pods 200 ms apart, and queued Events behind them past
// their timeout.
const (
	nodeQPS   = 50
	nodeBurst = 100
)

// NewNode returns the agent's client for cfg. It sends no request.
func NewNode(cfg *rest.Config) (*Node, error) {
	cfg = rest.CopyConfig(cfg)
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = nodeQPS, nodeBurst
	}
	rc, err := newREST(cfg, DefaultTimeout)
	if err != nil {
		return nil, err
	}
	wc, err := newREST(cfg, 0)
	if err != nil {
		return nil, err
	}
	return &Node{rest: rc, watch: wc}, nil
}

// NewNodeInCluster is NewNode with the pod's service account.
func NewNodeInCluster() (*Node, error) {
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("no access to the Kubernetes API from this pod: %w", err)
	}
	return NewNode(cfg)
}

// ForPod returns the client of one pod of the node (Events, quarantine,
// delete, the readiness gate condition).
func (n *Node) ForPod(pod Pod) *Client { return &Client{pod: pod, rest: n.rest} }

// Pods lists and watches the pods scheduled to node (a field selector on
// spec.nodeName: the API server sends nothing of other nodes' pods).
func (n *Node) Pods(node string) cache.ListerWatcher {
	sel := fields.OneTermEqualSelector("spec.nodeName", node).String()
	return n.listWatch("pods", sel, func() runtime.Object { return &corev1.PodList{} })
}

// Namespaces lists and watches the namespaces, for their opt-in label.
func (n *Node) Namespaces() cache.ListerWatcher {
	return n.listWatch("namespaces", "", func() runtime.Object { return &corev1.NamespaceList{} })
}

// listWatch lists and watches resource (of the whole cluster) with the
// field selector sel.
func (n *Node) listWatch(resource, sel string, list func() runtime.Object) cache.ListerWatcher {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			opts.FieldSelector = sel
			out := list()
			err := n.rest.Get().Resource(resource).VersionedParams(&opts, metav1.ParameterCodec).Do(ctx).Into(out)
			return out, err
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.FieldSelector = sel
			opts.Watch = true
			return n.watch.Get().Resource(resource).VersionedParams(&opts, metav1.ParameterCodec).Watch(ctx)
		},
	}
}
