#!/usr/bin/env bash
# Installs the Debian packages vouch's tests use: Nix 2.8 (client and
# builder), busybox-static (the test world's only tool), Debian's
# docker-registry (an OCI registry without the referrers API), chromium
# (the dashboard tests), nginx and wrk (benchmark baselines), curl, systemd
# and systemd-container (systemd-analyze and systemd-nspawn, for the
# packaging checks). Then it sets up Nix's build users as a real Nix
# installation does (Debian's nix-bin does not; see setup-nix-build-users.sh
# for exactly what that changes) and checks that Nix builds in its sandbox.
set -euo pipefail
cd "$(dirname "$0")"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
pkgs=(nix-bin busybox-static docker-registry chromium nginx-light wrk hyperfine ca-certificates curl systemd systemd-container)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "dependencies present: ${pkgs[*]}"
$SUDO bash setup-nix-build-users.sh
$SUDO bash check-nix-sandbox.sh
