//! `ferry rollout`: changes the rollout of a channel's current release
//! (`rollout.percent`, `rollout.halted`) by re-signing its manifest with the
//! same artifact, a serial one higher and the same validity window from now.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};

use super::publish::{current_manifest, write_manifest};
use crate::cli::RolloutArgs;
use crate::keyfile;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Runs `ferry rollout`.
pub fn run(args: RolloutArgs) -> Result<ExitCode> {
    if let Some(p) = args.percent {
        if p > 100 {
            bail!("--percent {p} is outside 0-100");
        }
    }
    let Some(old) = current_manifest(&args.repo, &args.app, &args.channel)? else {
        bail!("nothing published on {}/{}", args.app, args.channel);
    };
    let key = keyfile::load_secret(&args.key, &args.password)?;

    let mut m = old.clone();
    if let Some(p) = args.percent {
        m.rollout.percent = p;
    }
    if args.halt {
        m.rollout.halted = true;
    }
    if args.resume {
        m.rollout.halted = false;
    }
    m.serial = old
        .serial
        .checked_add(1)
        .context("the channel's serial cannot rise further")?;
    let window = old.expires_at.saturating_sub(old.published_at);
    m.published_at = now();
    m.expires_at = m.published_at.saturating_add(window);
    m.validate()
        .context("the changed manifest would not be valid")?;
    write_manifest(&args.repo, &m, &key)?;

    println!(
        "{} {} on channel `{}`: serial {} -> {}, percent {} -> {}, halted {} -> {}, expires in {}s",
        m.app,
        m.version,
        m.channel,
        old.serial,
        m.serial,
        old.rollout.percent,
        m.rollout.percent,
        old.rollout.halted,
        m.rollout.halted,
        window
    );
    Ok(ExitCode::SUCCESS)
}
