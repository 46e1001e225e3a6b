#!/usr/bin/env bash
# Agent benchmark: measures ferryd in ONE run, on this machine:
#   1. the size of the stripped ferryd binary;
#   2. idle RSS and CPU of ferryd as a service polling an unchanged repository
#      (tests/src/bin/ferry-bench-agent.rs `idle`, on a systemd sandbox board),
#      without and with its Home Assistant link to a Mosquitto on loopback;
#   3. download + SHA-256 of a 200 MiB (and a 50 MiB) artifact from nginx on
#      loopback with ferryd's RepoClient vs `curl -s -o f URL && sha256sum f`
#      (agent/examples/download_bench.rs);
#   4. the time from `ferry publish` to the new version committed, split into
#      phases from the agent's journal events (ferry-bench-agent `update`).
# See docs/benchmarks.md, section "The agent".
#
# Usage (Debian 12, as root, Rust installed):  bench/agent.sh
# Settings (environment):
#   BENCH_WORK            work directory, wiped and recreated (default /tmp/ferry-bench-agent)
#   BENCH_IDLE_MINUTES    length of the idle window (default 10)
#   BENCH_UPDATE_RUNS     updates measured (default 3)
#   BENCH_DOWNLOAD_RUNS   downloads per method and size (default 5)
#   BENCH_DOWNLOAD_SIZES  artifact sizes in MiB, comma-separated (default 200,50)
# Results: printed, and written to $BENCH_WORK/results.md.
set -euo pipefail

repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
work=${BENCH_WORK:-/tmp/ferry-bench-agent}
idle_minutes=${BENCH_IDLE_MINUTES:-10}
update_runs=${BENCH_UPDATE_RUNS:-3}
download_runs=${BENCH_DOWNLOAD_RUNS:-5}
download_sizes=${BENCH_DOWNLOAD_SIZES:-200,50}

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

[[ "$idle_minutes" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "BENCH_IDLE_MINUTES must be a number, got '$idle_minutes'"
for n in "$update_runs" "$download_runs"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "BENCH_UPDATE_RUNS and BENCH_DOWNLOAD_RUNS must be positive integers, got '$n'"
done
[[ "$download_sizes" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "BENCH_DOWNLOAD_SIZES must be MiB numbers separated by commas, got '$download_sizes'"
case "$work" in
  /*) ;;
  *) die "BENCH_WORK must be an absolute path, got '$work'" ;;
esac
[[ $(id -u) == 0 ]] || die "run as root (the board is a systemd sandbox in fresh namespaces)"
# Wipe only a directory this script made (it leaves a marker file).
if [[ -e "$work" ]]; then
  [[ -f "$work/.ferry-bench-agent" ]] || die "$work exists and was not made by this script; remove it or set BENCH_WORK"
  rm -rf -- "$work"
fi
mkdir -p "$work"
touch "$work/.ferry-bench-agent"

# --- prerequisites ----------------------------------------------------------
command -v cargo >/dev/null || die "cargo is not installed; install Rust (rustup) first"
missing=()
command -v strip >/dev/null || missing+=(binutils)
[[ -x /usr/bin/time ]] || missing+=(time)
command -v curl >/dev/null || missing+=(curl)
[[ -x /usr/sbin/nginx ]] || missing+=(nginx)
command -v journalctl >/dev/null || missing+=(systemd)
command -v nsenter >/dev/null || missing+=(util-linux)
command -v dbus-daemon >/dev/null || missing+=(dbus)
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

started=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

# --- build ------------------------------------------------------------------
cd "$repo"
log "building (release)"
cargo build --release --locked --bins -p ferry -p ferry-launcher -p ferryd -p ferry-tests
cargo build --release --locked --example download_bench -p ferryd
bin=$repo/target/release

# --- machine ----------------------------------------------------------------
cpu_model=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
mem_gib=$(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)
os=$( (. /etc/os-release && echo "$PRETTY_NAME") 2>/dev/null || echo unknown)
commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$repo" status --porcelain 2>/dev/null | head -1)
machine="- $(nproc) CPUs, \`model name: $cpu_model\`, $mem_gib GiB RAM; Linux $(uname -r), $os
- ferry at commit \`$commit\`${dirty:+ with uncommitted changes}; $(rustc --version)
- load average (1, 5, 15 min) when the script started: $load_start"

# --- 1. binary size -----------------------------------------------------------
log "1/4 stripped binary size"
cp "$bin/ferryd" "$work/ferryd"
strip "$work/ferryd"
size_bytes=$(stat -c %s "$work/ferryd")
size_unstripped=$(stat -c %s "$bin/ferryd")
size_mib=$(awk -v b="$size_bytes" 'BEGIN { printf "%.2f", b / 1048576 }')
size_ok=$(awk -v b="$size_bytes" 'BEGIN { print (b <= 6 * 1048576) ? "PASS" : "FAIL" }')
size_md="| binary | bytes | MiB |
|---|--:|--:|
| \`target/release/ferryd\` (release profile: \`opt-level = \"z\"\` with the hashing and signature crates at 3, fat LTO, \`panic = \"abort\"\`, \`strip = \"symbols\"\`) | $size_unstripped | $(awk -v b="$size_unstripped" 'BEGIN { printf "%.2f", b / 1048576 }') |
| the same after \`strip\` | $size_bytes | $size_mib |"
printf '%s\n' "$size_md"

# --- 3. download + verify -------------------------------------------------------
log "2/4 download + SHA-256 vs curl + sha256sum (sizes $download_sizes MiB, $download_runs runs each)"
"$bin/examples/download_bench" --runs "$download_runs" --sizes-mib "$download_sizes" \
  --dir "$work" --summary "$work/download.env" | tee "$work/download.md"

# --- 4. publish -> committed ------------------------------------------------------
log "3/4 publish -> committed ($update_runs updates)"
"$bin/ferry-bench-agent" update --runs "$update_runs" --summary "$work/update.env" | tee "$work/update.md"

# --- 2. idle --------------------------------------------------------------------
log "4/4 idle for $idle_minutes minutes, then as long with the Home Assistant link on"
"$bin/ferry-bench-agent" idle --minutes "$idle_minutes" --summary "$work/idle.env" | tee "$work/idle.md"
"$bin/ferry-bench-agent" idle --minutes "$idle_minutes" --mqtt on --summary "$work/idle-mqtt.env" | tee "$work/idle-mqtt.md"

load_end=$(cut -d' ' -f1-3 /proc/loadavg)
elapsed=$(($(date +%s) - started))

# --- targets ----------------------------------------------------------------------
val() { sed -n "s/^$2=//p" "$work/$1.env"; }
cmp_le() { awk -v a="$1" -v b="$2" 'BEGIN { print (a <= b) ? "PASS" : "FAIL" }'; }
idle_rss=$(val idle rss_median_mib)
targets="| target | measured | result |
|---|---|---|
| stripped ferryd ≤ 6 MiB | $size_mib MiB ($size_bytes bytes) | $size_ok |
| idle RSS ≤ 8 MiB (median VmRSS over ${idle_minutes} min) | $(printf '%.2f' "$idle_rss") MiB (max $(printf '%.2f' "$(val idle rss_max_mib)"), VmHWM $(printf '%.2f' "$(val idle hwm_mib)")) | $(cmp_le "$idle_rss" 8) |
| idle RSS with \`[mqtt]\` ≤ 8 MiB (median VmRSS over ${idle_minutes} min, Mosquitto on loopback) | $(printf '%.2f' "$(val idle-mqtt rss_median_mib)") MiB (max $(printf '%.2f' "$(val idle-mqtt rss_max_mib)"), VmHWM $(printf '%.2f' "$(val idle-mqtt hwm_mib)")) | $(cmp_le "$(val idle-mqtt rss_median_mib)" 8) |"
IFS=, read -ra sizes <<<"$download_sizes"
for s in "${sizes[@]}"; do
  ratio=$(val download "ratio_$s")
  targets+="
| download + verify of $s MiB ≤ 1.2× curl + sha256sum | $(printf '%.2f' "$ratio")× ($(printf '%.3f' "$(val download "ferry_wall_$s")") s vs $(printf '%.3f' "$(val download "curl_wall_$s")") s) | $(cmp_le "$ratio" 1.2) |"
done
rss_line=""
for s in "${sizes[@]}"; do
  rss_line+="${rss_line:+, }$s MiB: $(printf '%.1f' "$(val download "ferry_rss_$s")") MiB"
done
first=${sizes[0]} last=${sizes[${#sizes[@]} - 1]}
flat=$(awk -v a="$(val download "ferry_rss_$first")" -v b="$(val download "ferry_rss_$last")" \
  'BEGIN { d = a - b; if (d < 0) d = -d; print (d <= 2) ? "PASS" : "FAIL" }')
targets+="
| download peak RSS flat in the artifact size (medians within 2 MiB) | $rss_line | $flat |"

{
  echo "# Agent benchmark results ($(date -u '+%Y-%m-%d %H:%M UTC'), ${elapsed} s in total)"
  echo
  echo "$machine"
  echo "- load average at the end: $load_end"
  echo
  echo "## Stripped binary size"
  echo
  echo "$size_md"
  echo
  echo "## Download + verify"
  sed -n '/^| artifact/,$p' "$work/download.md"
  echo
  echo "## Publish → committed"
  sed -n '/^### Update/,$p' "$work/update.md" | tail -n +2
  echo
  echo "## Idle"
  sed -n '/^### Idle/,$p' "$work/idle.md" | tail -n +2
  echo
  echo "## Idle with the Home Assistant link (\`[mqtt]\`, Mosquitto on loopback)"
  sed -n '/^### Idle/,$p' "$work/idle-mqtt.md" | tail -n +2
  echo
  echo "## Targets"
  echo
  echo "$targets"
} >"$work/results.md"
echo
cat "$work/results.md"
log "results in $work/results.md"
