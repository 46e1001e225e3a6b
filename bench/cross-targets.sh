#!/usr/bin/env bash
# Build time and size of examples/simple_api per board: `ferry build --target`
# for x86_64 (this machine), aarch64 and armhf, in rotated order, N rounds
# (default 3), median, as ratios to the x86_64 build of the same rounds.
# The targets' interpreters are fetched once before timing and pip's HTTP
# cache is warm after the first, unmeasured round, so times exclude
# downloads; the start-up check is off for all (it runs emulated for ARM,
# and emulated start-up is no benchmark). Usage: bench/cross-targets.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
targets=(x86_64-linux-gnu aarch64-linux-gnu arm-linux-gnueabihf)

cargo build --release --locked -p ferry -p ferry-launcher >&2
scripts/cross.sh aarch64-linux-gnu >&2
scripts/cross.sh arm-linux-gnueabihf >&2
ferry=target/release/ferry
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r examples/simple_api "$work/project"
export SOURCE_DATE_EPOCH=1700000000

build() { # target round
  "$ferry" build "$work/project" --target "$1" --no-check -o "$work/out-$1" >/dev/null 2>"$work/log-$1"
}
for t in "${targets[@]}"; do build "$t" warmup; done

declare -A times
for ((r = 0; r < rounds; r++)); do
  for ((i = 0; i < ${#targets[@]}; i++)); do
    t=${targets[$(((i + r) % ${#targets[@]}))]}
    start=$(date +%s.%N)
    build "$t" "$r"
    end=$(date +%s.%N)
    times[$t]+="$(awk -v a="$start" -v b="$end" 'BEGIN {print b - a}') "
  done
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
base=$(echo "${times[x86_64-linux-gnu]}" | median)
base_size=$(stat -c %s "$work/out-x86_64-linux-gnu")
printf '| target | build (median of %d) | vs x86_64 | size | vs x86_64 |\n|---|---|---|---|---|\n' "$rounds"
for t in "${targets[@]}"; do
  m=$(echo "${times[$t]}" | median)
  size=$(stat -c %s "$work/out-$t")
  awk -v t="$t" -v m="$m" -v b="$base" -v s="$size" -v bs="$base_size" 'BEGIN {
    printf "| %s | %.1f s | %.2fx | %.1f MB | %.2fx |\n", t, m, m/b, s/1e6, s/bs }'
done
