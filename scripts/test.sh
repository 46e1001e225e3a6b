#!/usr/bin/env bash
# ferry's whole test suite: formatting, lints, then every unit, integration and
# end-to-end test of the workspace. Installs its prerequisites first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# End-to-end tests run the workspace's programs as users do.
cargo build --workspace --bins --locked
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
