#!/usr/bin/env bash
# Installs what ferry's demo and tests need on a fresh Debian 12 machine (as
# root): Debian's minisign for signature interop, nginx and Mosquitto for the
# boards' servers, Chromium and g++ for the Home Assistant test (its
# screenshot, the C extensions it builds), the Rust components for
# formatting and lints, and the cross toolchain for ARM boards (Debian's own
# Rust with the arm64 and armhf standard libraries, their gcc, qemu-user and
# their glibc, which emulated boards and the start-up check load).
# Installs only what is missing, so reruns are quick.
set -euo pipefail

# Foreign architectures: Debian's std for the targets, and the targets' own
# packages (their Python, their libraries) that `ferry build --target` unpacks.
update=0
for arch in arm64 armhf; do
  if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
    dpkg --add-architecture "$arch"
    update=1
  fi
done

packages=(minisign patchelf binutils debootstrap systemd dbus nginx mosquitto mosquitto-clients chromium g++ iproute2 strace openssl python3 python3-pip python3-venv
  rustc-web cargo-web libstd-rust-web-dev:arm64 libstd-rust-web-dev:armhf
  gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf qemu-user-static libc6:arm64 libc6:armhf)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  update=1
fi
if ((update)); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
fi
if ((${#missing[@]})); then
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
