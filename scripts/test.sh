#!/usr/bin/env bash
# The project's test command (README.md): every unit, integration and end-to-end test of the
# workspace. Starts the local S3-compatible server (moto, from PyPI) the object-store tests
# use, and stops it on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

s3_exports=$(bash scripts/s3-test-server.sh start)
eval "$s3_exports"
trap 'bash scripts/s3-test-server.sh stop || true' EXIT

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
# nextest does not run doc tests.
cargo test --workspace --doc --quiet
