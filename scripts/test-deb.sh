#!/usr/bin/env bash
# Builds the Debian package (scripts/build-deb.sh), installs it with
# dpkg -i and checks what it installed: the binary names this commit, the
# postinst made the vouch user and groups, systemd accepts the units, and a
# builder runs the way vouch-builder.service runs it (as the vouch user,
# from the packaged example config) and answers /log/checkpoint with a
# checkpoint `vouch log verify` accepts. The packaged post-build hook, run as
# root as Nix runs it, queues its spool entries as the vouch user.
#
# There is no systemd as PID 1 in CI containers, so the units are checked
# with systemd-analyze and their command run by hand, not with systemctl.
# Needs root (dpkg -i). Leaves the package installed.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "test-deb: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "must run as root (dpkg -i)"

tmp=$(mktemp -d)
pid=
nixd=
cleanup() {
	if [ -n "$nixd" ]; then kill "$nixd" 2>/dev/null || true; fi
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; fi
	rm -rf "$tmp" "${ci:-}"
}
trap cleanup EXIT

deb=$(bash scripts/build-deb.sh "$tmp/out")
echo "built $(basename "$deb") ($(du -h "$deb" | cut -f1))"
again=$(bash scripts/build-deb.sh "$tmp/again")
if cmp -s "$deb" "$again"; then
	echo "a second build of the commit is byte-identical: sha256 $(sha256sum "$deb" | cut -c1-16)…"
else
	fail "two builds of one commit differ: $(sha256sum "$deb" "$again")"
fi

DEBIAN_FRONTEND=noninteractive dpkg -i "$deb" >/dev/null

echo "-- binary"
version=$(/usr/bin/vouch version)
echo "$version"
rev=$(git rev-parse HEAD)
case "$version" in
*"revision $rev"*) ;;
*) fail "vouch version does not name the packaged commit $rev" ;;
esac
[ "$(/usr/bin/vouch --version)" = "$version" ] || fail "vouch --version differs from vouch version"

echo "-- user, groups, state directory"
id vouch
id -nG vouch | tr ' ' '\n' | grep -qx vouch-submit || fail "vouch is not in vouch-submit"
[ "$(stat -c '%U:%G %a' /var/lib/vouch)" = "vouch:vouch 750" ] || fail "/var/lib/vouch is $(stat -c '%U:%G %a' /var/lib/vouch)"
[ "$(getent passwd vouch | cut -d: -f7)" = /usr/sbin/nologin ] || fail "vouch has a login shell"
DEBIAN_FRONTEND=noninteractive dpkg -i "$deb" >/dev/null # a reinstall must not fail on what exists
id vouch >/dev/null

echo "-- systemd units"
units=(/lib/systemd/system/vouch-builder.service /lib/systemd/system/vouch-follower.service /lib/systemd/system/vouch-witness.service)
systemd-analyze verify "${units[@]}"
for u in "${units[@]}"; do
	printf '%s: ' "$(basename "$u")"
	systemd-analyze security --offline=true --no-pager "$u" 2>/dev/null | tail -1 | sed 's/^→ //'
done

echo "-- a builder as vouch-builder.service runs it"
ci=$(runuser -u vouch -- mktemp -d /var/lib/vouch/ci-check.XXXXXX)
runuser -u vouch -- /usr/bin/vouch keygen --name ci-builder --dir "$ci/keys" >/dev/null
sed -e "s#^key *=.*#key = \"$ci/keys/ci-builder.key\"#" -e 's#^listen *=.*#listen = "127.0.0.1:0"#' \
	/usr/share/doc/vouch/examples/builder.toml >"$tmp/builder.toml"
chmod 0644 "$tmp/builder.toml"
chmod 0755 "$tmp"
# The unit's command line, as the unit's user (groups from the user database,
# which the unit's SupplementaryGroups= repeats) with the environment systemd
# gives it: its Environment= lines and, for User=, HOME, USER and LOGNAME
# (Nix's commands, which the builder runs, read HOME).
unit=/lib/systemd/system/vouch-builder.service
runuser -u vouch -- mkdir "$ci/cache"
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
exec_start=${exec_start//\/etc\/vouch\/builder.toml/$tmp/builder.toml}
exec_start=${exec_start//%S\/vouch\/builder/$ci/state}
unit_env=()
while read -r e; do unit_env+=("${e//%C\/vouch\/builder/$ci/cache}"); done < <(sed -n 's/^Environment=//p' "$unit")
echo "ExecStart: $exec_start"
echo "Environment: ${unit_env[*]}"
# Part of the unit's sandbox, as far as it can be had without systemd: a
# read-only file system except the state and cache directories and /tmp
# (ProtectSystem=strict, PrivateTmp=), no new privileges, no capabilities.
# shellcheck disable=SC2086 # the unit's words, split as systemd splits them
unshare --mount --propagation private -- sh -c '
	mount --bind "$1" "$1" && mount --bind /tmp /tmp && mount -o remount,bind,ro / && shift && exec "$@"' - "$ci" \
	setpriv --reuid=vouch --regid=vouch --init-groups --no-new-privs --bounding-set=-all --inh-caps=-all -- \
	env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	HOME=/var/lib/vouch USER=vouch LOGNAME=vouch SHELL=/usr/sbin/nologin "${unit_env[@]}" \
	$exec_start >"$tmp/serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
	[ -s "$ci/state/node.json" ] && break
	kill -0 "$pid" 2>/dev/null || { cat "$tmp/serve.log"; fail "vouch serve exited"; }
	sleep 0.1
done
# A serving node records its address in STATE/node.json (package query).
addr=$(sed -n 's/.*"listen": *"\([^"]*\)".*/\1/p' "$ci/state/node.json" 2>/dev/null)
[ -n "$addr" ] || { cat "$tmp/serve.log"; fail "vouch serve did not record its address"; }
checkpoint=$(curl -fsS "http://$addr/log/checkpoint") || { cat "$tmp/serve.log"; fail "GET /log/checkpoint failed"; }
[ "$(head -1 <<<"$checkpoint")" = ci-builder ] || fail "the checkpoint's origin is not ci-builder: $checkpoint"
/usr/bin/vouch log verify "http://$addr/log/" "$(cat "$ci/keys/ci-builder.vkey")"
[ "$(stat -c '%U:%G %a' "$ci/state/vouch.sock")" = "vouch:vouch-submit 660" ] ||
	fail "the submit socket is $(stat -c '%U:%G %a' "$ci/state/vouch.sock"), want vouch:vouch-submit 660"
root_mount=$(awk '$5 == "/" {print $6}' "/proc/$pid/mountinfo")
case "$root_mount" in ro,*) ;; *) fail "the builder's / is mounted $root_mount, want read-only" ;; esac
grep -q '^NoNewPrivs:[[:space:]]*1' "/proc/$pid/status" || fail "the builder may gain privileges"
echo "serving on $addr as $(ps -o user= -p "$pid"), / $root_mount, socket $(stat -c '%U:%G %a' "$ci/state/vouch.sock")"

echo "-- a Nix build logged through the packaged hook and Nix's daemon"
# As on a machine with Debian's nix-setup-systemd: nix-daemon (root) with
# post-build-hook set, a client building through it in the sandbox; the
# builder (vouch) asks the daemon about the outputs it is told of.
pgrep -x nix-daemon >/dev/null && fail "a Nix daemon already runs here; this check starts its own, with the packaged hook"
rm -f /nix/var/nix/daemon-socket/socket # a stale one from an earlier daemon
NIX_CONFIG='post-build-hook = /usr/lib/vouch/nix-post-build-hook' VOUCH_STATE=$ci/state \
	nix-daemon >"$tmp/nix-daemon.log" 2>&1 &
nixd=$!
for _ in $(seq 1 100); do [ -S /nix/var/nix/daemon-socket/socket ] && break; sleep 0.1; done
mkdir "$tmp/tools"
cp /bin/busybox "$tmp/tools/busybox"
ln -s busybox "$tmp/tools/sh"
cat >"$tmp/built.nix" <<NIX
let tools = builtins.path { name = "deb-check-tools"; path = $tmp/tools; };
in derivation {
  name = "deb-check-$(date +%s%N)";
  system = builtins.currentSystem;
  builder = "\${tools}/sh";
  args = [ "-c" "\${tools}/busybox echo built for the package check > \$out" ];
}
NIX
built=$(NIX_REMOTE=daemon nix-build "$tmp/built.nix" --no-out-link --option substituters "" 2>"$tmp/nix-build.log") ||
	{ cat "$tmp/nix-build.log" "$tmp/nix-daemon.log"; fail "nix-build through the daemon failed"; }
size=0
for _ in $(seq 1 100); do
	size=$(curl -fsS "http://$addr/log/checkpoint" | sed -n 2p)
	[ "${size:-0}" -ge 1 ] && break
	sleep 0.1
done
kill "$nixd"
wait "$nixd" 2>/dev/null || true
nixd=
[ "${size:-0}" -ge 1 ] || { cat "$tmp/serve.log" "$tmp/nix-daemon.log"; fail "$built was built but the builder's log is still empty"; }
/usr/bin/vouch log verify "http://$addr/log/" "$(cat "$ci/keys/ci-builder.vkey")"
nix-store --delete "$built" >/dev/null 2>&1 || true

echo "-- the packaged post-build hook, run as root as Nix runs it"
hookstate=$ci/hook-state
runuser -u vouch -- mkdir "$hookstate"
VOUCH_STATE=$hookstate DRV_PATH=/nix/store/00000000000000000000000000000000-ci.drv OUT_PATHS= \
	/usr/lib/vouch/nix-post-build-hook 2>"$tmp/hook.err" || fail "the hook failed"
owners=$(find "$hookstate/spool" -type f -printf '%u:%g\n' | sort -u)
[ "$owners" = vouch:vouch ] || { cat "$tmp/hook.err"; fail "spool entries are owned by '$owners', want vouch:vouch"; }
echo "spool entries owned by $owners"
echo "-- the other example configs start a node (with real keys in place of the placeholders)"
for role in follower witness; do
	for n in alice bob "$role-key"; do
		[ -e "$ci/keys/$n.key" ] || runuser -u vouch -- /usr/bin/vouch keygen --name "$n" --dir "$ci/keys" >/dev/null
	done
	sed -e "s#alice+1a2b3c4d+AQ…#$(cat "$ci/keys/alice.vkey")#" -e "s#bob+5e6f7a8b+AQ…#$(cat "$ci/keys/bob.vkey")#" \
		-e "s#/var/lib/vouch/keys/[A-Z]*\.#$ci/keys/$role-key.#" -e "s#^state *=.*#state = \"$ci/$role\"#" \
		-e 's#^listen *=.*#listen = "127.0.0.1:0"#' "/usr/share/doc/vouch/examples/$role.toml" >"$tmp/$role.toml"
	chmod 0644 "$tmp/$role.toml"
	setpriv --reuid=vouch --regid=vouch --init-groups -- /usr/bin/vouch serve --config "$tmp/$role.toml" >"$tmp/$role.log" 2>&1 &
	rpid=$!
	started=no
	for _ in $(seq 1 100); do
		[ -s "$ci/$role/node.json" ] && started=yes && break
		kill -0 "$rpid" 2>/dev/null || { cat "$tmp/$role.log"; fail "the $role example does not start"; }
		sleep 0.1
	done
	kill "$rpid"
	wait "$rpid" 2>/dev/null || true
	[ "$started" = yes ] || { cat "$tmp/$role.log"; fail "the $role example did not start within 10s"; }
	echo "$role.toml: a node started"
done
echo "package checks passed"
