//! The start-up check: every binary `ferry build` makes is run once, through
//! its own launcher and interpreter, with the bootstrap told to resolve the
//! entry point (import its module, look the function up) and stop there. A
//! typo in `module:function`, a module that fails to import, a library that
//! does not load: each fails the build here instead of on the device.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

use super::entry::Entry;
use crate::log;

/// Longest the check may take (a cold start unpacks the payload first).
const TIMEOUT: Duration = Duration::from_secs(300);

/// Runs `binary` with `FERRY_CHECK_ENTRY=1`, extracting into `cache`.
pub fn check_starts(binary: &Path, cache: &Path, entry: &Entry) -> Result<()> {
    // To a file, not a pipe: an app that prints a lot while importing must
    // not block on a full pipe.
    let log_path = cache.with_extension("stderr");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create `{}`", log_path.display()))?;
    let mut child = Command::new(binary)
        .env("FERRY_CHECK_ENTRY", "1")
        .env("FERRY_CACHE_DIR", cache)
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot run the built binary `{}`", binary.display()))?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the built binary did not finish its start-up check within {} s (resolving `{}`)\nhint: does importing the entry module wait for something? pass --no-check to skip the check",
                TIMEOUT.as_secs(),
                entry.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if status.success() {
        return Ok(());
    }
    let stderr = std::fs::read(&log_path).unwrap_or_default();
    let stderr = String::from_utf8_lossy(&stderr);
    if status.code() == Some(78) && stderr.contains("FERRY_CACHE_DIR") {
        // The build machine's temporary directory cannot hold an extraction
        // (noexec, say): the check cannot run here, the binary may be fine.
        log::warn(format!(
            "the start-up check could not run on this machine: {}",
            stderr.trim()
        ));
        return Ok(());
    }
    let tail: Vec<&str> = stderr.lines().rev().take(12).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    let last = tail.last().copied().unwrap_or("");
    let hint = if last.contains("ModuleNotFoundError") || last.contains("AttributeError") {
        format!(
            "the entry point `{}` names a module or function that is not in the bundle; check its spelling",
            entry.display()
        )
    } else {
        "the output above is the app's own; pass --no-check to skip the check".to_owned()
    };
    bail!(
        "the built binary cannot start ({status}): resolving its entry point `{}` failed:\n  {}\nhint: {hint}",
        entry.display(),
        tail.join("\n  ")
    )
}
