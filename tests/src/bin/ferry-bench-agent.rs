//! `ferry-bench-agent`: measurements of `ferryd` running as a service on a
//! board (a real systemd sandbox), against a repository served by nginx on
//! loopback. Used by `bench/agent.sh`; see `docs/benchmarks.md`.
//!
//! - `ferry-bench-agent idle [--minutes 10] [--sample-secs 10] [--poll-interval 5s] [--mqtt on]`:
//!   installs `simple_api` 1.0.0, then watches the agent poll an unchanged
//!   repository: VmRSS/VmHWM of its main process every `--sample-secs`,
//!   `utime + stime` at the start and end, and the polls made (`check_started`
//!   journal events).
//! - `ferry-bench-agent update [--runs 3]`: installs 1.0.0, then publishes
//!   1.1.0, 1.2.0, … one at a time and splits the time from `ferry publish` to
//!   the new version committed into phases, from the journal timestamps
//!   (`__REALTIME_TIMESTAMP`) of the agent's events for that version.
//!
//! Both print markdown tables. Needs root (the sandbox) and the release build
//! of the workspace's programs next to this one (`ferry`, `ferry-launcher`,
//! `ferryd`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use ferry_tests::board::{AgentConfig, Board};
use ferry_tests::mosquitto::Mosquitto;
use ferry_tests::nginx::Nginx;
use ferry_tests::{examples, programs, server, signed_repo};
use tempfile::TempDir;

const USAGE: &str = "usage: ferry-bench-agent idle [--minutes N] [--sample-secs N] [--poll-interval 5s] [--mqtt on|off] [--summary FILE]
       ferry-bench-agent update [--runs N] [--summary FILE]";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(mode) = args.first() else {
        bail!("{USAGE}");
    };
    // `--option value` pairs after the mode.
    let mut options = std::collections::HashMap::new();
    let mut rest = args[1..].iter();
    while let Some(name) = rest.next() {
        let known = [
            "--minutes",
            "--sample-secs",
            "--poll-interval",
            "--mqtt",
            "--runs",
            "--summary",
        ];
        if !known.contains(&name.as_str()) {
            bail!("unknown argument `{name}`\n{USAGE}");
        }
        let value = rest
            .next()
            .with_context(|| format!("`{name}` needs a value\n{USAGE}"))?;
        options.insert(name.as_str(), value.as_str());
    }
    let opt = |name: &str| options.get(name).copied();
    match mode.as_str() {
        "idle" => {
            let minutes: f64 = opt("--minutes").unwrap_or("10").parse()?;
            let sample: u64 = opt("--sample-secs").unwrap_or("10").parse()?;
            let poll = opt("--poll-interval").unwrap_or("5s");
            if minutes <= 0.0 || sample == 0 {
                bail!("--minutes and --sample-secs must be positive");
            }
            if !poll.ends_with('s') || poll.contains(['"', '\\']) {
                bail!("--poll-interval: a duration such as `5s`");
            }
            let mqtt = match opt("--mqtt").unwrap_or("off") {
                "on" => true,
                "off" => false,
                other => bail!("--mqtt: `on` or `off`, not `{other}`"),
            };
            let summary = idle(Duration::from_secs_f64(minutes * 60.0), sample, poll, mqtt)?;
            write_summary(opt("--summary"), &summary)
        }
        "update" => {
            let runs: u32 = opt("--runs").unwrap_or("3").parse()?;
            if runs == 0 || runs > 9 {
                bail!("--runs must be 1 to 9");
            }
            let summary = update(runs)?;
            write_summary(opt("--summary"), &summary)
        }
        "-h" | "--help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown mode `{other}`\n{USAGE}"),
    }
}

/// Writes `key=value` lines (for bench/agent.sh) to `file`, if given.
fn write_summary(file: Option<&str>, summary: &[(&str, f64)]) -> Result<()> {
    if let Some(file) = file {
        let text: String = summary.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        std::fs::write(file, text).with_context(|| format!("cannot write `{file}`"))?;
    }
    Ok(())
}

/// A work directory with a release key, a repository served by nginx, and a
/// board with 1.0.0 of `simple_api` installed and committed.
struct Setup {
    work: TempDir,
    /// Kept serving until the measurements end.
    _nginx: Nginx,
    /// The broker of the agent's `[mqtt]` link, when it has one.
    _broker: Option<Mosquitto>,
    board: Board,
}

impl Setup {
    fn dir(&self) -> &Path {
        self.work.path()
    }
}

fn ferry(cwd: &Path, args: &[&str]) -> Result<()> {
    programs::run_ferry(cwd, args).map(drop)
}

fn path(p: &Path) -> Result<&str> {
    p.to_str().context("paths must be UTF-8")
}

/// Builds (signed) a copy of `examples/simple_api` at `version`; returns the binary.
fn build(w: &Path, version: &str) -> Result<PathBuf> {
    let project = examples::simple_api_variant(w, version, None)?;
    let out = w.join(format!("simple_api-{version}.bin"));
    let started = Instant::now();
    ferry(
        w,
        &[
            "build",
            path(&project)?,
            "--sign-key",
            "release.key",
            "-o",
            path(&out)?,
        ],
    )?;
    eprintln!(
        "built {version} in {:.1} s ({} bytes)",
        started.elapsed().as_secs_f64(),
        std::fs::metadata(&out)?.len()
    );
    Ok(out)
}

fn publish(w: &Path, binary: &Path) -> Result<()> {
    signed_repo::publish(w, binary, &["--channel", "stable"])
}

fn wait_committed(board: &Board, version: &str) -> Result<()> {
    board.wait_for(
        &format!("{version} committed"),
        Duration::from_secs(300),
        |s| s["current"]["version"] == version && s["phase"] == "idle",
    )?;
    Ok(())
}

/// Keygen, build and publish 1.0.0, boot a board, configure it (with
/// `poll_interval` instead of Board::configure's 1 s when given), start ferryd
/// and wait for 1.0.0 to be committed.
/// With `mqtt`, the agent also keeps a Home Assistant link to a Mosquitto
/// on loopback.
fn setup(name: &str, poll_interval: Option<&str>, mqtt: bool) -> Result<Setup> {
    let work = tempfile::Builder::new()
        .prefix("ferry-bench-agent-")
        .tempdir()?;
    let w = work.path();
    signed_repo::create(w, "simple_api")?;
    let v1 = build(w, examples::SIMPLE_API_VERSION)?;
    publish(w, &v1)?;
    let nginx = Nginx::serve(&w.join("repo"))?;
    let board = Board::start(name, None)?;
    let port = server::free_port()?;
    let root = std::fs::read_to_string(w.join("root.json"))?;
    let broker = if mqtt {
        Some(Mosquitto::start()?)
    } else {
        None
    };
    let top_extra = match &broker {
        Some(b) => {
            Mosquitto::write_password(&board.etc.join("mqtt.password"))?;
            format!(
                "[mqtt]\nurl = \"{}\"\nusername = \"{}\"\npassword-file = \"/etc/ferry/mqtt.password\"\n",
                b.url(),
                ferry_tests::mosquitto::USER
            )
        }
        None => String::new(),
    };
    board.configure(&AgentConfig {
        repository: &nginx.url(),
        root: &root,
        app_extra: "",
        top_extra: &top_extra,
        port,
    })?;
    if let Some(interval) = poll_interval {
        let file = board.etc.join("agent.toml");
        let text = std::fs::read_to_string(&file)?;
        let from = "poll-interval = \"1s\"";
        if !text.contains(from) {
            bail!("`{from}` is not in the board's agent.toml:\n{text}");
        }
        std::fs::write(
            &file,
            text.replacen(from, &format!("poll-interval = \"{interval}\""), 1),
        )?;
    }
    let out = board.sandbox.systemctl(&["start", "ferryd.service"])?;
    if !out.status.success() {
        bail!(
            "cannot start ferryd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let started = Instant::now();
    wait_committed(&board, examples::SIMPLE_API_VERSION)?;
    eprintln!(
        "{} installed and committed {:.1} s after ferryd started",
        examples::SIMPLE_API_VERSION,
        started.elapsed().as_secs_f64()
    );
    Ok(Setup {
        work,
        _nginx: nginx,
        _broker: broker,
        board,
    })
}

/// The host pid of the sandbox's process whose pid inside is `inner`.
fn host_pid(board: &Board, inner: u32) -> Result<u32> {
    let ns = std::fs::read_link(format!("/proc/{}/ns/pid", board.sandbox.pid()))?;
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if std::fs::read_link(format!("/proc/{pid}/ns/pid"))
            .ok()
            .as_ref()
            != Some(&ns)
        {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let last = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .and_then(|v| v.split_whitespace().last())
            .and_then(|v| v.parse::<u32>().ok());
        if last == Some(inner) {
            return Ok(pid);
        }
    }
    bail!("no process of the board has pid {inner} inside")
}

/// `VmRSS`, `VmHWM`, `RssAnon`, `RssFile` (KiB) of `pid`.
fn memory(pid: u32) -> Result<[u64; 4]> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("ferryd (pid {pid}) is gone"))?;
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok([
        field("VmRSS:")?,
        field("VmHWM:")?,
        field("RssAnon:")?,
        field("RssFile:")?,
    ])
}

/// `utime + stime` of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("bad /proc/pid/stat")?;
    // Fields after the command: state is field 3, utime 14, stime 15.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Ok(ticks as f64 / hz.max(1) as f64)
}

/// The `cpu.stat` `usage_usec` of `pid`'s cgroup (ferryd.service's: every
/// thread, exited ones too, and any child process), in seconds.
fn cgroup_cpu_seconds(pid: u32) -> Result<f64> {
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let rel = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .context("not on the unified cgroup hierarchy")?;
    // Pure cgroup v2, or the unified hierarchy of a hybrid set-up.
    let file = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .map(|root| format!("{root}{}/cpu.stat", rel.trim()))
        .find(|f| Path::new(f).is_file())
        .with_context(|| format!("no cpu.stat for the cgroup `{}`", rel.trim()))?;
    let stat = std::fs::read_to_string(&file).with_context(|| format!("cannot read `{file}`"))?;
    let usec: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no usage_usec in `{file}`"))?;
    Ok(usec as f64 / 1e6)
}

fn main_pid(board: &Board) -> Result<u32> {
    let pid: u32 = board
        .sandbox
        .property("ferryd.service", "MainPID")?
        .parse()?;
    if pid == 0 {
        bail!("ferryd.service has no main process");
    }
    Ok(pid)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn mib(kib: f64) -> f64 {
    kib / 1024.0
}

fn idle(
    window: Duration,
    sample_secs: u64,
    poll: &str,
    mqtt: bool,
) -> Result<Vec<(&'static str, f64)>> {
    let s = setup("bench-idle", Some(poll), mqtt)?;
    let board = &s.board;
    let inner = main_pid(board)?;
    let pid = host_pid(board, inner)?;
    let restarts0 = board.sandbox.property("ferryd.service", "NRestarts")?;
    let polls0 = board.count_events("check_started", None)?;
    let errors0 = board.count_events("error", None)?;
    let load0 = loadavg();
    let first = memory(pid)?;
    eprintln!(
        "sampling ferryd (pid {inner} inside, {pid} on the host) for {:.0} s, every {sample_secs} s; load average {load0}",
        window.as_secs_f64()
    );
    let cpu0 = cpu_seconds(pid)?;
    let cg0 = cgroup_cpu_seconds(pid)?;
    let t0 = Instant::now();
    let mut samples = vec![first];
    let mut next = t0 + Duration::from_secs(sample_secs);
    while next <= t0 + window {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        samples.push(memory(pid)?);
        next += Duration::from_secs(sample_secs);
    }
    std::thread::sleep((t0 + window).saturating_duration_since(Instant::now()));
    let cpu1 = cpu_seconds(pid)?;
    let cg1 = cgroup_cpu_seconds(pid)?;
    let elapsed = t0.elapsed().as_secs_f64();
    let last = memory(pid)?;
    let load1 = loadavg();
    let polls = board.count_events("check_started", None)? - polls0;
    let errors = board.count_events("error", None)? - errors0;
    if main_pid(board)? != inner
        || board.sandbox.property("ferryd.service", "NRestarts")? != restarts0
    {
        bail!("ferryd restarted during the window: the figures would mix two processes");
    }
    let _ = board
        .sandbox
        .systemctl(&["stop", "ferryd.service", "simple_api.service"]);

    let rss: Vec<f64> = samples.iter().map(|m| m[0] as f64).collect();
    let cpu = cpu1 - cpu0;
    println!("\n### Idle: ferryd polling an unchanged repository\n");
    println!(
        "poll interval {poll} (jitter 0 s), {:.0} s window, {} samples of /proc/<pid>/status every {sample_secs} s; load average {load0} at the start, {load1} at the end\n",
        elapsed,
        samples.len()
    );
    println!("| metric | value |");
    println!("|---|--:|");
    println!("| VmRSS, median | {:.2} MiB |", mib(median(rss.clone())));
    println!(
        "| VmRSS, min–max | {:.2}–{:.2} MiB |",
        mib(rss.iter().copied().fold(f64::INFINITY, f64::min)),
        mib(rss.iter().copied().fold(0.0, f64::max))
    );
    println!(
        "| VmRSS at the end: anonymous / file-backed | {:.2} / {:.2} MiB |",
        mib(last[2] as f64),
        mib(last[3] as f64)
    );
    println!(
        "| VmHWM (peak since start, includes installing 1.0.0) | {:.2} MiB |",
        mib(last[1] as f64)
    );
    println!("| CPU time (utime + stime) over the window | {cpu:.2} s |");
    println!(
        "| CPU, average over the window | {:.3} % of one core |",
        100.0 * cpu / elapsed
    );
    println!(
        "| CPU time of ferryd.service's cgroup (`cpu.stat` `usage_usec`) | {:.3} s |",
        cg1 - cg0
    );
    println!(
        "| CPU, average over the window (cgroup) | {:.3} % of one core |",
        100.0 * (cg1 - cg0) / elapsed
    );
    println!("| polls (`check_started` events) | {polls} |");
    println!(
        "| CPU per poll (cgroup) | {:.2} ms |",
        if polls > 0 {
            1000.0 * (cg1 - cg0) / polls as f64
        } else {
            f64::NAN
        }
    );
    println!("| `error` events in the window | {errors} |");
    drop(s);
    Ok(vec![
        ("rss_median_mib", mib(median(rss.clone()))),
        ("rss_max_mib", mib(rss.iter().copied().fold(0.0, f64::max))),
        ("hwm_mib", mib(last[1] as f64)),
        ("cpu_s", cpu),
        ("cpu_pct", 100.0 * cpu / elapsed),
        ("cpu_cgroup_s", cg1 - cg0),
        ("polls", polls as f64),
    ])
}

/// `__REALTIME_TIMESTAMP` (µs since the epoch) of the last `event` for `version`.
fn event_time(events: &[serde_json::Value], event: &str, version: &str) -> Result<u64> {
    events
        .iter()
        .rev()
        .find(|e| e["FERRY_EVENT"] == event && e["FERRY_VERSION"] == version)
        .and_then(|e| e["__REALTIME_TIMESTAMP"].as_str())
        .and_then(|t| t.parse().ok())
        .with_context(|| format!("no `{event}` event for {version} in the journal"))
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The phases, each as (label, from event, to event).
const PHASES: [(&str, &str, &str); 7] = [
    ("download", "download_started", "downloaded"),
    ("extract", "downloaded", "extracted"),
    ("verified", "extracted", "verified"),
    ("swap", "verified", "installed"),
    ("to restart", "installed", "restarting"),
    ("restart", "restarting", "probation"),
    ("probation", "probation", "committed"),
];

fn update(runs: u32) -> Result<Vec<(&'static str, f64)>> {
    let s = setup("bench-update", None, false)?;
    let w = s.dir().to_path_buf();
    let versions: Vec<String> = (1..=runs).map(|k| format!("1.{k}.0")).collect();
    let binaries = versions
        .iter()
        .map(|v| build(&w, v))
        .collect::<Result<Vec<_>>>()?;
    let load0 = loadavg();
    let mut rows = Vec::new();
    for (version, binary) in versions.iter().zip(&binaries) {
        let size = std::fs::metadata(binary)?.len();
        let t_start = now_us();
        publish(&w, binary)?;
        let t_published = now_us();
        wait_committed(&s.board, version)?;
        let events = s.board.events()?;
        let at = |e: &str| event_time(&events, e, version);
        let available = at("update_available")?;
        let mut phases = Vec::new();
        for (_, from, to) in PHASES {
            phases.push((at(to)? as f64 - at(from)? as f64) / 1e6);
        }
        let committed = at("committed")?;
        let probation_start = at("probation")?;
        rows.push(Row {
            version: version.clone(),
            size,
            publish: (t_published - t_start) as f64 / 1e6,
            poll_delay: (available as f64 - t_published as f64) / 1e6,
            to_download: (at("download_started")? as f64 - available as f64) / 1e6,
            phases,
            total: (committed as f64 - available as f64) / 1e6,
            running: (probation_start as f64 - available as f64) / 1e6,
        });
        eprintln!("{version} committed");
    }
    let load1 = loadavg();
    let _ = s
        .board
        .sandbox
        .systemctl(&["stop", "ferryd.service", "simple_api.service"]);

    println!("\n### Update: from `ferry publish` to the new version committed\n");
    println!(
        "{runs} updates in a row on one board (1.0.0 → {}), poll interval 1 s (jitter 0 s), probation configured as 3 s; load average {load0} before the first publish, {load1} after the last commit\n",
        versions.join(" → ")
    );
    println!("| version | artifact (MB) | `ferry publish` (s) | poll delay (excluded) (s) | update_available→download_started (s) | download (s) | extract (s) | verified (s) | swap (s) | installed→restarting (s) | restart (s) | probation (s) | total excl. poll (s) | excl. poll and probation (s) |");
    println!("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    let fmt_row = |label: &str, size: String, vals: Vec<f64>| {
        let cells: Vec<String> = vals.iter().map(|v| format!("{v:.3}")).collect();
        println!("| {label} | {size} | {} |", cells.join(" | "));
    };
    let values = |r: &Row| -> Vec<f64> {
        let mut v = vec![r.publish, r.poll_delay, r.to_download];
        v.extend(&r.phases);
        v.push(r.total);
        v.push(r.running);
        v
    };
    for r in &rows {
        fmt_row(&r.version, format!("{:.1}", r.size as f64 / 1e6), values(r));
    }
    let n = values(&rows[0]).len();
    let medians: Vec<f64> = (0..n)
        .map(|i| median(rows.iter().map(|r| values(r)[i]).collect()))
        .collect();
    fmt_row("**median**", String::new(), medians.clone());
    println!();
    println!("Phases, from the journal timestamps of the agent's events for the version: download = download_started→downloaded (streaming to the partial file, fsync, SHA-256 of the file); extract = downloaded→extracted (signature and container checks, storing under versions/, pre-extraction as the app's user); verified = extracted→verified; swap = verified→installed; restart = restarting→probation (D-Bus restart until the unit is active); probation = probation→committed. Poll delay = end of `ferry publish` → update_available. Total excl. poll = update_available→committed.");
    drop(s);
    Ok(vec![
        ("poll_delay_s", medians[1]),
        ("total_excl_poll_s", medians[n - 2]),
        ("excl_poll_probation_s", medians[n - 1]),
    ])
}

struct Row {
    version: String,
    size: u64,
    publish: f64,
    poll_delay: f64,
    to_download: f64,
    phases: Vec<f64>,
    total: f64,
    running: f64,
}
