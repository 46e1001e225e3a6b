#!/usr/bin/env bash
# ferry's main job on an embedded default, end to end: build the example Flask
# app into one signed executable, check its signature with ferry and with the
# stock minisign tool, then run it with a private cache and query it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release --locked -p ferry -p ferry-launcher
ferry="$PWD/target/release/ferry"
example="$PWD/examples/simple_api"

work=$(mktemp -d)
app_pid=""
cleanup() {
  [ -n "$app_pid" ] && kill "$app_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

echo "== ferry keygen (unencrypted key, as a CI secret store would hold it)"
"$ferry" keygen --no-password -s release.key -p release.pub
echo "== ferry build examples/simple_api --sign-key release.key"
"$ferry" build "$example" --sign-key release.key -o "$work/simple_api"
echo "== ferry verify"
"$ferry" verify simple_api --pubkey release.pub
echo "== minisign -V on the exported signed bytes (the stock tool agrees)"
"$ferry" inspect simple_api --pubkey release.pub --export-signed signed.bin
minisign -V -p release.pub -m signed.bin
echo "== run it: one file, its own interpreter, a private cache"
export FERRY_CACHE_DIR="$work/cache"
./simple_api --version
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null || echo 18080)
PORT=$port ./simple_api >app.log 2>&1 &
app_pid=$!
for _ in $(seq 1 100); do
  if body=$(exec 3<>"/dev/tcp/127.0.0.1/$port" && printf 'GET /health HTTP/1.0\r\nHost: x\r\n\r\n' >&3 && cat <&3); then
    echo "$body" | tail -1
    break
  fi
  sleep 0.1
done
echo "== a tampered copy is refused"
cp simple_api tampered
printf 'x' | dd of=tampered bs=1 seek=100000 conv=notrunc status=none
if "$ferry" verify tampered --pubkey release.pub; then
  echo "error: tampering went unnoticed" >&2
  exit 1
fi
echo "demo finished: built, signed, verified, served /health, tampering refused"
