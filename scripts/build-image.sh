#!/usr/bin/env bash
# Builds vouch's container image from the committed HEAD of this checkout,
# without a container engine (packaging/image, go-containerregistry), and
# prints its digest. Two builds of one commit give the same digest, on any
# machine with the same Go: the binary is static and built with -trimpath
# from a fresh clone, every file and the image carry the commit's time.
#
#   bash scripts/build-image.sh [LAYOUT_DIR] [--push REGISTRY/REPO:TAG]
#
# LAYOUT_DIR (default artifacts/image) receives an OCI image layout.
set -euo pipefail
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
out=$(realpath -m "${1:-$repo/artifacts/image}")
shift || true
rev=$(git -C "$repo" rev-parse HEAD)
epoch=$(git -C "$repo" log -1 --format=%ct "$rev")
goarch=$(go env GOARCH)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone --quiet --no-checkout "$repo" "$work/src"
git -C "$work/src" checkout --quiet --detach "$rev"
(cd "$work/src" && CGO_ENABLED=0 GOOS=linux GOFLAGS=-buildvcs=true \
	go build -trimpath -ldflags=-buildid= -o "$work/vouch" ./cmd/vouch)
version=$("$work/vouch" version | awk '{print $2; exit}')
# A CA bundle differs between machines, so it is left out unless asked for
# (VOUCH_IMAGE_CA=/etc/ssl/certs/ca-certificates.crt); mount the host's
# /etc/ssl/certs to follow logs over https.
certs=()
[ -n "${VOUCH_IMAGE_CA:-}" ] && certs=(--ca-certificates "$VOUCH_IMAGE_CA")
(cd "$work/src" && go run ./packaging/image --binary "$work/vouch" --time "$epoch" --arch "$goarch" \
	--version "$version" --revision "$rev" "${certs[@]}" --layout "$out" "$@")
