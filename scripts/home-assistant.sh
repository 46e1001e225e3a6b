#!/usr/bin/env bash
# A real Home Assistant Core for end-to-end tests of ferryd's MQTT `update`
# entities: install it into a venv, start it headless and onboarded with the
# MQTT integration pointed at a broker, take screenshots of its UI, stop it.
#
#   home-assistant.sh install DIR
#       venv at DIR with the pinned Home Assistant Core and every package the
#       integrations that `start` loads need (so HA never pip-installs at run
#       time). Idempotent: a marker keyed by the pinned versions makes reruns
#       instant. The download cache sits beside DIR (DIR/../uv-cache) unless
#       UV_CACHE_DIR is set. Needs gcc and g++ (a few sdists are compiled).
#   home-assistant.sh start DIR CONFIG_DIR PORT MQTT_HOST MQTT_PORT MQTT_USER MQTT_PASSWORD
#       writes CONFIG_DIR/configuration.yaml, starts `hass` in the background
#       (CONFIG_DIR/hass.pid, output in CONFIG_DIR/hass.out and
#       CONFIG_DIR/home-assistant.log), onboards it (owner `ferry`, password
#       `ferry-test-password`), stores a long-lived access token in
#       CONFIG_DIR/token, adds the MQTT integration (discovery on, prefix
#       `homeassistant`) and prints the token's path. Reusing a CONFIG_DIR
#       keeps its user, token and MQTT entry.
#       With HA_OWNER_PID set, hass is stopped when that process ends.
#   home-assistant.sh stop CONFIG_DIR
#   home-assistant.sh screenshot CONFIG_DIR PORT URL_PATH OUT.png [ENTITY_ID]
#       headless Chromium screenshot of URL_PATH (e.g. /config/devices/dashboard)
#       logged in with CONFIG_DIR/token; with ENTITY_ID, the entity's more-info
#       dialog is opened over that page first.
#
# Environment: HA_PYTHON (interpreter for the venv; default: newest pyenv
# 3.13.x, else python3.13 on PATH), HA_START_TIMEOUT (seconds, default 300),
# HA_SHOT_WAIT (seconds to let the UI render, default 4), CHROMIUM (default
# chromium).
set -euo pipefail

# Pins. Home Assistant 2025.4.x is the last series that runs on Python
# 3.13.0/3.13.1 (2025.5 needs >=3.13.2, 2026.3 >=3.14.2); pyenv here has 3.13.0.
# The frontend and paho-mqtt pins are the ones HA 2025.4.4's frontend and mqtt
# manifests require; `install` checks that they still match.
HA_VERSION=2025.4.4
FRONTEND_VERSION=20250411.0
PAHO_VERSION=2.1.0
UV_VERSION=0.6.10 # the installer, as HA 2025.4.4 pins it
PYTHON_SERIES=3.13

# Integrations the generated configuration.yaml names (besides HA's default
# ones); `install` preinstalls the requirements of their whole dependency tree.
CONFIG_DOMAINS="http frontend api websocket_api config update mqtt logger"

OWNER_USER=ferry
OWNER_PASSWORD=ferry-test-password

die() { echo "home-assistant.sh: $*" >&2; exit 1; }
ms() { date +%s%3N; }
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
secs_since() { local d=$(($(ms) - $1)); printf '%d.%d' $((d / 1000)) $((d % 1000 / 100)); }

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# The interpreter for the venv: HA_PYTHON, else the newest pyenv 3.13.x, else
# python3.13 from PATH.
find_python() {
  if [[ -n "${HA_PYTHON:-}" ]]; then echo "$HA_PYTHON"; return; fi
  local root="" best="" v
  if command -v pyenv >/dev/null; then root=$(pyenv root); fi
  [[ -n "$root" ]] || root="${PYENV_ROOT:-$HOME/.pyenv}"
  for v in "$root/versions/$PYTHON_SERIES".*; do
    [[ "${v##*/}" =~ ^${PYTHON_SERIES//./\\.}\.([0-9]+)$ && -x "$v/bin/python3" ]] || continue
    if [[ -z "$best" ]] || ((BASH_REMATCH[1] > ${best##*.})); then best=$v; fi
  done
  if [[ -n "$best" ]]; then echo "$best/bin/python3"; return; fi
  command -v "python$PYTHON_SERIES" || die "no Python $PYTHON_SERIES (set HA_PYTHON)"
}

cmd_install() {
  (($# == 1)) || usage
  local dir=$1 py key marker
  py=$(find_python)
  key="homeassistant=$HA_VERSION uv=$UV_VERSION home-assistant-frontend=$FRONTEND_VERSION paho-mqtt=$PAHO_VERSION python=$("$py" -c 'import platform; print(platform.python_version())') domains=$CONFIG_DOMAINS"
  marker="$dir/.ferry-ha-installed"
  if [[ -f "$marker" && "$(cat "$marker")" == "$key" && -x "$dir/bin/hass" ]]; then
    echo "Home Assistant $HA_VERSION already installed in $dir" >&2
    return
  fi
  # Start afresh, but only ever delete a venv (or an empty directory).
  if [[ -e "$dir" ]]; then
    [[ -f "$dir/pyvenv.cfg" || -z "$(ls -A "$dir")" ]] || die "$dir exists and is not a venv"
    rm -rf "$dir"
  fi
  mkdir -p "$(dirname "$dir")"
  # uv (the installer HA itself uses, at the version HA pins) rather than pip:
  # it builds the sdists in parallel, and its cache keeps downloaded wheels too
  # (pip's HTTP cache stays empty here: the package mirror sends no cache
  # headers), so a reinstall from a warm cache needs no network.
  export UV_CACHE_DIR="${UV_CACHE_DIR:-$(cd "$(dirname "$dir")" && pwd)/uv-cache}"
  "$py" -m venv "$dir"
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$dir/bin/python" -m pip install --quiet "uv==$UV_VERSION"
  # No HA release installs from PyPI wheels alone (HA builds the rest on its own
  # wheel index): 2025.4.4 on 3.13 builds ciso8601, lru-dict, pymicro-vad and
  # pyspeex-noise with gcc/g++, and the pure-Python PyTurboJPEG, fnvhash and
  # PyRIC, from sdists. Bytecode is compiled now so the first start is not
  # slowed down by it.
  local pip=("$dir/bin/uv" pip install --quiet --python "$dir/bin/python" --native-tls --compile-bytecode)
  # HA's own package constraints (shipped in its wheel), as its runtime
  # installer uses them, for HA's dependencies too.
  "${pip[@]}" --no-deps "homeassistant==$HA_VERSION"
  local constraints
  constraints=$("$dir/bin/python" -c 'import homeassistant, os; print(os.path.join(os.path.dirname(homeassistant.__file__), "package_constraints.txt"))')
  "${pip[@]}" -c "$constraints" "homeassistant==$HA_VERSION"
  # Requirements of everything HA will set up: the configured domains, HA's
  # always-loaded ones, and their dependencies, after_dependencies and
  # discovery integrations, walked the way homeassistant/requirements.py does.
  local reqs
  # shellcheck disable=SC2086 # one argument per domain
  reqs=$("$dir/bin/python" - $CONFIG_DOMAINS <<'PY'
import json, pathlib, sys
import homeassistant.bootstrap as b
import homeassistant.components as c
comp = pathlib.Path(c.__path__[0])
discovery = {"dhcp": ("dhcp",), "mqtt": ("mqtt",), "ssdp": ("ssdp",), "zeroconf": ("zeroconf", "homekit")}
todo = set(sys.argv[1:]) | b.CORE_INTEGRATIONS | b.DEFAULT_INTEGRATIONS
done, reqs = set(), set()
while todo:
    d = todo.pop()
    if d in done:
        continue
    done.add(d)
    path = comp / d / "manifest.json"
    if not path.exists():
        continue
    m = json.loads(path.read_text())
    reqs.update(m.get("requirements", []))
    todo.update(m.get("dependencies", []) + m.get("after_dependencies", []))
    todo.update(k for k, v in discovery.items() if any(x in m for x in v))
print("\n".join(sorted(reqs)))
PY
)
  grep -qx "home-assistant-frontend==$FRONTEND_VERSION" <<<"$reqs" || die "frontend manifest no longer asks for home-assistant-frontend==$FRONTEND_VERSION: update the pin"
  grep -qx "paho-mqtt==$PAHO_VERSION" <<<"$reqs" || die "mqtt manifest no longer asks for paho-mqtt==$PAHO_VERSION: update the pin"
  # shellcheck disable=SC2086
  "${pip[@]}" -c "$constraints" $reqs
  "$dir/bin/uv" pip check --python "$dir/bin/python" >&2
  echo "$key" >"$marker"
  echo "Home Assistant $HA_VERSION installed in $dir" >&2
}

write_config() {
  local cfg=$1 port=$2
  mkdir -p "$cfg/.storage"
  # No default_config: it pulls in cloud, zeroconf, ssdp, dhcp, bluetooth,
  # usb... which want the network or hardware. Only the frontend (which brings
  # config, onboarding, lovelace, ...), the REST and websocket APIs and the
  # update platform.
  cat >"$cfg/configuration.yaml" <<EOF
# Written by ferry's scripts/home-assistant.sh; rewritten on every start.
homeassistant:
  name: ferry test
  latitude: 52.37
  longitude: 4.89
  elevation: 0
  unit_system: metric
  time_zone: UTC
  country: NL
  currency: EUR
  language: en
http:
  server_host: 127.0.0.1
  server_port: $port
frontend:
config:
api:
websocket_api:
update:
logger:
  default: warning
  logs:
    homeassistant.components.mqtt: info
    homeassistant.setup: info
    homeassistant.bootstrap: info
EOF
  # Onboarding: mark every step but the owner user as done before the first
  # start. The core_config step would otherwise set up google_translate, met,
  # radio_browser and shopping_list (pip installs and internet); the
  # location, units and time zone are in configuration.yaml instead.
  if [[ ! -f "$cfg/.storage/onboarding" ]]; then
    cat >"$cfg/.storage/onboarding" <<'EOF'
{"version": 4, "minor_version": 1, "key": "onboarding", "data": {"done": ["core_config", "analytics", "integration"]}}
EOF
  fi
}

hass_pid() {
  local cfg=$1 pid
  [[ -f "$cfg/hass.pid" ]] || return 1
  pid=$(cat "$cfg/hass.pid")
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

cmd_start() {
  (($# == 7)) || usage
  local dir=$1 cfg=$2 port=$3 mqtt_host=$4 mqtt_port=$5 mqtt_user=$6 mqtt_password=$7
  [[ -x "$dir/bin/hass" ]] || die "no Home Assistant in $dir: run install first"
  mkdir -p "$cfg"
  cfg=$(cd "$cfg" && pwd)
  dir=$(cd "$dir" && pwd)
  if pid=$(hass_pid "$cfg"); then die "Home Assistant already running for $cfg (pid $pid)"; fi
  # Something else answering on the port would pass for this instance.
  port_busy "$port" && die "port $port is already in use"
  write_config "$cfg" "$port"
  local base="http://127.0.0.1:$port" timeout=${HA_START_TIMEOUT:-300} t0 pid
  t0=$(ms)
  # Remembered for `screenshot`, which runs its CDP client with the venv's Python.
  echo "$dir" >"$cfg/venv-path"
  # --skip-pip: everything is preinstalled, so a missing package fails loudly
  # instead of a silent install at run time.
  setsid "$dir/bin/hass" -c "$cfg" --skip-pip </dev/null >"$cfg/hass.out" 2>&1 &
  pid=$!
  echo "$pid" >"$cfg/hass.pid"
  if [[ -n "${HA_OWNER_PID:-}" ]]; then watch_owner "$HA_OWNER_PID" "$pid"; fi
  # Wait for the HTTP server to answer at all. /api/onboarding needs no token
  # (a probe of /api/ would log an invalid-auth warning each time) but is 404
  # once onboarding is done, so any HTTP status counts; curl prints 000 while
  # the port is closed.
  until [[ "$(curl -s -o /dev/null -w '%{http_code}' "$base/api/onboarding" 2>/dev/null)" != 000 ]]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 40 "$cfg/hass.out" >&2
      die "hass exited before its API answered"
    fi
    if (($(ms) - t0 > timeout * 1000)); then
      tail -n 40 "$cfg/hass.out" >&2
      cmd_stop "$cfg"
      die "no API on $base after ${timeout}s (stopped it)"
    fi
    sleep 0.2
  done
  echo "home-assistant.sh: API answered after $(secs_since "$t0")s" >&2
  # A failed set-up stops the instance rather than leaving it running.
  if ! "$dir/bin/python" - "$cfg" "$base" "$mqtt_host" "$mqtt_port" "$mqtt_user" "$mqtt_password" \
    "$OWNER_USER" "$OWNER_PASSWORD" "$timeout" <<'PY'
# Onboarding, token and MQTT config entry, through HA's own REST and websocket
# APIs (aiohttp comes with Home Assistant).
import asyncio, json, os, sys, time
import aiohttp

cfg, base, mhost, mport, muser, mpass, user, password, timeout = sys.argv[1:]
client_id = base + "/"
token_path = os.path.join(cfg, "token")
deadline = time.monotonic() + float(timeout)


def log(msg):
    print(f"home-assistant.sh: {msg}", file=sys.stderr, flush=True)


async def check(resp):
    if resp.status >= 400:
        raise SystemExit(f"{resp.method} {resp.url}: {resp.status} {await resp.text()}")
    return await resp.json()


async def auth_code(s):
    """An authorization code for the owner: from onboarding on a fresh
    instance, else from the login flow."""
    steps = await check(await s.get(f"{base}/api/onboarding"))
    if not next(x["done"] for x in steps if x["step"] == "user"):
        r = await check(await s.post(f"{base}/api/onboarding/users", json={
            "client_id": client_id, "name": "Ferry Test", "username": user,
            "password": password, "language": "en"}))
        log("onboarded owner user")
        return r["auth_code"]
    flow = await check(await s.post(f"{base}/auth/login_flow", json={
        "client_id": client_id, "handler": ["homeassistant", None], "redirect_uri": client_id}))
    r = await check(await s.post(f"{base}/auth/login_flow/{flow['flow_id']}", json={
        "client_id": client_id, "username": user, "password": password}))
    if r.get("type") != "create_entry":
        raise SystemExit(f"login failed: {r}")
    return r["result"]


async def new_token(s):
    code = await auth_code(s)
    tokens = await check(await s.post(f"{base}/auth/token", data={
        "grant_type": "authorization_code", "code": code, "client_id": client_id}))
    # A long-lived access token (10 years) is only handed out over the websocket.
    async with s.ws_connect(f"{base}/api/websocket") as ws:
        assert (await ws.receive_json())["type"] == "auth_required"
        await ws.send_json({"type": "auth", "access_token": tokens["access_token"]})
        msg = await ws.receive_json()
        if msg["type"] != "auth_ok":
            raise SystemExit(f"websocket auth failed: {msg}")
        await ws.send_json({"id": 1, "type": "auth/long_lived_access_token",
                            "client_name": "ferry tests", "lifespan": 3650})
        msg = await ws.receive_json()
        if not msg.get("success"):
            raise SystemExit(f"long-lived token refused: {msg}")
    return msg["result"]


async def main():
    async with aiohttp.ClientSession() as s:
        token = None
        if os.path.exists(token_path):
            token = open(token_path).read().strip()
            async with s.get(f"{base}/api/", headers={"Authorization": f"Bearer {token}"}) as r:
                if r.status != 200:
                    token = None
        if token is None:
            token = await new_token(s)
            fd = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(token + "\n")
        h = {"Authorization": f"Bearer {token}"}

        # Wait until every integration has been set up.
        while True:
            async with s.get(f"{base}/api/config", headers=h) as r:
                if r.status == 200 and (await r.json()).get("state") == "RUNNING":
                    break
            if time.monotonic() > deadline:
                raise SystemExit("Home Assistant did not reach RUNNING")
            await asyncio.sleep(0.2)
        log("Home Assistant is RUNNING")

        # MQTT: one config entry (single_config_entry); discovery is on with
        # prefix `homeassistant` by default.
        entries = await check(await s.get(f"{base}/api/config/config_entries/entry",
                                          headers=h, params={"domain": "mqtt"}))
        if entries:
            entry = entries[0]
        else:
            flow = await check(await s.post(f"{base}/api/config/config_entries/flow",
                                            headers=h, json={"handler": "mqtt"}))
            if flow.get("type") != "form" or flow.get("step_id") != "broker":
                raise SystemExit(f"unexpected MQTT flow: {flow}")
            r = await check(await s.post(
                f"{base}/api/config/config_entries/flow/{flow['flow_id']}", headers=h,
                json={"broker": mhost, "port": int(mport), "username": muser, "password": mpass}))
            if r.get("type") != "create_entry":
                raise SystemExit(f"MQTT flow failed: {r}")
            entry = r["result"]
            log(f"added MQTT integration for {mhost}:{mport}")
        while entry.get("state") != "loaded":
            if entry.get("state") in ("setup_error", "migration_error", "failed_unload"):
                raise SystemExit(f"MQTT entry: {entry}")
            if time.monotonic() > deadline:
                raise SystemExit(f"MQTT entry not loaded: {entry}")
            await asyncio.sleep(0.2)
            entries = await check(await s.get(f"{base}/api/config/config_entries/entry",
                                              headers=h, params={"domain": "mqtt"}))
            entry = entries[0]
        # Loaded is not connected: wait for the broker connection (MQTT's
        # diagnostics report it). HA subscribes to `homeassistant/#` right
        # after connecting, but sends its birth message (`homeassistant/status`
        # `online`) only after a 5 s discovery cool-down. The diagnostics
        # endpoint answers 404 until the diagnostics integration has found
        # MQTT's platform, which can come just after the entry is loaded.
        while True:
            r = await s.get(
                f"{base}/api/diagnostics/config_entry/{entry['entry_id']}", headers=h)
            if r.status != 404:
                diag = await check(r)
                if diag["data"].get("connected"):
                    break
            else:
                r.release()
            if time.monotonic() > deadline:
                raise SystemExit("MQTT client did not connect to the broker")
            await asyncio.sleep(0.2)
        log("MQTT integration connected")

asyncio.run(main())
PY
  then
    tail -n 40 "$cfg/home-assistant.log" >&2 || true
    cmd_stop "$cfg"
    die "setting up Home Assistant failed (stopped it)"
  fi
  echo "home-assistant.sh: ready after $(secs_since "$t0")s" >&2
  echo "$cfg/token"
}

# Stops hass (TERM, then KILL after 30 s) once process OWNER is gone, so a
# test killed outright leaves no Home Assistant behind.
watch_owner() {
  local owner=$1 pid=$2
  (
    while kill -0 "$owner" 2>/dev/null && kill -0 "$pid" 2>/dev/null; do sleep 2; done
    kill -TERM "$pid" 2>/dev/null || exit 0
    for ((i = 0; i < 300; i++)); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  ) </dev/null >/dev/null 2>&1 &
}

cmd_stop() {
  (($# == 1)) || usage
  local cfg=$1 pid i
  if ! pid=$(hass_pid "$cfg"); then rm -f "$cfg/hass.pid"; return; fi
  kill -TERM "$pid"
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
  rm -f "$cfg/hass.pid"
}

# Headless Chromium logged in as the token's user. The frontend keeps its
# tokens in localStorage["hassTokens"]; over the DevTools protocol a script that
# sets them runs before any page script of every new document
# (Page.addScriptToEvaluateOnNewDocument), so the first load of URL_PATH is
# already authenticated. The long-lived token stands in as the access token
# with an expiry far ahead, so the frontend never tries to refresh it.
cmd_screenshot() {
  (($# == 4 || $# == 5)) || usage
  local cfg=$1 port=$2 path=$3 out=$4 entity=${5:-}
  [[ -f "$cfg/token" && -f "$cfg/venv-path" ]] || die "no $cfg/token: run start first"
  # Any Python with aiohttp does; the venv that runs hass has it.
  # (The token goes in the environment, not on the command line.)
  HA_TOKEN=$(cat "$cfg/token") "$(cat "$cfg/venv-path")/bin/python" - "http://127.0.0.1:$port" "$path" "$out" "$entity" \
    "${CHROMIUM:-chromium}" "${HA_SHOT_WAIT:-4}" <<'PY'
import asyncio, base64, json, os, shutil, signal, subprocess, sys, tempfile, time
import aiohttp

base, path, out, entity, chromium, wait = sys.argv[1:]
token = os.environ.pop("HA_TOKEN")
wait = float(wait)
tokens = {
    "hassUrl": base, "clientId": base + "/", "access_token": token,
    "refresh_token": "", "token_type": "Bearer", "expires_in": 315360000,
    "expires": int(time.time() * 1000) + 315360000 * 1000,
}
profile = tempfile.mkdtemp(prefix="ha-chromium-")
proc = subprocess.Popen(
    [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
     "--disable-dev-shm-usage", "--hide-scrollbars", "--remote-debugging-port=0",
     "--remote-debugging-address=127.0.0.1", f"--user-data-dir={profile}",
     "--window-size=1280,900", "about:blank"],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


async def main():
    portfile = os.path.join(profile, "DevToolsActivePort")
    for _ in range(300):
        if os.path.exists(portfile) and open(portfile).read().count("\n") >= 1:
            break
        await asyncio.sleep(0.1)
    devport = open(portfile).read().split("\n")[0]
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{devport}/json/list") as r:
            target = next(t for t in await r.json() if t["type"] == "page")
        async with s.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            ids = iter(range(1, 1 << 30))

            async def cdp(method, **params):
                i = next(ids)
                await ws.send_json({"id": i, "method": method, "params": params})
                while True:
                    msg = await ws.receive_json()
                    if msg.get("id") == i:
                        if "error" in msg:
                            raise SystemExit(f"{method}: {msg['error']}")
                        return msg["result"]

            async def js(expr):
                r = await cdp("Runtime.evaluate", expression=expr, returnByValue=True)
                return r["result"].get("value")

            await cdp("Page.enable")
            await cdp("Emulation.setDeviceMetricsOverride", width=1280, height=900,
                      deviceScaleFactor=1, mobile=False)
            await cdp("Page.addScriptToEvaluateOnNewDocument", source=(
                f"if (location.origin === {json.dumps(base)}) "
                f"localStorage.setItem('hassTokens', {json.dumps(json.dumps(tokens))});"))
            await cdp("Page.navigate", url=base + path)
            # Logged in and rendered: <home-assistant> has its main view (the
            # login page would be <ha-authorize> on /auth/authorize).
            ready = ("(() => { const ha = document.querySelector('home-assistant');"
                     " return !!(ha && ha.hass && ha.shadowRoot &&"
                     " ha.shadowRoot.querySelector('home-assistant-main')); })()")
            for _ in range(600):
                if await js(ready):
                    break
                await asyncio.sleep(0.1)
            else:
                raise SystemExit(f"UI did not render (at {await js('location.href')})")
            await asyncio.sleep(wait)
            if entity:
                await js("document.querySelector('home-assistant').dispatchEvent(new CustomEvent("
                         f"'hass-more-info', {{detail: {{entityId: {json.dumps(entity)}}},"
                         " bubbles: true, composed: true}))")
                await asyncio.sleep(max(wait / 2, 2))
            shot = await cdp("Page.captureScreenshot", format="png")
            with open(out, "wb") as f:
                f.write(base64.b64decode(shot["data"]))
            print(out)

try:
    asyncio.run(main())
finally:
    # Chromium runs in its own session: end its whole process group (zygote,
    # GPU and renderer helpers too), not just the browser process.
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait_s)
            break
        except subprocess.TimeoutExpired:
            pass
    shutil.rmtree(profile, ignore_errors=True)
PY
}

(($# >= 1)) || usage
sub=$1
shift
case "$sub" in
  install) cmd_install "$@" ;;
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  screenshot) cmd_screenshot "$@" ;;
  *) usage ;;
esac
