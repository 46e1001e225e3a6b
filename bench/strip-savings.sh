#!/usr/bin/env bash
# What `strip --strip-debug` saves on the build interpreter's own ELF files
# (executable, libpython, lib-dynload), uncompressed and as zstd level 12
# (ferry's default payload compression). Usage: bench/strip-savings.sh [PYTHON]
set -euo pipefail
python=${1:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
read -r exe libdir ldlib dynload < <("$python" -c '
import sys, sysconfig
v = sysconfig.get_config_var
print(sys.executable, v("LIBDIR"), v("INSTSONAME") or "-", sysconfig.get_path("platstdlib") + "/lib-dynload")')
cp -L "$exe" "$work/"
if [ "$ldlib" != "-" ] && [ -f "$libdir/$ldlib" ]; then cp -L "$libdir/$ldlib" "$work/"; fi
cp -rL "$dynload" "$work/lib-dynload"
measure() {
  printf '%s %s\n' "$(du -sb "$work" | cut -f1)" "$(tar cf - -C "$work" . | zstd -12 -T1 -q -c | wc -c)"
}
read -r before before_z < <(measure)
find "$work" -type f -exec sh -c 'head -c4 "$1" | grep -q ELF' _ {} \; -exec strip --strip-debug {} +
read -r after after_z < <(measure)
awk -v b="$before" -v bz="$before_z" -v a="$after" -v az="$after_z" -v py="$("$python" -c 'import sys; print(sys.version.split()[0])')" 'BEGIN {
  printf "Python %s: interpreter ELF files %.1f MB -> %.1f MB stripped (%.2fx); zstd -12: %.1f MB -> %.1f MB (%.2fx)\n", py, b/1e6, a/1e6, a/b, bz/1e6, az/1e6, az/bz }'
