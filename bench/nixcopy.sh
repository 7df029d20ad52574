#!/usr/bin/env bash
# Times stock Nix copying a closure of PATHS small outputs (and a root) into
# a fresh store: straight from a signed xz binary cache served by a Go file
# server on loopback, and through vouch with that cache as its upstream
# (cold, verified before sending; cold, streamed; warm, from its NAR
# cache), alternating the four in each of ROUNDS rounds. Needs nix-build
# and busybox-static, like the substituter's tests. VOUCH_BENCH_COMPRESSION
# (default xz) sets the upstream cache's compression. Prints a markdown table.
#
# usage: bench/nixcopy.sh [PATHS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
VOUCH_BENCH_NIXCOPY=1 VOUCH_BENCH_PATHS=${1:-300} VOUCH_BENCH_ROUNDS=${2:-3} \
	go test ./substituter -count=1 -v -timeout 60m -run '^TestNixCopyBenchmark$' |
	grep -E '^(\||rounds:)'
