//! A ferry repository made the way an operator makes one: three keys without
//! password (`root`, `timestamp`, `release`, each `.key` and `.pub`), `ferry
//! repo init`, the root kept as `root.json` (what boards are provisioned
//! with), and `ferry repo delegate` giving an app to the release key. What
//! the demo, the agent benchmark and the end-to-end tests share.

use std::path::Path;

use anyhow::Result;

use crate::programs::run_ferry;

/// The arguments every publishing command takes, relative to the directory
/// [`create`] worked in: repository, trusted root, timestamp key.
pub const TRUST_ARGS: [&str; 6] = [
    "--repo",
    "repo",
    "--root",
    "root.json",
    "--timestamp-key",
    "timestamp.key",
];

/// Makes the keys and `repo/` in `dir`, with `app` delegated to `release.key`.
pub fn create(dir: &Path, app: &str) -> Result<()> {
    create_for(dir, &[app], "release")
}

/// Makes `root`, `timestamp` and `<release>` keys (`.key`, `.pub`, no
/// password) and `repo/` in `dir`, with each of `apps` delegated to
/// `<release>.key`, and keeps the root as `root.json`.
pub fn create_for(dir: &Path, apps: &[&str], release: &str) -> Result<()> {
    for name in ["root", "timestamp", release] {
        let (s, p) = (format!("{name}.key"), format!("{name}.pub"));
        run_ferry(dir, &["keygen", "--no-password", "-s", &s, "-p", &p])?;
    }
    run_ferry(
        dir,
        &[
            "repo",
            "init",
            "--repo",
            "repo",
            "--root-key",
            "root.key",
            "--timestamp-key",
            "timestamp.key",
        ],
    )?;
    let first_root = dir
        .join("repo")
        .join(ferry_format::tuf::layout::root_path(1));
    std::fs::copy(first_root, dir.join("root.json"))?;
    let release_pub = format!("{release}.pub");
    for app in apps {
        let mut args = vec!["repo", "delegate", "--root-key", "root.key", "--app", app];
        args.extend_from_slice(&["--release-pubkey", &release_pub]);
        args.extend_from_slice(&TRUST_ARGS);
        run_ferry(dir, &args)?;
    }
    Ok(())
}

/// `ferry publish BIN --key release.key …` in `dir`, with `extra` arguments.
pub fn publish(dir: &Path, bin: &Path, extra: &[&str]) -> Result<()> {
    let bin = bin
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("paths must be UTF-8"))?;
    let mut args = vec!["publish", bin, "--key", "release.key"];
    args.extend_from_slice(&TRUST_ARGS);
    args.extend_from_slice(extra);
    run_ferry(dir, &args).map(drop)
}
