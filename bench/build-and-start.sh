#!/usr/bin/env bash
# Build-and-start benchmark: packages examples/simple_api (a Flask app) with
# ferry (standalone), shiv, pex (zipapp and --venv) and PyInstaller --onefile,
# all from the same local wheels, then measures in ONE run: build time, file
# size, cold and warm start, peak RSS and cache footprint, with every start
# figure also as a ratio to a plain venv baseline
# (`venv/bin/python -c "import flask, requests"`). Start-up is measured for
# `APP --version` (imports neither Flask nor requests) and `APP --imports`
# (imports both, the baseline's work). See docs/benchmarks.md.
#
# Usage (Debian 12, as root, Rust installed):  bench/build-and-start.sh
# Settings (environment):
#   BENCH_WORK        work directory, wiped and recreated (default /tmp/ferry-bench)
#   BENCH_COLD_RUNS   cold-start runs per tool (default 10)
#   BENCH_WARM_RUNS   warm-start runs per tool (default 20)
#   BENCH_BUILD_RUNS  builds per tool, median reported (default 3)
# Results: printed, and written to $BENCH_WORK/results.{md,json}.
set -euo pipefail

repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
work=${BENCH_WORK:-/tmp/ferry-bench}
n_cold=${BENCH_COLD_RUNS:-10}
n_warm=${BENCH_WARM_RUNS:-20}
n_builds=${BENCH_BUILD_RUNS:-3}

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

for n in "$n_cold" "$n_warm" "$n_builds"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "BENCH_*_RUNS must be positive integers, got '$n'"
done
case "$work" in
  /*) ;;
  *) die "BENCH_WORK must be an absolute path, got '$work'" ;;
esac
# Wipe only a directory this script made (it leaves a marker file).
if [[ -e "$work" ]]; then
  [[ -f "$work/.ferry-bench" ]] || die "$work exists and was not made by this script; remove it or set BENCH_WORK"
  rm -rf -- "$work"
fi
mkdir -p "$work"
touch "$work/.ferry-bench"

# --- prerequisites ----------------------------------------------------------
command -v cargo >/dev/null || die "cargo is not installed; install Rust (rustup) first"
command -v python3 >/dev/null || die "python3 is not on PATH"
missing=()
command -v patchelf >/dev/null || missing+=(patchelf)
command -v strip >/dev/null || missing+=(binutils)
[[ -x /usr/bin/time ]] || missing+=(time)
# Debian's own python3 needs python3-venv for `python3 -m venv`.
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if ((${#missing[@]})); then
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

log "building ferry (release)"
(cd "$repo" && cargo build --release -p ferry -p ferry-launcher)
ferry=$repo/target/release/ferry

# A copy of the example, so the build does not write build/ and *.egg-info into
# the repository (and cannot race a test building the same directory).
src=$work/src/simple_api
mkdir -p "$work/src"
cp -r "$repo/examples/simple_api" "$src"
rm -rf "$src/build" "$src"/*.egg-info

log "installing shiv and pex (tools venv) and PyInstaller (its own venv) from PyPI"
python3 -m venv "$work/tools"
"$work/tools/bin/python" -m pip install -q shiv pex
python3 -m venv "$work/pyi-venv"
"$work/pyi-venv/bin/python" -m pip install -q pyinstaller

log "building the wheels once (downloads happen here, outside every timed build)"
# setuptools too: ferry installs the project directory itself, and pip's
# isolated build of it needs setuptools from the local wheels when offline.
"$work/tools/bin/python" -m pip wheel -q -w "$work/wheels" \
  -r "$src/requirements.txt" "$src" setuptools
wheels=$work/wheels

log "baseline venv and the plain runtime venv the zipapps run on"
python3 -m venv "$work/baseline"
"$work/baseline/bin/python" -m pip install -q --no-index --find-links "$wheels" simple_api
# shiv and pex output needs a Python at run time: a clean venv of the same
# interpreter (not the pyenv shim, which is a shell script, and not the base
# interpreter, whose site-packages would be scanned at every start).
python3 -m venv --without-pip "$work/runtime"
runtime_py=$work/runtime/bin/python3

# --- timed builds -----------------------------------------------------------
# Each tool builds BENCH_BUILD_RUNS times, in rounds with the order rotated, each
# build from scratch (no cache of an earlier build); the median is reported.
out=$work/out
mkdir -p "$out" "$work/logs" "$work/pyi"

# timed LOG CMD...: runs CMD with its output in logs/LOG.log; sets $secs (wall
# seconds) and returns CMD's status.
secs=0
timed() {
  local name=$1 t0 t1 rc=0
  shift
  t0=$(date +%s%N)
  "$@" >"$work/logs/$name.log" 2>&1 || rc=$?
  t1=$(date +%s%N)
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
  return "$rc"
}
why() { # the last lines of a log, on one line
  grep -v '^[[:space:]]*$' "$work/logs/$1.log" | tail -n 3 | tr '\t\n' '  ' | cut -c1-300
}
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.3f", m }'; }

# Note: set -e does not apply inside a function run as a condition (as these
# are, under `timed`), hence the `|| return` after every step.
keys=(ferry shiv pex pex-venv pyinstaller)
declare -A label=(
  [ferry]="ferry standalone" [shiv]="shiv" [pex]="pex (zipapp)"
  [pex-venv]="pex --venv" [pyinstaller]="PyInstaller --onefile"
)
declare -A cache_var=(
  [ferry]=FERRY_CACHE_DIR [shiv]=SHIV_ROOT [pex]=PEX_ROOT [pex-venv]=PEX_ROOT [pyinstaller]=-
)
declare -A artifact=(
  [ferry]=$out/ferry-app [shiv]=$out/app.pyz [pex]=$out/app.pex
  [pex-venv]=$out/app-venv.pex [pyinstaller]=$out/pyinstaller/simple-api
)

build_ferry() {
  "$ferry" build "$src" -o "${artifact[ferry]}"
}
build_shiv() {
  "$work/tools/bin/shiv" -c simple-api -p "$runtime_py" -o "${artifact[shiv]}" \
    --no-index --find-links "$wheels" simple_api
}
# A fresh PEX_ROOT per build: no build reuses another's cache.
prepare_pex() { rm -rf "$work/build-cache/pex"; }
build_pex() {
  PEX_ROOT="$work/build-cache/pex" "$work/tools/bin/pex" --no-pypi --find-links "$wheels" \
    simple_api -c simple-api --python-shebang "$runtime_py" -o "${artifact[pex]}"
}
prepare_pex_venv() { rm -rf "$work/build-cache/pex-venv"; }
build_pex_venv() {
  PEX_ROOT="$work/build-cache/pex-venv" "$work/tools/bin/pex" --no-pypi --find-links "$wheels" \
    simple_api -c simple-api --venv --python-shebang "$runtime_py" -o "${artifact[pex-venv]}"
}
# PyInstaller analyses the environment it runs in, so its build is: install the
# app from the wheels into its venv (reset to PyInstaller alone before every
# build), then --onefile on a two-line script. Both steps are timed; a fresh
# PYINSTALLER_CONFIG_DIR and --clean mean no cache reuse.
cat >"$work/pyi/simple_api_main.py" <<'PY'
import sys

from simple_api.app import main

sys.exit(main())
PY
prepare_pyinstaller() {
  rm -rf "$work/pyi-venv" "$work/pyi/build" "$work/pyi/config"
  cp -a "$work/pyi-venv.pristine" "$work/pyi-venv"
}
build_pyinstaller() {
  local t0 t1
  t0=$(date +%s%N)
  "$work/pyi-venv/bin/python" -m pip install --no-index --find-links "$wheels" simple_api || return
  t1=$(date +%s%N)
  printf '%s ' "$(((t1 - t0) / 1000000))" >>"$work/pyi/install-ms" || return
  # requests is a dependency the app never imports: --hidden-import keeps it
  # in, as every other tool ships all installed requirements.
  PYINSTALLER_CONFIG_DIR=$work/pyi/config "$work/pyi-venv/bin/pyinstaller" \
    --onefile --noconfirm --clean --log-level WARN --name simple-api \
    --distpath "$out/pyinstaller" --workpath "$work/pyi/build" --specpath "$work/pyi" \
    --hidden-import flask --hidden-import requests "$work/pyi/simple_api_main.py"
}
cp -a "$work/pyi-venv" "$work/pyi-venv.pristine"

# Every build resolves from the local wheels only.
export PIP_NO_INDEX=1 PIP_FIND_LINKS=$wheels
declare -A samples=() failed=()
for ((round = 0; round < n_builds; round++)); do
  for ((i = 0; i < ${#keys[@]}; i++)); do
    k=${keys[(i + round) % ${#keys[@]}]}
    [[ -z "${failed[$k]-}" ]] || continue
    fn=${k//-/_}
    rm -f "${artifact[$k]}"
    if declare -F "prepare_$fn" >/dev/null; then "prepare_$fn"; fi
    log "build $((round + 1))/$n_builds: ${label[$k]}"
    if timed "$k-$((round + 1))" "build_$fn" && [[ -f "${artifact[$k]}" ]]; then
      log "  ${secs} s, $(stat -c %s "${artifact[$k]}") bytes"
      samples[$k]+="$secs "
    else
      failed[$k]=$(why "$k-$((round + 1))")
      log "  FAILED: ${failed[$k]}"
    fi
  done
done
unset PIP_NO_INDEX PIP_FIND_LINKS

printf '# key\tlabel\tstatus\tbuild_s\tbuild_samples_s\tpath\tcache_var\tnote\n' >"$work/builds.tsv"
for k in "${keys[@]}"; do
  note=-
  if [[ -n "${failed[$k]-}" ]]; then
    fields=("$k" "${label[$k]}" fail - - - "${cache_var[$k]}" "${failed[$k]}")
  else
    if [[ $k == pyinstaller ]]; then
      note="build = pip install from the wheels (median $(median <"$work/pyi/install-ms" | awk '{ printf "%.0f", $1 }') ms) + pyinstaller --onefile"
    fi
    fields=("$k" "${label[$k]}" ok "$(median <<<"${samples[$k]}")" "${samples[$k]% }"
      "${artifact[$k]}" "${cache_var[$k]}" "$note")
  fi
  (IFS=$'\t'; printf '%s\n' "${fields[*]}") >>"$work/builds.tsv"
done

# --- start-up measurements --------------------------------------------------
machine() {
  echo "Machine: $(nproc) CPUs ($(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, $(uname -sr)"
  echo "Load average: $(cut -d' ' -f1-3 /proc/loadavg)"
}
{
  machine
  echo "Python: $("$runtime_py" -VV | tr '\n' ' ')"
  echo "Tools: ferry $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?') (working tree), shiv $("$work/tools/bin/shiv" --version | awk '{print $NF}'), pex $("$work/tools/bin/pex" --version), PyInstaller $("$work/pyi-venv/bin/pyinstaller" --version)"
  echo "Environment (same for every tool): PYTHONDONTWRITEBYTECODE=${PYTHONDONTWRITEBYTECODE-<unset>} PYTHONUNBUFFERED=${PYTHONUNBUFFERED-<unset>}"
} >"$work/header.txt"

log "measuring start-up of --version and --imports: cold N=$n_cold, warm N=$n_warm, interleaved (takes several minutes)"
"$runtime_py" "$repo/bench/measure.py" --work "$work" \
  --baseline-python "$work/baseline/bin/python" --venv-script "$work/baseline/bin/simple-api" \
  --cold-runs "$n_cold" --warm-runs "$n_warm" >"$work/table.md"

echo "Load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$work/header.txt"
cat "$work/header.txt" "$work/table.md" >"$work/results.md"
echo
cat "$work/results.md"
echo
echo "(also in $work/results.md and $work/results.json; build logs in $work/logs/)"
