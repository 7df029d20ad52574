#!/usr/bin/env bash
# Compares nixstore.NarHash with Nix's own "nix-hash --type sha256" on the
# inputs of the Go benchmarks (BenchmarkNarHashBigFile, ...SmallFiles): one
# big file and a tree of 20,000 small files. Both are whole processes, so
# both pay their start-up. Prints a markdown table of medians of 5 runs
# (hyperfine when installed, else a shell loop), after checking that both
# tools give the same hash.
#
# usage: nixstore/bench/narhash.sh [BIG_MIB]
#   BIG_MIB  size of the big file in MiB (default: $VOUCH_BENCH_BIG_MIB or 512)
set -euo pipefail

big_mib=${1:-${VOUCH_BENCH_BIG_MIB:-512}}
runs=5
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

command -v nix-hash >/dev/null || { echo "nix-hash is not on PATH; install Nix" >&2; exit 1; }
go build -o "$work/narhash" "$here/narhash"
"$work/narhash" make-big "$work/big" "$big_mib"
"$work/narhash" make-small "$work/small"

# median_seconds CMD...: the median wall time of $runs runs, after a warm-up
# run that also brings the input into the page cache.
median_seconds() {
	if command -v hyperfine >/dev/null; then
		hyperfine -N --style none --warmup 1 --runs "$runs" --export-csv "$work/t.csv" -- "$*" >/dev/null
		awk -F, 'NR == 2 { print $4 }' "$work/t.csv"
	else
		"$@" >/dev/null
		for _ in $(seq "$runs"); do
			local start end
			start=$(date +%s%N)
			"$@" >/dev/null
			end=$(date +%s%N)
			echo "$(( end - start ))"
		done | sort -n | awk '{ t[NR] = $1 } END { printf "%.6f\n", t[int((NR + 1) / 2)] / 1e9 }'
	fi
}

echo "| input | NAR size | nix-hash --type sha256 | nixstore.NarHash | speed-up |"
echo "|---|---:|---:|---:|---:|"
for input in big small; do
	p="$work/$input"
	read -r ours size < <("$work/narhash" "$p")
	theirs="sha256:$(nix-hash --type sha256 --base32 "$p")"
	if [ "$ours" != "$theirs" ]; then
		echo "hash mismatch on $input: nixstore $ours, nix-hash $theirs" >&2
		exit 1
	fi
	t_nix=$(median_seconds nix-hash --type sha256 "$p")
	t_go=$(median_seconds "$work/narhash" "$p")
	case $input in
	big) label="1 file of $big_mib MiB" ;;
	small) label="20,000 small files" ;;
	esac
	awk -v label="$label" -v size="$size" -v tn="$t_nix" -v tg="$t_go" 'BEGIN {
		printf "| %s | %.1f MiB | %.3f s (%.0f MB/s) | %.3f s (%.0f MB/s) | %.2fx |\n",
			label, size / 1048576, tn, size / tn / 1e6, tg, size / tg / 1e6, tn / tg
	}'
done
echo
echo "Medians of $runs runs$(command -v hyperfine >/dev/null && echo " (hyperfine)"); $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(nix-hash --version)."
