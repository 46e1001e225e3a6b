#!/usr/bin/env bash
# The full crash campaign: ferryd with crash points on a real systemd board,
# killed at every crash point once and then by SIGKILL at KILLS random
# moments of updates (default 1000), checking after each death that the
# device runs a complete, verified version and loses none that `keep`
# promises. Prints "N kills, B broken installs, L lost versions"; fails
# unless B and L are 0. CI runs the same tests with 12 random kills.
#
#   scripts/crash-campaign.sh [KILLS]        FERRY_CRASH_SEED=… replays a run
set -euo pipefail
kills="${1:-1000}"
[[ "$kills" =~ ^[0-9]+$ ]] || { echo "usage: $0 [KILLS]" >&2; exit 2; }
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build-failpoints.sh
cargo build --workspace --bins --locked
FERRY_CRASH_KILLS="$kills" cargo nextest run -p ferry-tests --test crash --locked \
  --no-capture 2>&1 | grep -E --line-buffered 'kills|round|broken:|lost:|SEED|PASS|FAIL|panicked'
