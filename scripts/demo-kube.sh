#!/usr/bin/env bash
# demo-kube.sh: the seed's walkthrough with podfim on Kubernetes
# (`make demo KUBE=1`; scripts/demo.sh hands over to it when KUBE is set).
#
#   scripts/demo-kube.sh        build the images, load them into the cluster,
#                               apply the demo, wait for 2/2, print the walkthrough
#   scripts/demo-kube.sh down   delete the demo (namespace podfim-demo)
#
# Which cluster, in this order:
#   - podfim's test cluster (test/cluster, docs/cluster.md) when it is running
#     and KUBECONFIG is unset or its own: images imported with `bin/cluster import`,
#     deploy/kubernetes/overlays/hostnetwork (no pod network there: the page
#     on 127.0.0.1:8080, the sidecar on 127.0.0.1:9090);
#   - Minikube, when the current context is minikube (or, without a context,
#     when minikube is installed): `minikube image load`,
#     deploy/kubernetes/overlays/demo (the seed's LoadBalancer Service;
#     `minikube tunnel` gives it an address).
# Response: the seed's kill; the kubelet starts a fresh container from the
# image, so the page heals and RESTARTS goes to 1.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH

NS=podfim-demo
TAG=${TAG:-dev}   # image tag (images.sh); another tag leaves others' :dev images in the cluster alone
mode=
overlay=

# The test cluster's kubectl and KUBECONFIG, when it runs and KUBECONFIG
# names no other cluster (after eval "$(bin/cluster env)" it names this one).
if [ -x bin/cluster ] && bin/cluster status >/dev/null 2>&1; then
	cluster_env=$(bin/cluster env)
	cluster_kubeconfig=$(sed -n 's/^export KUBECONFIG=//p' <<<"$cluster_env")
	if [ -z "${KUBECONFIG:-}" ] || [ "$KUBECONFIG" = "$cluster_kubeconfig" ]; then
		eval "$cluster_env"
		mode=cluster
		overlay=deploy/kubernetes/overlays/hostnetwork
	fi
fi
if [ -z "$mode" ]; then
	if ! command -v kubectl >/dev/null; then
		echo "demo-kube.sh: no kubectl, and podfim's test cluster is not running (make cluster-up, or install Minikube)" >&2
		exit 1
	fi
	ctx=$(kubectl config current-context 2>/dev/null || true)
	if [ "$ctx" = minikube ] || { [ -z "$ctx" ] && command -v minikube >/dev/null; }; then
		command -v minikube >/dev/null || { echo "demo-kube.sh: the context is minikube but the minikube command is missing" >&2; exit 1; }
		mode=minikube
		overlay=deploy/kubernetes/overlays/demo
	else
		echo "demo-kube.sh: the current context is \"${ctx:-none}\"; this demo knows Minikube and podfim's test cluster" >&2
		echo "  (any other cluster: load localhost/podfim:$TAG and localhost/hello:$TAG onto its nodes, then kubectl apply -k deploy/kubernetes/overlays/demo)" >&2
		exit 1
	fi
fi
echo "demo-kube.sh: $mode, kubectl apply -k $overlay (images :$TAG)"

# The overlay with the images' tag: a kustomization of our own in a
# temporary directory (kustomize wants a relative path to the overlay).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- $(realpath --relative-to="$tmp" "$overlay")
images:
- {name: localhost/podfim, newTag: "$TAG"}
- {name: localhost/hello, newTag: "$TAG"}
YAML

if [ "${1:-}" = down ]; then
	kubectl delete -k "$tmp" --ignore-not-found --wait=true
	exit 0
fi
if [ $# -gt 0 ]; then
	echo "usage: KUBE=1 scripts/demo.sh [down]" >&2
	exit 2
fi

# 1. The images, FROM scratch, nothing pulled (podman, or docker).
if command -v podman >/dev/null; then
	engine=podman
	# podman's settings for these machines (build/containers.conf); harmless elsewhere.
	export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/build/containers.conf}
else
	engine=docker
fi
ENGINE=$engine TAG=$TAG ./scripts/images.sh

# 2. Into the cluster: there is no registry.
for img in podfim hello; do
	ref=localhost/$img:$TAG
	# docker names the build $img:$TAG (docker.io/library/...); the
	# manifests name localhost/$img, as podman does.
	[ "$engine" = docker ] && docker tag "$img:$TAG" "$ref"
	"$engine" save -o "$tmp/$img.tar" "$ref"
done
if [ "$mode" = cluster ]; then
	bin/cluster import "$tmp/podfim.tar" "$tmp/hello.tar"
else
	minikube image load "$tmp/podfim.tar"
	minikube image load "$tmp/hello.tar"
fi

# 3. The demo. A Pod's spec cannot change in place: replace the old one.
kubectl delete pod -n "$NS" podfim-demo --ignore-not-found --wait=true >/dev/null 2>&1 || true
kubectl apply -k "$tmp"
if ! kubectl wait -n "$NS" --for=condition=Ready pod/podfim-demo --timeout=120s; then
	kubectl describe -n "$NS" pod/podfim-demo >&2 || true
	kubectl logs -n "$NS" podfim-demo --all-containers --prefix >&2 || true
	exit 1
fi
kubectl get pods -n "$NS"

if [ "$mode" = cluster ]; then
	url=http://127.0.0.1:8080/
	cat <<MSG

The demo runs on podfim's test cluster (host network). Its page:

  \$ curl $url
  $(curl -fsS -m 2 "$url" || echo "(no answer yet)")

  export KUBECONFIG=$KUBECONFIG PATH=$(dirname "$KUBECTL"):\$PATH
MSG
else
	url='http://$(kubectl get svc -n podfim-demo podfim-demo -o jsonpath={.status.loadBalancer.ingress[0].ip}):8080/'
	cat <<MSG

The demo runs on Minikube. In another terminal, give the LoadBalancer Service an address:

  minikube tunnel

then:

  kubectl get svc -n $NS podfim-demo       # EXTERNAL-IP
  curl $url
MSG
fi
cat <<MSG

Watch the pod (RESTARTS) and the sidecar:

  kubectl get pods -n $NS -w
  kubectl logs -n $NS podfim-demo -c podfim -f

Tamper with the page inside the app container, as an attacker with a shell would:

  kubectl exec -n $NS podfim-demo -c app -- /bin/busybox sh -c 'echo Hacked > /www/index.html'

The sidecar logs "integrity violation" for /www/index.html and "app container killed";
the kubelet starts a fresh container from the image: RESTARTS goes to 1, and
curl shows "Hello, world!" again.

Remove it: make demo-down KUBE=1
MSG
