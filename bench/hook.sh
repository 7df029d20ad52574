#!/usr/bin/env bash
# Time `vouch hook` adds to one Nix build: the hook process as Nix runs it
# (spool one job, poke the daemon), with the daemon up and with it down,
# against /bin/true as the floor of running any hook at all. Median of RUNS.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-200}
tmp=$(mktemp -d)
trap 'kill $daemon 2>/dev/null || true; rm -rf "$tmp"' EXIT
go build -o "$tmp/vouch" ./cmd/vouch
"$tmp/vouch" serve --state "$tmp/up" --listen 127.0.0.1:0 >"$tmp/serve.log" 2>&1 &
daemon=$!
for _ in $(seq 50); do [ -S "$tmp/up/vouch.sock" ] && break; sleep 0.1; done

# ms_median CMD...: run CMD $runs times, print the median wall time in ms.
ms_median() {
	for _ in $(seq "$runs"); do
		s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N)
		echo $(((e - s) / 1000))
	done | sort -n | awk '{a[NR]=$1} END {printf "%.2f", a[int((NR+1)/2)]/1000}'
}
export DRV_PATH=/nix/store/6dfmycvm1f6w7icvcvmnvghxdizgz1xp-b.drv OUT_PATHS=
floor=$(ms_median /bin/true)
up=$(ms_median "$tmp/vouch" hook --state "$tmp/up")
down=$(ms_median "$tmp/vouch" hook --state "$tmp/down")
echo "| hook | median ms per build ($runs runs) |"
echo "|---|---|"
echo "| /bin/true (floor: starting any hook) | $floor |"
echo "| vouch hook, daemon up | $up |"
echo "| vouch hook, daemon down | $down |"
