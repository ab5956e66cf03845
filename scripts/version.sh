#!/usr/bin/env bash
# version.sh: podfim's one version, from git, for the Makefile (make build,
# images, demo, release) and the chart (docs/install.md, "Versions").
#
#   scripts/version.sh            the version: `git describe --tags --dirty`
#                                 of the newest v* tag, e.g. v0.2.0,
#                                 v0.2.0-3-g0123456789ab, v0.2.0-dirty;
#                                 without any v* tag, the fallback
#                                 v0.0.0-<commit time, UTC, YYYYmmddHHMMSS>-<12 hex of the commit>[-dirty]
#                                 (Go's pseudo-version form, so it sorts by time)
#   scripts/version.sh commit     the full commit hash (with -dirty when modified)
#   scripts/version.sh date       the commit's time, RFC 3339 UTC (the build's date:
#                                 a reproducible build has no build time of its own)
#   scripts/version.sh epoch      the commit's time in seconds: SOURCE_DATE_EPOCH
#   scripts/version.sh chart      the version without its leading v, as Helm's
#                                 SemVer 2 wants it for the chart's version
#
# "Dirty" means a tracked file differs from the commit (untracked files do
# not count, as with git describe --dirty). Outside a git work tree it fails:
# pass VERSION, COMMIT and SOURCE_DATE_EPOCH to make instead.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! git rev-parse --git-dir >/dev/null 2>&1; then
	echo "version.sh: not a git work tree: set VERSION, COMMIT and SOURCE_DATE_EPOCH for make" >&2
	exit 1
fi
# Refresh the index first: a touched but unchanged file must not count as
# a change (git describe --dirty does the same).
git update-index -q --refresh >/dev/null 2>&1 || true
dirty=
git diff-index --quiet HEAD -- || dirty=-dirty

epoch=$(git log -1 --format=%ct HEAD)

version() {
	local v
	if v=$(git describe --tags --dirty --match 'v[0-9]*' --abbrev=12 2>/dev/null); then
		echo "$v"
		return
	fi
	echo "v0.0.0-$(TZ=UTC date -d "@$epoch" +%Y%m%d%H%M%S)-$(git rev-parse --short=12 HEAD)$dirty"
}

case "${1:-version}" in
version) version ;;
commit) echo "$(git rev-parse HEAD)$dirty" ;;
date) TZ=UTC date -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ ;;
epoch) echo "$epoch" ;;
chart) v=$(version); echo "${v#v}" ;;
*) echo "usage: scripts/version.sh [version|commit|date|epoch|chart]" >&2; exit 2 ;;
esac
