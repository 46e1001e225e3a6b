//! `download_bench`: the agent's artifact download (`ferryd::repo::RepoClient::
//! download`: stream to a fresh partial file, fsync, SHA-256 of the complete
//! file) against `curl -s -o f URL && sha256sum f`, from a real nginx on
//! loopback (`ferry_tests::nginx::Nginx`), in one run.
//!
//! For each size (default 200 MiB and 50 MiB of random bytes) it runs the two
//! alternately (the order swapped every run), `--runs` times each (default 5),
//! after one unmeasured warm-up of each. Every measured run is a fresh process
//! writing a fresh file:
//!
//! - ferryd: this example re-executes itself (`download_bench fetch …`), which
//!   builds a current-thread tokio runtime and a `RepoClient` as `ferryd`
//!   does, downloads, and prints its peak RSS (`getrusage(RUSAGE_SELF)`
//!   `ru_maxrss`);
//! - curl: `/usr/bin/time -f %M curl -s -o f URL`, then
//!   `/usr/bin/time -f %M sha256sum f` (its hash checked); peak RSS is the
//!   larger of the two.
//!
//! Wall time is measured here for both, from spawning the first process to the
//! exit of the last one. Prints markdown tables (and every sample).
//!
//! Usage: `cargo run --release --example download_bench -p ferryd -- [--runs N]
//! [--sizes-mib 200,50] [--dir DIR]` (needs nginx, curl and /usr/bin/time).

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use ferry_format::digest::sha256_file;
use ferry_tests::nginx::Nginx;
use ferryd::repo::{RepoClient, RepoConfig};

const MIB: u64 = 1024 * 1024;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("fetch") {
        return fetch(&args[1..]);
    }
    let mut runs = 5usize;
    let mut sizes = vec![200u64, 50];
    let mut dir: Option<PathBuf> = None;
    let mut summary: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--runs" => runs = value()?.parse().context("--runs: a number")?,
            "--sizes-mib" => {
                sizes = value()?
                    .split(',')
                    .map(|s| s.trim().parse::<u64>())
                    .collect::<Result<_, _>>()
                    .context("--sizes-mib: numbers separated by commas")?
            }
            "--dir" => dir = Some(PathBuf::from(value()?)),
            "--summary" => summary = Some(PathBuf::from(value()?)),
            "-h" | "--help" => {
                println!("usage: download_bench [--runs N] [--sizes-mib 200,50] [--dir DIR] [--summary FILE]");
                return Ok(());
            }
            other => bail!("unknown argument `{other}` (try --help)"),
        }
    }
    if runs == 0 || sizes.is_empty() || sizes.contains(&0) {
        bail!("--runs and every size must be positive");
    }
    drive(runs, &sizes, dir.as_deref(), summary.as_deref())
}

/// `fetch BASE_URL PATH SIZE SHA256 PARTIAL`: one download, as ferryd does it.
fn fetch(args: &[String]) -> Result<()> {
    let [base, path, size, sha, partial] = args else {
        bail!("usage: download_bench fetch BASE_URL PATH SIZE SHA256 PARTIAL");
    };
    let size: u64 = size.parse().context("SIZE")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let client = RepoClient::new(RepoConfig::new(base.as_str()))?;
    let outcome = rt.block_on(client.download(path, size, sha, Path::new(partial)))?;
    let elapsed = started.elapsed();
    if outcome.bytes_fetched != size || outcome.resumed_from != 0 {
        bail!("unexpected outcome {outcome:?}");
    }
    println!(
        "download_s={:.4} maxrss_kib={}",
        elapsed.as_secs_f64(),
        maxrss_kib()
    );
    Ok(())
}

/// Peak RSS of this process so far, in KiB.
fn maxrss_kib() -> i64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` points to writable memory the size of a `rusage`.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return -1;
    }
    // SAFETY: getrusage succeeded and filled it (it was zeroed anyway).
    let usage = unsafe { usage.assume_init() };
    #[allow(clippy::useless_conversion)] // c_long is i64 here, not everywhere
    i64::from(usage.ru_maxrss)
}

/// One measured run: wall time and peak RSS (KiB).
#[derive(Clone, Copy)]
struct Sample {
    wall: Duration,
    rss_kib: u64,
    /// ferryd only: the download call alone, as timed inside the process.
    inner: Option<f64>,
}

fn drive(runs: usize, sizes: &[u64], dir: Option<&Path>, summary: Option<&Path>) -> Result<()> {
    for tool in ["/usr/bin/time", "curl", "sha256sum"] {
        let found = if tool.starts_with('/') {
            Path::new(tool).is_file()
        } else {
            Command::new(tool)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok()
        };
        if !found {
            bail!("`{tool}` is missing (apt-get install time curl coreutils)");
        }
    }
    let mut builder = tempfile::Builder::new();
    builder.prefix("ferry-download-bench-");
    let work = match dir {
        Some(d) => builder.tempdir_in(d)?,
        None => builder.tempdir()?,
    };
    let repo = work.path().join("repo");
    let out = work.path().join("out");
    std::fs::create_dir_all(repo.join("blobs"))?;
    std::fs::create_dir_all(&out)?;
    println!("work directory: {}", work.path().display());

    let mut files = Vec::new();
    for &mib in sizes {
        let rel = format!("blobs/random-{mib}MiB.bin");
        let sha = write_random(&repo.join(&rel), mib * MIB)?;
        files.push((mib, rel, sha));
    }
    let nginx = Nginx::serve(&repo)?;
    let base = nginx.url();
    println!("nginx at {base}");
    let me = std::env::current_exe()?;

    let mut results = Vec::new();
    for (mib, rel, sha) in &files {
        let size = mib * MIB;
        let url = format!("{base}/{rel}");
        // Warm-up (unmeasured): both paths once, the file in the page cache.
        ferry_run(&me, &base, rel, size, sha, &out.join("warm-ferry"))?;
        curl_run(&url, sha, &out.join("warm-curl"), &out)?;
        let (mut ferry, mut curl) = (Vec::new(), Vec::new());
        for i in 0..runs {
            let fp = out.join(format!("ferry-{mib}-{i}"));
            let cp = out.join(format!("curl-{mib}-{i}"));
            if i % 2 == 0 {
                ferry.push(ferry_run(&me, &base, rel, size, sha, &fp)?);
                curl.push(curl_run(&url, sha, &cp, &out)?);
            } else {
                curl.push(curl_run(&url, sha, &cp, &out)?);
                ferry.push(ferry_run(&me, &base, rel, size, sha, &fp)?);
            }
            eprintln!(
                "{mib} MiB run {}: ferryd {:.3} s {} KiB, curl+sha256sum {:.3} s {} KiB",
                i + 1,
                ferry[i].wall.as_secs_f64(),
                ferry[i].rss_kib,
                curl[i].wall.as_secs_f64(),
                curl[i].rss_kib
            );
        }
        results.push((*mib, ferry, curl));
    }
    drop(nginx);

    println!("\n| artifact | method | wall, median (s) | min–max (s) | throughput (MiB/s) | peak RSS, median (MiB) | RSS min–max (MiB) | × curl+sha256sum (wall) |");
    println!("|---|---|--:|--:|--:|--:|--:|--:|");
    for (mib, ferry, curl) in &results {
        let cm = median_wall(curl);
        for (name, s) in [
            ("ferryd `RepoClient::download`", ferry),
            ("`curl -s -o f URL && sha256sum f`", curl),
        ] {
            let m = median_wall(s);
            let (lo, hi) = min_max(s.iter().map(|x| x.wall.as_secs_f64()));
            let (rlo, rhi) = min_max(s.iter().map(|x| x.rss_kib as f64 / 1024.0));
            println!(
                "| {mib} MiB | {name} | {m:.3} | {lo:.3}–{hi:.3} | {:.0} | {:.1} | {rlo:.1}–{rhi:.1} | {:.2}× |",
                *mib as f64 / m,
                median(s.iter().map(|x| x.rss_kib as f64 / 1024.0)),
                m / cm
            );
        }
    }
    println!("\nruns per method and size: {runs} (alternating, order swapped every run; after one unmeasured warm-up each)");
    for (mib, ferry, curl) in &results {
        for (name, s) in [("ferryd", ferry), ("curl+sha256sum", curl)] {
            let list: Vec<String> = s
                .iter()
                .map(|x| {
                    let inner = x
                        .inner
                        .map(|t| format!(" (download call {t:.3} s)"))
                        .unwrap_or_default();
                    format!(
                        "{:.3} s{inner}/{:.1} MiB",
                        x.wall.as_secs_f64(),
                        x.rss_kib as f64 / 1024.0
                    )
                })
                .collect();
            println!("- {mib} MiB, {name}: {}", list.join(", "));
        }
    }
    if let Some(file) = summary {
        // `key=value` lines for bench/agent.sh.
        let mut text = String::new();
        for (mib, ferry, curl) in &results {
            let rss = |s: &[Sample]| median(s.iter().map(|x| x.rss_kib as f64 / 1024.0));
            text += &format!("ratio_{mib}={}\n", median_wall(ferry) / median_wall(curl));
            text += &format!("ferry_wall_{mib}={}\n", median_wall(ferry));
            text += &format!("curl_wall_{mib}={}\n", median_wall(curl));
            text += &format!("ferry_rss_{mib}={}\n", rss(ferry));
            text += &format!("curl_rss_{mib}={}\n", rss(curl));
        }
        std::fs::write(file, text)?;
    }
    Ok(())
}

/// Writes `len` bytes from /dev/urandom to `path`; returns the SHA-256 of
/// the file as written.
fn write_random(path: &Path, len: u64) -> Result<String> {
    let mut src = std::fs::File::open("/dev/urandom")?;
    let mut dst = std::fs::File::create(path)?;
    let mut buf = vec![0u8; MIB as usize];
    let mut left = len;
    while left > 0 {
        let n = left.min(MIB) as usize;
        src.read_exact(&mut buf[..n])?;
        dst.write_all(&buf[..n])?;
        left -= n as u64;
    }
    dst.sync_all()?;
    Ok(sha256_file(path)?.0)
}

fn ferry_run(
    me: &Path,
    base: &str,
    rel: &str,
    size: u64,
    sha: &str,
    partial: &Path,
) -> Result<Sample> {
    let _ = std::fs::remove_file(partial);
    let started = Instant::now();
    let output = Command::new(me)
        .args(["fetch", base, rel, &size.to_string(), sha])
        .arg(partial)
        .stdin(Stdio::null())
        .output()?;
    let wall = started.elapsed();
    if !output.status.success() {
        bail!(
            "download_bench fetch failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let rss_kib = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("maxrss_kib="))
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no maxrss_kib in {text:?}"))?;
    let inner = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("download_s="))
        .and_then(|v| v.parse().ok());
    std::fs::remove_file(partial)?;
    Ok(Sample {
        wall,
        rss_kib,
        inner,
    })
}

fn curl_run(url: &str, sha: &str, file: &Path, out: &Path) -> Result<Sample> {
    let _ = std::fs::remove_file(file);
    let (rss_curl, rss_sha) = (out.join("rss-curl"), out.join("rss-sha"));
    let started = Instant::now();
    let curl = Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o"])
        .arg(&rss_curl)
        .args(["curl", "-s", "-o"])
        .arg(file)
        .arg(url)
        .stdin(Stdio::null())
        .status()?;
    if !curl.success() {
        bail!("curl {url} failed ({curl})");
    }
    let hashed = Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o"])
        .arg(&rss_sha)
        .arg("sha256sum")
        .arg(file)
        .stdin(Stdio::null())
        .output()?;
    let wall = started.elapsed();
    let printed = String::from_utf8_lossy(&hashed.stdout);
    if !hashed.status.success() || printed.split_whitespace().next() != Some(sha) {
        bail!(
            "sha256sum of {} printed {printed:?}, expected {sha}",
            file.display()
        );
    }
    let read_kib = |p: &Path| -> Result<u64> {
        let t = std::fs::read_to_string(p)?;
        t.lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .with_context(|| format!("no RSS in {}: {t:?}", p.display()))
    };
    let rss_kib = read_kib(&rss_curl)?.max(read_kib(&rss_sha)?);
    std::fs::remove_file(file)?;
    Ok(Sample {
        wall,
        rss_kib,
        inner: None,
    })
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn median_wall(samples: &[Sample]) -> f64 {
    median(samples.iter().map(|s| s.wall.as_secs_f64()))
}

fn min_max(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}
