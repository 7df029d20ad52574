#!/usr/bin/env bash
# Compares vouch's substituter with nginx serving the same binary cache
# statically, on this machine, in the same run:
#   - narinfo requests/s on 1 and 64 connections (vouch checks the verdict
#     and signs on every request; nginx sends a file), with p99 latency;
#   - NAR MiB/s on 1 and 16 connections, twice: relayed (vouch fetches the
#     NAR from nginx as its upstream and verifies hash and size while
#     relaying it), and from vouch's NAR cache (verified once when stored,
#     then sent from disk).
# vouch decides every narinfo from a real follower index (three logs of
# 100,001 claims, 2-of-3 policy); see bench/substituter/main.go.
# nginx runs on 127.0.0.1 with a config in a temporary directory.
# Prints a markdown table.
#
# usage: bench/substituter.sh [SECONDS] [NAR_MIB]
set -euo pipefail

secs=${1:-5}
nar_mib=${2:-64}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	[ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

for tool in nginx wrk go; do
	command -v $tool >/dev/null || { echo "$tool is not on PATH (apt-get install -y nginx wrk)" >&2; exit 1; }
done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
nginx_port=$(free_port)
vouch_port=$(free_port)
cached_port=$(free_port)
static_port=$(free_port)

go build -o "$work/subbench" "$here/substituter"
read -r narinfo_path nginx_nar vouch_nar < <("$work/subbench" make "$work/cache" "$nar_mib")

mkdir -p "$work/nginx"
cat > "$work/nginx.conf" <<CONF
worker_processes auto;
pid $work/nginx.pid;
error_log $work/nginx/error.log;
daemon on;
events { worker_connections 1024; }
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	keepalive_requests 1000000;
	client_body_temp_path $work/nginx/body;
	proxy_temp_path $work/nginx/proxy;
	fastcgi_temp_path $work/nginx/fastcgi;
	uwsgi_temp_path $work/nginx/uwsgi;
	scgi_temp_path $work/nginx/scgi;
	types { text/x-nix-narinfo narinfo; application/x-nix-nar nar; }
	server {
		listen 127.0.0.1:$nginx_port;
		root $work/cache;
	}
}
CONF
# nginx workers run as an unprivileged user: let them read the cache.
chmod 755 "$work"
chmod -R a+rX "$work/cache"
nginx -c "$work/nginx.conf" -p "$work/nginx"
"$work/subbench" serve "$work/cache" "127.0.0.1:$vouch_port" "http://127.0.0.1:$nginx_port" 2>/dev/null &
pids+=($!)
"$work/subbench" static "$work/cache$narinfo_path" "127.0.0.1:$static_port" &
pids+=($!)
"$work/subbench" serve "$work/cache" "127.0.0.1:$cached_port" "http://127.0.0.1:$nginx_port" "$work/nar-cache" 2>/dev/null &
pids+=($!)
for port in $vouch_port $cached_port; do
	for _ in $(seq 600); do
		curl -fs "http://127.0.0.1:$port$narinfo_path" >/dev/null && break
		sleep 0.1
	done
done
# The first request through the caching node relays and stores the NAR.
for url in "http://127.0.0.1:$nginx_port$narinfo_path" "http://127.0.0.1:$nginx_port$nginx_nar" \
	"http://127.0.0.1:$vouch_port$narinfo_path" "http://127.0.0.1:$vouch_port$vouch_nar" \
	"http://127.0.0.1:$cached_port$vouch_nar"; do
	curl -fs -o /dev/null "$url" || { echo "GET $url failed; nothing to compare" >&2; exit 1; }
done

# wrk_run CONNS URL: prints "req/s MiB/s p99ms"
wrk_run() {
	local conns=$1 url=$2 threads=$(( $1 < 2 ? 1 : 2 ))
	wrk -t"$threads" -c"$conns" -d"${secs}s" --latency "$url" | tee -a "${WRK_LOG:-/dev/null}" | awk '
		function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
		function mib(v) { if (v ~ /GB$/) return v*1024; if (v ~ /MB$/) return v+0; if (v ~ /KB$/) return v/1024; return v/1048576 }
		/Requests\/sec/ { rps = $2 }
		/Transfer\/sec/ { tps = mib($2) }
		/^ +99%/ { p99 = ms($2) }
		END { printf "%.0f %.1f %.2f\n", rps, tps, p99 }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

echo "| measurement | nginx static | vouch (verified) | ratio | Go net/http, constant bytes (ceiling) |"
echo "|---|---:|---:|---:|---:|"
for c in 1 64; do
	read -r n_rps _ n_p99 < <(wrk_run "$c" "http://127.0.0.1:$nginx_port$narinfo_path")
	read -r v_rps _ v_p99 < <(wrk_run "$c" "http://127.0.0.1:$vouch_port$narinfo_path")
	read -r g_rps _ g_p99 < <(wrk_run "$c" "http://127.0.0.1:$static_port$narinfo_path")
	echo "| narinfo req/s, $c conn | $n_rps | $v_rps | $(ratio "$v_rps" "$n_rps") | $g_rps ($(ratio "$g_rps" "$n_rps")) |"
	echo "| narinfo p99 ms, $c conn | $n_p99 | $v_p99 | $(ratio "$v_p99" "$n_p99") | $g_p99 |"
done
for _ in $(seq 100); do
	[ -n "$(ls "$work/nar-cache"/*.nar 2>/dev/null)" ] && break
	sleep 0.1
done
[ -n "$(ls "$work/nar-cache"/*.nar 2>/dev/null)" ] || { echo "the caching node did not store the NAR" >&2; exit 1; }
for c in 1 16; do
	read -r _ n_mib _ < <(wrk_run "$c" "http://127.0.0.1:$nginx_port$nginx_nar")
	read -r _ v_mib _ < <(wrk_run "$c" "http://127.0.0.1:$vouch_port$vouch_nar")
	read -r _ h_mib _ < <(wrk_run "$c" "http://127.0.0.1:$cached_port$vouch_nar")
	echo "| NAR MiB/s ($nar_mib MiB), $c conn, relayed and verified | $n_mib | $v_mib | $(ratio "$v_mib" "$n_mib") | |"
	echo "| NAR MiB/s ($nar_mib MiB), $c conn, from the NAR cache | $n_mib | $h_mib | $(ratio "$h_mib" "$n_mib") | |"
done
echo
echo "$(nproc) CPUs, $(go env GOVERSION), $(nginx -v 2>&1 | sed 's/.*: //'), ${secs}s per run; wrk and both servers share the machine."
