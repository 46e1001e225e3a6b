"""simple_api's entry point: a few probe flags for ferry's tests, else a web API.

The probe flags (--version, --echo-args, --cat, --exit, --env-probe) let tests
check what a packaged binary passes through: arguments, stdin, exit codes and the
environment that the app and its subprocesses see. Without a flag it serves a
small Flask API on HOST:PORT. Flask is imported only when serving, so the flags
work (and start fast) even where Flask is not installed.
"""

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys

from simple_api import __version__

USAGE = """usage: simple-api [--version | --imports | --echo-args ARG... | --cat | --exit N | --env-probe]

--imports imports flask and requests and exits: the start-up work of the real
app without serving (what benchmarks compare with `python -c "import flask, requests"`).

Without a flag, serves the API on $HOST:$PORT (default 127.0.0.1:8000):
  /health   {"status": "ok"}, with the status code $SIMPLE_API_HEALTH_STATUS (default 200)
  /version  {"version": "<version>"}
  /pid      {"pid": <pid>}
  /ssl      {"openssl": "<the OpenSSL version this Python links>"}

SIMPLE_API_FAIL_AT_START=1 makes it exit with status 3 at once."""

# What the launcher may set for the interpreter and must not hand down to children.
LEAKY_NAMES = ("PYTHONHOME", "LD_LIBRARY_PATH")

# Run in a child interpreter: proves that a subprocess of the app can start the
# same (bundled) Python, import ssl, and reports the environment the child got.
CHILD_SCRIPT = (
    "import ssl, json, os; "
    "print(json.dumps({'openssl': ssl.OPENSSL_VERSION, 'env': sorted(os.environ)}))"
)


def main(argv=None):
    """Runs the app; returns the exit status (the console script exits with it)."""
    if os.environ.get("SIMPLE_API_FAIL_AT_START") == "1":
        print("simple_api: failing at start (SIMPLE_API_FAIL_AT_START=1)", file=sys.stderr)
        return 3
    args = sys.argv[1:] if argv is None else list(argv)
    if not args:
        return serve()
    flag = args[0]
    if flag == "--version" and len(args) == 1:
        print(f"simple_api {__version__}")
        return 0
    if flag == "--imports" and len(args) == 1:
        import flask  # noqa: F401
        import requests  # noqa: F401

        print("imported flask and requests")
        return 0
    if flag == "--echo-args":
        # Everything after the flag is data, not options: echo it all verbatim.
        print(json.dumps(args))
        return 0
    if flag == "--cat" and len(args) == 1:
        shutil.copyfileobj(sys.stdin.buffer, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return 0
    if flag == "--exit" and len(args) == 2:
        try:
            return int(args[1])
        except ValueError:
            print(f"simple_api: --exit needs an integer, got {args[1]!r}", file=sys.stderr)
            return 2
    if flag == "--env-probe" and len(args) == 1:
        print(json.dumps(env_probe()))
        return 0
    if flag in ("-h", "--help"):
        print(USAGE)
        return 0
    print(f"simple_api: unknown arguments {args!r}\n\n{USAGE}", file=sys.stderr)
    return 2


def env_probe():
    """What this process and a child interpreter see of the launcher's environment."""
    probe = {name: os.environ.get(name) for name in LEAKY_NAMES + ("PYTHONPATH",)}
    probe["executable"] = sys.executable
    try:
        child = subprocess.run(
            [sys.executable, "-c", CHILD_SCRIPT],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError) as err:
        probe.update(child_ok=False, child_env_has_ferry=False, child_error=str(err))
        return probe
    child_env = []
    if child.returncode == 0:
        try:
            child_env = json.loads(child.stdout)["env"]
        except (ValueError, KeyError, TypeError) as err:
            probe["child_error"] = f"unreadable child output: {err}"
    else:
        probe["child_error"] = child.stderr.strip()
    probe["child_ok"] = child.returncode == 0 and "child_error" not in probe
    probe["child_env_has_ferry"] = any(
        name.startswith("FERRY_") or name in LEAKY_NAMES for name in child_env
    )
    return probe


def health_status():
    """The status code /health answers with, from $SIMPLE_API_HEALTH_STATUS."""
    raw = os.environ.get("SIMPLE_API_HEALTH_STATUS", "200")
    try:
        status = int(raw)
    except ValueError:
        status = 0
    if not 100 <= status <= 599:
        raise SystemExit(
            f"simple_api: SIMPLE_API_HEALTH_STATUS must be an HTTP status code, got {raw!r}"
        )
    return status


def create_app():
    """The Flask application with its four routes."""
    from flask import Flask, jsonify

    app = Flask("simple_api")
    status = health_status()

    @app.get("/health")
    def health():
        return jsonify(status="ok"), status

    @app.get("/version")
    def version():
        return jsonify(version=__version__)

    @app.get("/pid")
    def pid():
        return jsonify(pid=os.getpid())

    @app.get("/ssl")
    def openssl():
        return jsonify(openssl=ssl.OPENSSL_VERSION)

    return app


def serve():
    """Serves the API with werkzeug's threaded server until a signal ends it."""
    host = os.environ.get("HOST", "127.0.0.1")
    try:
        port = int(os.environ.get("PORT", "8000"))
    except ValueError:
        print(f"simple_api: PORT must be a number, got {os.environ['PORT']!r}", file=sys.stderr)
        return 2
    app = create_app()
    # werkzeug turns SIGINT into a clean return; tests and supervisors expect
    # both signals to end the process the default way (killed by the signal).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    app.run(host=host, port=port, threaded=True, debug=False, use_reloader=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
