#!/usr/bin/env bash
# A single-node SLURM test cluster on this machine, for running the workflow through
# profiles/slurm (tests/workflow/test_slurm.py) or by hand.
#
#   tests/workflow/slurm/cluster.sh up [--install]   start munged, slurmctld and slurmd; print the export line
#   tests/workflow/slurm/cluster.sh status           report whether the cluster answers (exit 1 when it does not)
#   tests/workflow/slurm/cluster.sh down             stop the daemons started by `up` and remove their state
#
#   eval "$(tests/workflow/slurm/cluster.sh up)"     # sets SLURM_CONF in the calling shell
#
# Everything lives in $SLURM_TEST_DIR (default /tmp/medrepro-slurm): slurm.conf, gres.conf,
# state, spool, logs and pid files; slurmd links /run/slurm/conf to its cached copy of the
# configuration. Nothing is written to /etc/slurm. One node, "localhost",
# with the machine's CPUs and memory and two "gpu" generic resources backed by placeholder
# files, so that GPU requests are scheduled and accounted although no GPU is present. No
# accounting database (use squeue for job status), no cgroups. Must run as root (the
# daemons run as SlurmUser=root). `up` and `down` are idempotent.
#
# Ports: SLURM_TEST_CTLD_PORT (6817) and SLURM_TEST_SLURMD_PORT (6818).
set -euo pipefail

DIR=${SLURM_TEST_DIR:-/tmp/medrepro-slurm}
CONF="$DIR/etc/slurm.conf"
CTLD_PORT=${SLURM_TEST_CTLD_PORT:-6817}
SLURMD_PORT=${SLURM_TEST_SLURMD_PORT:-6818}
NODE=localhost
N_GPUS=2
MUNGE_SOCKET_DIR=/run/munge
MUNGE_KEY=/etc/munge/munge.key
export SLURM_CONF="$CONF"

say() { echo "cluster.sh: $*" >&2; }
die() { say "$*"; exit 1; }

alive() {  # pid file -> true when it names a running process
    [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

missing_commands() {
    local c missing=()
    for c in munged munge slurmctld slurmd sinfo sbatch squeue scontrol srun; do
        command -v "$c" >/dev/null 2>&1 || missing+=("$c")
    done
    echo "${missing[*]}"
}

install_packages() {
    say "installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq slurm-wlm munge >/dev/null
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        return 0  # a munged (ours or the system's) already answers
    fi
    if [[ ! -s "$MUNGE_KEY" ]]; then
        say "creating $MUNGE_KEY"
        mkdir -p "$(dirname "$MUNGE_KEY")"
        if command -v mungekey >/dev/null 2>&1; then
            mungekey --create --keyfile="$MUNGE_KEY" --force
        else
            dd if=/dev/urandom bs=1 count=1024 of="$MUNGE_KEY" status=none
        fi
        chown munge:munge "$MUNGE_KEY" 2>/dev/null || true
        chmod 0400 "$MUNGE_KEY"
    fi
    mkdir -p "$MUNGE_SOCKET_DIR" /var/lib/munge /var/log/munge
    chown munge:munge "$MUNGE_SOCKET_DIR" /var/lib/munge /var/log/munge 2>/dev/null || true
    chmod 0755 "$MUNGE_SOCKET_DIR"
    if id munge >/dev/null 2>&1; then
        runuser -u munge -- munged --pid-file="$MUNGE_SOCKET_DIR/munged.pid"
    else
        munged --force --pid-file="$MUNGE_SOCKET_DIR/munged.pid"
    fi
    cp "$MUNGE_SOCKET_DIR/munged.pid" "$DIR/run/munged.pid"  # ours: `down` stops it
    local i
    for i in $(seq 1 20); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    die "munged does not answer (see /var/log/munge/munged.log)"
}

write_config() {
    local cpus mem
    cpus=$(nproc)
    # Leave a little memory to the system; slurmd rejects a node smaller than RealMemory.
    mem=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
    mkdir -p "$DIR/etc" "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/run"
    cat >"$CONF" <<EOF
# Single-node test cluster written by tests/workflow/slurm/cluster.sh
ClusterName=medrepro-test
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups: processes are tracked through /proc, tasks bound with sched_setaffinity
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
MpiDefault=none
SwitchType=switch/none
# CPUs, memory and GPUs are consumable, so jobs share the node
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
# a job without --mem would otherwise be given the whole node
DefMemPerCPU=1000
GresTypes=gpu
# no accounting database: job status comes from squeue and scontrol, which keep
# finished jobs for MinJobAge seconds (an hour: longer than a test run)
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=3600
SlurmctldParameters=enable_configless
ReturnToService=2
SlurmctldTimeout=60
SlurmdTimeout=60
InactiveLimit=0
KillWait=10
Waittime=0
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:$N_GPUS State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    # Stand-in GPUs. slurmd drops gpu generic resources without File= ("file-less GPU"), so each
    # names a placeholder file; without cgroups nothing opens or constrains it. A job step given
    # one sees SLURM_GPUS_ON_NODE (no CUDA_VISIBLE_DEVICES: the files are not devices).
    mkdir -p "$DIR/dev"
    local i
    for ((i = 0; i < N_GPUS; i++)); do : >"$DIR/dev/gpu$i"; done
    cat >"$DIR/etc/gres.conf" <<EOF
AutoDetect=off
NodeName=$NODE Name=gpu File=$DIR/dev/gpu[0-$((N_GPUS - 1))]
EOF
    # Debian's plugstack.conf includes /etc/slurm/plugstack.conf.d; keep the test cluster self-contained.
    : >"$DIR/etc/plugstack.conf"
    echo "PlugStackConfig=$DIR/etc/plugstack.conf" >>"$CONF"
}

node_state() {
    sinfo -h -n "$NODE" -o %t 2>/dev/null | head -n 1
}

cmd_status() {
    if alive "$DIR/run/slurmctld.pid" && alive "$DIR/run/slurmd.pid" && [[ -n "$(node_state)" ]]; then
        say "up: SLURM_CONF=$CONF"
        sinfo -N -o "%N %t %c %m %G" >&2
        return 0
    fi
    say "down"
    return 1
}

cmd_up() {
    local install=0 missing
    [[ "${1:-}" == "--install" ]] && install=1
    [[ $(id -u) -eq 0 ]] || die "must run as root (the daemons run as SlurmUser=root)"
    missing=$(missing_commands)
    if [[ -n "$missing" ]]; then
        [[ $install -eq 1 ]] || die "missing commands: $missing (apt-get install slurm-wlm munge, or: $0 up --install)"
        install_packages
        missing=$(missing_commands)
        [[ -z "$missing" ]] || die "still missing after installing: $missing"
    fi
    # SLURM commands read /etc/slurm/slurm.conf before /run/slurm/conf: job steps would
    # talk to that cluster instead of this one.
    [[ ! -e /etc/slurm/slurm.conf ]] || die "/etc/slurm/slurm.conf exists: this machine belongs to another cluster"
    if cmd_status 2>/dev/null; then
        say "already up"
        echo "export SLURM_CONF=$CONF"
        return 0
    fi
    # A half-started cluster (one daemon dead) is restarted from scratch.
    cmd_down >/dev/null 2>&1 || true
    mkdir -p "$DIR/run"
    start_munge
    write_config
    slurmctld -f "$CONF" -c || die "slurmctld failed to start (see $DIR/log/slurmctld.log)"
    # slurmd fetches its configuration from slurmctld ("configless") and caches it under
    # /run/slurm/conf, where SLURM commands without SLURM_CONF look: the job steps need
    # that, as the executor plugin starts them with the SLURM_* variables removed.
    slurmd --conf-server "localhost:$CTLD_PORT" -N "$NODE" -c \
        || die "slurmd failed to start (see $DIR/log/slurmd.log)"
    local i state=""
    for i in $(seq 1 60); do
        state=$(node_state)
        case "$state" in
            idle) break ;;
            drain*|drng|inval|fail*) break ;;
        esac
        sleep 1
    done
    if [[ "$state" != idle ]]; then
        say "node $NODE is '${state:-not reported}', not idle; last log lines:"
        tail -n 20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
        die "the test cluster did not come up"
    fi
    say "up: node $NODE idle ($(sinfo -h -n "$NODE" -o '%c CPUs, %m MB, %G'))"
    echo "export SLURM_CONF=$CONF"
}

stop_pidfile() {  # pid file, name: TERM, wait, then KILL
    local pidfile=$1 name=$2 pid i
    alive "$pidfile" || return 0
    pid=$(cat "$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 30); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.5
    done
    say "$name ($pid) did not stop; killing it"
    kill -KILL "$pid" 2>/dev/null || true
}

cmd_down() {
    if [[ -f "$CONF" ]]; then
        # cancel whatever is left (job steps outlive slurmd), then stop slurmd before slurmctld
        if alive "$DIR/run/slurmctld.pid"; then
            scancel --quiet --user=root 2>/dev/null || true
            local i
            for i in $(seq 1 30); do
                [[ -z "$(squeue -h -t RUNNING,PENDING,COMPLETING -o %i 2>/dev/null)" ]] && break
                sleep 1
            done
        fi
        stop_pidfile "$DIR/run/slurmd.pid" slurmd
        stop_pidfile "$DIR/run/slurmctld.pid" slurmctld
    fi
    # munged only when this script started it
    stop_pidfile "$DIR/run/munged.pid" munged
    # slurmd's link to its configuration cache, when it points into $DIR
    if [[ -L /run/slurm/conf && "$(readlink /run/slurm/conf)" == "$DIR"/* ]]; then
        rm -f /run/slurm/conf
        rmdir /run/slurm 2>/dev/null || true
    fi
    rm -rf "$DIR"
    say "down"
}

case "${1:-}" in
    up) shift; cmd_up "$@" ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *) echo "usage: $0 up [--install] | down | status" >&2; exit 2 ;;
esac
