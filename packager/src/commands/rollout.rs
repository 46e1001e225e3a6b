//! `ferry rollout`: changes the rollout of a channel's current release
//! (`rollout.percent`, `rollout.halted`). The current manifest and its
//! artifacts are checked against the signed metadata first, so an edited
//! manifest on the server is refused, never signed.

use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use ferry_format::clock::unix_now;

use crate::cli::RolloutArgs;
use crate::keyfile;
use crate::release::{check_release_key, write_release};
use crate::repository::{from_now, LocalRepo};

/// Runs `ferry rollout`.
pub fn run(args: RolloutArgs) -> Result<ExitCode> {
    if let Some(p) = args.percent {
        if p > 100 {
            bail!("--percent {p} is outside 0-100");
        }
    }
    let key = keyfile::load_secret(&args.key, &args.password)?;
    let online = keyfile::load_secret(&args.trust.timestamp_key, &args.password)?;
    let role_expires = from_now(&args.expires_in)?;
    let repo = LocalRepo::new(&args.trust.repo);
    let set = repo.load(&args.trust.root, Some(&args.app))?;
    check_release_key(&set, &args.app, &key, &args.key)?;
    let old = match set.delegated(&args.app) {
        Some(role) => repo.channel(&role.doc, &args.app, &args.channel)?,
        None => None,
    };
    let Some(old) = old else {
        bail!("nothing published on {}/{}", args.app, args.channel);
    };
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
    m.published_at = unix_now();
    m.validate()
        .context("the changed manifest would not be valid")?;
    write_release(&repo, &set, &m, &[], &key, &online, role_expires)?;
    println!(
        "{} {} on channel `{}`: serial {} -> {}, percent {} -> {}, halted {} -> {}",
        m.app,
        m.version,
        m.channel,
        old.serial,
        m.serial,
        old.rollout.percent,
        m.rollout.percent,
        old.rollout.halted,
        m.rollout.halted,
    );
    Ok(ExitCode::SUCCESS)
}
