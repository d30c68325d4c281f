#!/usr/bin/env bash
# Makes (once) a Python venv with the Python `deltalake` package, another Delta writer the
# tests use to write fixture tables (tests/tests/external_delta.rs), and Apache DataSketches'
# C++ library (`datasketches`), which reads the sketches a rollup wrote
# (tests/python/check_sketches.py), and prints the path of its python on stdout. Progress
# goes to stderr.
#
# The venv lives in ${MINION_PYTHON_DELTA_VENV:-<repo>/target/python-delta}. Versions are
# pinned; a venv with other versions is reinstalled.
set -euo pipefail
cd "$(dirname "$0")/.."

DELTALAKE=1.6.6
PYARROW=26.0.1
DATASKETCHES=5.2.0
VENV="${MINION_PYTHON_DELTA_VENV:-$PWD/target/python-delta}"
STAMP="$VENV/.minion-versions"
WANT="deltalake==$DELTALAKE pyarrow==$PYARROW datasketches==$DATASKETCHES"

log() { echo "python-delta: $*" >&2; }

# Concurrent test processes may call this at once: one installs, the others wait.
mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9

if [[ ! -x "$VENV/bin/python" ]] || [[ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]]; then
  log "installing $WANT into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check $WANT >&2
  "$VENV/bin/python" -c 'import deltalake, pyarrow, datasketches' >&2
  echo "$WANT" >"$STAMP"
fi
echo "$VENV/bin/python"
