#!/usr/bin/env bash
# Installs what ferry's demo and tests need on a fresh Debian 12 machine (as
# root): Debian's minisign for signature interop, and the Rust components for
# formatting and lints. Installs only what is missing, so reruns are quick.
set -euo pipefail

packages=(minisign patchelf binutils debootstrap systemd dbus nginx iproute2 strace openssl python3 python3-pip python3-venv)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "error: cargo is not installed; install Rust (rustup) first" >&2
  exit 1
fi
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy

# python-tuf, the reference TUF client, reads ferry repositories in the tests.
venv="$(cd "$(dirname "$0")/.." && pwd)/target/tuf-venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import tuf.ngclient' 2>/dev/null; then
  echo "installing python-tuf into $venv" >&2
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'tuf>=5,<8'
fi
