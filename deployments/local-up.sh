#!/usr/bin/env bash
# One-step local Prefect setup for blend: start a Prefect server on 127.0.0.1, create the
# `blend-process` work pool and the `gpu` global concurrency limit, deploy
# deployments/prefect.yaml (`blend-pipeline/nightly`) and start a process worker.
# Idempotent: whatever already exists is kept. Stop everything with deployments/local-down.sh.
#
# Settings (environment):
#   BLEND_PREFECT_PORT   server port (default 4200)
#   BLEND_GPU_SLOTS      slots of the `gpu` limit: the number of GPUs (default 1)
#   BLEND_LOCAL_DIR      pid and log files (default ~/.cache/blend-prefect)
#   PREFECT_HOME         Prefect's own folder, the server's SQLite database (default ~/.prefect)
#   PREFECT              the prefect command (default: .venv/bin/prefect, else prefect on PATH)
set -euo pipefail
cd "$(dirname "$0")/.."

port=${BLEND_PREFECT_PORT:-4200}
slots=${BLEND_GPU_SLOTS:-1}
state=${BLEND_LOCAL_DIR:-$HOME/.cache/blend-prefect}
prefect=${PREFECT:-}
if [ -z "$prefect" ]; then
  if [ -x .venv/bin/prefect ]; then prefect=.venv/bin/prefect; else prefect=prefect; fi
fi
export PREFECT_API_URL="http://127.0.0.1:$port/api"
# Loopback only: whoever reaches the API can run the deployments with any parameters (and the
# local server has no authentication), so the server never listens on other interfaces, not
# even when PREFECT_SERVER_API_HOST says otherwise (tests/security/test_local_up.py).
export PREFECT_SERVER_API_HOST=127.0.0.1
export PREFECT_SERVER_ANALYTICS_ENABLED=false
mkdir -p "$state"
# Job control: without it, background commands start with SIGINT ignored, and the worker
# (which stops only on SIGINT) could not be stopped cleanly by local-down.sh.
set -m

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
healthy() {
  python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" \
    "$PREFECT_API_URL/health" >/dev/null 2>&1
}

if healthy; then
  echo "server: already running at $PREFECT_API_URL"
else
  echo "server: starting on 127.0.0.1:$port (log: $state/server.log)"
  nohup "$prefect" server start --host 127.0.0.1 --port "$port" >"$state/server.log" 2>&1 &
  echo $! >"$state/server.pid"
  for _ in $(seq 1 120); do
    healthy && break
    running "$state/server.pid" || { cat "$state/server.log" >&2; exit 1; }
    sleep 0.5
  done
  healthy || { echo "server: not healthy after 60 s, see $state/server.log" >&2; exit 1; }
fi

if "$prefect" work-pool inspect blend-process >/dev/null 2>&1; then
  echo "work pool: blend-process exists"
else
  "$prefect" work-pool create blend-process --type process
fi

if "$prefect" gcl inspect gpu >/dev/null 2>&1; then
  echo "concurrency limit: gpu exists"
else
  "$prefect" gcl create gpu --limit "$slots"
fi

"$prefect" --no-prompt deploy --prefect-file deployments/prefect.yaml --all

if running "$state/worker.pid"; then
  echo "worker: already running (pid $(cat "$state/worker.pid"))"
else
  echo "worker: starting (log: $state/worker.log)"
  nohup "$prefect" worker start --pool blend-process --type process >"$state/worker.log" 2>&1 &
  echo $! >"$state/worker.pid"
fi

cat <<EOT

Prefect UI:   http://127.0.0.1:$port
Run it now:   PREFECT_API_URL=$PREFECT_API_URL $prefect deployment run 'blend-pipeline/nightly'
Stop:         deployments/local-down.sh
EOT
