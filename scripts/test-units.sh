#!/usr/bin/env bash
# Boots this machine's installed system in a systemd-nspawn container, with
# systemd as PID 1, and runs the packaged units there the way an operator
# would (docs/install.md): the builder, a Nix build through nix-daemon
# logged by the packaged post-build hook, then a follower/cache and a witness
# of that builder. It checks that each unit runs under its full hardening
# (system-call filter included, which scripts/test-deb.sh cannot reproduce
# without systemd), that the build is in the builder's log, and that the
# follower serves a signed narinfo for it.
#
# The container's root is an overlay of / with its writes in a tmpfs, in a
# private mount namespace, with its own network namespace: the machine is
# not changed. Needs root, the vouch package installed (scripts/test-deb.sh
# leaves it installed), systemd-container, nix-bin and busybox-static.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "test-units: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "must run as root"
[ -x /usr/bin/vouch ] && [ -f /lib/systemd/system/vouch-builder.service ] || fail "the vouch package is not installed (run scripts/test-deb.sh)"
command -v systemd-nspawn >/dev/null || fail "systemd-nspawn missing: install systemd-container"

work=$(mktemp -d /tmp/vouch-units.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/ci" "$work/out"

cat >"$work/ci/vouch-check.target" <<'EOF'
[Unit]
Description=vouch unit check
Requires=vouch-check.service
After=vouch-check.service
AllowIsolate=yes
EOF
cat >"$work/ci/vouch-check.service" <<'EOF'
[Unit]
Description=vouch unit check
After=basic.target
[Service]
Type=oneshot
ExecStart=/bin/bash /ci/check.sh
StandardOutput=append:/out/check.log
StandardError=append:/out/check.log
ExecStopPost=/bin/systemctl --no-block poweroff
EOF
cat >"$work/ci/check.sh" <<'CHECK'
# Runs inside the container, as systemd's service; writes /out/result.
set -euo pipefail
trap 'echo "failed at line $LINENO" >/out/result' ERR
set -x
keys=/var/lib/vouch/keys
for n in ci-builder ci-cache ci-witness; do
	runuser -u vouch -- vouch keygen --name "$n" --dir "$keys" >/dev/null
done
install -d /etc/vouch
sed -e 's#BUILDER#ci-builder#' -e 's#0.0.0.0:8080#127.0.0.1:8080#' /usr/share/doc/vouch/examples/builder.toml >/etc/vouch/builder.toml
systemctl start vouch-builder
for _ in $(seq 1 50); do curl -fsS http://127.0.0.1:8080/log/checkpoint >/dev/null 2>&1 && break; sleep 0.2; done
[ "$(stat -c '%U:%G %a' /var/lib/vouch/builder/vouch.sock)" = "vouch:vouch-submit 660" ]

# Nix's daemon with the packaged hook, as /etc/nix/nix.conf would set it.
systemd-run --unit=nix-daemon-ci --setenv=NIX_CONFIG='post-build-hook = /usr/lib/vouch/nix-post-build-hook' /usr/bin/nix-daemon
for _ in $(seq 1 50); do [ -S /nix/var/nix/daemon-socket/socket ] && break; sleep 0.2; done
mkdir /tmp/tools
cp /bin/busybox /tmp/tools/busybox
ln -s busybox /tmp/tools/sh
cat >/tmp/built.nix <<NIX
let tools = builtins.path { name = "unit-check-tools"; path = /tmp/tools; };
in derivation {
  name = "unit-check-$(date +%s%N)";
  system = builtins.currentSystem;
  builder = "\${tools}/sh";
  args = [ "-c" "\${tools}/busybox echo built under the units > \$out" ];
}
NIX
out=$(NIX_REMOTE=daemon nix-build /tmp/built.nix --no-out-link --option substituters "")
for _ in $(seq 1 100); do
	[ "$(curl -fsS http://127.0.0.1:8080/log/checkpoint | sed -n 2p)" -ge 1 ] && break
	sleep 0.2
done
vouch log verify http://127.0.0.1:8080/log/ "$keys/ci-builder.vkey" | grep -q 'is sound: 1 entries'

vkey=$(cat "$keys/ci-builder.vkey")
cat >/etc/vouch/follower.toml <<TOML
state = "/var/lib/vouch/follower"
listen = "127.0.0.1:8081"
nix-key = "$keys/ci-cache.nix.sec"
dashboard = true
[[builder]]
name = "ci-builder"
vkey = "$vkey"
log = "http://127.0.0.1:8080/log/"
[quorum]
min = 1
min-operators = 1
[[upstream]]
url = "http://127.0.0.1:8080/peer/"
[follow]
interval = "1s"
TOML
cat >/etc/vouch/witness.toml <<TOML
state = "/var/lib/vouch/witness"
listen = "127.0.0.1:8082"
key = "$keys/ci-witness.key"
serve-witness = true
[[builder]]
name = "ci-builder"
vkey = "$vkey"
log = "http://127.0.0.1:8080/log/"
[quorum]
min = 1
min-operators = 1
TOML
systemctl start vouch-follower vouch-witness
hash=$(basename "$out" | cut -c1-32)
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:8081/$hash.narinfo" >/tmp/narinfo 2>/dev/null && break; sleep 0.2; done
grep -qx "StorePath: $out" /tmp/narinfo
grep -q '^Sig: ci-cache:' /tmp/narinfo
curl -fsS http://127.0.0.1:8081/metrics | grep -q '^vouch_build_info{'
curl -fsS -o /dev/null http://127.0.0.1:8082/log/checkpoint
for u in vouch-builder vouch-follower vouch-witness; do
	[ "$(systemctl show -P ActiveState "$u")" = active ]
	[ "$(systemctl show -P NRestarts "$u")" = 0 ]
	[ "$(ps -o user= -p "$(systemctl show -P MainPID "$u")")" = vouch ]
	grep -q '^Seccomp:[[:space:]]*2' "/proc/$(systemctl show -P MainPID "$u")/status"
done
set +x
journalctl --no-pager -u vouch-builder -u vouch-follower -u vouch-witness | grep -v -E 'level=(INFO|DEBUG)' | tail -20 || true
echo "units active as vouch under seccomp; $out logged by the builder and served by the follower" >/out/result
CHECK

# The container's root: an overlay of / whose writes go to a tmpfs, in a
# mount namespace of its own so that nothing of it outlives this script.
unshare --mount --propagation private -- bash -euc '
	work=$1
	mkdir "$work/ov"
	mount -t tmpfs tmpfs "$work/ov"
	mkdir "$work/ov/upper" "$work/ov/work" "$work/ov/root"
	mount -t overlay overlay -o "lowerdir=/,upperdir=$work/ov/upper,workdir=$work/ov/work" "$work/ov/root"
	root=$work/ov/root
	systemd-id128 new >"$root/etc/machine-id"
	cp "$work/ci/vouch-check.service" "$work/ci/vouch-check.target" "$root/etc/systemd/system/"
	timeout 300 systemd-nspawn --quiet --directory="$root" --private-network --register=no --keep-unit \
		--link-journal=no --bind-ro="$work/ci:/ci" --bind="$work/out:/out" \
		--boot systemd.unit=vouch-check.target >"$work/boot.log" 2>&1
' - "$work" || true

if [ ! -s "$work/out/result" ] || grep -q '^failed' "$work/out/result"; then
	tail -30 "$work/boot.log" >&2 || true
	cat "$work/out/check.log" >&2 || true
	fail "the unit check in the container did not pass: $(cat "$work/out/result" 2>/dev/null || echo 'no result (did the container boot?)')"
fi
grep -v '^+' "$work/out/check.log" | tail -5 || true
echo "units under systemd: $(cat "$work/out/result")"
