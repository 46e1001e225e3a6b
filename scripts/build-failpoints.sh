#!/usr/bin/env bash
# Builds ferryd with its crash points (cargo feature `failpoints`) and puts it
# beside the workspace's programs as target/debug/ferryd-failpoints, which the
# crash campaign (tests/tests/crash.rs) installs on its boards. The ordinary
# ferryd is rebuilt afterwards, so target/debug/ferryd never has them.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -p ferryd --bin ferryd --features failpoints --locked
cp target/debug/ferryd target/debug/ferryd-failpoints.tmp
mv target/debug/ferryd-failpoints.tmp target/debug/ferryd-failpoints
cargo build -p ferryd --bin ferryd --locked
