#!/usr/bin/env bash
# The whole trust loop on one machine, in one command:
#
#   bash examples/demo.sh            (add --keep to leave everything running)
#
# Three independent builders (each its own chroot Nix store and its own vouch
# daemon, logging every build through Nix's post-build-hook) build the same
# small derivations. Builder 3 tampers with one output before logging it. A
# fourth node follows the three logs with a 3-of-3 policy and serves a Nix
# binary cache. A fresh Nix store that trusts only that node's key then
# substitutes the agreed path and is refused the tampered one.
#
# Needs: Go, Debian's nix-bin and busybox-static (apt-get install nix-bin busybox-static).
set -euo pipefail
cd "$(dirname "$0")/.."
keep=false
[ "${1:-}" = "--keep" ] && keep=true

for tool in go nix-build nix-store; do
	command -v "$tool" >/dev/null || { echo "demo: $tool is missing (apt-get install nix-bin; Go from go.dev)"; exit 1; }
done
[ -x /bin/busybox ] || { echo "demo: /bin/busybox is missing (apt-get install busybox-static)"; exit 1; }

work=$(mktemp -d /tmp/vouch-demo.XXXXXX)
pids=()
cleanup() {
	if ! $keep; then
		for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
		wait 2>/dev/null || true
		chmod -R u+w "$work" 2>/dev/null || true
		rm -rf "$work"
	fi
}
trap cleanup EXIT
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "building vouch"
go build -o "$work/vouch" ./cmd/vouch
V="$work/vouch"

# The test world needs busybox inside it (busybox picks its applet from argv[0]).
world=e2e/testdata/world
mkdir -p "$world/tools"
cp /bin/busybox "$world/tools/busybox"
ln -sf busybox "$world/tools/sh"

# start NAME ARGS...: run vouch serve in the background, wait for its banner.
start() {
	local name=$1; shift
	"$V" serve --listen 127.0.0.1:0 "$@" >"$work/$name.out" 2>"$work/$name.log" &
	pids+=($!)
	for _ in $(seq 100); do grep -q "Press Ctrl-C" "$work/$name.out" 2>/dev/null && return; sleep 0.1; done
	echo "demo: $name did not start:"; cat "$work/$name.out" "$work/$name.log"; exit 1
}
addr() { sed -n 's|vouch is serving on http://\([^/]*\)/|\1|p' "$work/$1.out"; }
vkey() { sed -n 's|.*verifier key: ||p' "$work/$1.out"; }

for i in 1 2 3; do
	say "builder $i: its own store and vouch daemon"
	start "builder$i" --state "$work/b$i" --store "$work/store$i"
	printf '#!/bin/sh\nexec %s hook --state %s\n' "$V" "$work/b$i" >"$work/hook$i"
	chmod +x "$work/hook$i"
	echo "   log: http://$(addr builder$i)/log/"
done

for i in 1 2 3; do
	say "builder $i builds a -> b -> c (its post-build-hook logs every output)"
	nix-build --store "$work/store$i" "$world" -A c --no-out-link --option substituters "" --option post-build-hook "$work/hook$i"
done

say "builders 1 and 2 build 'multi'; builder 3 builds it, alters it on disk, then logs it"
for i in 1 2; do
	nix-build --store "$work/store$i" "$world" -A multi --no-out-link --option substituters "" --option post-build-hook "$work/hook$i" >/dev/null
done
multi=$(nix-build --store "$work/store3" "$world" -A multi --no-out-link --option substituters "" 2>/dev/null)
chmod u+w "$work/store3$multi" "$work/store3$multi/lib"
echo "backdoor" >>"$work/store3$multi/lib"
"$V" submit --state "$work/b3" --store "$work/store3" "$multi"

say "the substituter node: follows the three logs, 3-of-3, serves Nix"
"$V" keygen --name demo-cache --dir "$work/cache-keys" >/dev/null
{
	echo "state = \"$work/node\""
	echo "nix-key = \"$work/cache-keys/demo-cache.nix.sec\""
	echo "dashboard = true"
	echo "[follow]"
	echo "interval = \"500ms\""
	for i in 1 2 3; do
		echo "[[builder]]"
		echo "name = \"builder$i\""
		echo "vkey = \"$(vkey builder$i)\""
		echo "log = \"http://$(addr builder$i)/log/\""
		echo "operator = \"org$i\""
		echo "[[upstream]]"
		echo "url = \"http://$(addr builder$i)/peer\""
	done
	echo "[quorum]"
	echo "min = 3"
	echo "min-operators = 3"
} >"$work/node.toml"
start node --config "$work/node.toml"
node=$(addr node)
echo "   cache:     http://$node"
echo "   dashboard: http://$node/"

c=$(nix-build --store "$work/store1" "$world" -A c --no-out-link --option substituters "" 2>/dev/null)
say "waiting for the node to sync the three logs"
for _ in $(seq 100); do
	curl -sf "http://$node/$(basename "$c" | cut -c1-32).narinfo" >/dev/null && break
	sleep 0.3
done

say "verdicts"
"$V" verdict --config "$work/node.toml" "$c" || true
echo
"$V" verdict --config "$work/node.toml" "$multi" || true

say "a fresh Nix store that trusts only the node's key"
client="$work/client"
opts=(--option substituters "http://$node" --option trusted-public-keys "$(cat "$work/cache-keys/demo-cache.nix.pub")"
	--option narinfo-cache-negative-ttl 0)
echo "\$ nix-store --store $client -r $c"
nix-store --store "$client" -r "$c" "${opts[@]}"
echo "-> substituted: $(cat "$client$c/copied")"
echo
echo "\$ nix-store --store $client -r $multi"
if nix-store --store "$client" -r "$multi" "${opts[@]}" 2>&1; then
	echo "demo: FAILED — the tampered path was substituted"; exit 1
fi
echo "-> refused: builder 3 disagrees, so 3-of-3 is not met and the node does not offer it"

if $keep; then
	say "still running; stop with: kill ${pids[*]}"
	echo "work directory: $work"
	trap - EXIT
fi
say "demo passed"
