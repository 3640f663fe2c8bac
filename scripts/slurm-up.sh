#!/usr/bin/env bash
# Start a real one-node Slurm cluster on localhost, with accounting (slurmdbd +
# MariaDB) so that the executor plugin's default status polling via `sacct`
# works. For tests and CI on Debian/Ubuntu as root; idempotent; ~1 minute.
# Without accounting, sacct fails and Snakemake waits forever after the jobs
# finish, so we always run slurmdbd.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then echo "slurm-up: needs root (apt-get, daemons)" >&2; exit 1; fi
if ! command -v slurmctld >/dev/null || ! command -v slurmdbd >/dev/null || ! command -v mariadbd >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurm-wlm munge slurmdbd mariadb-server >/dev/null
fi

HOST=$(hostname -s)
CPUS=$(nproc)
MEM=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
CONF=/etc/slurm
mkdir -p "$CONF" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /run/slurm

# munge: one key, daemon as the munge user
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown munge:munge /etc/munge/munge.key /run/munge
chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged

# MariaDB for the accounting database
pgrep -x mariadbd >/dev/null || service mariadb start >/dev/null
for _ in $(seq 30); do mysqladmin ping >/dev/null 2>&1 && break; sleep 1; done
mysql -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
  CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"

cat > "$CONF/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurm/slurmdbd.pid
CONF
chmod 600 "$CONF/slurmdbd.conf"

cat > "$CONF/slurm.conf" <<CONF
ClusterName=synsym
SlurmctldHost=$HOST
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=main Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF

pgrep -x slurmdbd >/dev/null || slurmdbd
for _ in $(seq 30); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 1; done
sacctmgr -n list cluster format=cluster | grep -qw synsym || sacctmgr -i add cluster synsym >/dev/null
if pgrep -x slurmctld >/dev/null; then scontrol reconfigure; else slurmctld; fi
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 60); do
  if sinfo -h -N -o "%T" 2>/dev/null | grep -qE "^idle"; then
    sacct -n -X -S now-1minute >/dev/null  # accounting answers
    echo "slurm-up: node $HOST idle ($CPUS CPUs, ${MEM} MB), accounting on"
    exit 0
  fi
  scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
  sleep 1
done
echo "slurm-up: node did not become idle:" >&2
sinfo >&2 || true
tail -20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
