#!/usr/bin/env bash
# Checks that Nix on this machine builds the way vouch's tests assume a
# real installation builds: as a `nixbld` build user, in Nix's sandbox. It
# reads the effective settings, then builds one probe derivation (busybox
# only, no network) into a throwaway chroot store and looks at what the
# builder saw: not root, no host /bin, only a loopback interface. A machine
# where the sandbox cannot be set up (no user or network namespaces) fails
# here with the reason, not halfway through the end-to-end tests.
set -euo pipefail

fail() { echo "check-nix-sandbox: $*" >&2; exit 1; }

command -v nix-build >/dev/null || fail "nix-build not on PATH; install nix-bin"
[ -x /bin/busybox ] || fail "/bin/busybox missing; install busybox-static"

config=$(nix --extra-experimental-features nix-command show-config)
setting() { printf '%s\n' "$config" | sed -n "s/^$1 = //p"; }
[ "$(setting sandbox)" = true ] ||
	fail "sandbox = $(setting sandbox) in the effective Nix settings (from /etc/nix/nix.conf or NIX_CONFIG?); the tests expect Nix's default, sandbox = true"
if [ "$(id -u)" -eq 0 ]; then
	g=$(setting build-users-group)
	[ -n "$g" ] || fail "build-users-group is empty: root would build as root; the tests expect Nix's default, nixbld"
	getent group "$g" >/dev/null || fail "group '$g' (build-users-group) does not exist; run scripts/setup-nix-build-users.sh"
fi

tmp=$(mktemp -d /tmp/vouch-nix-probe.XXXXXX)
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
mkdir "$tmp/tools"
cp /bin/busybox "$tmp/tools/busybox"
ln -s busybox "$tmp/tools/sh"
cat >"$tmp/probe.nix" <<EOF
let
  tools = builtins.path { name = "probe-tools"; path = $tmp/tools; };
  bb = "\${tools}/busybox";
in derivation {
  name = "sandbox-probe";
  system = builtins.currentSystem;
  builder = "\${tools}/sh";
  args = [ "-c" "\${bb} mkdir \$out; \${bb} id -u > \$out/uid; \${bb} ls / > \$out/root; \${bb} cat /proc/net/dev > \$out/net" ];
}
EOF
out=$(nix-build --store "$tmp/store" "$tmp/probe.nix" --no-out-link --option substituters "" 2>"$tmp/log") ||
	fail "the probe build failed:$(printf '\n'; cat "$tmp/log")"
seen=$tmp/store$out
uid=$(cat "$seen/uid")
[ "$uid" != 0 ] || fail "the builder ran as root: no build user was used"
! grep -qx bin "$seen/root" || fail "the builder saw the host's /bin: it ran outside the sandbox"
ifaces=$(sed -n 's/^ *\([a-z0-9]*\):.*/\1/p' "$seen/net" | tr '\n' ' ')
[ "$ifaces" = "lo " ] || fail "the builder saw network interfaces: $ifaces(no network namespace)"
echo "nix: sandbox = true, build-users-group = $(setting build-users-group); probe built as uid $uid in the sandbox (root: $(tr '\n' ' ' <"$seen/root"); network: lo only)"
