#!/usr/bin/env bash
# The project's test command (README.md): every unit, integration and end-to-end test of the
# workspace. Starts the local S3-compatible server the object-store tests use, when the script
# for it exists, and stops it on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -x scripts/s3-test-server.sh ]; then
  # shellcheck disable=SC1091
  eval "$(scripts/s3-test-server.sh start)"
  trap 'scripts/s3-test-server.sh stop || true' EXIT
fi

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
# Doc tests are not run by nextest.
cargo test --workspace --doc --quiet
