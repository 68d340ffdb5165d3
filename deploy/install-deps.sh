#!/bin/sh
# Install every Debian package Canopy needs to build, test and run.
# Idempotent: when everything is present it only runs one dpkg-query and
# exits; it runs `apt-get update` only when something is missing.
# Works as root without a terminal (DEBIAN_FRONTEND=noninteractive).
set -eu

PKGS="
build-essential pkg-config make gcc clang clang-format
libclang-rt-14-dev
protobuf-c-compiler libprotobuf-c-dev protobuf-compiler
libgrpc-dev libprotobuf-dev
libzmq3-dev libssl-dev libcurl4-openssl-dev
libcmocka-dev
etcd-server etcd-client
python3 python3-pytest python3-grpcio python3-protobuf python3-zmq
qemu-system-x86 busybox-static cpio
iproute2 iputils-ping procps util-linux hyperfine e2fsprogs
"

missing=""
# dpkg-query prints one line per known package; anything not "installed" is missing.
status=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' $PKGS 2>/dev/null || true)
for p in $PKGS; do
	if ! printf '%s\n' "$status" | grep -qx "$p installed"; then
		missing="$missing $p"
	fi
done

[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "install-deps: missing packages:$missing" >&2
	echo "install-deps: run as root (or with sudo) to install them" >&2
	exit 1
fi

echo "install-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "install-deps: done"
