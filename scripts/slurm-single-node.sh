#!/usr/bin/env bash
# A real, single-node SLURM on this machine (Debian 12, root, no systemd), so that
# `python -m benchmark run --cluster slurm` can be tried for real (docs/workers.md).
#
#   sudo bash scripts/slurm-single-node.sh          # install if needed, configure, start, print sinfo
#   sudo bash scripts/slurm-single-node.sh --stop   # stop slurmd, slurmctld and munged again
#
# Idempotent: installs slurm-wlm and munge only when missing, (re)writes /etc/slurm/slurm.conf
# only when it is absent or was written by this script, starts munged, slurmctld and slurmd only
# when they are not running, and waits until the node is idle. One node, named after
# `hostname -s`, with all its CPUs and its memory less 1 GiB; partition `debug`; no cgroups, no
# accounting, no GPUs. Logs: /var/log/slurm/slurm{ctld,d}.log, /var/log/munge/munged.log.
set -euo pipefail

MARK="# written by scripts/slurm-single-node.sh"
CONF=/etc/slurm/slurm.conf

pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

if [ "${1:-}" = "--stop" ]; then
    for pf in /run/slurmd.pid /run/slurmctld.pid /run/munge/munged.pid; do
        if pid_alive "$pf"; then
            echo "stopping $(basename "$pf" .pid) (pid $(cat "$pf"))"
            kill "$(cat "$pf")"
        fi
    done
    exit 0
fi

[ "$(id -u)" -eq 0 ] || { echo "error: run as root (it installs packages and starts daemons)" >&2; exit 2; }

# -- packages ------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
   || ! command -v sinfo >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge
fi

# -- munge -----------------------------------------------------------------------------------
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    if command -v mungekey >/dev/null; then mungekey --create --keyfile=/etc/munge/munge.key
    else /usr/sbin/create-munge-key -f; fi
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! pid_alive /run/munge/munged.pid; then
    echo "starting munged"
    runuser -u munge -- /usr/sbin/munged
fi
munge -n | unmunge >/dev/null  # fails (and so does this script) when munge does not work

# -- slurm.conf ------------------------------------------------------------------------------
host=$(hostname -s)
cpus=$(nproc)
mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
real_mb=$((mem_mb > 2048 ? mem_mb - 1024 : mem_mb))
new=$(cat <<EOF
$MARK
# one node ($host: $cpus CPUs, ${real_mb} MB of ${mem_mb} MB), no cgroups, no accounting
ClusterName=single
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MailProg=/bin/true
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$real_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
)
changed=0
if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    echo "note: $CONF was not written by this script; leaving it as it is"
elif [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$new" ]; then
    install -d -m 0755 /etc/slurm
    printf '%s\n' "$new" > "$CONF"
    changed=1
    echo "wrote $CONF"
fi
install -d -m 0755 /var/spool/slurmctld /var/spool/slurmd /var/log/slurm

# -- daemons ---------------------------------------------------------------------------------
if [ "$changed" = 1 ] && { pid_alive /run/slurmctld.pid || pid_alive /run/slurmd.pid; }; then
    echo "slurm.conf changed: restarting slurmctld and slurmd"
    for pf in /run/slurmd.pid /run/slurmctld.pid; do pid_alive "$pf" && kill "$(cat "$pf")"; done
    sleep 2
fi
if ! pid_alive /run/slurmctld.pid; then echo "starting slurmctld"; /usr/sbin/slurmctld; fi
if ! pid_alive /run/slurmd.pid; then echo "starting slurmd"; /usr/sbin/slurmd; fi

# -- wait for the node -----------------------------------------------------------------------
for _ in $(seq 60); do
    state=$(sinfo -h -n "$host" -o %T 2>/dev/null | head -1 || true)
    case "$state" in
        idle*|mixed*|allocated*|completing*) break ;;
        down*|drain*|drained*)  # e.g. left down by an earlier, unclean stop
            scontrol update NodeName="$host" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 1
done
sinfo
case "$state" in
    idle*|mixed*|allocated*|completing*) ;;
    *) echo "error: node $host is '${state:-unknown}' after 60 s; see /var/log/slurm/slurmctld.log and slurmd.log" >&2
       exit 1 ;;
esac
