#!/usr/bin/env bash
# Runs every vouch benchmark with its baseline and prints the markdown that
# BENCHMARKS.md is made of. Each section names the command that produced it.
# Takes 15–25 minutes on a 2-core machine.
#
#   bash bench/all.sh > /tmp/bench.md
set -euo pipefail
cd "$(dirname "$0")/.."
section() { printf '\n### %s\n\n`%s`\n\n' "$1" "$2"; }
gobench() { # gobench PKG PATTERN [ENV...]: go test -bench, benchmark lines only
	local pkg=$1 pat=$2; shift 2
	env "$@" go test -run '^$' -bench "$pat" -benchtime "${BENCHTIME:-1x}" -count 1 "$pkg" | grep -E '^Benchmark' || true
}

echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, load before start: $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%d)"

section "Builder log: append throughput and bytes on disk, vs raw tessera" "RUNS=3 bash bench/append.sh 100000; RUNS=3 bash bench/append.sh 1000000"
RUNS=3 bash bench/append.sh 100000
RUNS=3 bash bench/append.sh 1000000 | tail -1

section "Time the post-build hook adds to a build" "bash bench/hook.sh"
bash bench/hook.sh

section "NAR hashing vs nix-hash" "bash nixstore/bench/narhash.sh 512"
bash nixstore/bench/narhash.sh 512

section "Follower: sync + verify + index of a 1,000,000-claim log on loopback" "VOUCH_BENCH_CLAIMS=1000000 go test -run '^\$' -bench BenchmarkSync -benchtime 1x ./follow"
echo '```'
gobench ./follow BenchmarkSync VOUCH_BENCH_CLAIMS=1000000
echo '```'

section "Verdict latency, 5 followed logs of 1,000,000 claims, with and without proofs" "VOUCH_BENCH_CLAIMS=1000000 go test -run '^\$' -bench BenchmarkVerdict -benchtime 20000x ./index"
echo '```'
BENCHTIME=20000x gobench ./index BenchmarkVerdict VOUCH_BENCH_CLAIMS=1000000
echo '```'

section "Witness: one add-checkpoint decision" "go test -run '^\$' -bench AddCheckpoint -benchtime 1s ./witness"
echo '```'
BENCHTIME=1s gobench ./witness AddCheckpoint
echo '```'

section "Substituter vs nginx serving the same files" "bash bench/substituter.sh 5 64"
bash bench/substituter.sh 5 64

section "Dashboard pages with 1,000,000 indexed claims" "go test -run '^\$' -bench . ./dashboard"
echo '```'
BENCHTIME=20x gobench ./dashboard .
echo '```'
