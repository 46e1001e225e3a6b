#!/usr/bin/env bash
# ferry's whole test suite: formatting, lints, then every unit, integration and
# end-to-end test of the workspace. Installs its prerequisites first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy -p ferryd --all-targets --features failpoints --locked -- -D warnings
# The crash campaign's agent: ferryd with crash points, beside the real one.
scripts/build-failpoints.sh
# End-to-end tests run the workspace's programs as users do.
cargo build --workspace --bins --locked
# The boards' programs and packages: ferryd and the launcher for each
# architecture, and ferryd's .deb of each (tests/tests/boards.rs).
for target in x86_64-linux-gnu aarch64-linux-gnu arm-linux-gnueabihf; do
  scripts/cross.sh "$target" >/dev/null
done
for arch in amd64 arm64 armhf; do
  scripts/deb.sh "$arch" >/dev/null
done
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
