#!/usr/bin/env bash
# Sets up what a multi-user Nix installation sets up and Debian's nix-bin
# package does not: the `nixbld` group and the build users nixbld1..N that
# Nix, run as root, builds as (its default `build-users-group = nixbld`).
# Without them every nix-build as root fails with "the group 'nixbld'
# specified in 'build-users-group' does not exist".
#
# It changes the machine in exactly these ways, and only where something is
# missing (running it again changes nothing):
#   - a system group `nixbld`;
#   - system users nixbld1..nixbld$NIX_BUILD_USERS (default 32, as Nix's own
#     installer), each with primary group nixbld and listed as a member of it
#     (Nix picks build users from the group's member list), home /var/empty,
#     shell nologin, no password, no home directory created.
# It writes no nix.conf: Nix's defaults apply, sandbox = true included. The
# users and group are the ones Debian's nix-setup-systemd package would
# create, so installing that package later finds them and keeps them.
# /nix/var/nix/... is created by Nix itself on first use as root.
#
# To undo: for u in $(getent group nixbld | cut -d: -f4 | tr , ' '); do userdel "$u"; done; groupdel nixbld
set -euo pipefail

group=nixbld
count=${NIX_BUILD_USERS:-32}

if [ "$(id -u)" -ne 0 ]; then
	echo "setup-nix-build-users.sh: must run as root (it adds a group and system users)" >&2
	exit 1
fi
nologin=$(command -v nologin || echo /usr/sbin/nologin)

if ! getent group "$group" >/dev/null; then
	groupadd --system "$group"
	echo "added group $group"
fi
added=0
for i in $(seq 1 "$count"); do
	u=$group$i
	if ! getent passwd "$u" >/dev/null; then
		useradd --system --no-user-group --gid "$group" --groups "$group" \
			--home-dir /var/empty --no-create-home --shell "$nologin" \
			--comment "Nix build user $i" "$u"
		added=$((added + 1))
	elif ! id -nG "$u" | tr ' ' '\n' | grep -qx "$group"; then
		# A user made by hand with only a primary group is invisible to
		# Nix, which reads the group's member list.
		usermod --append --groups "$group" "$u"
		echo "listed $u as a member of $group"
	fi
done
if [ "$added" -gt 0 ]; then echo "added $added build users ($group members)"; fi
echo "nix build users: $(getent group "$group" | cut -d: -f4 | tr ',' '\n' | grep -c .) members of $group"
