#!/usr/bin/env bash
# Builds the Debian package of ferryd for a board: scripts/deb.sh ARCH, with
# ARCH one of amd64, arm64, armhf. Packs the release binary scripts/cross.sh
# built (run it first), the systemd unit, a commented /etc/ferry/agent.toml
# (a conffile: upgrades keep the board's edits) and the docs into
# target/deb/ferryd_<version>_<arch>.deb, installable with
# `apt install ./ferryd_<version>_<arch>.deb`.
set -euo pipefail
cd "$(dirname "$0")/.."

arch=${1:?usage: scripts/deb.sh amd64|arm64|armhf}
case "$arch" in
  amd64) triple=x86_64-unknown-linux-gnu gnu=x86_64-linux-gnu ;;
  arm64) triple=aarch64-unknown-linux-gnu gnu=aarch64-linux-gnu ;;
  armhf) triple=armv7-unknown-linux-gnueabihf gnu=arm-linux-gnueabihf ;;
  *)
    echo "error: unknown architecture \`$arch\`; use amd64, arm64 or armhf" >&2
    exit 2
    ;;
esac
binary=target/$triple/release/ferryd
if [ ! -x "$binary" ]; then
  echo "error: $binary is missing; run scripts/cross.sh $gnu first" >&2
  exit 1
fi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
# The newest glibc symbol version the binary needs is the oldest libc6 it runs on.
glibc=$(readelf -V --wide "$binary" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
chmod 0755 "$root"
install -D -m 0755 "$binary" "$root/usr/bin/ferryd"
install -D -m 0644 units/ferryd.service "$root/lib/systemd/system/ferryd.service"
install -D -m 0644 units/agent.toml "$root/etc/ferry/agent.toml"
install -D -m 0644 units/dev.ferry.Agent1.conf "$root/usr/share/dbus-1/system.d/dev.ferry.Agent1.conf"
doc=$root/usr/share/doc/ferryd
install -D -m 0644 docs/agent.md "$doc/agent.md"
install -D -m 0644 docs/repository.md "$doc/repository.md"
cat > "$doc/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: ferry
Files: *
License: Apache-2.0
 On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.
COPYRIGHT

mkdir -p "$root/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<CONTROL
Package: ferryd
Version: $version
Architecture: $arch
Maintainer: ferry <ferry@localhost>
Depends: libc6 (>= $glibc)
Recommends: systemd
Installed-Size: $size
Section: admin
Priority: optional
Description: ferry's update agent for Python apps on small Linux boards
 ferryd fetches signed releases from a ferry repository, verifies them
 against the repository's trust metadata, swaps them in atomically,
 restarts the app's unit and rolls back a release that fails its health
 check. Configure it in /etc/ferry/agent.toml.
CONTROL
echo /etc/ferry/agent.toml > "$root/DEBIAN/conffiles"
# Maintainer scripts touch systemd only when it runs (not in a chroot or an
# image build), as debhelper's do.
cat > "$root/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable ferryd.service
  systemctl restart ferryd.service
elif [ "$1" = configure ]; then
  systemctl enable ferryd.service >/dev/null 2>&1 || true
fi
POSTINST
cat > "$root/DEBIAN/prerm" <<'PRERM'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
  systemctl stop ferryd.service || true
fi
PRERM
cat > "$root/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
if [ "$1" = purge ]; then
  systemctl disable ferryd.service >/dev/null 2>&1 || true
  rm -rf /var/lib/ferry /var/cache/ferry
fi
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
fi
POSTRM
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"

mkdir -p target/deb
out=target/deb/ferryd_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$out.partial" >/dev/null
mv "$out.partial" "$out"
echo "$out"
