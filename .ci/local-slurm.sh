#!/usr/bin/env bash
# A two-node SLURM cluster on localhost, with accounting (slurmdbd + MariaDB), for the integration tests and
# for trying the SLURM profile on one machine. Idempotent; run as root. The two nodes, node1 and node2, are two
# slurmd daemons on this machine (Debian builds SLURM with MULTIPLE_SLURMD), each declaring all its CPUs and
# memory (the two share them), so that multi-node jobs (srun across nodes, a torchrun rendezvous) really span
# two slurmds.
#   .ci/local-slurm.sh start     install (Debian packages) if needed, configure, start, create the account
#   .ci/local-slurm.sh stop      stop every daemon it started
#   .ci/local-slurm.sh status    show the nodes and the account
# Cluster "local", partitions "debug" (default), "cpu" and "transfer" on both nodes, account "pi-repro" (see
# tests/test_slurm.py for how the profile is pointed at them).
# Each node declares 8 GPUs as a GRES (GresTypes=gpu, Gres=gpu:8) so that the GPU requests the executor generates
# (--gpus=N, --gpus-per-node=N) are accepted and scheduled; there are no GPUs behind them. SLURM 22.05 drops a
# file-less GPU ("Removing file-less GPU"), and wants a character device per GPU: each is a link to /dev/null.
set -euo pipefail
ACCOUNT=${SLURM_TEST_ACCOUNT:-pi-repro}
PARTITION=${SLURM_TEST_PARTITION:-debug}
CPU_PARTITION=${SLURM_TEST_CPU_PARTITION:-cpu}                  # more partitions on the same node,
TRANSFER_PARTITION=${SLURM_TEST_TRANSFER_PARTITION:-transfer}   # for the profile's per-rule partitions
HOST=$(hostname -s)
CPUS=$(nproc)
NODES=2
MEM_MB=$(( $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) - 2048 ))
DBPASS=pi-repro-local
GPUS=8
GPU_DEV=/var/lib/local-slurm/gpu
LOG=/var/log/local-slurm
mkdir -p "$LOG"

install() {
  if ! command -v slurmctld >/dev/null || ! command -v slurmdbd >/dev/null || ! command -v mariadbd >/dev/null \
     || ! command -v munged >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm slurmdbd mariadb-server munge >"$LOG/apt.log" 2>&1
  fi
}

wait_for() {  # wait_for SECONDS CMD...
  local n=$1; shift
  for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  echo "timed out waiting for: $*" >&2; return 1
}

configure() {
  mkdir -p /etc/slurm /var/spool/slurmctld /run/munge /run/mysqld
  for i in $(seq "$NODES"); do mkdir -p "/var/spool/slurmd/node$i"; done
  chown munge:munge /run/munge; chown mysql:mysql /run/mysqld
  [ -s /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
  chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
  mkdir -p "$GPU_DEV"
  for i in $(seq 0 $((GPUS - 1))); do ln -sfn /dev/null "$GPU_DEV/$i"; done
  echo "NodeName=node[1-$NODES] Name=gpu File=$GPU_DEV/[0-$((GPUS - 1))]" >/etc/slurm/gres.conf
  # node names resolve to this machine (the torchrun rendezvous is addressed by node name)
  for i in $(seq "$NODES"); do grep -qE "[[:space:]]node$i([[:space:]]|\$)" /etc/hosts || echo "127.0.0.1 node$i" >>/etc/hosts; done
  cat >/etc/slurm/slurm.conf <<CONF
ClusterName=local
GresTypes=gpu
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd/%n
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd-%n.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageEnforce=associations,limits
AccountingStoreFlags=job_comment
AccountingStorageTRES=gres/gpu
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
ReturnToService=2
MpiDefault=none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=10
NodeName=node[1-$NODES] NodeHostname=$HOST NodeAddr=127.0.0.1 Port=17001-$((17000 + NODES)) CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:$GPUS State=UNKNOWN
PartitionName=$PARTITION Nodes=node[1-$NODES] Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
PartitionName=$CPU_PARTITION Nodes=node[1-$NODES] Default=NO MaxTime=INFINITE State=UP OverSubscribe=NO
PartitionName=$TRANSFER_PARTITION Nodes=node[1-$NODES] Default=NO MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
  cat >/etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
LogFile=$LOG/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DBPASS
StorageLoc=slurm_acct_db
CONF
  chmod 600 /etc/slurm/slurmdbd.conf
}

start() {
  install
  configure
  pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
  wait_for 60 bash -c '! pgrep -x mariadbd || mariadb -e "select 1"' || true  # one still shutting down: let it end
  if ! pgrep -x mariadbd >/dev/null; then
    [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql >"$LOG/mariadb-install.log" 2>&1
    (mariadbd --user=mysql >"$LOG/mariadb.log" 2>&1 &)
    wait_for 60 mariadb -e "select 1"
  fi
  mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db; CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DBPASS'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
  pgrep -x slurmdbd >/dev/null || slurmdbd
  wait_for 60 sacctmgr -n show cluster
  sacctmgr -i -Q add cluster local >/dev/null 2>&1 || true
  sacctmgr -i -Q add account "$ACCOUNT" Cluster=local Description=pi-repro Organization=pi-repro >/dev/null 2>&1 || true
  sacctmgr -i -Q add user root Account="$ACCOUNT" Cluster=local >/dev/null 2>&1 || true
  pgrep -x slurmctld >/dev/null || slurmctld
  wait_for 60 scontrol ping
  for i in $(seq "$NODES"); do pgrep -f "slurmd -N node$i\$" >/dev/null || slurmd -N "node$i"; done
  wait_for 60 bash -c "[ \$(sinfo -h -N -p $PARTITION -o %T | grep -cvE 'down|unk|drain|inval') -eq $NODES ]" || {
    scontrol update NodeName="node[1-$NODES]" State=RESUME >/dev/null 2>&1 || true
    wait_for 30 bash -c "[ \$(sinfo -h -N -p $PARTITION -o %T | grep -cvE 'down|unk|drain|inval') -eq $NODES ]"; }
  status
}

stop() {
  for d in slurmd slurmctld slurmdbd; do pkill -x "$d" 2>/dev/null || true; done
  sleep 1
  mariadb-admin shutdown 2>/dev/null || pkill -x mariadbd 2>/dev/null || true
  pkill -x munged 2>/dev/null || true
  # gone, not just told to go: a start right after a stop must not find a server that is shutting down
  wait_for 60 bash -c '! pgrep -x "slurmd|slurmctld|slurmdbd|mariadbd|munged"' || true
}

status() {
  sinfo -N -o "%N %P %T %c %m %G"
  sacctmgr -n -P show assoc format=cluster,account,user
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
