#!/usr/bin/env bash
# Stop the local cluster started by start.sh (idempotent). Keeps the state dir (accounting
# database, munge key) unless called with --purge.
set -euo pipefail

STATE=${ACTLAB_SLURM_DIR:-/var/tmp/actlab-slurm}
log() { echo "local_slurm: $*" >&2; }

[ "$(id -u)" = 0 ] || { log "ERROR: needs root"; exit 1; }
[ -d "$STATE" ] || { log "nothing to stop ($STATE does not exist)"; exit 0; }

stop() {  # stop <name>: TERM the pid in $STATE/run/<name>.pid, then KILL after 15 s
  local pidfile="$STATE/run/$1.pid" pid
  [ -s "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 75); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    log "$1 stopped"
  fi
  rm -f "$pidfile"
}

# Jobs first, while slurmctld still answers, so no job step outlives the cluster.
if [ -f "$STATE/etc/slurm.conf" ] && [ -s "$STATE/run/slurmctld.pid" ]; then
  SLURM_CONF="$STATE/etc/slurm.conf" timeout 10 scancel --full --user=root 2>/dev/null || true
fi
for d in slurmd slurmctld slurmdbd mysqld munged; do stop "$d"; done

if [ "${1:-}" = "--purge" ]; then
  rm -rf "$STATE"
  log "removed $STATE"
fi
