#!/usr/bin/env bash
# ferry's main job on an embedded default, end to end, with real parts: build
# examples/simple_api into one signed binary, publish it to a repository served
# by nginx, boot a sandboxed systemd board running ferryd as a service, let the
# agent install it, publish v1.1.0 and watch the agent update the board.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release --locked --bins -p ferry -p ferry-launcher -p ferryd -p ferry-tests
exec target/release/ferry-demo
