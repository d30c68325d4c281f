#!/usr/bin/env bash
# Starts or stops a local S3-compatible server (moto in server mode, from PyPI) on 127.0.0.1
# for the worker's S3 tests, with a bucket named `minion-test`.
#
#   eval "$(scripts/s3-test-server.sh start)"   # prints export lines for the tests
#   cargo test -p minion-worker --test s3
#   scripts/s3-test-server.sh stop
#
# The venv lives in ${MINION_S3_VENV:-$HOME/.cache/minion-s3-venv}; the port is
# ${MINION_S3_PORT:-9723}. Progress goes to stderr; only `export` lines go to stdout.
set -euo pipefail

VENV="${MINION_S3_VENV:-$HOME/.cache/minion-s3-venv}"
PORT="${MINION_S3_PORT:-9723}"
STATE="${MINION_S3_STATE:-${TMPDIR:-/tmp}/minion-s3-test-server}"
BUCKET=minion-test
ENDPOINT="http://127.0.0.1:$PORT"

log() { echo "s3-test-server: $*" >&2; }

install() {
  if [[ ! -x "$VENV/bin/moto_server" ]]; then
    log "installing moto[server] into $VENV"
    python3 -m venv "$VENV" >&2
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==5.*" >&2
  fi
}

ready() {
  python3 - "$ENDPOINT" <<'PY'
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1] + "/", timeout=1)
except urllib.error.HTTPError:
    pass
except Exception:
    sys.exit(1)
PY
}

start() {
  install
  mkdir -p "$STATE"
  if [[ -f "$STATE/pid" ]] && kill -0 "$(cat "$STATE/pid")" 2>/dev/null; then
    log "already running (pid $(cat "$STATE/pid"))"
  else
    "$VENV/bin/moto_server" -H 127.0.0.1 -p "$PORT" >"$STATE/server.log" 2>&1 &
    echo $! >"$STATE/pid"
    for _ in $(seq 1 100); do
      ready && break
      sleep 0.1
    done
    ready || { log "server did not start; see $STATE/server.log"; exit 1; }
    log "started on $ENDPOINT (pid $(cat "$STATE/pid"))"
  fi
  # CreateBucket; moto accepts unsigned requests.
  python3 - "$ENDPOINT/$BUCKET" <<'PY'
import sys, urllib.request
req = urllib.request.Request(sys.argv[1], method="PUT")
try:
    urllib.request.urlopen(req, timeout=5)
except urllib.error.HTTPError as e:
    if e.code != 409:
        raise
PY
  echo "export MINION_TEST_S3_ENDPOINT=$ENDPOINT"
  echo "export MINION_TEST_S3_BUCKET=$BUCKET"
}

stop() {
  if [[ -f "$STATE/pid" ]]; then
    pid="$(cat "$STATE/pid")"
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      log "stopped pid $pid"
    fi
    rm -f "$STATE/pid"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  install) install ;;
  *) echo "usage: $0 start|stop|install" >&2; exit 2 ;;
esac
