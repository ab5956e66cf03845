#!/usr/bin/env bash
# images.sh: build the podfim and hello images (`make images`).
#
# Both are FROM scratch with static Go binaries (CGO_ENABLED=0) copied in:
# nothing is pulled from a registry. The hello image also gets a static
# busybox (Debian's busybox-static, /bin/busybox) for the tamper step.
#
#   ENGINE=podman|docker   default: podman if installed, else docker
#   TAG=dev                image tag (images: podfim:$TAG, hello:$TAG;
#                          podman names them localhost/podfim:$TAG, ...)
#   BUSYBOX=/bin/busybox   the static busybox to copy into hello
#   CONTAINERS_CONF        honoured by podman (scripts/demo.sh sets it)
#   VERSION, COMMIT,       the version stamped into the binaries and the
#   SOURCE_DATE_EPOCH      images' org.opencontainers.image.* labels; by
#                          default scripts/version.sh's (make exports them)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH

GO=${GO:-go}
VERSION=${VERSION:-$(scripts/version.sh)}
COMMIT=${COMMIT:-$(scripts/version.sh commit)}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(scripts/version.sh epoch)}
created=$(TZ=UTC date -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
vpkg=github.com/podfim/podfim/internal/version
ldflags="-s -w -X $vpkg.version=$VERSION -X $vpkg.commit=$COMMIT -X $vpkg.date=$created"
TAG=${TAG:-dev}
BUSYBOX=${BUSYBOX:-/bin/busybox}
ENGINE=${ENGINE:-}
if [ -z "$ENGINE" ]; then
	if command -v podman >/dev/null; then
		ENGINE=podman
	elif command -v docker >/dev/null; then
		ENGINE=docker
	else
		echo "images.sh: neither podman nor docker is installed (apt-get install podman)" >&2
		exit 1
	fi
fi
case "$ENGINE" in
podman) engine=(podman --log-level=error) pull=(--pull=never) ;;
docker) engine=(docker) pull=() ;;
*) echo "images.sh: ENGINE must be podman or docker, not $ENGINE" >&2; exit 1 ;;
esac

if [ ! -x "$BUSYBOX" ]; then
	echo "images.sh: $BUSYBOX is missing: apt-get install busybox-static" >&2
	exit 1
fi
if ldd "$BUSYBOX" >/dev/null 2>&1; then
	echo "images.sh: $BUSYBOX is dynamically linked; a scratch image needs a static one (apt-get install busybox-static)" >&2
	exit 1
fi

# The build context: only what the images contain, in a directory of this
# run (builds run in parallel, e.g. tests under different TAGs).
ctx=$(mktemp -d "${TMPDIR:-/tmp}/podfim-images.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
chmod 0755 "$ctx"
mkdir -p "$ctx/www"
CGO_ENABLED=0 "$GO" build -trimpath -ldflags="$ldflags" -o "$ctx/podfim" ./cmd/podfim
CGO_ENABLED=0 "$GO" build -trimpath -ldflags='-s -w' -o "$ctx/hello" ./cmd/hello
cp "$BUSYBOX" "$ctx/busybox"
chmod 0555 "$ctx/podfim" "$ctx/hello" "$ctx/busybox"
# The seed's page: "Hello, world!", readable by its owner only (COPY keeps
# the mode; the Dockerfile sets the owner to the app's uid).
printf 'Hello, world!\n' >"$ctx/www/index.html"
chmod 0755 "$ctx/www"
chmod 0600 "$ctx/www/index.html"

for img in podfim hello; do
	echo "images.sh: $ENGINE build $img:$TAG"
	# The labels of the version (the Dockerfiles set title, description
	# and source); created is the commit's time, as in `make release`.
	"${engine[@]}" build "${pull[@]}" -q -t "$img:$TAG" -f "build/$img.Dockerfile" \
		--label "org.opencontainers.image.version=$VERSION" \
		--label "org.opencontainers.image.revision=$COMMIT" \
		--label "org.opencontainers.image.created=$created" \
		"$ctx" >/dev/null
done
# One line per image built (a reference filter of `images` would also list
# every other tag of the same image ID).
for img in podfim hello; do
	ref=$img:$TAG
	[ "$ENGINE" = podman ] && ref=localhost/$ref
	echo "images.sh: $ref ($VERSION) $("${engine[@]}" image inspect --format '{{.Id}} {{.Size}}' "$ref" | sed 's/^sha256://' | cut -c1-12,65-) bytes"
done
