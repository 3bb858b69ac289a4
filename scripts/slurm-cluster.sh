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
# (as `slurmd -C` sees them) and 4 GPUs (gres/gpu) that exist for Slurm only:
# Slurm 22.05 drops GPUs declared without File=, so gres.conf points them at
# stand-in device nodes DIR/dev/gpu0..3 (copies of /dev/null); jobs get
# CUDA_VISIBLE_DEVICES / SLURM_JOB_GPUS with the indexes Slurm allocated.
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
#   SLURM_CLUSTER_ENFORCE  AccountingStorageEnforce   [associations,limits,qos]
#                        (add ",safe" to start only jobs whose --time fits
#                        in GrpTRESMins)
#   SLURM_CLUSTER_TIMEOUT  seconds to wait for each daemon      [60]
#   SLURM_CLUSTER_QUIET  non-empty: no progress lines on stderr
#
# Must run as root (the daemons run as root: SlurmUser=root).
set -euo pipefail

PROG=${0##*/}
die() { echo "$PROG: error: $*" >&2; exit 1; }
log() { [[ -n ${SLURM_CLUSTER_QUIET:-} ]] || echo "$PROG: $*" >&2; }

PKGS=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server-core mariadb-client-core)

# elapsed: seconds since T0, one decimal.
elapsed() {
	local now=${EPOCHREALTIME/,/.}
	awk -v a="$T0" -v b="$now" 'BEGIN { printf "%.1f", b - a }'
}

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
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
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
	if [[ -n $made_policy ]]; then
		rm -f "$policy"
		trap - EXIT
	fi
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

# pidfile_pid PIDFILE: the pid in PIDFILE if that process is alive and is the
# daemon the file is named after (a reused pid is not taken for it).
pidfile_pid() {
	local pid comm want
	[[ -f $1 ]] || return 1
	pid=$(cat "$1" 2>/dev/null) || return 1
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	{ read -r comm <"/proc/$pid/comm"; } 2>/dev/null || return 1
	want=$(basename "$1" .pid)
	[[ $want == mariadb ]] && want=mariadbd
	[[ $comm == "$want" ]] || return 1
	echo "$pid"
}

pid_alive() { pidfile_pid "$1" >/dev/null; }

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
				tail -n 10 <<<"$out" | sed 's/^/    /'
				echo "  last lines of $logf:"
				tail -n 30 "$logf" 2>/dev/null | sed 's/^/    /'
				echo "  (daemons already started are left running: '$PROG stop $D')"
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
SlurmdSpoolDir=$D/spool/slurmd
SlurmctldParameters=preempt_send_user_signal
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
MpiDefault=none

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
# The munge socket for slurmdbd connections is given as the "password".
AccountingStoragePass=$D/munge/munge.sock
AccountingStorageEnforce=${SLURM_CLUSTER_ENFORCE:-associations,limits,qos}
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

	# Slurm 22.05's gres/gpu drops GPUs declared without File= ("Removing
	# file-less GPU"), so each GPU gets a stand-in file under DIR/dev. Nothing
	# opens them (no cgroup device constraint); Slurm derives the GPU index
	# (CUDA_VISIBLE_DEVICES etc.) from the trailing number.
	mkdir -p "$D/dev"
	local i
	for ((i = 0; i < gpus; i++)); do
		[[ -c $D/dev/gpu$i ]] && continue
		rm -f "$D/dev/gpu$i"
		# A character device like /dev/null; a plain file where mknod is not
		# allowed (slurmd then logs "not a valid character or block device",
		# harmless).
		mknod -m 666 "$D/dev/gpu$i" c 1 3 2>/dev/null || : >"$D/dev/gpu$i"
	done
	echo "NodeName=$host Name=gpu Count=$gpus File=$D/dev/gpu[0-$((gpus - 1))]" >"$D/etc/gres.conf"

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

# node_ready NODE: true once the node is idle (or running jobs). A node that
# registered but is DRAIN/DOWN/INVAL (state kept from an earlier run, e.g. a
# config change) is resumed.
node_ready() {
	local st
	st=$(sinfo -h -N -n "$1" -o %t 2>/dev/null | head -n1) || return 1
	case $st in
	idle | mix | alloc | comp) return 0 ;;
	drain | drng | drained | down | inval)
		scontrol update nodename="$1" state=resume >/dev/null 2>&1 || true
		return 1
		;;
	*) return 1 ;;
	esac
}

cmd_start() {
	need_root
	check_installed
	resolve_dir "${1:-}"
	T0=${EPOCHREALTIME/,/.}
	TMO=${SLURM_CLUSTER_TIMEOUT:-60}
	# Unix sockets are limited to 107 bytes.
	((${#D} <= 80)) || die "DIR path too long for unix sockets (${#D} > 80 chars): $D"
	mkdir -p "$D/etc" "$D/state" "$D/spool/slurmd" "$D/log" "$D/run"
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
	log "munged up ($(elapsed)s)"
	start_mariadb
	log "mariadb up ($(elapsed)s)"
	start_slurmdbd
	log "slurmdbd up ($(elapsed)s)"
	setup_accounts
	start_slurmctld
	log "slurmctld up ($(elapsed)s)"
	start_slurmd "$host"
	wait_for "$TMO" "node $host idle" "$D/log/slurmd.log" "$D/run/slurmd.pid" -- node_ready "$host"
	# A restarted slurmctld may have kept the node DOWN/DRAIN from before.
	log "node $host idle ($(elapsed)s)"
	cat "$D/env.sh"
}

# ---------------------------------------------------------------- stop
# stop_pidfiles PIDFILE...: SIGTERM the processes of all PIDFILEs at once,
# wait up to 20 s for them to exit, SIGKILL what is left.
stop_pidfiles() {
	local f pid pids=() i alive
	for f in "$@"; do
		if pid=$(pidfile_pid "$f"); then
			kill -TERM "$pid" 2>/dev/null || true
			pids+=("$pid")
		fi
	done
	for ((i = 0; i < 200 && ${#pids[@]} > 0; i++)); do
		alive=()
		for pid in "${pids[@]}"; do
			kill -0 "$pid" 2>/dev/null && alive+=("$pid")
		done
		pids=("${alive[@]}")
		[[ ${#pids[@]} -eq 0 ]] || sleep 0.1
	done
	if [[ ${#pids[@]} -gt 0 ]]; then
		log "pids ${pids[*]} did not stop on TERM; killing"
		kill -KILL "${pids[@]}" 2>/dev/null || true
	fi
	rm -f "$@"
}

# stepd_pids CONF: pids of the slurmstepds started with SLURM_CONF=CONF.
# Sets CHILDREN (pid -> " child child...") for all processes (no procps needed).
declare -A CHILDREN=()
stepd_pids() {
	local conf=$1 p pid ppid comm line
	CHILDREN=()
	for p in /proc/[0-9]*; do
		pid=${p#/proc/}
		{ read -r line <"$p/stat"; } 2>/dev/null || continue
		comm=${line#*(}
		comm=${comm%)*}
		read -r _ ppid _ <<<"${line##*) }"
		CHILDREN[$ppid]+=" $pid"
		if [[ $comm == slurmstepd ]] &&
			{ tr '\0' '\n' <"$p/environ"; } 2>/dev/null | grep -qxF "SLURM_CONF=$conf"; then
			echo "$pid"
		fi
	done
}

# descendants PID...: the PIDs' descendants (uses CHILDREN).
descendants() {
	local todo=() pid
	for pid in "$@"; do
		# shellcheck disable=SC2206
		todo+=(${CHILDREN[$pid]:-})
	done
	while [[ ${#todo[@]} -gt 0 ]]; do
		pid=${todo[0]}
		todo=("${todo[@]:1}")
		echo "$pid"
		# shellcheck disable=SC2206
		todo+=(${CHILDREN[$pid]:-})
	done
}

# kill_jobs CONF: SIGKILL the processes of the running jobs of this cluster
# (everything below its slurmstepds), give the slurmstepds up to 10 s to report
# the jobs' end to slurmctld (the jobs end FAILED, signal 9), then SIGKILL
# whatever is left of them.
kill_jobs() {
	local conf=$1 roots=() pids=() i pid
	mapfile -t roots < <(stepd_pids "$conf")
	[[ ${#roots[@]} -gt 0 ]] || return 0
	stepd_pids "$conf" >/dev/null
	mapfile -t pids < <(descendants "${roots[@]}")
	[[ ${#pids[@]} -eq 0 ]] || kill -KILL "${pids[@]}" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		mapfile -t roots < <(stepd_pids "$conf")
		[[ ${#roots[@]} -gt 0 ]] || return 0
		sleep 0.1
	done
	stepd_pids "$conf" >/dev/null
	mapfile -t pids < <(descendants "${roots[@]}")
	kill -KILL "${roots[@]}" "${pids[@]}" 2>/dev/null || true
}

cmd_stop() {
	need_root
	[[ -n ${1:-} ]] || die "usage: $PROG stop DIR"
	[[ -d $1 ]] || return 0
	D=$(cd "$1" && pwd -P)
	# Running jobs first, while slurmctld still records their end: the
	# processes below this cluster's slurmstepds (found by the SLURM_CONF they
	# inherited from slurmd) are killed; the jobs end FAILED (0:9).
	kill_jobs "$D/etc/slurm.conf"
	# slurmd and slurmctld (slurmctld still reaches slurmdbd to flush
	# accounting), then slurmdbd, then MariaDB and munged.
	stop_pidfiles "$D/run/slurmd.pid" "$D/run/slurmctld.pid"
	kill_jobs "$D/etc/slurm.conf"
	stop_pidfiles "$D/run/slurmdbd.pid"
	stop_pidfiles "$D/db/mariadb.pid" "$D/munge/munged.pid"
	rm -f "$D/munge/munge.sock" "$D/db/mysqld.sock"
}

cmd_status() {
	[[ -n ${1:-} && -d $1 ]] || die "usage: $PROG status DIR"
	D=$(cd "$1" && pwd -P)
	local f rc=0
	for f in munge/munged.pid db/mariadb.pid run/slurmdbd.pid run/slurmctld.pid run/slurmd.pid; do
		if pid_alive "$D/$f"; then
			echo "$(basename "$f" .pid): running ($(pidfile_pid "$D/$f"))"
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
