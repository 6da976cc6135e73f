#!/usr/bin/env bash
# Stop the worker and the server that deployments/local-up.sh started (the server's database
# under PREFECT_HOME is kept, so deployments and run history survive a restart).
# The worker stops on SIGINT (it ignores SIGTERM) and finishes its bookkeeping first.
set -euo pipefail
state=${BLEND_LOCAL_DIR:-$HOME/.cache/blend-prefect}

stop() {  # stop NAME SIGNAL: signal the process in $state/NAME.pid, wait up to 30 s for it
  local pidfile="$state/$1.pid"
  [ -f "$pidfile" ] || { echo "$1: not started by local-up.sh"; return 0; }
  local pid
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "-$2" "$pid"
    for _ in $(seq 1 60); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "$1: still running after 30 s, sending SIGKILL" >&2
      kill -KILL "$pid"
    fi
    echo "$1: stopped (pid $pid)"
  else
    echo "$1: not running"
  fi
  rm -f "$pidfile"
}

stop worker INT
stop server INT
