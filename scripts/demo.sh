#!/usr/bin/env bash
# ferry's main job on an embedded default, end to end: make a signing key, sign
# a release file, and check it both with ferry and with the stock minisign tool.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release --locked -p ferry
ferry="$PWD/target/release/ferry"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

echo "== ferry keygen (unencrypted key, as a CI secret store would hold it)"
"$ferry" keygen --no-password -s release.key -p release.pub
echo "== ferry sign"
printf 'demo release\n' > release.txt
"$ferry" sign release.txt --key release.key
echo "== ferry verify"
"$ferry" verify release.txt --pubkey release.pub
echo "== minisign -V (the stock tool checks ferry's signature)"
minisign -V -p release.pub -m release.txt
echo "== a tampered copy is refused"
printf 'tampered\n' > release.txt
if "$ferry" verify release.txt --pubkey release.pub; then
  echo "error: tampering went unnoticed" >&2
  exit 1
fi
echo "demo finished: signed, verified, tampering refused"
