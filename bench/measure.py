#!/usr/bin/env python3
"""Start-up, memory and cache measurements for bench/build-and-start.sh.

Reads the builds the shell script made (builds.tsv in the work directory), then,
in one process and one run, for two probes of the app:

- `APP --version`: prints the version; imports neither Flask nor requests;
- `APP --imports`: imports flask and requests and exits, the same work as the
  baseline;

measures:

- cold start: a fresh, empty cache directory for every run (FERRY_CACHE_DIR /
  SHIV_ROOT / PEX_ROOT); PyInstaller --onefile unpacks to a temporary
  directory on every run, so all its runs are alike;
- warm start: with a populated cache;
- peak RSS of a warm run (`/usr/bin/time -f %M`);
- and once: the cache footprint after one `--version` run (`du -sb`).

The baseline is `venv/bin/python -c "import flask, requests"` in a plain venv.
Runs are interleaved round-robin (tool order rotated every round) with the
baseline in the same rounds, so load from other work on the machine spreads over
all tools alike; medians are reported, and every start figure also as a ratio
to the baseline's median from the same rounds. Writes results.json and prints
the markdown.
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

PROBES = {
    "--version": "simple_api 1.0.0",
    "--imports": "imported flask and requests",
}
BASELINE_CODE = "import flask, requests"
RSS_RUNS = 5


class RunError(Exception):
    """A benchmarked command did not do what it should."""


class Tool:
    """One packaged app (or the baseline, or the unpackaged reference)."""

    def __init__(self, key, label, status, build_s, build_samples, path, cache_var, note):
        self.key = key
        self.label = label
        self.status = status
        self.build_s = float(build_s) if build_s != "-" else None
        self.build_samples = [float(x) for x in build_samples.split()] if build_samples != "-" else []
        self.path = path if path != "-" else None
        self.cache_var = cache_var if cache_var != "-" else None
        self.note = note if note != "-" else ""
        self.fixed_argv = None  # the baseline runs the same command for every probe
        self.results = {}  # probe -> metrics
        self.shared = {}  # size, cache footprint
        self.probe_errors = {}  # probe -> why it cannot be measured

    @property
    def ok(self):
        return self.status == "ok"

    def argv(self, probe):
        return self.fixed_argv or [self.path, probe]

    def expect(self, probe):
        return "" if self.fixed_argv else PROBES[probe]


def load_tools(work):
    tools = []
    with open(work / "builds.tsv", encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line and not line.startswith("#"):
                tools.append(Tool(*line.split("\t")))
    return tools


def run(tool, probe, env, timeout=300):
    """Runs the tool once; returns the wall time in seconds."""
    argv = tool.argv(probe)
    t0 = time.perf_counter()
    p = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    elapsed = time.perf_counter() - t0
    out = p.stdout.decode(errors="replace").strip()
    if p.returncode != 0 or out != tool.expect(probe):
        err = p.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise RunError(
            f"`{' '.join(argv)}` exited {p.returncode}, stdout {out[:200]!r}, "
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


def peak_rss_kb(tool, probe, env, scratch):
    """Median over RSS_RUNS warm runs of `/usr/bin/time -f %M` (KiB)."""
    values = []
    outfile = scratch / f"rss-{tool.key}.txt"
    for _ in range(RSS_RUNS):
        p = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", str(outfile)] + tool.argv(probe),
            env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=300,
        )
        if p.returncode != 0:
            raise RunError(f"/usr/bin/time run of {tool.key} {probe} exited {p.returncode}")
        values.append(int(outfile.read_text().split()[-1]))
    return statistics.median(values)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pyinstaller_extraction_bytes(tool, base_env, scratch):
    """Size of a --onefile binary's temporary _MEI* directory while it runs.

    Every probe removes it before exiting, so the app is started in server mode
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


def measure_probe(probe, apps, baseline, reference, scratch, n_cold, n_warm, log):
    """Cold, warm and RSS figures of one probe; fills tool.results[probe]."""
    base_env = dict(os.environ)

    # Cold: a fresh, empty cache directory for every run. The baseline runs
    # twice in each of these rounds (N = 2 × cold runs), so cold figures are
    # compared with a baseline measured in the same time window.
    cold = {t.key: [] for t in apps + [baseline]}
    for i in range(n_cold):
        for t in rotate(apps + [baseline, baseline], i):
            cache = fresh_dir(scratch / "cold" / t.key) if t.cache_var else None
            cold[t.key].append(run(t, probe, env_with(base_env, t, cache)))
            if cache is not None:
                if i == 0 and probe == "--version":
                    t.shared["cache_bytes"] = du_bytes(cache)
                shutil.rmtree(cache)
        log(f"{probe}: cold round {i + 1}/{n_cold} done")

    # Warm: populate each cache, two unmeasured runs, then N rounds.
    order = apps + [baseline, reference]
    warm_dirs = {}
    for t in order:
        cache = fresh_dir(scratch / "warm" / t.key) if t.cache_var else None
        warm_dirs[t.key] = cache
        for _ in range(3):
            run(t, probe, env_with(base_env, t, cache))
    warm = {t.key: [] for t in order}
    for i in range(n_warm):
        for t in rotate(order, i):
            warm[t.key].append(run(t, probe, env_with(base_env, t, warm_dirs[t.key])))
        log(f"{probe}: warm round {i + 1}/{n_warm} done")

    rss = {t.key: peak_rss_kb(t, probe, env_with(base_env, t, warm_dirs[t.key]), scratch) for t in order}
    log(f"{probe}: peak RSS done")
    for d in warm_dirs.values():
        if d is not None:
            shutil.rmtree(d)

    base_warm = median_ms(warm[baseline.key])
    base_cold = median_ms(cold[baseline.key])
    for t in order:
        r = t.results[probe] = {}
        r["warm_ms"] = median_ms(warm[t.key])
        r["warm_samples_ms"] = [round(s * 1000, 2) for s in warm[t.key]]
        r["warm_x"] = r["warm_ms"] / base_warm
        r["rss_kb"] = rss[t.key]
        r["rss_x"] = rss[t.key] / rss[baseline.key]
        if t.key in cold:
            r["cold_ms"] = median_ms(cold[t.key])
            r["cold_samples_ms"] = [round(s * 1000, 2) for s in cold[t.key]]
            r["cold_x"] = r["cold_ms"] / base_cold


def measure(tools, baseline, reference, work, n_cold, n_warm, log):
    base_env = dict(os.environ)
    scratch = fresh_dir(work / "runs")

    # Smoke test: one run of each probe with a fresh cache. A wrong --version is
    # a failure of the tool; a wrong --imports only leaves that probe out.
    for t in [t for t in tools if t.ok] + [baseline, reference]:
        for probe in PROBES:
            try:
                run(t, probe, env_with(base_env, t, fresh_dir(scratch / "smoke" / t.key)))
            except (RunError, subprocess.TimeoutExpired) as e:
                if probe == "--version":
                    t.status = "fail"
                    t.note = f"built, but does not run: {e}"
                    log(f"{t.key}: {t.note}")
                    break
                t.probe_errors[probe] = str(e)
                log(f"{t.key} {probe}: not measured: {e}")
    shutil.rmtree(scratch / "smoke")

    for probe in PROBES:
        apps = [t for t in tools if t.ok and probe not in t.probe_errors]
        measure_probe(probe, apps, baseline, reference, scratch, n_cold, n_warm, log)

    for t in tools:
        if t.ok:
            t.shared["size_bytes"] = os.path.getsize(t.path)
            if t.key == "pyinstaller":
                size, why = pyinstaller_extraction_bytes(t, base_env, scratch)
                t.shared["temp_extraction_bytes"] = size
                t.shared["temp_extraction_note"] = why
    log("footprints done")
    shutil.rmtree(scratch, ignore_errors=True)


def fmt(v, spec):
    return "—" if v is None else format(v, spec)


def ratio(v):
    return "—" if v is None else f"{v:.2f}×"


def mb(n):
    return None if n is None else n / 1e6


def render(tools, baseline, reference, meta, n_cold, n_warm):
    lines = []
    add = lines.append
    add(f"Finished: {meta['date']} on {meta['host']}")
    add("")

    def start_cells(t, probe):
        r = t.results.get(probe)
        if r is None:
            return f"n/a: {t.probe_errors.get(probe, 'not measured')} | | | | | |"
        return (
            f"{fmt(r.get('cold_ms'), '.1f')} | {ratio(r.get('cold_x'))} "
            f"| {r['warm_ms']:.1f} | {ratio(r['warm_x'])} "
            f"| {r['rss_kb'] / 1024:.1f} | {ratio(r['rss_x'])}"
        )

    add("`APP --version` (prints the version; imports neither Flask nor requests):")
    add("")
    add(
        "| packaging | build (s) | file size (MB) | cold start (ms) | cold × baseline "
        "| warm start (ms) | warm × baseline | peak RSS, warm (MiB) | RSS × baseline "
        "| cache after a run (MB) |"
    )
    add("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for t in tools:
        if not t.ok:
            add(f"| {t.label} | **failed**: {t.note} | | | | | | | | |")
            continue
        s = t.shared
        cache = fmt(mb(s.get("cache_bytes")), ".1f")
        if t.key == "pyinstaller":
            size = s.get("temp_extraction_bytes")
            cache = (
                f"0 persistent; {mb(size):.1f} temp (removed at exit)"
                if size is not None
                else f"n/a (temp, removed; {s.get('temp_extraction_note', '')})"
            )
        add(
            f"| {t.label} | {fmt(t.build_s, '.1f')} | {fmt(mb(s.get('size_bytes')), '.1f')} "
            f"| {start_cells(t, '--version')} | {cache} |"
        )
    for t in (baseline, reference):
        add(f"| {t.label} | — | — | {start_cells(t, '--version')} | — (no cache) |")
    add("")

    add("`APP --imports` (imports flask and requests and exits: the baseline's work):")
    add("")
    add(
        "| packaging | cold start (ms) | cold × baseline | warm start (ms) | warm × baseline "
        "| peak RSS, warm (MiB) | RSS × baseline |"
    )
    add("|---|--:|--:|--:|--:|--:|--:|")
    for t in [t for t in tools if t.ok] + [baseline, reference]:
        label = t.label.replace("--version", "--imports")
        add(f"| {label} | {start_cells(t, '--imports')} |")
    add("")

    for probe in PROBES:
        b = baseline.results[probe]
        add(
            f"- Baseline in the {probe} rounds: cold-round median {b['cold_ms']:.1f} ms "
            f"(N={2 * n_cold}), warm-round median {b['warm_ms']:.1f} ms (N={n_warm}), "
            f"peak RSS {b['rss_kb'] / 1024:.1f} MiB."
        )
    add(
        f"- Medians: cold N={n_cold} per tool (fresh, empty cache each run), warm N={n_warm}, "
        f"peak RSS N={RSS_RUNS}. Cold ratios are to the baseline's median in the cold "
        "rounds, warm and RSS ratios to its median in the warm rounds: same time window, "
        "same machine load. The baseline has no cache: its \"cold\" figure is just its "
        "runs interleaved with the cold rounds."
    )
    add("- Sizes in MB = 10^6 bytes, RSS in MiB.")
    add("")
    add("Build times (s), every build from scratch (median in the table):")
    add("")
    for t in tools:
        if t.build_samples:
            extra = f"; {t.note}" if t.note else ""
            add(f"- {t.label}: {', '.join(f'{x:.1f}' for x in t.build_samples)}{extra}")
    add("")

    # Targets for ferry standalone.
    f = next((t for t in tools if t.key == "ferry"), None)
    p = next((t for t in tools if t.key == "pyinstaller"), None)
    targets = {}
    add("Targets (ferry standalone):")
    add("")
    add("| target | measured | result |")
    add("|---|---|---|")

    def verdict(ok):
        return "PASS" if ok else "FAIL"

    if f is None or not f.ok:
        add("| all | ferry standalone did not build or run | FAIL |")
        add("")
        return "\n".join(lines), targets
    for probe in PROBES:
        r = f.results.get(probe)
        if r is None:
            continue
        k = f"warm {probe}"
        targets[k] = r["warm_x"] <= 1.00
        add(f"| warm start ≤ 1.00× baseline (`{probe}`) | {r['warm_x']:.2f}× | {verdict(targets[k])} |")
        k = f"cold {probe}"
        targets[k] = r["cold_x"] <= 1.5
        add(f"| cold start ≤ 1.5× baseline (`{probe}`) | {r['cold_x']:.2f}× | {verdict(targets[k])} |")
    if p is None or not p.ok:
        add("| file size ≤ PyInstaller --onefile | PyInstaller failed | n/a |")
        add("| build ≤ ½ PyInstaller build | PyInstaller failed | n/a |")
    else:
        fs, ps = f.shared["size_bytes"], p.shared["size_bytes"]
        targets["size"] = fs <= ps
        add(
            f"| file size ≤ PyInstaller --onefile | {mb(fs):.1f} MB vs {mb(ps):.1f} MB "
            f"({fs / ps:.2f}×) | {verdict(targets['size'])} |"
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
    baseline.fixed_argv = [args.baseline_python, "-c", BASELINE_CODE]
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
        "rss_runs": RSS_RUNS,
        "tools": [
            {
                "key": t.key, "label": t.label, "status": t.status, "note": t.note,
                "build_s": t.build_s, "build_samples_s": t.build_samples, "path": t.path,
                **t.shared, "probes": t.results, "probe_errors": t.probe_errors,
            }
            for t in tools + [baseline, reference]
        ],
        "targets": targets,
    }
    (args.work / "results.json").write_text(json.dumps(data, indent=2) + "\n")
    print(md)


if __name__ == "__main__":
    main()
