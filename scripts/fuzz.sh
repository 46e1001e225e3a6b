#!/usr/bin/env bash
# Fuzzes ferry's parsers: runs each target of fuzz/ for SECONDS (default 60),
# one after another, and prints how many inputs each executed.
#
#   scripts/fuzz.sh [SECONDS]
#
# Needs the nightly toolchain and cargo-fuzz (installed here if missing). Not
# part of CI: CI stays on stable. Seeds (containers signed by the fuzzing key in
# format/tests/fuzz_key.pub, keys, signatures, metadata) are written into
# fuzz/corpus/<target>/ first; crashes land in fuzz/artifacts/.
set -euo pipefail
secs="${1:-60}"
[[ "$secs" =~ ^[0-9]+$ ]] || { echo "usage: $0 [SECONDS]" >&2; exit 2; }
cd "$(dirname "$0")/.."
root="$PWD"
targets=(container signature public_key secret_key metadata manifest config tar)

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz.sh: the nightly toolchain is needed (rustup toolchain install nightly)" >&2
  exit 1
fi

FERRY_FUZZ_SEEDS="$root/fuzz/corpus" \
  cargo test -q -p ferry-format --test fuzz_seeds >/dev/null
# The agent's config: a full one, and the smallest accepted one.
mkdir -p fuzz/corpus/config fuzz/corpus/tar
cat >fuzz/corpus/config/full.toml <<'TOML'
repository = "https://updates.example.com/ferry"
root = "root.json"
poll-interval = "15m"
poll-jitter = "2m"
state-dir = "/var/lib/ferry"
report-url = "https://updates.example.com/reports"
device-id = "board-7"
max-artifact-size = 1073741824
network-timeout = "30s"
rollout-wariness = "canary"

[[app]]
name = "simple_api"
channel = "beta"
unit = "simple_api.service"
probation = "30s"
keep = 3
restart-timeout = "90s"
health-url = "http://127.0.0.1:8000/health"
health-command = ["/usr/bin/true"]
health-timeout = "5s"
health-retries = 3
user = "simple-api"
TOML
printf 'repository = "http://h/"\nroot = "root.json"\ndevice-id = "d"\n[[app]]\nname = "a"\nunit = "a"\n' \
  >fuzz/corpus/config/small.toml
# The launcher's payload: a small tree with a directory, files and links.
seed="$(mktemp -d)"
mkdir -p "$seed/t/lib/pkg"
printf 'print(1)\n' >"$seed/t/lib/pkg/__init__.py"
printf '#!/bin/sh\n' >"$seed/t/run"
chmod 755 "$seed/t/run"
ln -s lib/pkg "$seed/t/pkglink"
ln -s ../lib/pkg/__init__.py "$seed/t/lib/init-link"
tar -C "$seed/t" --format=gnu -cf fuzz/corpus/tar/tree.tar .
rm -rf "$seed"

cd fuzz
cargo +nightly fuzz build
logs="$(mktemp -d)"
failed=()
summary=()
for t in "${targets[@]}"; do
  echo "== $t: ${secs}s" >&2
  if cargo +nightly fuzz run "$t" -- -max_total_time="$secs" -print_final_stats=1 \
    >"$logs/$t.log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed+=("$t")
    tail -n 40 "$logs/$t.log" >&2
  fi
  execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$logs/$t.log" | grep -o '[0-9]*$' | tail -n 1)"
  cov="$(grep -o 'cov: [0-9]*' "$logs/$t.log" | tail -n 1 | grep -o '[0-9]*$')"
  summary+=("$(printf '%-12s %-6s execs=%s cov=%s' "$t" "$status" "${execs:-?}" "${cov:-?}")")
done
echo "fuzz results (${secs}s per target; logs in $logs):"
printf '  %s\n' "${summary[@]}"
if ((${#failed[@]})); then
  echo "crashes in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
