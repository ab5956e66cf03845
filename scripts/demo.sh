#!/usr/bin/env bash
# demo.sh: the seed's walkthrough with podfim, on podman, no cluster needed.
#
#   scripts/demo.sh        (make demo)       install what is missing, build the
#                                            images, play the Pod, print what to do
#   scripts/demo.sh down   (make demo-down)  remove the Pod
#
#   RESPOND=restore (default) | kill   which Pod: deploy/podman/pod.yaml or
#                                      pod-kill.yaml (see docs/demo.md)
#
#   KUBE=1 scripts/demo.sh      (make demo KUBE=1)       the same on Kubernetes
#   KUBE=1 scripts/demo.sh down (make demo-down KUBE=1)  delete it
#       With Minikube (the current context, or minikube installed): build the
#       images, `minikube image load` them, apply deploy/kubernetes/overlays/demo
#       (LoadBalancer Service) and print the seed's walkthrough. With podfim's
#       test cluster running (make cluster-up; bin/cluster status): import the
#       images and apply overlays/hostnetwork (127.0.0.1:8080 and :9090).
#       The kill response: the kubelet starts a fresh container from the image.
#
# Needs root (rootful podman) on Debian 12: podman, runc, busybox-static and
# curl come from apt when missing. The containers.conf these machines need
# (build/containers.conf) is copied to .cache/podman/ and used through
# CONTAINERS_CONF; nothing is written to /etc. Traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH

RESPOND=${RESPOND:-restore}
case "$RESPOND" in
restore) yaml=deploy/podman/pod.yaml pod=podfim-demo ;;
kill) yaml=deploy/podman/pod-kill.yaml pod=podfim-demo-kill ;;
*) echo "demo.sh: RESPOND must be restore or kill, not $RESPOND" >&2; exit 1 ;;
esac
URL=http://127.0.0.1:8080/

conf_dir=$PWD/.cache/podman
export CONTAINERS_CONF=$conf_dir/containers.conf
podman() { command podman --log-level=error "$@"; }

down() {
	type -P podman >/dev/null || return 0
	[ -f "$CONTAINERS_CONF" ] || install_conf
	local p
	for p in podfim-demo:pod.yaml podfim-demo-kill:pod-kill.yaml; do
		# kube down of a pod that is not there is an error: ask first.
		if podman pod exists "${p%%:*}"; then
			podman kube down "deploy/podman/${p#*:}" >/dev/null
			echo "demo.sh: removed the Pod ${p%%:*}"
		fi
	done
}

install_conf() {
	mkdir -p "$conf_dir"
	cp build/containers.conf "$CONTAINERS_CONF"
}

if [ -n "${KUBE:-}" ]; then
	exec ./scripts/demo-kube.sh "$@"
fi

if [ "${1:-}" = down ]; then
	down
	exit 0
fi
if [ $# -gt 0 ]; then
	echo "usage: scripts/demo.sh [down]" >&2
	exit 2
fi

if [ "$(id -u)" != 0 ]; then
	echo "demo.sh: run as root (rootful podman; apt-get for what is missing): sudo make demo" >&2
	exit 1
fi

# 1. What the demo needs, from Debian's packages.
need=()
type -P podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
command -v curl >/dev/null || need+=(curl)
{ [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; } || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
	echo "demo.sh: installing ${need[*]} (apt-get)"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq "${need[@]}" >/dev/null
fi

# 2. podman's settings for these machines, in the project, not in /etc.
install_conf
echo "demo.sh: CONTAINERS_CONF=$CONTAINERS_CONF"
podman --version

# 3. The images: FROM scratch, nothing pulled.
ENGINE=podman ./scripts/images.sh

# 4. The Pod: app (hello) + sidecar (podfim), shared pid namespace.
echo "demo.sh: podman kube play --replace $yaml"
podman kube play --replace "$yaml" >/dev/null

# 5. Wait for the page.
deadline=$((SECONDS + 60))
until [ "$(curl -fsS -m 2 "$URL" 2>/dev/null)" = "Hello, world!" ]; do
	if [ $SECONDS -ge $deadline ]; then
		echo "demo.sh: $URL did not answer within 60 s; podman ps -a --pod; podman logs $pod-app" >&2
		podman ps -a --pod >&2 || true
		podman logs "$pod-app" >&2 || true
		exit 1
	fi
	sleep 0.5
done
deadline=$((SECONDS + 30))
until curl -fsS -m 2 http://127.0.0.1:9090/readyz >/dev/null 2>&1; do
	if [ $SECONDS -ge $deadline ]; then
		echo "demo.sh: the sidecar is not ready after 30 s:" >&2
		podman logs "$pod-podfim" >&2 || true
		exit 1
	fi
	sleep 0.5
done

cat <<MSG

The Pod $pod is running (response: $RESPOND). Its page:

  \$ curl $URL
  $(curl -fsS -m 2 "$URL")

In another terminal, watch the sidecar and the page:

  export CONTAINERS_CONF=$CONTAINERS_CONF
  podman logs -f $pod-podfim
  while sleep 1; do curl -s $URL; curl -s http://127.0.0.1:9090/readyz; echo; done

Tamper with the page inside the app container, as an attacker with a shell would:

  export CONTAINERS_CONF=$CONTAINERS_CONF
  podman exec $pod-app /bin/busybox sh -c 'echo Hacked > /www/index.html'

MSG
if [ "$RESPOND" = restore ]; then
	cat <<MSG
The sidecar logs "integrity violation" for /www/index.html within milliseconds and
"file restored"; the page says "Hello, world!" again.
MSG
else
	cat <<MSG
The sidecar logs "integrity violation" for /www/index.html and "app container killed";
podman restarts the app container (podman inspect --format '{{.RestartCount}}' $pod-app).
podman restarts the *same* container, so the page is still tampered: the sidecar kills
it again up to --kill-limit (3), then logs "kill limit reached" and keeps /readyz at 503.
On a kubelet the new container comes from the image and says "Hello, world!" again.
MSG
fi
cat <<MSG
Metrics: curl -s http://127.0.0.1:9090/metrics | grep ^podfim_
Remove the Pod: make demo-down
MSG
