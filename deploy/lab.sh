#!/bin/sh
# The Canopy lab on this machine: one etcd, canopy-managerd, three
# canopy-agent hosts (lab-h1..lab-h3), each in its own network namespace with
# an address on a lab bridge, a shared datastore image all mount, and two VMs
# running the test guest (lab-vm1 on lab-h1, lab-vm2 on lab-h2), driven with
# the canopy CLI. The manager's agent bus listens on the bridge; its API and
# etcd stay on 127.0.0.1.
#
# Secure by default: the lab runs `canopy cluster init` (a new cluster CA in
# $LAB_DIR/manager/pki, its fingerprint printed once), the manager's API
# serves TLS only, etcd serves TLS and demands a client certificate (both
# issued from the cluster CA: `canopy cluster issue-cert`), and the CLI of
# the user running the lab trusts the new CA for the lab's server
# (~/.config/canopy/trusted/, replacing a pin of an earlier lab there).
#
#   deploy/lab.sh start    stop any old lab, start a new one (needs root
#                          for /dev/kvm and the VMMs), create and start two
#                          VMs
#   deploy/lab.sh stop     stop everything the lab started: VMMs, agents,
#                          manager, etcd; nothing of it is left running
#   deploy/lab.sh status   what runs, `canopy host list` and `vm list`
#
# Settings (environment; the defaults need no config at all):
#   LAB_DIR        state, logs and pid files     (/var/tmp/canopy-lab)
#   CANOPY_BUILD   build directory with bin/ and guest/   (./build)
#   LAB_API_PORT   canopy-managerd's API on 127.0.0.1     (7443, the CLI's
#                  default, so `canopy` needs no --server)
#   LAB_BUS_PORT   the agent bus on 127.0.0.1             (7444)
#   LAB_ETCD_PORT, LAB_ETCD_PEER_PORT   etcd on 127.0.0.1 (23790, 23800)
#   LAB_VM_MEMORY  MiB of each lab VM                     (64)
#   LAB_SUBNET     the bridge's /24: the bridge is .1, lab-hN is .1N
#                  (10.77.0)
#   LAB_NETNS      1: hosts in network namespaces; 0: plain processes on
#                  loopback (1; names carry the API port: bridge cnyb7443,
#                  namespaces cny7443-lab-h1, ...)
set -eu

LAB_DIR=${LAB_DIR:-/var/tmp/canopy-lab}
REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${CANOPY_BUILD:-$REPO/build}
API_PORT=${LAB_API_PORT:-7443}
BUS_PORT=${LAB_BUS_PORT:-7444}
ETCD_PORT=${LAB_ETCD_PORT:-23790}
ETCD_PEER_PORT=${LAB_ETCD_PEER_PORT:-23800}
VM_MEMORY=${LAB_VM_MEMORY:-64}
SUBNET=${LAB_SUBNET:-10.77.0}
NETNS=${LAB_NETNS:-1}
BRIDGE=cnyb$API_PORT
HOSTS="lab-h1 lab-h2 lab-h3"
VMS="lab-vm1:lab-h1 lab-vm2:lab-h2"
SERVER=127.0.0.1:$API_PORT
PIDS=$LAB_DIR/pids
LOGS=$LAB_DIR/logs
NETFILE=$LAB_DIR/net

say() { printf 'lab: %s\n' "$*"; }
fail() {
	printf 'lab: %s\n' "$*" >&2
	exit 1
}

STATE=$LAB_DIR/manager
PKI=$STATE/pki

canopy() { CANOPY_CA=$PKI/ca.crt "$BUILD/bin/canopy" --server "$SERVER" "$@"; }

# The cluster CA, the etcd server and client certificates; sets FPR.
pki_init() {
	FPR=$("$BUILD/bin/canopy" -o json cluster init --state-dir "$STATE" \
		--name canopy-lab | sed -n 's/.*"ca_fingerprint_sha256": "\([0-9A-F:]*\)".*/\1/p')
	[ -n "$FPR" ] || fail "canopy cluster init failed"
	"$BUILD/bin/canopy" cluster issue-cert etcd --usage server \
		--state-dir "$STATE" >/dev/null || fail "cannot issue etcd's certificate"
	"$BUILD/bin/canopy" cluster issue-cert etcd-client --usage client \
		--state-dir "$STATE" >/dev/null || fail "cannot issue the etcd client certificate"
	# The first user, admin (Administrator on the cluster): a random
	# password, kept 0600 in the state directory and printed once.
	(umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=\n' \
		>"$STATE/admin-password") || fail "cannot write the admin password"
}

# Pin the lab's CA for the user's CLI (a pin of an earlier lab on the same
# server is replaced: this lab just made a new CA for that address).
trust_lab() {
	cfg=${XDG_CONFIG_HOME:-${HOME:-/nonexistent}/.config}
	pin=$cfg/canopy/trusted/127.0.0.1_$API_PORT.pem
	if [ -f "$pin" ] && ! cmp -s "$pin" "$PKI/ca.crt"; then
		say "replacing the CA pinned for $SERVER in $pin (an earlier lab's)"
		rm -f "$pin"
	fi
	"$BUILD/bin/canopy" --server "$SERVER" --trust-fingerprint "$FPR" \
		cluster status >/dev/null 2>&1 ||
		say "could not pin the CA for your CLI; use CANOPY_CA=$PKI/ca.crt"
}

# The lab's own programs whose command line names the lab directory (VMMs
# are started by the agents in their own sessions, so they are found this
# way; nothing else is ever matched).
lab_pids() {
	for d in /proc/[0-9]*; do
		pid=${d#/proc/}
		case $({ cat "$d/comm"; } 2>/dev/null) in
		etcd | canopy-vmm | canopy-agent | canopy-manage*) ;;
		*) continue ;;
		esac
		if { tr '\0' ' ' <"$d/cmdline"; } 2>/dev/null | grep -qF -- "$LAB_DIR/"; then
			echo "$pid"
		fi
	done
}

# Running and not a zombie (a daemon whose parent, the start shell, is gone
# may wait a moment to be reaped).
alive() {
	kill -0 "$1" 2>/dev/null || return 1
	st=$({ sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status"; } 2>/dev/null)
	[ -n "$st" ] && [ "$st" != Z ]
}

# Send TERM to pids, wait up to 5 s, then KILL what is left.
stop_pids() {
	[ -n "$*" ] || return 0
	kill -TERM "$@" 2>/dev/null || true
	n=0
	while [ $n -lt 50 ]; do
		left=""
		for p in "$@"; do alive "$p" && left="$left $p"; done
		[ -z "$left" ] && return 0
		sleep 0.1
		n=$((n + 1))
	done
	# shellcheck disable=SC2086
	kill -KILL $left 2>/dev/null || true
}

pidfile_pid() {
	if [ -f "$PIDS/$1.pid" ]; then cat "$PIDS/$1.pid"; fi
}

netns_of() { echo "cny$API_PORT-$1"; }

# The bridge, and per host a namespace whose eth0 is a veth on the bridge.
# What was made is written to NETFILE first, so stop can undo a half-made
# network too.
net_up() {
	i=0
	# Leftovers of a lab on this port whose directory is gone: the names
	# are this port's, so they can only be ours.
	ip link del "$BRIDGE" 2>/dev/null || true
	for h in $HOSTS; do
		i=$((i + 1))
		ip link del "cnyv$API_PORT$i" 2>/dev/null || true
		ip netns del "$(netns_of "$h")" 2>/dev/null || true
	done
	i=0
	echo "bridge $BRIDGE" >>"$NETFILE"
	ip link add "$BRIDGE" type bridge || fail "cannot create bridge $BRIDGE"
	ip addr add "$SUBNET.1/24" dev "$BRIDGE"
	ip link set "$BRIDGE" up
	for h in $HOSTS; do
		i=$((i + 1))
		ns=$(netns_of "$h")
		echo "netns $ns" >>"$NETFILE"
		ip netns add "$ns" || fail "cannot create network namespace $ns"
		echo "veth cnyv$API_PORT$i" >>"$NETFILE"
		ip link add "cnyv$API_PORT$i" type veth peer name eth0 netns "$ns"
		ip link set "cnyv$API_PORT$i" master "$BRIDGE" up
		ip -n "$ns" addr add "$SUBNET.1$i/24" dev eth0
		ip -n "$ns" link set eth0 up
		ip -n "$ns" link set lo up
	done
}

# Undo what NETFILE lists: the veths first (deleting a namespace takes its
# veth only once the kernel gets round to it, after `ip netns del` returns).
net_down() {
	[ -f "$NETFILE" ] || return 0
	while read -r kind name; do
		[ "$kind" = veth ] && { ip link del "$name" 2>/dev/null || true; }
	done <"$NETFILE"
	while read -r kind name; do
		case $kind in
		netns) ip netns del "$name" 2>/dev/null || true ;;
		bridge) ip link del "$name" 2>/dev/null || true ;;
		esac
	done <"$NETFILE"
	rm -f "$NETFILE"
}

do_stop() {
	[ -d "$LAB_DIR" ] || {
		say "no lab in $LAB_DIR"
		return 0
	}
	[ -f "$LAB_DIR/.canopy-lab" ] ||
		fail "$LAB_DIR exists but is not a lab directory: not touching it"
	# The VMMs first (the agents leave them running on purpose), then the
	# agents, the manager and etcd, each by the pid recorded at start.
	vmms=""
	for p in $(lab_pids); do
		case $({ cat "/proc/$p/comm"; } 2>/dev/null) in
		canopy-vmm) vmms="$vmms $p" ;;
		esac
	done
	# shellcheck disable=SC2086
	stop_pids $vmms
	for name in $HOSTS managerd etcd; do
		# shellcheck disable=SC2046
		stop_pids $(pidfile_pid "$name")
		rm -f "$PIDS/$name.pid"
	done
	# Anything else that still names the lab directory.
	# shellcheck disable=SC2046
	stop_pids $(lab_pids)
	left=$(lab_pids)
	[ -z "$left" ] || fail "processes still running after stop: $left"
	net_down
	rm -rf "$LAB_DIR"
	say "stopped; nothing of the lab is running, its network is gone and $LAB_DIR is removed"
}

# Start a daemon in its own session with its output in LOGS/name.log.
spawn() {
	name=$1
	shift
	setsid "$@" </dev/null >>"$LOGS/$name.log" 2>&1 &
	echo $! >"$PIDS/$name.pid"
}

wait_for() { # what, seconds, command...
	what=$1 secs=$2
	shift 2
	n=0
	while ! "$@" >/dev/null 2>&1; do
		n=$((n + 1))
		[ $n -le $((secs * 10)) ] || fail "$what did not come up in ${secs}s (logs: $LOGS)"
		sleep 0.1
	done
}

connected_hosts() {
	canopy -o json host list 2>/dev/null | grep -c '"HOST_STATE_CONNECTED"' || true
}

all_connected() { [ "$(connected_hosts)" -ge 3 ]; }

need() {
	[ -x "$1" ] || fail "$1 missing: run 'make' first (or set CANOPY_BUILD)"
}

do_start() {
	[ "$(id -u)" -eq 0 ] || fail "the lab runs VMs: run it as root"
	[ -r /dev/kvm ] || fail "/dev/kvm is missing: the lab needs KVM"
	for b in canopy canopy-managerd canopy-agent canopy-vmm canopy-ds; do
		need "$BUILD/bin/$b"
	done
	need "$BUILD/guest/canopy-testguest.elf"
	command -v etcd >/dev/null || fail "etcd missing (Debian package etcd-server)"
	do_stop >/dev/null
	mkdir -p "$PIDS" "$LOGS"
	touch "$LAB_DIR/.canopy-lab"

	pki_init
	say "cluster CA created in $PKI; its SHA-256 fingerprint:"
	say "  $FPR"
	spawn etcd etcd --name lab --data-dir "$LAB_DIR/etcd" \
		--listen-client-urls "https://127.0.0.1:$ETCD_PORT" \
		--advertise-client-urls "https://127.0.0.1:$ETCD_PORT" \
		--cert-file "$PKI/etcd.crt" --key-file "$PKI/etcd.key" \
		--client-cert-auth --trusted-ca-file "$PKI/ca.crt" \
		--listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-cluster "lab=http://127.0.0.1:$ETCD_PEER_PORT"
	wait_for etcd 20 etcdctl --endpoints "https://127.0.0.1:$ETCD_PORT" \
		--cacert "$PKI/ca.crt" --cert "$PKI/etcd-client.crt" \
		--key "$PKI/etcd-client.key" endpoint health
	say "etcd on 127.0.0.1:$ETCD_PORT (TLS, client certificates required)"

	# The shared datastore both hosts mount (a sparse file).
	"$BUILD/bin/canopy-ds" format "$LAB_DIR/lab-ds.img" --name lab-ds \
		--size 256M >/dev/null || fail "cannot format the lab datastore"
	say "datastore lab-ds in $LAB_DIR/lab-ds.img"

	bus_ip=127.0.0.1
	if [ "$NETNS" = 1 ]; then
		net_up
		bus_ip=$SUBNET.1
		say "bridge $BRIDGE $SUBNET.1/24, hosts in namespaces $(netns_of lab-h1), ..."
	fi
	spawn managerd "$BUILD/bin/canopy-managerd" \
		--etcd "127.0.0.1:$ETCD_PORT" --listen "$SERVER" \
		--bus "tcp://$bus_ip:$BUS_PORT" --id lab-m1 \
		--state-dir "$STATE" --etcd-cacert "$PKI/ca.crt" \
		--etcd-cert "$PKI/etcd-client.crt" --etcd-key "$PKI/etcd-client.key" \
		--admin-password-file "$STATE/admin-password" \
		--log-file "$LOGS/managerd.log"
	# Logging in works once the manager leads (and made admin); the token
	# is kept for your CLI in ~/.config/canopy/tokens/.
	wait_for canopy-managerd 20 canopy login --user admin \
		--password-file "$STATE/admin-password"
	trust_lab
	say "canopy-managerd on $SERVER (API over TLS; bus tcp://$bus_ip:$BUS_PORT, CURVE)"

	i=0
	for h in $HOSTS; do
		i=$((i + 1))
		mkdir -p "$LAB_DIR/$h"
		# Each host joins with a one-time token: its agent makes its own
		# CURVE key and gets a certificate into its --pki-dir.
		token=$(canopy -o json host add "$h" --ttl 600 |
			sed -n 's/.*"join_token": "\([^"]*\)".*/\1/p')
		[ -n "$token" ] || fail "canopy host add $h failed (logs: $LOGS)"
		set -- "$BUILD/bin/canopy-agent" \
			--manager "tcp://$bus_ip:$BUS_PORT" --host-id "$h" \
			--run-dir "$LAB_DIR/$h" --vmm "$BUILD/bin/canopy-vmm" \
			--datastore "lab-ds=$LAB_DIR/lab-ds.img" \
			--pki-dir "$LAB_DIR/$h/pki" --join "$token"
		if [ "$NETNS" = 1 ]; then
			spawn "$h" ip netns exec "$(netns_of "$h")" "$@" \
				--address "$SUBNET.1$i"
		else
			spawn "$h" "$@" --address 127.0.0.1
		fi
	done
	wait_for "three connected hosts" 30 all_connected

	for vh in $VMS; do
		vm=${vh%%:*}
		canopy vm create "$vm" --memory "$VM_MEMORY" --cpus 1 \
			--kernel "$BUILD/guest/canopy-testguest.elf" \
			--cmdline "count=1000" --host "${vh#*:}" >/dev/null ||
			fail "vm create $vm failed (logs: $LOGS)"
		canopy vm start "$vm" >/dev/null ||
			fail "vm start $vm failed (logs: $LOGS)"
	done
	echo
	canopy host list
	echo
	canopy vm list
	console=""
	for vh in $VMS; do
		vm=${vh%%:*}
		host=$(canopy -o json vm show "$vm" | sed -n 's/^  "host": "\(.*\)",$/\1/p')
		c=$LAB_DIR/$host/vms/$vm/console.log
		[ -n "$host" ] && [ -f "$c" ] || c="(not found under $LAB_DIR/lab-h*/vms/)"
		console="$console
  console:   $c"
	done
	if [ "$API_PORT" = 7443 ]; then
		server_note="(the CLI's default server, $SERVER, is this lab's manager)"
	else
		server_note="(add --server $SERVER, or export CANOPY_SERVER=$SERVER)"
	fi
	cat <<EOF

The lab is up (state and logs in $LAB_DIR).$console
  log in:    user admin, password $(cat "$STATE/admin-password")
             (shown this once; also in $STATE/admin-password, mode 0600;
             your CLI is logged in already: 'canopy login' when the
             token expires, 'canopy user add' for more users)
             (tail -f one: the guest prints 'count N' every second)
  use it:    canopy cluster status; canopy host list; canopy vm show lab-vm1
             canopy vm stop lab-vm1; canopy vm start lab-vm1; canopy event list
             canopy --help   (canopy is $BUILD/bin/canopy; docs/cli.md)
             $server_note
  stop it:   make lab-down   (or deploy/lab.sh stop): processes, namespaces,
             bridge and $LAB_DIR are removed
EOF
}

do_status() {
	for name in etcd managerd $HOSTS; do
		p=$(pidfile_pid "$name")
		if [ -n "$p" ] && alive "$p"; then
			say "$name running (pid $p)"
		else
			say "$name not running"
		fi
	done
	canopy host list || true
	canopy vm list || true
}

case ${1:-} in
start) do_start ;;
stop) do_stop ;;
status) do_status ;;
*)
	echo "usage: deploy/lab.sh start|stop|status" >&2
	exit 2
	;;
esac
