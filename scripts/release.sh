#!/usr/bin/env bash
# release.sh: podfim's release artifacts (`make release`) and their push to
# a registry (`make release-push`). docs/install.md says what each file is
# and how to verify it.
#
#   scripts/release.sh           build dist/ from the commit checked out
#   scripts/release.sh push      push dist/'s images, baselines and chart to $REGISTRY
#
# Environment (make passes the first three from scripts/version.sh):
#   VERSION, COMMIT, SOURCE_DATE_EPOCH   the release (a -dirty one is refused)
#   SIGN_KEY     ed25519 private key (podfim keygen) that signs the baselines of the
#                podfim image; default: bin/release-key/podfim-release.key, made on
#                first use: fine for a test, not for a release anyone should trust
#   DIST=dist    the output directory (replaced)
#   HELM=bin/helm, CYCLONEDX=bin/cyclonedx-gomod, GO=go
#   REGISTRY     push: host[:port]/path, e.g. ghcr.io/podfim or 127.0.0.1:5000/podfim
#   INSECURE=1   push: plain HTTP (loopback registries get it anyway)
#
# Reproducible: the binaries are built with -trimpath, -buildvcs=false and
# -buildid= from a clone of the commit (nothing untracked gets in), every
# time in images, chart and baselines is SOURCE_DATE_EPOCH, the SBOM has no
# timestamp and a serial derived from the commit, and ed25519 signatures
# are deterministic. `make release-check` builds twice and compares.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH

GO=${GO:-go}
DIST=${DIST:-dist}
HELM=${HELM:-bin/helm}
CYCLONEDX=${CYCLONEDX:-bin/cyclonedx-gomod}
VERSION=${VERSION:-$(scripts/version.sh)}
COMMIT=${COMMIT:-$(scripts/version.sh commit)}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(scripts/version.sh epoch)}
ARCHES=(amd64 arm64)
host_arch=$("$GO" env GOARCH)

die() { echo "release.sh: $*" >&2; exit 1; }

case "$VERSION$COMMIT" in
*-dirty*) die "the tree has uncommitted changes ($VERSION): a release is made from a commit; commit or stash them" ;;
esac
chart_version=${VERSION#v}

build() {
	[ -x "$HELM" ] || die "$HELM is missing (make helm)"
	[ -x "$CYCLONEDX" ] || die "$CYCLONEDX is missing (make release builds it from tools/go.mod)"
	local src
	work=$(mktemp -d "${TMPDIR:-/tmp}/podfim-release.XXXXXX")
	trap 'rm -rf "$work"' EXIT
	src=$work/src
	# A clone of exactly the commit: the build cannot see untracked files
	# or edits, whatever the work tree holds.
	# (A full local clone, not --shared: cyclonedx-gomod reads git with
	# go-git, which does not follow alternates.)
	git clone -q --no-checkout "$(git rev-parse --show-toplevel)" "$src"
	git -C "$src" checkout -q --detach "$COMMIT"
	rm -rf "$DIST"
	mkdir -p "$DIST" "$work/bin"
	local created vpkg ldflags
	created=$(TZ=UTC date -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
	vpkg=github.com/podfim/podfim/internal/version
	ldflags="-s -w -buildid= -X $vpkg.version=$VERSION -X $vpkg.commit=$COMMIT -X $vpkg.date=$created"
	for arch in "${ARCHES[@]}"; do
		for cmd in podfim hello; do
			CGO_ENABLED=0 GOOS=linux GOARCH=$arch "$GO" build -C "$src" -trimpath -buildvcs=false \
				-ldflags="$ldflags" -o "$work/bin/$cmd-linux-$arch" "./cmd/$cmd"
		done
		cp "$work/bin/podfim-linux-$arch" "$DIST/podfim-$VERSION-linux-$arch"
		sbom "$src" "$arch"
	done
	echo "release.sh: binaries and SBOMs of $VERSION for ${ARCHES[*]}"

	"$GO" run -C "$src" ./scripts/release images -bin "$work/bin" -out "$(realpath "$DIST")/oci" \
		-version "$VERSION" -revision "$COMMIT" -epoch "$SOURCE_DATE_EPOCH" >"$DIST/images.txt"
	sed 's/^/release.sh: image /' "$DIST/images.txt"

	"$HELM" package "$src/deploy/helm/podfim" --version "$chart_version" --app-version "$VERSION" -d "$DIST" >/dev/null
	"$GO" run -C "$src" ./scripts/release chart -epoch "$SOURCE_DATE_EPOCH" "$(realpath "$DIST")/podfim-$chart_version.tgz"
	echo "release.sh: chart podfim-$chart_version.tgz (appVersion $VERSION)"

	image_baselines "$work/bin/podfim-linux-$host_arch"

	(cd "$DIST" && find . -maxdepth 1 -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort | xargs sha256sum >SHA256SUMS)
	echo "release.sh: $DIST/SHA256SUMS:"
	sed 's/^/  /' "$DIST/SHA256SUMS"
}

# sbom writes the CycloneDX SBOM of the podfim binary of one architecture:
# the modules (and their versions and hashes) linked into it, as Go's
# build constraints for that platform select them.
sbom() {
	local src=$1 arch=$2 out serial
	out=$(realpath "$DIST")/podfim-$VERSION-linux-$arch.cdx.json
	# A serial number (a UUID) that names this release and platform, the
	# same in every build of it.
	serial=$(printf 'podfim %s %s linux/%s' "$VERSION" "$COMMIT" "$arch" | sha256sum |
		sed -E 's/^(.{8})(.{4})(.{4})(.{4})(.{12}).*/\1-\2-\3-\4-\5/')
	(cd "$src" && CGO_ENABLED=0 GOOS=linux GOARCH=$arch "$(realpath -m "$OLDPWD/$CYCLONEDX")" app -json -licenses=false \
		-notimestamp -serial "$serial" -main cmd/podfim -output "$out" . 2>/dev/null) ||
		die "cyclonedx-gomod app for linux/$arch failed"
	"$GO" run -C "$src" ./scripts/release sbom -version "$VERSION" "$out"
}

# image_baselines makes the signed baseline of each platform's podfim
# image, so that podfim's own sidecar can be verified like any app
# (docs/install.md "Verify").
image_baselines() {
	local podfim=$1 key
	key=${SIGN_KEY:-bin/release-key/podfim-release.key}
	if [ ! -f "$key" ]; then
		[ -z "${SIGN_KEY:-}" ] || die "SIGN_KEY $key does not exist"
		mkdir -p "$(dirname "$key")"
		"$podfim" keygen --out "$key" >/dev/null
		echo "release.sh: made $key (a test key: set SIGN_KEY to the project's release key for a real release)"
	fi
	cp "$key.pub" "$DIST/podfim-release.pub"
	for arch in "${ARCHES[@]}"; do
		SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH "$podfim" baseline --image "oci:$DIST/oci/podfim:$VERSION" --platform "linux/$arch" \
			--sign-key "$key" --out "$DIST/podfim-$VERSION-linux-$arch.pfb" >/dev/null
		chmod 0644 "$DIST/podfim-$VERSION-linux-$arch.pfb"
	done
	echo "release.sh: signed baselines of the podfim image (key $DIST/podfim-release.pub)"
}

push() {
	[ -n "${REGISTRY:-}" ] || die "set REGISTRY=host[:port]/path (e.g. REGISTRY=127.0.0.1:5000/podfim)"
	REGISTRY=${REGISTRY%/}
	[ -f "$DIST/images.txt" ] && grep -q " $VERSION " "$DIST/images.txt" ||
		die "$DIST holds no release $VERSION: run make release first"
	local insecure=() plain=() host=${REGISTRY%%/*}
	case "${host%:*}" in
	localhost | 127.* | "[::1]") plain=(--plain-http) ;;
	esac
	if [ "${INSECURE:-}" = 1 ]; then insecure=(-insecure); plain=(--plain-http); fi
	podfim=$(mktemp "${TMPDIR:-/tmp}/podfim-release-push.XXXXXX")
	trap 'rm -f "$podfim"' EXIT
	"$GO" build -trimpath -o "$podfim" ./cmd/podfim
	for img in podfim hello; do
		"$GO" run ./scripts/release push -layout "$DIST/oci/$img" -tag "$VERSION" -repo "$REGISTRY/$img" "${insecure[@]}"
	done
	# The baselines, each a referrer of its platform's manifest (the digest
	# the kubelet reports for the pod's container).
	local manifest
	for arch in "${ARCHES[@]}"; do
		manifest=$("$podfim" baseline show --format json "$DIST/podfim-$VERSION-linux-$arch.pfb" |
			sed -n 's/.*"manifest": *"\(sha256:[0-9a-f]*\)".*/\1/p' | head -n1)
		[ -n "$manifest" ] || die "podfim-$VERSION-linux-$arch.pfb names no image manifest"
		"$podfim" baseline push --image "docker://$REGISTRY/podfim@$manifest" --verify-key "$DIST/podfim-release.pub" \
			${insecure:+--insecure} "$DIST/podfim-$VERSION-linux-$arch.pfb"
	done
	"$HELM" push "$DIST/podfim-$chart_version.tgz" "oci://$REGISTRY/charts" "${plain[@]}"
	echo "release.sh: helm install podfim oci://$REGISTRY/charts/podfim --version $chart_version"
}

case "${1:-build}" in
build) build ;;
push) push ;;
*) echo "usage: scripts/release.sh [build|push]" >&2; exit 2 ;;
esac
