#!/usr/bin/env python3
"""Start-up, memory and cache measurements for bench/build-and-start.sh.

Reads the builds the shell script made (builds.tsv in the work directory), then,
in one process and one run:

- cold start: `APP --version` with a fresh, empty cache directory each time
  (FERRY_CACHE_DIR / SHIV_ROOT / PEX_ROOT); PyInstaller --onefile unpacks to a
  temporary directory on every run, so all its runs are alike;
- warm start: `APP --version` with a populated cache;
- baseline: `venv/bin/python -c "import flask, requests"` in a plain venv;
- peak RSS of a warm run (`/usr/bin/time -f %M`);
- cache footprint after one run (`du -sb` of the cache directory).

Runs are interleaved round-robin (tool order rotated every round) so that load
from other work on the machine spreads over all tools alike; medians are
reported, and every start figure also as a ratio to the baseline measured in
the same rounds. Writes results.json and results.md to the work directory and
prints the markdown.
"""

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

EXPECTED = "simple_api 1.0.0"
BASELINE_CODE = "import flask, requests"
RSS_RUNS = 5


class RunError(Exception):
    """A benchmarked command did not do what it should."""


class Tool:
    """One packaged app (or the baseline) and how to run it."""

    def __init__(self, key, label, status, build_s, build_samples, path, cache_var, note):
        self.key = key
        self.label = label
        self.status = status
        self.build_s = float(build_s) if build_s not in ("", "-") else None
        self.build_samples = [float(x) for x in build_samples.split()] if build_samples != "-" else []
        self.path = path if path not in ("", "-") else None
        self.cache_var = cache_var if cache_var not in ("", "-") else None
        self.note = note if note not in ("", "-") else ""
        self.argv = [path, "--version"]
        self.expect = EXPECTED
        self.results = {}

    @property
    def ok(self):
        return self.status == "ok"


def load_tools(work):
    tools = []
    with open(work / "builds.tsv", encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            tools.append(Tool(*line.split("\t")))
    return tools


def run(tool, env, timeout=300):
    """Runs the tool once; returns the wall time in seconds."""
    t0 = time.perf_counter()
    p = subprocess.run(
        tool.argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout
    )
    elapsed = time.perf_counter() - t0
    out = p.stdout.decode(errors="replace").strip()
    if p.returncode != 0 or (tool.expect is not None and out != tool.expect):
        err = p.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise RunError(
            f"`{' '.join(tool.argv)}` exited {p.returncode}, stdout {out[:200]!r}, "
            f"stderr tail {' | '.join(err)!r}"
        )
    return elapsed


def env_with(base, tool, cache_dir):
    env = dict(base)
    if tool.cache_var and cache_dir is not None:
        env[tool.cache_var] = str(cache_dir)
    return env


def fresh_dir(path):
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True, mode=0o700)
    os.chmod(path, 0o700)  # ferry refuses group/other-writable cache roots
    return path


def du_bytes(path):
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def peak_rss_kb(tool, env, scratch):
    """Median over RSS_RUNS warm runs of `/usr/bin/time -f %M` (KiB)."""
    values = []
    outfile = scratch / f"rss-{tool.key}.txt"
    for _ in range(RSS_RUNS):
        p = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", str(outfile)] + tool.argv,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=300,
        )
        if p.returncode != 0:
            raise RunError(f"/usr/bin/time run of {tool.key} exited {p.returncode}")
        values.append(int(outfile.read_text().split()[-1]))
    return statistics.median(values)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pyinstaller_extraction_bytes(tool, base_env, scratch):
    """Size of a --onefile binary's temporary _MEI* directory while it runs.

    `--version` removes it before exiting, so the app is started in server mode
    (it listens on $PORT) with its own TMPDIR; once it answers, everything is
    unpacked: measure, then stop it.
    """
    tmp = fresh_dir(scratch / "pyi-tmp")
    port = free_port()
    env = dict(base_env, TMPDIR=str(tmp), HOST="127.0.0.1", PORT=str(port))
    proc = subprocess.Popen(
        [tool.path], env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return None, f"server exited {proc.returncode} before listening"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            return None, "server did not listen within 60 s"
        dirs = [d for d in tmp.iterdir() if d.name.startswith("_MEI")]
        if len(dirs) != 1:
            return None, f"expected one _MEI* directory, found {len(dirs)}"
        return du_bytes(dirs[0]), ""
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def median_ms(samples):
    return statistics.median(samples) * 1000.0


def rotate(seq, i):
    i %= len(seq)
    return seq[i:] + seq[:i]


def measure(tools, baseline, reference, work, n_cold, n_warm, log):
    base_env = dict(os.environ)
    scratch = fresh_dir(work / "runs")
    runnable = [t for t in tools if t.ok]

    # Smoke test: one run each with a fresh cache; a wrong output is a failure.
    for t in runnable + [baseline, reference]:
        try:
            run(t, env_with(base_env, t, fresh_dir(scratch / "smoke" / t.key)))
        except (RunError, subprocess.TimeoutExpired) as e:
            t.status = "fail"
            t.note = f"built, but does not run: {e}"
            log(f"{t.key}: {t.note}")
    runnable = [t for t in runnable if t.ok]
    shutil.rmtree(scratch / "smoke")

    # Cold: a fresh, empty cache directory for every run. The baseline runs
    # twice in each of these rounds too (N = 2 × cold runs), so cold figures are
    # compared with a baseline measured in the same time window.
    cold = {t.key: [] for t in runnable + [baseline]}
    footprint = {}
    for i in range(n_cold):
        for t in rotate(runnable + [baseline, baseline], i):
            cache = fresh_dir(scratch / "cold" / t.key) if t.cache_var else None
            cold[t.key].append(run(t, env_with(base_env, t, cache)))
            if cache is not None:
                if i == 0:
                    footprint[t.key] = du_bytes(cache)
                shutil.rmtree(cache)
        log(f"cold round {i + 1}/{n_cold} done")

    # Warm: populate each cache once, two unmeasured runs, then N rounds.
    warm_dirs = {}
    order = runnable + [baseline, reference]
    for t in order:
        cache = fresh_dir(scratch / "warm" / t.key) if t.cache_var else None
        warm_dirs[t.key] = cache
        for _ in range(3):
            run(t, env_with(base_env, t, cache))
    warm = {t.key: [] for t in order}
    for i in range(n_warm):
        for t in rotate(order, i):
            warm[t.key].append(run(t, env_with(base_env, t, warm_dirs[t.key])))
        log(f"warm round {i + 1}/{n_warm} done")

    rss = {}
    for t in order:
        rss[t.key] = peak_rss_kb(t, env_with(base_env, t, warm_dirs[t.key]), scratch)
    log("peak RSS done")

    extraction = {}
    for t in runnable:
        if t.key == "pyinstaller":
            size, why = pyinstaller_extraction_bytes(t, base_env, scratch)
            extraction[t.key] = (size, why)
    log("footprints done")

    base_warm = median_ms(warm[baseline.key])
    base_cold = median_ms(cold[baseline.key])
    for t in order:
        r = t.results
        r["warm_ms"] = median_ms(warm[t.key])
        r["warm_samples_ms"] = [round(s * 1000, 2) for s in warm[t.key]]
        r["warm_x"] = r["warm_ms"] / base_warm
        r["rss_kb"] = rss[t.key]
        r["rss_x"] = rss[t.key] / rss[baseline.key]
        if t.key in cold:
            r["cold_ms"] = median_ms(cold[t.key])
            r["cold_samples_ms"] = [round(s * 1000, 2) for s in cold[t.key]]
            r["cold_x"] = r["cold_ms"] / base_cold
        if t.key in footprint:
            r["cache_bytes"] = footprint[t.key]
        if t.key in extraction:
            r["temp_extraction_bytes"], r["temp_extraction_note"] = extraction[t.key]
        if t.path and t is not baseline and t is not reference:
            r["size_bytes"] = os.path.getsize(t.path)
    shutil.rmtree(scratch, ignore_errors=True)


def fmt(v, spec):
    return "—" if v is None else format(v, spec)


def ratio(v):
    return "—" if v is None else f"{v:.2f}×"


def mb(n):
    return None if n is None else n / 1e6


def render(tools, baseline, reference, meta, n_cold, n_warm):
    by = {t.key: t for t in tools}
    lines = []
    add = lines.append
    add(f"Run: {meta['date']} on {meta['host']}")
    add("")
    add(
        "| packaging | build (s) | file size (MB) | cold start (ms) | cold × baseline "
        "| warm start (ms) | warm × baseline | peak RSS, warm (MiB) | RSS × baseline "
        "| cache after a run (MB) |"
    )
    add("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for t in tools:
        r = t.results
        if not t.ok:
            add(f"| {t.label} | **failed**: {t.note} | | | | | | | | |")
            continue
        cache = fmt(mb(r.get("cache_bytes")), ".1f")
        if t.key == "pyinstaller":
            size = r.get("temp_extraction_bytes")
            cache = (
                f"0 persistent; {mb(size):.1f} temp (removed at exit)"
                if size is not None
                else f"n/a (temp, removed; {r.get('temp_extraction_note', '')})"
            )
        add(
            f"| {t.label} | {fmt(t.build_s, '.1f')} | {fmt(mb(r.get('size_bytes')), '.1f')} "
            f"| {fmt(r.get('cold_ms'), '.1f')} | {ratio(r.get('cold_x'))} "
            f"| {r['warm_ms']:.1f} | {r['warm_x']:.2f}× "
            f"| {r['rss_kb'] / 1024:.1f} | {r['rss_x']:.2f}× | {cache} |"
        )
    for t in (baseline, reference):
        r = t.results
        add(
            f"| {t.label} | — | — | {fmt(r.get('cold_ms'), '.1f')} | {ratio(r.get('cold_x'))} "
            f"| {r['warm_ms']:.1f} | {r['warm_x']:.2f}× "
            f"| {r['rss_kb'] / 1024:.1f} | {r['rss_x']:.2f}× | — (no cache) |"
        )
    add("")
    b = baseline.results
    add(
        f"Medians: cold N={n_cold} per tool (fresh cache each run), warm N={n_warm}, "
        f"peak RSS N={RSS_RUNS}. Cold ratios are to the baseline's median in the cold "
        f"rounds ({b['cold_ms']:.1f} ms, N={2 * n_cold}), warm and RSS ratios to its "
        f"median in the warm rounds ({b['warm_ms']:.1f} ms, N={n_warm}; "
        f"{b['rss_kb'] / 1024:.1f} MiB): same time window, same machine load. "
        "Sizes in MB = 10^6 bytes, RSS in MiB. The baseline has no cache: its "
        "\"cold\" column is just its runs interleaved with the cold rounds."
    )
    add("")
    add("Build times (s), every build from scratch, median above:")
    add("")
    for t in tools:
        if t.build_samples:
            extra = f"; {t.note}" if t.note else ""
            add(f"- {t.label}: {', '.join(f'{x:.1f}' for x in t.build_samples)}{extra}")
    add("")

    # Targets for ferry standalone.
    f = by.get("ferry")
    p = by.get("pyinstaller")
    add("Targets (ferry standalone):")
    add("")
    add("| target | measured | result |")
    add("|---|---|---|")

    def verdict(ok):
        return "PASS" if ok else "FAIL"

    targets = {}
    if f is None or not f.ok:
        add("| all | ferry standalone did not build or run | FAIL |")
    else:
        fr = f.results
        targets["warm"] = fr["warm_x"] <= 1.00
        add(f"| warm start ≤ 1.00× baseline | {fr['warm_x']:.2f}× | {verdict(targets['warm'])} |")
        targets["cold"] = fr["cold_x"] <= 1.5
        add(f"| cold start ≤ 1.5× baseline | {fr['cold_x']:.2f}× | {verdict(targets['cold'])} |")
        if p is None or not p.ok:
            add("| file size ≤ PyInstaller --onefile | PyInstaller failed | n/a |")
            add("| build ≤ ½ PyInstaller build | PyInstaller failed | n/a |")
        else:
            pr = p.results
            sx = fr["size_bytes"] / pr["size_bytes"]
            targets["size"] = sx <= 1.0
            add(
                f"| file size ≤ PyInstaller --onefile | {mb(fr['size_bytes']):.1f} MB vs "
                f"{mb(pr['size_bytes']):.1f} MB ({sx:.2f}×) | {verdict(targets['size'])} |"
            )
            bx = f.build_s / p.build_s
            targets["build"] = bx <= 0.5
            add(
                f"| build ≤ ½ PyInstaller build | {f.build_s:.1f} s vs {p.build_s:.1f} s "
                f"({bx:.2f}×) | {verdict(targets['build'])} |"
            )
    add("")
    return "\n".join(lines), targets


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--baseline-python", required=True)
    ap.add_argument("--venv-script", required=True)
    ap.add_argument("--cold-runs", type=int, default=10)
    ap.add_argument("--warm-runs", type=int, default=20)
    args = ap.parse_args()

    def log(msg):
        print(f"    {msg}", file=sys.stderr, flush=True)

    tools = load_tools(args.work)
    baseline = Tool(
        "baseline", 'baseline: venv `python -c "import flask, requests"`', "ok", "-", "-",
        args.baseline_python, "-", "-",
    )
    baseline.argv = [args.baseline_python, "-c", BASELINE_CODE]
    baseline.expect = ""
    reference = Tool(
        "venv-script", "reference: venv `simple-api --version` (unpackaged)", "ok", "-", "-",
        args.venv_script, "-", "-",
    )
    measure(tools, baseline, reference, args.work, args.cold_runs, args.warm_runs, log)

    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "host": f"{platform.node()} ({platform.platform()})",
    }
    md, targets = render(tools, baseline, reference, meta, args.cold_runs, args.warm_runs)
    data = {
        "meta": meta,
        "cold_runs": args.cold_runs,
        "warm_runs": args.warm_runs,
        "tools": [
            {"key": t.key, "label": t.label, "status": t.status, "build_s": t.build_s,
             "build_samples_s": t.build_samples, "path": t.path, "note": t.note, **t.results}
            for t in tools + [baseline, reference]
        ],
        "targets": targets,
    }
    (args.work / "results.json").write_text(json.dumps(data, indent=2) + "\n")
    (args.work / "results.md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
