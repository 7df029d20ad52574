#!/usr/bin/env bash
# Installs the servers the shared-log tests (buildlog, e2e) start on
# 127.0.0.1: MariaDB from Debian, and versitygw, an S3-compatible server
# built from the Go module proxy into ~/.cache/vouch-test-bin (where
# internal/testservers looks for it; override with VOUCH_TEST_BIN).
# Idempotent: a second run installs nothing.
set -euo pipefail

if ! command -v mariadbd >/dev/null && [ ! -x /usr/sbin/mariadbd ]; then
	sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
	sudo_ apt-get update -q
	sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -q mariadb-server
fi

bin="${VOUCH_TEST_BIN:-$HOME/.cache/vouch-test-bin}"
if [ ! -x "$bin/versitygw" ]; then
	mkdir -p "$bin"
	# About 2.5 minutes and 83 MB.
	GOBIN="$bin" go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
fi
