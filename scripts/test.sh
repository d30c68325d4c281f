#!/usr/bin/env bash
# The project's test command (README.md): README's demo, then every unit, integration and
# end-to-end test of the workspace, the worker soak, and the suite against a real control
# plane. Starts the local S3-compatible server (moto, from PyPI) the object-store tests use,
# and stops it on exit. The tests of tables written by another Delta writer
# (tests/tests/external_delta.rs) install Python deltalake from PyPI into target/python-delta
# (scripts/python-delta.sh) on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

# README's main command, exactly as README prints it: the demo at its full default size
# (30 days, 5.8M rows, spilling subtasks), which fails unless count(*) and sum() agree on
# both sides. It also builds the release `minion` the worker soak below runs.
cargo run --release --bin minion -- demo

s3_exports=$(bash scripts/s3-test-server.sh start)
eval "$s3_exports"
trap 'bash scripts/s3-test-server.sh stop || true' EXIT

# Tests that need a server say so (`#[ignore = "needs …"]`) and run here, where it is up: the
# S3 tests against the server started above, the worker soak against the release build made
# above.
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
  cargo nextest run --no-fail-fast --run-ignored only -p minion-worker --test s3
  cargo nextest run --no-fail-fast --run-ignored only -p minion-operator --test catalog_s3
  cargo nextest run --no-fail-fast --run-ignored only -p minion-e2e --test s3_outage \
    --test worker_soak
  cargo nextest run --no-fail-fast --run-ignored only -p minion-e2e --test operator_binary \
    -E 'test(/^on_s3_/)'
else
  cargo test --workspace --no-fail-fast "$@"
  cargo test -p minion-worker --test s3 -- --ignored
  cargo test -p minion-operator --test catalog_s3 -- --ignored
  cargo test -p minion-e2e --test s3_outage -- --ignored
  cargo test -p minion-e2e --test operator_binary -- --ignored on_s3_
  cargo test -p minion-e2e --test worker_soak -- --ignored
fi
# nextest does not run doc tests.
cargo test --workspace --doc --quiet

# The suite against a real Kubernetes control plane: etcd, kube-apiserver and
# kube-controller-manager built from Go modules (cached under target/control-plane; a cold
# build takes ~11 min on 2 cores), Pods run by a node stand-in, the operator as the chart's
# ServiceAccount. Started and stopped by the script.
bash scripts/e2e-control-plane.sh
