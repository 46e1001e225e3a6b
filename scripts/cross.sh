#!/usr/bin/env bash
# Builds ferryd and ferry-launcher for a board: scripts/cross.sh TARGET, with
# TARGET a Debian multiarch name (aarch64-linux-gnu, arm-linux-gnueabihf,
# x86_64-linux-gnu) or a Rust triple. The binaries land in
# target/<rust triple>/release/. For an ARM target it uses Debian's rustc-web, whose std for the
# target comes from libstd-rust-web-dev:<arch> (rustup cannot add targets
# here), and the target's gcc as linker and C compiler (zstd's C code).
# scripts/install-deps.sh installs all of it.
set -euo pipefail
cd "$(dirname "$0")/.."

target=${1:?usage: scripts/cross.sh aarch64-linux-gnu|arm-linux-gnueabihf|x86_64-linux-gnu}
case "$target" in
  aarch64-linux-gnu | aarch64-unknown-linux-gnu) triple=aarch64-unknown-linux-gnu gnu=aarch64-linux-gnu ;;
  arm-linux-gnueabihf | armv7-unknown-linux-gnueabihf) triple=armv7-unknown-linux-gnueabihf gnu=arm-linux-gnueabihf ;;
  x86_64-linux-gnu | x86_64-unknown-linux-gnu) triple=x86_64-unknown-linux-gnu gnu=x86_64-linux-gnu ;;
  *)
    echo "error: unknown target \`$target\`; use aarch64-linux-gnu, arm-linux-gnueabihf or x86_64-linux-gnu" >&2
    exit 2
    ;;
esac

host=$(uname -m)-linux-gnu
if [ "$gnu" = "$host" ]; then
  # The host's own target: the workspace's toolchain, its usual target
  # directory (cargo puts an explicit --target's build in target/<triple>/).
  cargo build --release --locked --target "$triple" -p ferryd -p ferry-launcher
  echo "target/$triple/release/ferryd"
  echo "target/$triple/release/ferry-launcher"
  exit 0
fi

rustc=/usr/bin/rustc
cargo=/usr/bin/cargo
if [ ! -x "$rustc" ] || [ ! -d "/usr/lib/rustlib/$triple" ]; then
  echo "error: Debian's Rust for $triple is missing; run scripts/install-deps.sh" >&2
  exit 1
fi
if ! command -v "$gnu-gcc" >/dev/null; then
  echo "error: the cross compiler $gnu-gcc is missing; run scripts/install-deps.sh" >&2
  exit 1
fi

env_triple=$(echo "$triple" | tr 'a-z-' 'A-Z_')
export "CARGO_TARGET_${env_triple}_LINKER=$gnu-gcc"
export "CC_${triple//-/_}=$gnu-gcc"
export "AR_${triple//-/_}=$gnu-ar"
# A separate target directory: Debian's rustc and rustup's must not share
# build artefacts, and the host's debug builds stay warm.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/cross}
RUSTC=$rustc "$cargo" build --release --locked --target "$triple" -p ferryd -p ferry-launcher
mkdir -p "target/$triple/release"
for bin in ferryd ferry-launcher; do
  install -m 0755 "$CARGO_TARGET_DIR/$triple/release/$bin" "target/$triple/release/$bin"
done
echo "target/$triple/release/ferryd"
echo "target/$triple/release/ferry-launcher"
