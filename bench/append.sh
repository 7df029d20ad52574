#!/usr/bin/env bash
# Append throughput and bytes on disk per claim: vouch's builder log against
# raw tessera (same entries, same disk, same concurrency), alternating runs so
# that machine noise hits both alike. Prints a markdown table of medians.
#
#   bash bench/append.sh [N...]        default: 100000 1000000
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("${@:-100000 1000000}")
runs=${RUNS:-3}
conc=${CONC:-1024}
bin=$(mktemp -d)/append
go build -o "$bin" ./bench/append
work=$(mktemp -d -p "${BENCH_DIR:-/tmp}")
trap 'rm -rf "$work"' EXIT

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p"; }

echo "| entries | concurrency | raw tessera entries/s | vouch entries/s | ratio | raw bytes/entry on disk | vouch bytes/claim on disk | claim size |"
echo "|---|---|---|---|---|---|---|---|"
for n in ${sizes[@]}; do
	: >"$work/raw" ; : >"$work/vouch"
	for r in $(seq "$runs"); do
		for mode in raw vouch; do
			d="$work/$mode-$n-$r"; mkdir -p "$d"
			"$bin" -mode "$mode" -n "$n" -c "$conc" -dir "$d" >>"$work/$mode"
			rm -rf "$d"
		done
	done
	rr=$(field entries_per_s <"$work/raw" | median)
	vr=$(field entries_per_s <"$work/vouch" | median)
	rb=$(field disk_bytes_per_entry <"$work/raw" | median)
	vb=$(field disk_bytes_per_entry <"$work/vouch" | median)
	eb=$(field entry_bytes <"$work/vouch" | median)
	ratio=$(awk -v a="$vr" -v b="$rr" 'BEGIN {printf "%.2f", a/b}')
	echo "| $n | $conc | $rr | $vr | $ratio | $rb | $vb | $eb |"
done
