//! The publisher's view of a repository directory: everything in it checked
//! from a trusted root down, by the same client rules a device applies
//! (`ferry_format::tuf`), before anything is changed or signed; and writing
//! new files in the order that keeps every reader consistent.

use std::io;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use ferry_format::clock::unix_now;
use ferry_format::digest::sha256_file;
use ferry_format::manifest::{ArtifactKind, Manifest, MAX_MANIFEST_LEN};
use ferry_format::tuf::layout::{channel_target, root_path, target_file_path, timestamp_path};
use ferry_format::tuf::writer::NewFile;
use ferry_format::tuf::{Refresh, TargetFile, Targets, TrustedSet};
use ferry_format::{Container, PublicKey, SecretKey};

/// Default validity of a root.
pub const ROOT_EXPIRES: &str = "365d";
/// Default validity of targets and of an app's role.
pub const TARGETS_EXPIRES: &str = "365d";
/// Default validity of a snapshot.
pub const SNAPSHOT_EXPIRES: &str = "30d";
/// Default validity of a timestamp: short, so a frozen repository shows.
pub const TIMESTAMP_EXPIRES: &str = "1d";

/// `now` plus a duration as typed (`30d`), in whole seconds.
pub fn from_now(text: &str) -> Result<u64> {
    Ok(unix_now().saturating_add(ferry_format::duration::parse(text)?.as_secs()))
}

/// Snapshot and timestamp expiries from now, by the defaults.
pub fn online_expiries() -> Result<(u64, u64)> {
    Ok((from_now(SNAPSHOT_EXPIRES)?, from_now(TIMESTAMP_EXPIRES)?))
}

/// A repository directory.
#[derive(Debug, Clone)]
pub struct LocalRepo {
    dir: PathBuf,
}

fn read_capped(path: &Path, cap: u64) -> Result<Option<Vec<u8>>> {
    match std::fs::metadata(path) {
        Ok(m) if m.len() > cap => bail!(
            "`{}` is {} bytes, over the limit of {cap}",
            path.display(),
            m.len()
        ),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", path.display())),
    }
    std::fs::read(path)
        .map(Some)
        .with_context(|| format!("cannot read `{}`", path.display()))
}

/// Loads a trusted root file (the one devices are provisioned with).
pub fn load_root(path: &Path) -> Result<TrustedSet> {
    let bytes = read_capped(path, ferry_format::tuf::refresh::MAX_ROOT_LEN)?
        .with_context(|| format!("trusted root `{}` does not exist", path.display()))?;
    TrustedSet::from_root(&bytes).with_context(|| {
        format!(
            "`{}` is not a valid root\nhint: give --root the root devices are provisioned with ({} of the repository when it was made)",
            path.display(),
            root_path(1)
        )
    })
}

impl LocalRepo {
    /// The repository at `dir`.
    pub fn new(dir: &Path) -> LocalRepo {
        LocalRepo {
            dir: dir.to_owned(),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the repository has metadata at all.
    pub fn exists(&self) -> bool {
        self.dir.join(timestamp_path()).exists()
    }

    /// Checks the repository from `root` down to targets, and to `app`'s
    /// role when the snapshot lists it. Expiry is not judged: the publisher
    /// is about to sign newer documents.
    pub fn load(&self, root: &Path, app: Option<&str>) -> Result<TrustedSet> {
        if !self.exists() {
            bail!(
                "`{}` is not a ferry repository (no {})\nhint: create one with `ferry repo init --repo {}`",
                self.dir.display(),
                timestamp_path(),
                self.dir.display()
            );
        }
        self.refresh(load_root(root)?, app)
    }

    fn refresh(&self, set: TrustedSet, app: Option<&str>) -> Result<TrustedSet> {
        let mut r = Refresh::new(set, app, None);
        while let Some(fetch) = r.next() {
            let path = self.dir.join(&fetch.path);
            let bytes = read_capped(&path, fetch.max_len)?;
            r.feed(bytes.as_deref()).with_context(|| {
                format!(
                    "the repository's `{}` is refused: it was not written by the holders of its keys (edited, replaced or replayed?)",
                    fetch.path
                )
            })?;
        }
        r.finish()
            .context("the repository's metadata is incomplete")
    }

    /// A target's file, checked against what the role signed for it.
    pub fn check_target(&self, role: &Targets, target: &str) -> Result<(PathBuf, TargetFile)> {
        let info = role
            .targets
            .get(target)
            .with_context(|| format!("target `{target}` is not in the app's role"))?;
        let sha = info
            .sha256()
            .with_context(|| format!("target `{target}` has no SHA-256"))?;
        let path = self.dir.join(target_file_path(target, sha));
        let (actual, size) =
            sha256_file(&path).with_context(|| format!("cannot read `{}`", path.display()))?;
        if actual != sha || size != info.length {
            bail!(
                "`{}` is not the file the release keys signed for `{target}` (changed artifact?)",
                path.display()
            );
        }
        Ok((path, info.clone()))
    }

    /// The channel's manifest, checked against the app's role, and each of
    /// its artifacts checked too; `None` when nothing is published there.
    pub fn channel(&self, role: &Targets, app: &str, channel: &str) -> Result<Option<Manifest>> {
        let target = channel_target(app, channel);
        if !role.targets.contains_key(&target) {
            return Ok(None);
        }
        let (path, _) = self.check_target(role, &target)?;
        let bytes = read_capped(&path, MAX_MANIFEST_LEN as u64)?.unwrap_or_default();
        let m = Manifest::from_json(&bytes)
            .with_context(|| format!("the manifest `{}` is unreadable", path.display()))?;
        if m.app != app || m.channel != channel {
            bail!(
                "the manifest `{}` names {}/{}, not {app}/{channel}",
                path.display(),
                m.app,
                m.channel
            );
        }
        for (triple, artifact) in &m.artifacts {
            let (file, _) = self.check_target(role, &artifact.target)?;
            if artifact.kind == ArtifactKind::Ferry {
                let mut f = std::fs::File::open(&file)?;
                Container::read_from(&mut f).with_context(|| {
                    format!(
                        "the {triple} artifact `{}` is not a ferry binary",
                        file.display()
                    )
                })?;
            }
        }
        Ok(Some(m))
    }

    /// Writes `files` in order, each through a temporary file renamed into
    /// place: documents a later one names are always there first.
    pub fn write(&self, files: &[NewFile]) -> Result<()> {
        for f in files {
            self.write_file(&f.path, &f.bytes)?;
        }
        Ok(())
    }

    /// Writes one repository-relative file atomically (0644).
    pub fn write_file(&self, rel: &str, bytes: &[u8]) -> Result<()> {
        let path = self.dir.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create `{}`", dir.display()))?;
        }
        ferry_fsutil::write_atomic(&path, bytes, 0o644)
            .with_context(|| format!("cannot write `{}`", path.display()))
    }

    /// Whether the repository holds a file for `target` with another hash
    /// (published once, perhaps no longer listed): versions are immutable.
    pub fn has_other_target_file(&self, target: &str, sha256: &str) -> Result<bool> {
        let probe = self.dir.join(target_file_path(target, sha256));
        let (Some(dir), Some(name)) = (probe.parent(), target.rsplit('/').next()) else {
            return Ok(false);
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e).with_context(|| format!("cannot list `{}`", dir.display())),
        };
        let suffix = format!(".{name}");
        for entry in entries {
            let file = entry?.file_name();
            let file = file.to_string_lossy();
            if let Some(hash) = file.strip_suffix(&suffix) {
                if hash != sha256 && ferry_format::tuf::metadata::is_hex64(hash) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Copies a target file into place unless the same bytes are there.
    pub fn copy_target(&self, target: &str, sha256: &str, from: &Path) -> Result<()> {
        let path = self.dir.join(target_file_path(target, sha256));
        let same = || {
            sha256_file(&path)
                .map(|(sha, _)| sha == sha256)
                .with_context(|| format!("cannot read `{}`", path.display()))
        };
        if path.exists() && same()? {
            return Ok(());
        }
        let dir = path.parent().expect("target paths have a directory");
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create `{}`", dir.display()))?;
        let mut out = ferry_fsutil::AtomicFile::create(&path, 0o644)
            .with_context(|| format!("cannot create `{}`", path.display()))?;
        let mut src = std::fs::File::open(from)
            .with_context(|| format!("cannot open `{}`", from.display()))?;
        io::copy(&mut src, &mut out)?;
        out.commit()
            .with_context(|| format!("cannot write `{}`", path.display()))
    }
}

/// The public keys of `keys`.
pub fn publics(keys: &[SecretKey]) -> Vec<PublicKey> {
    keys.iter().map(SecretKey::public_key).collect()
}

/// The app's delegation and its keys, or the error that says how to add it.
pub fn delegation_keys(set: &TrustedSet, app: &str) -> Result<Vec<ferry_format::tuf::Key>> {
    let targets = &set.targets().context("no trusted targets")?.doc;
    let role = targets.delegation(app).with_context(|| {
        format!(
            "app `{app}` has no release role in this repository\nhint: the root key holder adds it: `ferry repo delegate --app {app} --release-pubkey release.pub …`"
        )
    })?;
    let keys = &targets
        .delegations
        .as_ref()
        .expect("found a delegation")
        .keys;
    Ok(role
        .keyids
        .iter()
        .filter_map(|id| keys.get(id).cloned())
        .collect())
}
