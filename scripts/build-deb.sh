#!/usr/bin/env bash
# Builds the Debian package of vouch from the committed HEAD of this
# checkout (uncommitted changes are not in it: a package names one commit).
#
#   bash scripts/build-deb.sh [OUTDIR]     # default OUTDIR: artifacts/
#
# It clones HEAD into a temporary directory and builds there, so the go
# command stamps the commit into the binary (`vouch version`) even when this
# checkout is a git worktree, which it does not recognise. The package holds:
#
#   /usr/bin/vouch                                 static binary (CGO_ENABLED=0, -trimpath)
#   /lib/systemd/system/vouch-{builder,follower,witness}.service
#   /usr/lib/vouch/nix-post-build-hook             Nix's post-build-hook for the builder
#   /usr/share/doc/vouch/                          install.md, copyright, examples/*.toml
#
# and its postinst creates the vouch system user and group, the
# vouch-submit group and /var/lib/vouch (packaging/debian/postinst). File
# times are the commit's time, so two builds of one commit give one file.
set -euo pipefail

repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
out=$(realpath -m "${1:-$repo/artifacts}")
rev=$(git -C "$repo" rev-parse HEAD)
if [ -n "$(git -C "$repo" status --porcelain --untracked-files=no)" ]; then
	echo "build-deb: the checkout has uncommitted changes; packaging the committed HEAD ${rev:0:12} without them" >&2
fi
epoch=$(git -C "$repo" log -1 --format=%ct "$rev")
version="0.0~git$(date -u -d "@$epoch" +%Y%m%d%H%M%S).${rev:0:12}"
arch=$(dpkg --print-architecture)
case "$arch" in
amd64 | arm64 | riscv64 | ppc64el | s390x) goarch=${arch/ppc64el/ppc64le} ;;
i386) goarch=386 ;;
armhf) goarch=arm ;;
*) echo "build-deb: no Go architecture known for dpkg architecture $arch" >&2; exit 1 ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone --quiet --no-checkout "$repo" "$work/src"
git -C "$work/src" checkout --quiet --detach "$rev"

root=$work/root
install -d "$root/usr/bin" "$root/lib/systemd/system" "$root/usr/lib/vouch" \
	"$root/usr/share/doc/vouch/examples" "$root/DEBIAN"
(
	cd "$work/src"
	CGO_ENABLED=0 GOOS=linux GOARCH=$goarch GOFLAGS=-buildvcs=true \
		go build -trimpath -ldflags=-buildid= -o "$root/usr/bin/vouch" ./cmd/vouch
)
src=$work/src
install -m 0644 "$src"/packaging/systemd/vouch-*.service "$root/lib/systemd/system/"
install -m 0755 "$src/packaging/nix-post-build-hook" "$root/usr/lib/vouch/"
install -m 0644 "$src"/packaging/examples/*.toml "$root/usr/share/doc/vouch/examples/"
install -m 0644 "$src/docs/install.md" "$src/docs/config.md" "$root/usr/share/doc/vouch/"
install -m 0644 "$src/packaging/debian/copyright" "$root/usr/share/doc/vouch/"
install -m 0755 "$src"/packaging/debian/{postinst,prerm,postrm} "$root/DEBIAN/"

size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<EOF
Package: vouch
Version: $version
Architecture: $arch
Maintainer: vouch maintainers <vouch@localhost>
Installed-Size: $size
Depends: passwd, util-linux
Recommends: nix-bin
Suggests: nix-setup-systemd
Section: admin
Priority: optional
Homepage: https://github.com/vouch-dev/vouch
Description: decentralized trust for build outputs
 Independent builders each keep a signed, append-only, publicly verifiable
 log of what they built; vouch trusts a Nix store path or an OCI image only
 when a quorum of chosen builders agree on it. It serves a Nix binary cache
 of agreed paths, gates OCI image promotion, and keeps evidence of every
 disagreement.
 .
 Built from commit $rev.
EOF

find "$root" -exec touch -h -d "@$epoch" {} +
mkdir -p "$out"
deb=$out/vouch_${version}_${arch}.deb
SOURCE_DATE_EPOCH=$epoch dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
