#!/usr/bin/env bash
# Runs the fault campaign (e2e TestFaultCampaign) for longer than CI does
# and prints its figures as JSON. Usage: scripts/fault-campaign.sh [DURATION]
# (default 10m). Needs what .ci/run installs (nix-bin, busybox-static) and
# root for the disk-full faults (tmpfs mounts).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10m}
out=$(mktemp /tmp/vouch-campaign-XXXXXX.json)
echo "fault campaign: $duration of faults; figures in $out" >&2
(cd e2e && VOUCH_CAMPAIGN="$duration" VOUCH_CAMPAIGN_OUT="$out" \
	go test -count=1 -timeout 0 -run '^TestFaultCampaign$' -v . >&2) || status=$?
cat "$out"
exit "${status:-0}"
