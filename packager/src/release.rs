//! Writing a release into the repository: the artifacts and the channel's
//! manifest as targets of the app's role (signed with the release key), then
//! the snapshot and timestamp (signed with the online key), timestamp last.
//! `ferry publish` and `ferry rollout` both end here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use ferry_format::digest::{sha256_file, sha256_hex};
use ferry_format::manifest::Manifest;
use ferry_format::tuf::layout::channel_target;
use ferry_format::tuf::writer::{empty_targets, next_version, Draft};
use ferry_format::tuf::{Key, TargetFile, TrustedSet};
use ferry_format::SecretKey;
use serde_json::json;

use crate::repository::{delegation_keys, online_expiries, LocalRepo};

/// Refuses a release key that is not among the app's delegated keys.
pub fn check_release_key(set: &TrustedSet, app: &str, key: &SecretKey, path: &Path) -> Result<()> {
    let keys = delegation_keys(set, app)?;
    if !keys.iter().any(|k: &Key| k.is(&key.public_key())) {
        bail!(
            "`{}` (key {}) is not a release key of app `{app}`\nhint: the root key holder delegates it: `ferry repo delegate --app {app} --release-pubkey …`",
            path.display(),
            key.id()
        );
    }
    Ok(())
}

/// Writes a release: new target files, the app's role, snapshot, timestamp.
/// `new_files` are (target path, local file) pairs to add to the role.
pub fn write_release(
    repo: &LocalRepo,
    set: &TrustedSet,
    manifest: &Manifest,
    new_files: &[(String, PathBuf)],
    release: &SecretKey,
    online: &SecretKey,
    role_expires: u64,
) -> Result<()> {
    let app = &manifest.app;
    let mut role = match set.delegated(app) {
        Some(t) => {
            let mut doc = t.doc.clone();
            doc.version = next_version(app, &t.doc)?;
            doc
        }
        None => empty_targets(1, role_expires),
    };
    role.expires = ferry_format::tuf::time::format_utc(role_expires);
    for (target, file) in new_files {
        let (sha256, size) =
            sha256_file(file).with_context(|| format!("cannot read `{}`", file.display()))?;
        let listed_other = role
            .targets
            .get(target)
            .is_some_and(|old| old.sha256() != Some(sha256.as_str()));
        if listed_other || repo.has_other_target_file(target, &sha256)? {
            bail!(
                "`{target}` is already published with other bytes; versions are immutable, so publish this build under a new version"
            );
        }
        repo.copy_target(target, &sha256, file)?;
        role.targets.insert(
            target.clone(),
            TargetFile {
                length: size,
                hashes: BTreeMap::from([("sha256".to_owned(), sha256)]),
                custom: Some(json!({ "ferry": { "app": app, "version": manifest.version } })),
            },
        );
    }
    let bytes = manifest.to_json();
    let sha256 = sha256_hex(&bytes);
    let target = channel_target(app, &manifest.channel);
    repo.write_file(
        &ferry_format::tuf::layout::target_file_path(&target, &sha256),
        &bytes,
    )?;
    role.targets.insert(
        target,
        TargetFile {
            length: bytes.len() as u64,
            hashes: BTreeMap::from([("sha256".to_owned(), sha256)]),
            custom: None,
        },
    );
    prune_unreferenced(repo, &mut role, app)?;
    let mut draft = Draft::on(Some(set));
    draft.put_role(app, &role, &[release]);
    let (snap, ts) = online_expiries()?;
    repo.write(&draft.finish(&[online], snap, ts)?)
}

/// Drops from the app's role the artifacts no channel's manifest names any
/// more, so the role (which every device fetches when it changes) stays the
/// size of what is published, not of everything ever published. The files
/// stay in `targets/`; publishing such a version again names them again.
fn prune_unreferenced(
    repo: &LocalRepo,
    role: &mut ferry_format::tuf::Targets,
    app: &str,
) -> Result<()> {
    let prefix = format!("{app}/");
    let channels: Vec<String> = role
        .targets
        .keys()
        .filter_map(|t| t.strip_prefix(&prefix)?.strip_suffix(".json"))
        .filter(|c| !c.contains('/'))
        .map(str::to_owned)
        .collect();
    let mut keep = std::collections::BTreeSet::new();
    for channel in &channels {
        keep.insert(channel_target(app, channel));
        if let Some(m) = repo.channel(role, app, channel)? {
            keep.extend(m.artifacts.values().map(|a| a.target.clone()));
        }
    }
    role.targets.retain(|t, _| keep.contains(t));
    Ok(())
}
