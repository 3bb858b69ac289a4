#!/usr/bin/env bash
# A real single-machine Slurm (slurmctld + slurmd + slurmdbd + MariaDB + munged)
# on localhost, for tests and CI. Everything a cluster writes lives under DIR:
# config, state, spool, logs, pid files, the MariaDB data dir and socket, the
# munge key and socket. TCP ports for the three Slurm daemons are picked free at
# start and written into the config; MariaDB listens on its unix socket only.
#
#   scripts/slurm-cluster.sh install      # Debian packages (idempotent, quiet)
#   scripts/slurm-cluster.sh start DIR    # start (or restart) the cluster in DIR
#   scripts/slurm-cluster.sh stop DIR     # stop every daemon started for DIR
#   scripts/slurm-cluster.sh status DIR   # which daemons of DIR are alive
#
# After start:  . DIR/env.sh   (exports SLURM_CONF, and a few helpers' paths)
#
# The node is `hostname -s` at 127.0.0.1 with the machine's CPUs and memory
# (as `slurmd -C` sees them) and 4 count-only GPUs (gres/gpu, no device files).
# One partition `main` (default). Accounting through slurmdbd with limits and
# QOS enforced; preemption by QOS, mode REQUEUE. Cluster `medtrain` (or
# $SLURM_CLUSTER_NAME) holds an account `medtrain` with root as a user (root's
# default account).
#
# Environment knobs (all optional):
#   SLURM_CLUSTER_NAME   cluster name (lowercase)              [medtrain]
#   SLURM_CLUSTER_GPUS   count of gres/gpu on the node          [4]
#   SLURM_CLUSTER_CPUS   CPUs to declare instead of the real    [real count]
#                        ones (uses SlurmdParameters=config_overrides)
#   SLURM_CLUSTER_TIMEOUT  seconds to wait for each daemon      [60]
#
# Must run as root (the daemons run as root: SlurmUser=root).
set -euo pipefail

PROG=${0##*/}
die() { echo "$PROG: error: $*" >&2; exit 1; }
log() { [[ -n ${SLURM_CLUSTER_QUIET:-} ]] || echo "$PROG: $*" >&2; }

PKGS=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server-core mariadb-client-core)

need_root() { [[ $(id -u) -eq 0 ]] || die "must run as root (Slurm and munge daemons run as root here)"; }

# ---------------------------------------------------------------- install
cmd_install() {
	need_root
	local missing=() p
	for p in "${PKGS[@]}"; do
		dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
	done
	[[ ${#missing[@]} -eq 0 ]] && return 0
	command -v apt-get >/dev/null || die "apt-get not found; need a Debian/Ubuntu machine"
	log "installing ${missing[*]}"
	# Keep the packages' own system services (munge, slurmctld, slurmd, slurmdbd)
	# from starting during the install: they would take the default ports and
	# socket. A policy-rc.d that denies is put in place only if none exists.
	local policy=/usr/sbin/policy-rc.d made_policy=
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		made_policy=1
	fi
	local rc=0 out
	out=$(mktemp)
	export DEBIAN_FRONTEND=noninteractive
	local aptopts=(-y -qq -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold --no-install-recommends)
	if ! apt-get install "${aptopts[@]}" "${missing[@]}" >"$out" 2>&1; then
		# Package lists may be missing (fresh container) or stale.
		apt-get update -qq -o DPkg::Lock::Timeout=600 >>"$out" 2>&1 || true
		apt-get install "${aptopts[@]}" "${missing[@]}" >>"$out" 2>&1 || rc=$?
	fi
	[[ -n $made_policy ]] && rm -f "$policy"
	if [[ $rc -ne 0 ]]; then
		cat "$out" >&2
		rm -f "$out"
		die "apt-get install ${missing[*]} failed (rc $rc)"
	fi
	rm -f "$out"
	# The packages' services must not be running (systemd machines start them
	# regardless of policy-rc.d); they are not used by this script.
	if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
		systemctl disable --now slurmctld slurmd slurmdbd >/dev/null 2>&1 || true
	fi
}

# ---------------------------------------------------------------- helpers
check_installed() {
	local b
	for b in munged mungekey slurmctld slurmd slurmdbd sinfo sacctmgr mariadbd mariadb-install-db; do
		command -v "$b" >/dev/null 2>&1 || [[ -x /usr/sbin/$b ]] ||
			die "$b not found; run '$0 install' first"
	done
}

# Listening/bound TCP ports (IPv4 and IPv6) as decimal, one per line.
used_ports() {
	local f sl local_addr rest
	for f in /proc/net/tcp /proc/net/tcp6; do
		[[ -r $f ]] || continue
		while read -r sl local_addr rest; do
			[[ $sl == sl ]] && continue
			echo $((16#${local_addr##*:}))
		done <"$f"
	done
}

port_free() { ! used_ports | grep -qx "$1"; }

# pick_port EXCLUDE... -> a free port in 20000-59999 not in EXCLUDE
pick_port() {
	local used p i
	used=$(used_ports | sort -u)
	for ((i = 0; i < 500; i++)); do
		p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
		grep -qx "$p" <<<"$used" && continue
		[[ " $* " == *" $p "* ]] && continue
		echo "$p"
		return 0
	done
	die "no free TCP port found"
}

pid_alive() { [[ -f $1 ]] && kill -0 "$(cat "$1" 2>/dev/null)" 2>/dev/null; }

# wait_for SECONDS DESCRIPTION LOGFILE PIDFILE -- COMMAND...
# Polls COMMAND until it succeeds; fails at once if PIDFILE's process died
# (PIDFILE may be "-"), else after SECONDS.
wait_for() {
	local secs=$1 what=$2 logf=$3 pidf=$4
	shift 5
	local deadline=$((SECONDS + secs)) out why=
	while ! out=$("$@" 2>&1); do
		if [[ $pidf != - ]] && ! pid_alive "$pidf"; then
			sleep 0.5
			pid_alive "$pidf" || why="its process exited"
		fi
		((SECONDS >= deadline)) && why="timed out after ${secs}s"
		if [[ -n $why ]]; then
			{
				echo "$PROG: $what not up ($why)."
				echo "  last output of '$*':"
				sed 's/^/    /' <<<"$out" | tail -n 10
				echo "  last lines of $logf:"
				tail -n 30 "$logf" 2>/dev/null | sed 's/^/    /'
			} >&2
			exit 1
		fi
		sleep 0.2
	done
}

resolve_dir() {
	[[ -n ${1:-} ]] || die "usage: $PROG $CMD DIR"
	mkdir -p "$1"
	D=$(cd "$1" && pwd -P)
}

# ---------------------------------------------------------------- start
write_configs() {
	local host=$1 cpus_line=$2 ctld_port=$3 slurmd_port=$4 dbd_port=$5
	local name=${SLURM_CLUSTER_NAME:-medtrain} gpus=${SLURM_CLUSTER_GPUS:-4}
	local overrides=
	[[ -n ${SLURM_CLUSTER_CPUS:-} ]] && overrides="SlurmdParameters=config_overrides"

	cat >"$D/etc/slurm.conf.new" <<EOF
# Generated by $PROG for $D -- rewritten at every start.
ClusterName=$name
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$D/munge/munge.sock,cred_expire=10
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool/slurmd.%n
SlurmctldParameters=preempt_send_user_signal
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true

ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
$overrides

AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$dbd_port
AccountingStorageEnforce=associations,limits,qos
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none

PriorityType=priority/multifactor
PriorityWeightQOS=10000
PriorityWeightAge=100
PriorityDecayHalfLife=0
PriorityUsageResetPeriod=NONE
PriorityCalcPeriod=1

PreemptType=preempt/qos
PreemptMode=REQUEUE
JobRequeue=1

SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=1,bf_resolution=60,sched_min_interval=100000,max_rpc_cnt=0
ReturnToService=2
MessageTimeout=10
TCPTimeout=5
SlurmctldTimeout=30
SlurmdTimeout=30
BatchStartTimeout=10
InactiveLimit=0
KillWait=5
MinJobAge=300
Waittime=0
UnkillableStepTimeout=60

NodeName=$host NodeAddr=127.0.0.1 NodeHostname=$host $cpus_line Gres=gpu:$gpus State=UNKNOWN
PartitionName=main Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
	mv "$D/etc/slurm.conf.new" "$D/etc/slurm.conf"

	echo "NodeName=$host Name=gpu Count=$gpus" >"$D/etc/gres.conf"

	(
		umask 077
		cat >"$D/etc/slurmdbd.conf.new" <<EOF
# Generated by $PROG for $D -- rewritten at every start.
AuthType=auth/munge
AuthInfo=socket=$D/munge/munge.sock
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$dbd_port
SlurmUser=root
DebugLevel=info
LogFile=$D/log/slurmdbd.log
PidFile=$D/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
EOF
		mv "$D/etc/slurmdbd.conf.new" "$D/etc/slurmdbd.conf"
	)
}

start_munge() {
	local m=$D/munge
	mkdir -p "$m"
	chmod 755 "$m"
	if [[ ! -s $m/munge.key ]]; then
		(umask 077 && dd if=/dev/urandom of="$m/munge.key" bs=1024 count=1 status=none)
	fi
	chmod 600 "$m/munge.key"
	if pid_alive "$m/munged.pid" && munge -n --socket="$m/munge.sock" >/dev/null 2>&1; then
		return 0
	fi
	rm -f "$m/munge.sock" "$m/munge.sock.lock" "$m/munged.pid"
	munged --force --socket="$m/munge.sock" --key-file="$m/munge.key" \
		--pid-file="$m/munged.pid" --log-file="$m/munged.log" \
		--seed-file="$m/munged.seed" </dev/null >>"$m/munged.log" 2>&1 ||
		{ tail -n 20 "$m/munged.log" >&2; die "munged failed to start"; }
	wait_for "$TMO" munged "$m/munged.log" "$m/munged.pid" -- munge -n --socket="$m/munge.sock"
}

start_mariadb() {
	local db=$D/db
	mkdir -p "$db"
	chmod 700 "$db"
	if [[ ! -d $db/data/mysql ]]; then
		rm -rf "$db/data"
		mariadb-install-db --no-defaults --datadir="$db/data" --user=root \
			--auth-root-authentication-method=socket --skip-test-db \
			>"$db/install.log" 2>&1 ||
			{ tail -n 30 "$db/install.log" >&2; die "mariadb-install-db failed (see $db/install.log)"; }
	fi
	if pid_alive "$db/mariadb.pid" && [[ -S $db/mysqld.sock ]]; then
		return 0
	fi
	rm -f "$db/mysqld.sock" "$db/mariadb.pid"
	# Unix socket only; small buffers; no binlog; durability is not needed.
	setsid mariadbd --no-defaults --user=root --datadir="$db/data" \
		--socket="$db/mysqld.sock" --pid-file="$db/mariadb.pid" \
		--log-error="$db/mariadb.log" --skip-networking --skip-log-bin \
		--innodb-buffer-pool-size=64M --innodb-log-file-size=48M \
		--innodb-lock-wait-timeout=900 --innodb-flush-log-at-trx-commit=0 \
		--max-allowed-packet=16M --skip-name-resolve \
		</dev/null >>"$db/mariadb.log" 2>&1 &
	wait_for "$TMO" mariadbd "$db/mariadb.log" - -- \
		mariadb --no-defaults --socket="$db/mysqld.sock" -u root -e 'select 1'
}

start_slurmdbd() {
	if pid_alive "$D/run/slurmdbd.pid"; then return 0; fi
	rm -f "$D/run/slurmdbd.pid"
	# slurmdbd's mysql plugin connects to "localhost" without a socket path;
	# libmariadb then uses $MYSQL_UNIX_PORT. slurmdbd reads slurmdbd.conf from
	# the directory of $SLURM_CONF.
	MYSQL_UNIX_PORT=$D/db/mysqld.sock SLURM_CONF=$D/etc/slurm.conf \
		slurmdbd </dev/null >>"$D/log/slurmdbd.out" 2>&1 ||
		{ tail -n 30 "$D/log/slurmdbd.log" >&2; die "slurmdbd failed to start"; }
	wait_for "$TMO" slurmdbd "$D/log/slurmdbd.log" "$D/run/slurmdbd.pid" -- sacctmgr -n show cluster
}

setup_accounts() {
	local name=${SLURM_CLUSTER_NAME:-medtrain}
	if [[ -z $(sacctmgr -n -P show cluster "$name" format=cluster) ]]; then
		sacctmgr -i add cluster "$name" >/dev/null
	fi
	if [[ -z $(sacctmgr -n -P show account medtrain format=account) ]]; then
		sacctmgr -i add account medtrain cluster="$name" description=medtrain organization=medtrain >/dev/null
	fi
	if [[ -z $(sacctmgr -n -P show assoc where cluster="$name" account=medtrain user=root format=user) ]]; then
		sacctmgr -i add user root account=medtrain cluster="$name" >/dev/null
	fi
	sacctmgr -i modify user where name=root cluster="$name" set defaultaccount=medtrain >/dev/null 2>&1 || true
}

start_slurmctld() {
	if pid_alive "$D/run/slurmctld.pid"; then
		scontrol reconfigure >/dev/null 2>&1 || true
		return 0
	fi
	rm -f "$D/run/slurmctld.pid"
	slurmctld </dev/null >>"$D/log/slurmctld.out" 2>&1 ||
		{ tail -n 30 "$D/log/slurmctld.log" >&2; die "slurmctld failed to start"; }
	wait_for "$TMO" slurmctld "$D/log/slurmctld.log" "$D/run/slurmctld.pid" -- scontrol ping
}

start_slurmd() {
	local host=$1
	if pid_alive "$D/run/slurmd.pid"; then return 0; fi
	rm -f "$D/run/slurmd.pid"
	slurmd -N "$host" </dev/null >>"$D/log/slurmd.out" 2>&1 ||
		{ tail -n 30 "$D/log/slurmd.log" >&2; die "slurmd failed to start"; }
}

node_idle() {
	local st
	st=$(sinfo -h -N -n "$1" -o %t 2>/dev/null) || return 1
	[[ $st == idle || $st == mix || $st == alloc ]]
}

cmd_start() {
	need_root
	check_installed
	resolve_dir "${1:-}"
	local t0=$SECONDS
	TMO=${SLURM_CLUSTER_TIMEOUT:-60}
	# Unix sockets are limited to 107 bytes.
	((${#D} <= 80)) || die "DIR path too long for unix sockets (${#D} > 80 chars): $D"
	mkdir -p "$D/etc" "$D/state" "$D/spool" "$D/log" "$D/run"
	chmod 755 "$D"

	local host
	host=$(hostname -s 2>/dev/null || uname -n)
	host=${host%%.*}

	local cpus_line
	if [[ -n ${SLURM_CLUSTER_CPUS:-} ]]; then
		cpus_line="CPUs=$SLURM_CLUSTER_CPUS"
	else
		cpus_line=$(slurmd -C 2>/dev/null | head -n1 | sed -e 's/^NodeName=[^ ]* //')
		[[ $cpus_line == *CPUs=* ]] || die "slurmd -C gave no hardware description"
	fi
	local mem
	mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$cpus_line")
	if [[ -z $mem ]]; then
		mem=$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)
		cpus_line="$cpus_line RealMemory=$mem"
	fi

	# Ports: keep the previous ones if their daemons still run or they are free.
	local ctld_port='' slurmd_port='' dbd_port=''
	if [[ -f $D/ports ]]; then
		# shellcheck disable=SC1091
		. "$D/ports"
		pid_alive "$D/run/slurmctld.pid" || port_free "$ctld_port" || ctld_port=''
		pid_alive "$D/run/slurmd.pid" || port_free "$slurmd_port" || slurmd_port=''
		pid_alive "$D/run/slurmdbd.pid" || port_free "$dbd_port" || dbd_port=''
	fi
	[[ -n $ctld_port ]] || ctld_port=$(pick_port "$slurmd_port" "$dbd_port")
	[[ -n $slurmd_port ]] || slurmd_port=$(pick_port "$ctld_port" "$dbd_port")
	[[ -n $dbd_port ]] || dbd_port=$(pick_port "$ctld_port" "$slurmd_port")
	printf 'ctld_port=%s\nslurmd_port=%s\ndbd_port=%s\n' "$ctld_port" "$slurmd_port" "$dbd_port" >"$D/ports"

	write_configs "$host" "$cpus_line" "$ctld_port" "$slurmd_port" "$dbd_port"
	export SLURM_CONF=$D/etc/slurm.conf

	cat >"$D/env.sh" <<EOF
export SLURM_CONF=$D/etc/slurm.conf
export SLURM_CLUSTER_DIR=$D
export SLURM_CLUSTER_NODE=$host
export SLURM_CLUSTER_MUNGE_SOCKET=$D/munge/munge.sock
export SLURM_CLUSTER_MYSQL_SOCKET=$D/db/mysqld.sock
EOF

	start_munge
	log "munged up ($((SECONDS - t0))s)"
	start_mariadb
	log "mariadb up ($((SECONDS - t0))s)"
	start_slurmdbd
	log "slurmdbd up ($((SECONDS - t0))s)"
	setup_accounts
	start_slurmctld
	log "slurmctld up ($((SECONDS - t0))s)"
	start_slurmd "$host"
	wait_for "$TMO" "node $host idle" "$D/log/slurmd.log" "$D/run/slurmd.pid" -- node_idle "$host"
	# A restarted slurmctld may have kept the node DOWN/DRAIN from before.
	log "node $host idle ($((SECONDS - t0))s)"
	cat "$D/env.sh"
}

# ---------------------------------------------------------------- stop
stop_pidfile() {
	local pidf=$1 what=$2 pid i
	[[ -f $pidf ]] || return 0
	pid=$(cat "$pidf" 2>/dev/null || true)
	if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 150; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			log "$what ($pid) did not stop on TERM; killing"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	rm -f "$pidf"
}

# kill_job_trees CONF: SIGKILL every slurmstepd started with SLURM_CONF=CONF
# and all their descendants (no procps needed).
kill_job_trees() {
	local conf=$1 p pid ppid comm line
	local -A children=()
	local roots=()
	for p in /proc/[0-9]*; do
		pid=${p#/proc/}
		line=$(<"$p/stat") 2>/dev/null || continue
		comm=${line#*(}
		comm=${comm%)*}
		read -r _ ppid _ <<<"${line##*) }"
		children[$ppid]+=" $pid"
		if [[ $comm == slurmstepd ]] &&
			tr '\0' '\n' <"$p/environ" 2>/dev/null | grep -qxF "SLURM_CONF=$conf"; then
			roots+=("$pid")
		fi
	done
	[[ ${#roots[@]} -gt 0 ]] || return 0
	local todo=("${roots[@]}") all=()
	while [[ ${#todo[@]} -gt 0 ]]; do
		pid=${todo[0]}
		todo=("${todo[@]:1}")
		all+=("$pid")
		# shellcheck disable=SC2206
		todo+=(${children[$pid]:-})
	done
	kill -KILL "${all[@]}" 2>/dev/null || true
}

cmd_stop() {
	need_root
	[[ -n ${1:-} ]] || die "usage: $PROG stop DIR"
	[[ -d $1 ]] || return 0
	D=$(cd "$1" && pwd -P)
	# Jobs' processes: the slurmstepds of this cluster (found by the SLURM_CONF
	# they inherited from slurmd) and everything below them.
	kill_job_trees "$D/etc/slurm.conf"
	stop_pidfile "$D/run/slurmctld.pid" slurmctld
	stop_pidfile "$D/run/slurmdbd.pid" slurmdbd
	stop_pidfile "$D/db/mariadb.pid" mariadbd
	stop_pidfile "$D/munge/munged.pid" munged
	rm -f "$D/munge/munge.sock" "$D/db/mysqld.sock"
}

cmd_status() {
	[[ -n ${1:-} && -d $1 ]] || die "usage: $PROG status DIR"
	D=$(cd "$1" && pwd -P)
	local f rc=0
	for f in munge/munged.pid db/mariadb.pid run/slurmdbd.pid run/slurmctld.pid run/slurmd.pid; do
		if pid_alive "$D/$f"; then
			echo "$(basename "$f" .pid): running ($(cat "$D/$f"))"
		else
			echo "$(basename "$f" .pid): stopped"
			rc=1
		fi
	done
	return $rc
}

CMD=${1:-}
shift || true
case $CMD in
install) cmd_install "$@" ;;
start) cmd_start "$@" ;;
stop) cmd_stop "$@" ;;
status) cmd_status "$@" ;;
*)
	echo "usage: $PROG install | start DIR | stop DIR | status DIR" >&2
	exit 2
	;;
esac
