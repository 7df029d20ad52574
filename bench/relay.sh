#!/usr/bin/env bash
# Compares the substituter's in-process benchmarks with those of an earlier
# commit, alternating the two in one run so that load hits both:
#   - BenchmarkNarinfo: narinfo requests/s of one agreed path;
#   - BenchmarkNAR: a 64 MiB uncompressed NAR relayed from an upstream on
#     loopback and verified, on 1 and 16 streams (MB/s, and time to first
#     byte where the benchmark reports it);
#   - BenchmarkUpstreamAmplification: upstream requests per client request
#     under a load mix (only where the commit has it).
# Prints the benchmark lines of each run, prefixed with the commit.
#
# usage: bench/relay.sh BASE_COMMIT [RUNS]
set -euo pipefail
base=${1:?usage: bench/relay.sh BASE_COMMIT [RUNS]}
runs=${2:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git -C "$here" archive "$base" | tar -x -C "$work"
head=$(git -C "$here" rev-parse --short HEAD)
bench() { # bench DIR LABEL
	(cd "$1" && go test -run '^$' -bench 'BenchmarkNarinfo$|BenchmarkNAR$|BenchmarkUpstreamAmplification' \
		-benchtime "${BENCHTIME:-2s}" -count 1 ./substituter) | grep -E '^Benchmark' | sed "s/^/$2 /"
}
for i in $(seq "$runs"); do
	bench "$work" "base:$base"
	bench "$here" "head:$head"
done
