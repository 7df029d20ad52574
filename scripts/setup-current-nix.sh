#!/usr/bin/env bash
# Prepares a current Nix for the end-to-end tests, beside Debian bookworm's
# Nix 2.8: Debian trixie's nix-bin (2.26) in a debootstrap root, and
# wrapper commands (nix, nix-build, nix-store, nix-instantiate) that run it
# there. Prints the wrappers' directory; the e2e tests use that Nix when
# VOUCH_E2E_NIX_BIN names it.
#
# The root is built once and kept (about 460 MB, a few minutes to fetch) in
# $VOUCH_CURRENT_NIX_ROOT (default /var/cache/vouch-test/trixie); later
# runs reuse it. Each wrapped command runs in a private mount namespace
# (unshare) in which /proc, /dev, /tmp and the checkout are bind-mounted
# into the root, so that Nix builds into the tests' chroot stores under
# /tmp, reads the test world from the checkout, and runs the vouch hook the
# tests wrote; the mounts end with the command. The root is entered with
# pivot_root, not chroot: the kernel refuses user namespaces to a chrooted
# process, and Nix 2.26's build sandbox needs one. Needs root.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
root=${VOUCH_CURRENT_NIX_ROOT:-/var/cache/vouch-test/trixie}
bin=$root.bin

if [ ! -e "$root/.vouch-ready" ]; then
	command -v debootstrap >/dev/null || {
		SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
		$SUDO apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
	}
	rm -rf "$root.tmp"
	mkdir -p "$(dirname "$root")"
	echo "setup-current-nix: debootstrap trixie into $root (once; a few minutes)" >&2
	debootstrap --variant=minbase trixie "$root.tmp" http://deb.debian.org/debian >&2
	# nix-bin cannot be installed at debootstrap time (a virtual
	# dependency); apt inside the root resolves it.
	mount -t proc proc "$root.tmp/proc"
	trap 'umount "$root.tmp/proc" 2>/dev/null || true' EXIT
	chroot "$root.tmp" apt-get install -y -qq --no-install-recommends nix-bin >&2
	umount "$root.tmp/proc"
	trap - EXIT
	# What a real Nix installation sets up: the build users' group and
	# members (Nix's default build-users-group is nixbld).
	chroot "$root.tmp" sh -c 'getent group nixbld >/dev/null || groupadd -r nixbld
		for i in $(seq 1 16); do id nixbld$i >/dev/null 2>&1 || useradd -r -g nixbld -G nixbld -d /var/empty -s /usr/sbin/nologin nixbld$i; done' >&2
	chroot "$root.tmp" apt-get clean
	touch "$root.tmp/.vouch-ready"
	rm -rf "$root"
	mv "$root.tmp" "$root"
fi

mkdir -p "$bin"
for cmd in nix nix-build nix-store nix-instantiate; do
	cat >"$bin/$cmd" <<SH
#!/bin/sh
# Runs trixie's $cmd in $root (see scripts/setup-current-nix.sh).
exec unshare --mount --propagation private sh -c '
	root=\$1 cwd=\$2; shift 2
	mount --rbind "\$root" "\$root" || exit 125
	for d in /proc /dev /tmp "$repo"; do
		mkdir -p "\$root\$d" && mount --rbind "\$d" "\$root\$d" || exit 125
	done
	mkdir -p "\$root/.oldroot"
	cd "\$root" && pivot_root . .oldroot || exit 125
	cd "\$cwd" 2>/dev/null || cd /
	exec "\$@"' sh "$root" "\$(pwd)" /usr/bin/$cmd "\$@"
SH
	chmod +x "$bin/$cmd"
done
"$bin/nix" --version >&2
echo "$bin"
