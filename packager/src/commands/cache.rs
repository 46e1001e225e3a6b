//! `ferry cache list` and `ferry cache prune`: the extractions of binaries
//! run by hand, at `<root>/<app>/<build id>/`. The root is the one the
//! launcher would choose here (same rules, same code); removal goes through
//! the launcher's own pruning step, so a tree an app runs from (its run lock
//! held) is never touched and a run starting meanwhile never sees half a tree.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Context as _, Result};
use ferry_launcher::cache::RUN_LOCK_NAME;
use ferry_launcher::{cache_root, lock, prune};
use serde::Serialize;

use crate::cli::{CacheArgs, CacheCommand, CacheDirArgs, CacheListArgs, CachePruneArgs};
use crate::log;
use crate::terminal::printable;

/// One extraction.
#[derive(Debug, Serialize)]
pub struct Extraction {
    /// The app's name (its directory under the root).
    pub app: String,
    /// The build id (the payload's SHA-256).
    pub build_id: String,
    /// Bytes in its regular files.
    pub bytes: u64,
    /// When it was made, Unix seconds.
    pub made_at: u64,
    /// Whether an app runs from it now.
    pub in_use: bool,
}

/// Runs `ferry cache`.
pub fn run(args: CacheArgs) -> Result<ExitCode> {
    match args.command {
        CacheCommand::List(a) => list(a),
        CacheCommand::Prune(a) => prune_cache(a),
    }
}

/// The root to look at and how it was chosen, for messages.
fn root(args: &CacheDirArgs) -> Result<(PathBuf, String)> {
    if let Some(dir) = &args.dir {
        return Ok((dir.clone(), "from --dir".to_owned()));
    }
    let (path, origin) = cache_root::choose(|k| std::env::var_os(k))
        .context("cannot tell which cache a binary run here would use\nhint: pass --dir DIR")?;
    Ok((path, origin.to_string()))
}

/// App directories under `root`, sorted; none when the root does not exist.
fn apps(root: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list `{}`", root.display())),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list `{}`", root.display()))?;
        let is_dir = fs::symlink_metadata(entry.path()).is_ok_and(|m| m.is_dir());
        if let (true, Some(name)) = (is_dir, entry.file_name().to_str()) {
            if !name.starts_with('.') {
                names.push(name.to_owned());
            }
        }
    }
    names.sort();
    Ok(names)
}

/// Every app's extractions under `root`, each app's newest first.
pub fn inventory(root: &Path, only: Option<&str>) -> Result<Vec<Extraction>> {
    let mut out = Vec::new();
    for app in apps(root)? {
        if only.is_some_and(|o| o != app) {
            continue;
        }
        let name_dir = root.join(&app);
        let builds = prune::builds(&name_dir)
            .with_context(|| format!("cannot list `{}`", name_dir.display()))?;
        for (made, id) in builds {
            let dir = name_dir.join(&id);
            let in_use = lock::is_in_use(&dir.join(RUN_LOCK_NAME))
                .with_context(|| format!("cannot check whether `{}` is in use", dir.display()))?;
            out.push(Extraction {
                app: app.clone(),
                bytes: prune::tree_bytes(&dir),
                made_at: made
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
                build_id: id,
                in_use,
            });
        }
    }
    Ok(out)
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn list(args: CacheListArgs) -> Result<ExitCode> {
    let (root, origin) = root(&args.cache)?;
    let found = inventory(&root, None)?;
    if args.json {
        let doc = serde_json::json!({
            "root": root,
            "extractions": found,
            "bytes": found.iter().map(|e| e.bytes).sum::<u64>(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("cache `{}` ({origin})", printable(&root.to_string_lossy()));
    if found.is_empty() {
        println!("no extractions");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "  {:<24} {:<12} {:>10} {:<20} IN USE",
        "APP", "BUILD", "SIZE", "MADE (UTC)"
    );
    for e in &found {
        println!(
            "  {:<24} {:<12} {:>10} {:<20} {}",
            printable(&e.app),
            &e.build_id[..12],
            megabytes(e.bytes),
            ferry_format::tuf::time::format_utc(e.made_at),
            if e.in_use { "yes" } else { "no" }
        );
    }
    let total: u64 = found.iter().map(|e| e.bytes).sum();
    println!("{} extractions, {}", found.len(), megabytes(total));
    Ok(ExitCode::SUCCESS)
}

/// What `prune` did to the whole cache.
#[derive(Debug, Default)]
struct Pruned {
    removed: usize,
    bytes: u64,
    in_use: usize,
    failed: usize,
    leftovers: usize,
}

fn prune_cache(args: CachePruneArgs) -> Result<ExitCode> {
    let (root, origin) = root(&args.cache)?;
    let found = inventory(&root, args.app.as_deref())?;
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let mut done = Pruned::default();
    let mut seen_per_app: std::collections::HashMap<&str, usize> = Default::default();
    for e in &found {
        let seen = seen_per_app.entry(&e.app).or_default();
        *seen += 1;
        if *seen <= args.keep {
            continue;
        }
        let label = format!("{} {}", printable(&e.app), &e.build_id[..12]);
        if e.in_use {
            done.in_use += 1;
            println!("kept {label}: in use");
            continue;
        }
        if args.dry_run {
            done.removed += 1;
            done.bytes += e.bytes;
            println!("{verb} {label} ({})", megabytes(e.bytes));
            continue;
        }
        match prune::remove_build(&root.join(&e.app), &e.build_id) {
            prune::Removal::Removed(bytes) => {
                done.removed += 1;
                done.bytes += bytes;
                println!("{verb} {label} ({})", megabytes(bytes));
            }
            prune::Removal::InUse => {
                done.in_use += 1;
                println!("kept {label}: in use");
            }
            prune::Removal::Gone => {}
            prune::Removal::Failed(err) => {
                done.failed += 1;
                log::note(format!("cannot remove {label}: {err}"));
            }
        }
    }
    if !args.dry_run {
        for app in apps(&root)? {
            if args.app.as_deref().is_none_or(|o| o == app) {
                done.leftovers += prune::remove_leftovers(&root.join(&app), None);
            }
        }
    }
    println!(
        "cache `{}` ({origin}): {verb} {} extractions, {}; {} in use kept{}",
        printable(&root.to_string_lossy()),
        done.removed,
        megabytes(done.bytes),
        done.in_use,
        if done.leftovers > 0 {
            format!("; {} leftovers of killed runs removed", done.leftovers)
        } else {
            String::new()
        }
    );
    if done.failed > 0 {
        anyhow::bail!(
            "{} extractions could not be removed (see above)\nhint: check the cache's ownership and permissions",
            done.failed
        );
    }
    Ok(ExitCode::SUCCESS)
}
