//! `ferry repo`: the repository's roles. `init` makes root 1, `delegate`
//! gives an app its release keys, `rotate` writes the next root, `timestamp`
//! refreshes the online documents, `verify` checks everything as a device
//! would. Every command but `init` first checks the repository from the
//! trusted root down and refuses to sign on top of anything it cannot verify.

use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use ferry_format::clock::unix_now;
use ferry_format::tuf::layout::{app_paths, is_valid_app_role, root_path, METADATA_DIR};
use ferry_format::tuf::writer::{
    empty_targets, next_root_version, next_version, role_of, root_doc, Draft, RootKeys,
};
use ferry_format::tuf::{DelegatedRole, Delegations, Refresh, Targets};
use ferry_format::{PublicKey, SecretKey};

use crate::cli::{
    PasswordArgs, RepoArgs, RepoCommand, RepoDelegateArgs, RepoInitArgs, RepoRotateArgs,
    RepoTimestampArgs, RepoTrustArgs, RepoVerifyArgs,
};
use crate::keyfile;
use crate::log;
use crate::repository::{self, publics, LocalRepo, SNAPSHOT_EXPIRES};

/// Runs `ferry repo …`.
pub fn run(args: RepoArgs) -> Result<ExitCode> {
    match args.command {
        RepoCommand::Init(a) => init(a),
        RepoCommand::Delegate(a) => delegate(a),
        RepoCommand::Rotate(a) => rotate(a),
        RepoCommand::Timestamp(a) => timestamp(a),
        RepoCommand::Verify(a) => verify(a),
    }
}

fn load_keys(paths: &[std::path::PathBuf], pw: &PasswordArgs) -> Result<Vec<SecretKey>> {
    paths.iter().map(|p| keyfile::load_secret(p, pw)).collect()
}

fn threshold(given: Option<u32>, keys: usize) -> Result<u32> {
    let t = given.unwrap_or(keys as u32);
    if t == 0 || t as usize > keys {
        bail!("a threshold of {t} cannot be met by {keys} key(s)");
    }
    Ok(t)
}

fn init(args: RepoInitArgs) -> Result<ExitCode> {
    let repo = LocalRepo::new(&args.repo);
    if repo.dir().join(METADATA_DIR).exists() {
        bail!(
            "`{}` already holds {METADATA_DIR}/; a repository is initialised once (rotate keys with `ferry repo rotate`)",
            repo.dir().display()
        );
    }
    let root_keys = load_keys(&args.root_key, &args.password)?;
    let online = keyfile::load_secret(&args.timestamp_key, &args.password)?;
    let root_pubs = publics(&root_keys);
    let t = threshold(args.root_threshold, root_pubs.len())?;
    let online_pub = [online.public_key()];
    let root = root_doc(
        1,
        repository::from_now(&args.expires_in)?,
        &RootKeys {
            root: (&root_pubs, t),
            targets: (&root_pubs, t),
            timestamp: (&online_pub, 1),
        },
    );
    let signers: Vec<&SecretKey> = root_keys.iter().collect();
    let mut draft = Draft::on(None);
    draft.put_root(&root, &signers);
    draft.put_role(
        "targets",
        &empty_targets(1, repository::from_now(repository::TARGETS_EXPIRES)?),
        &signers,
    );
    let (snap, ts) = repository::online_expiries()?;
    repo.write(&draft.finish(&[&online], snap, ts)?)?;
    let root_file = repo.dir().join(root_path(1));
    log::note(format!("created the repository in `{}`; provision devices with its root (agent.toml: root = \"/etc/ferry/root.json\")",
        repo.dir().display()));
    println!("{}", root_file.display());
    Ok(ExitCode::SUCCESS)
}

fn delegate(args: RepoDelegateArgs) -> Result<ExitCode> {
    if !is_valid_app_role(&args.app) {
        bail!(
            "`{}` cannot be an app's role: use 1-128 of A-Z a-z 0-9 . _ -, and none of root, targets, snapshot, timestamp",
            args.app
        );
    }
    let repo = LocalRepo::new(&args.trust.repo);
    let set = repo.load(&args.trust.root, Some(&args.app))?;
    let root_keys = load_keys(&args.root_key, &args.password)?;
    let online = keyfile::load_secret(&args.trust.timestamp_key, &args.password)?;
    let release_pubs = keyfile::load_publics(&args.release_pubkey)?;
    let t = threshold(Some(args.threshold), release_pubs.len())?;

    let old = &set.targets().context("no trusted targets")?.doc;
    let mut targets = old.clone();
    targets.version = next_version("targets", old)?;
    targets.expires =
        ferry_format::tuf::time::format_utc(repository::from_now(repository::TARGETS_EXPIRES)?);
    let delegations = targets.delegations.get_or_insert_with(|| Delegations {
        keys: Default::default(),
        roles: Vec::new(),
    });
    let (keys, role) = role_of(&release_pubs, t);
    delegations.roles.retain(|r| r.name != args.app);
    delegations.roles.push(DelegatedRole {
        name: args.app.clone(),
        keyids: role.keyids,
        threshold: t,
        terminating: true,
        paths: Some(app_paths(&args.app)),
    });
    delegations.keys.extend(keys);
    let used: std::collections::BTreeSet<String> = delegations
        .roles
        .iter()
        .flat_map(|r| r.keyids.iter().cloned())
        .collect();
    delegations.keys.retain(|id, _| used.contains(id));

    let mut draft = Draft::on(Some(&set));
    let signers: Vec<&SecretKey> = root_keys.iter().collect();
    draft.put_role("targets", &targets, &signers);
    if let Some(current) = set.delegated(&args.app) {
        // The role must verify under its new keys: sign it again with them.
        let release = load_keys(&args.release_key, &args.password)?;
        if release.is_empty() {
            bail!(
                "app `{}` already has a role; give the new secret release key(s) with --release-key so it can be signed again",
                args.app
            );
        }
        for k in &release {
            if !release_pubs.contains(&k.public_key()) {
                bail!(
                    "--release-key {} is not one of the --release-pubkey keys",
                    k.id()
                );
            }
        }
        let mut doc = current.doc.clone();
        doc.version = next_version(&args.app, &current.doc)?;
        draft.put_role(&args.app, &doc, &release.iter().collect::<Vec<_>>());
    }
    let (snap, ts) = repository::online_expiries()?;
    repo.write(&draft.finish(&[&online], snap, ts)?)?;
    println!(
        "app `{}` is now released by {} key(s), {} needed",
        args.app,
        release_pubs.len(),
        t
    );
    Ok(ExitCode::SUCCESS)
}

fn rotate(args: RepoRotateArgs) -> Result<ExitCode> {
    let repo = LocalRepo::new(&args.trust.repo);
    let set = repo.load(&args.trust.root, None)?;
    let old_keys = load_keys(&args.root_key, &args.password)?;
    let new_keys = load_keys(&args.new_root_key, &args.password)?;
    let online = keyfile::load_secret(&args.trust.timestamp_key, &args.password)?;
    let old_root = &set.root().doc;
    let root_pubs: Vec<PublicKey> = if new_keys.is_empty() {
        publics(&old_keys)
    } else {
        publics(&new_keys)
    };
    let t = threshold(args.root_threshold, root_pubs.len())?;
    let online_pub = [online.public_key()];
    let root = root_doc(
        next_root_version(old_root)?,
        repository::from_now(&args.expires_in)?,
        &RootKeys {
            root: (&root_pubs, t),
            targets: (&root_pubs, t),
            timestamp: (&online_pub, 1),
        },
    );
    let mut signers: Vec<&SecretKey> = old_keys.iter().collect();
    signers.extend(new_keys.iter());
    let mut draft = Draft::on(Some(&set));
    draft.put_root(&root, &signers);
    let ts_rotated = old_root.roles.get("timestamp").map(|r| &r.keyids)
        != root.roles.get("timestamp").map(|r| &r.keyids);
    if ts_rotated {
        draft.restart_online_versions();
    }
    if old_root.roles.get("targets") != root.roles.get("targets") {
        // Targets is held by the root keys: sign it again with the new ones.
        let old = &set.targets().context("no trusted targets")?.doc;
        let mut targets: Targets = old.clone();
        targets.version = next_version("targets", old)?;
        let new_signers: Vec<&SecretKey> = if new_keys.is_empty() {
            old_keys.iter().collect()
        } else {
            new_keys.iter().collect()
        };
        draft.put_role("targets", &targets, &new_signers);
    }
    let (snap, ts) = repository::online_expiries()?;
    repo.write(&draft.finish(&[&online], snap, ts)?)?;
    // Check what was written from the old root, as a device will.
    repo.load(&args.trust.root, None)
        .context("the rotated repository does not verify from the old root")?;
    println!(
        "root {} written{}",
        root.version,
        if ts_rotated {
            "; timestamp key rotated, snapshot and timestamp versions restart at 1"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn timestamp(args: RepoTimestampArgs) -> Result<ExitCode> {
    let RepoTrustArgs {
        repo,
        root,
        timestamp_key,
    } = &args.trust;
    let repo = LocalRepo::new(repo);
    let set = repo.load(root, None)?;
    let online = keyfile::load_secret(timestamp_key, &args.password)?;
    let ts_expires = repository::from_now(&args.expires_in)?;
    let snap = repository::from_now(SNAPSHOT_EXPIRES)?.max(ts_expires);
    let files = Draft::on(Some(&set)).finish(&[&online], snap, ts_expires)?;
    repo.write(&files)?;
    println!(
        "timestamp re-signed, valid until {}",
        ferry_format::tuf::time::format_utc(ts_expires)
    );
    Ok(ExitCode::SUCCESS)
}

fn verify(args: RepoVerifyArgs) -> Result<ExitCode> {
    let repo = LocalRepo::new(&args.repo);
    let set = repo.load(&args.root, None)?;
    set.check_fresh("targets", Some(unix_now()))
        .context("the repository is stale: re-sign it (`ferry repo timestamp`)")?;
    let targets = &set.targets().expect("loaded").doc;
    let apps: Vec<String> = targets
        .delegations
        .iter()
        .flat_map(|d| d.roles.iter().map(|r| r.name.clone()))
        .collect();
    let mut releases = 0;
    for app in &apps {
        if set.role_meta(app).is_none() {
            println!("{app}: delegated, nothing published yet");
            continue;
        }
        let mut r = Refresh::new(set.clone(), Some(app), Some(unix_now()));
        while let Some(fetch) = r.next() {
            let bytes = std::fs::read(repo.dir().join(&fetch.path)).ok();
            r.feed(bytes.as_deref())
                .with_context(|| format!("`{}` is refused", fetch.path))?;
        }
        let set = r.finish()?;
        let role = &set.delegated(app).expect("refreshed").doc;
        for target in role.targets.keys() {
            repo.check_target(role, target)?;
            if let Some(channel) = target
                .strip_prefix(&format!("{app}/"))
                .and_then(|t| t.strip_suffix(".json"))
                .filter(|c| !c.contains('/'))
            {
                let m = repo.channel(role, app, channel)?.expect("listed");
                releases += 1;
                println!(
                    "{app}/{channel}: {} (serial {}, {}%{}, targets {})",
                    m.version,
                    m.serial,
                    m.rollout.percent,
                    if m.rollout.halted { ", halted" } else { "" },
                    m.artifacts.keys().cloned().collect::<Vec<_>>().join(", ")
                );
            }
        }
    }
    let ts = &set.timestamp().expect("loaded").doc;
    println!(
        "ok: root {}, timestamp {} (expires {}), {} app(s), {} channel(s)",
        set.root().doc.version,
        ts.version,
        ts.expires,
        apps.len(),
        releases
    );
    Ok(ExitCode::SUCCESS)
}
