//! The device's trusted repository metadata (TUF), kept in
//! `<state-dir>/trust/`: `root.json`, `timestamp.json`, `snapshot.json`,
//! `targets.json` and one `<app>.json` per app's role. Each is the exact
//! document last accepted; together they are the version floors that make a
//! replayed or frozen repository show. A refresh walks the repository from
//! them by `ferry_format::tuf`'s rules and persists every document as soon
//! as it is accepted, so floors rise even when a later step fails.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use ferry_format::tuf::{layout, Refresh, TrustedSet, TufError};

use crate::repo::RepoClient;
use crate::verify::Refusal;

/// The trust directory.
#[derive(Debug, Clone)]
pub struct TrustDir {
    dir: PathBuf,
}

fn read_if_present(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read `{}`", path.display())),
    }
}

impl TrustDir {
    /// `<state_dir>/trust`, created 0700.
    pub fn open(state_dir: &Path) -> Result<TrustDir> {
        let dir = state_dir.join("trust");
        fs::create_dir_all(&dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict `{}`", dir.display()))?;
        Ok(TrustDir { dir })
    }

    /// Takes the directory's lock (held while the file lives): one refresh
    /// at a time, so a slower one never writes older floors over a newer's.
    pub fn lock(&self) -> Result<File> {
        let path = self.dir.join(".lock");
        ferry_fsutil::try_lock(&path)
            .with_context(|| format!("cannot lock `{}`", path.display()))?
            .context("another ferryd is refreshing the repository metadata; try again in a moment")
    }

    fn path(&self, role: &str) -> PathBuf {
        self.dir.join(format!("{role}.json"))
    }

    /// What is trusted: the stored root (or the provisioned one when it is
    /// newer, or nothing is stored), then every stored document that still
    /// verifies under it. One that does not (its keys were rotated) is
    /// dropped, with the floor it carried.
    pub fn load(&self, provisioned: &Path, apps: &[&str]) -> Result<TrustedSet> {
        let anchor = fs::read(provisioned).with_context(|| {
            format!(
                "cannot read the root of trust `{}` (`root` in agent.toml)",
                provisioned.display()
            )
        })?;
        let anchor = TrustedSet::from_root(&anchor).with_context(|| {
            format!(
                "`{}` (`root` in agent.toml) is not a valid root\nhint: provision the device with the repository's metadata/1.root.json (or a later root)",
                provisioned.display()
            )
        })?;
        let stored = read_if_present(&self.path("root"))?
            .and_then(|b| TrustedSet::from_root(&b).ok())
            .filter(|s| s.root().doc.version >= anchor.root().doc.version);
        let mut set = stored.unwrap_or(anchor);
        if let Some(b) = read_if_present(&self.path("timestamp"))? {
            if set.update_timestamp(&b, None).is_err() {
                return Ok(set);
            }
        } else {
            return Ok(set);
        }
        match read_if_present(&self.path("snapshot"))? {
            Some(b) if set.update_snapshot(&b, None, true).is_ok() => {}
            _ => return Ok(set),
        }
        match read_if_present(&self.path("targets"))? {
            Some(b) if set.update_targets(&b, None, true).is_ok() => {}
            _ => return Ok(set),
        }
        for app in apps {
            if let Some(b) = read_if_present(&self.path(app))? {
                let _ = set.update_delegated(app, &b, None, true);
            }
        }
        Ok(set)
    }

    /// Persists every document of `set` on the way to `app` that differs
    /// from what is stored.
    pub fn save(&self, set: &TrustedSet, app: &str) -> Result<()> {
        let docs = [
            ("root", Some(&set.root().bytes)),
            ("timestamp", set.timestamp().map(|t| &t.bytes)),
            ("snapshot", set.snapshot().map(|t| &t.bytes)),
            ("targets", set.targets().map(|t| &t.bytes)),
            (app, set.delegated(app).map(|t| &t.bytes)),
        ];
        for (role, bytes) in docs {
            let path = self.path(role);
            match bytes {
                Some(bytes) => {
                    if read_if_present(&path)?.as_ref() != Some(bytes) {
                        ferry_fsutil::write_atomic(&path, bytes, 0o600)
                            .with_context(|| format!("cannot write `{}`", path.display()))?;
                    }
                }
                // Dropped by a key rotation: its floor goes with it.
                None => match fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(e)
                            .with_context(|| format!("cannot remove `{}`", path.display()))
                    }
                    _ => {}
                },
            }
        }
        Ok(())
    }
}

/// Why a refresh did not end with trusted metadata.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The repository offered something a rule refuses: no retry helps
    /// until it changes.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The network or the local disk: worth another try.
    #[error(transparent)]
    Transient(#[from] anyhow::Error),
}

/// Refreshes the metadata down to `app`'s role from the repository, and
/// persists what was accepted (also when a step is refused).
pub async fn refresh(
    client: &RepoClient,
    dir: &TrustDir,
    provisioned: &Path,
    apps: &[&str],
    app: &str,
    now: Option<u64>,
) -> Result<TrustedSet, RefreshError> {
    let _lock = dir.lock()?;
    let set = dir.load(provisioned, apps)?;
    let mut r = Refresh::new(set, Some(app), now);
    if let Err(e) = drive(client, &mut r).await {
        dir.save(r.trusted(), app)?;
        return Err(e);
    }
    let set = r.finish().map_err(|rule| Refusal::Metadata {
        path: layout::METADATA_DIR.into(),
        rule,
    })?;
    dir.save(&set, app)?;
    if set.role_meta(app).is_none() {
        return Err(Refusal::Metadata {
            path: layout::metadata_path("snapshot", None),
            rule: TufError::Missing {
                what: format!("app `{app}` in the repository (nothing published for it yet?)"),
            },
        }
        .into());
    }
    Ok(set)
}

async fn drive(client: &RepoClient, r: &mut Refresh) -> Result<(), RefreshError> {
    while let Some(fetch) = r.next() {
        let got = client
            .fetch_file(&fetch.path, fetch.max_len, fetch.may_be_missing)
            .await;
        let bytes = match got {
            Ok(b) => b,
            Err(e) if e.is_transient() => return Err(anyhow::Error::from(e).into()),
            Err(e) => {
                return Err(Refusal::Repository(e.to_string()).into());
            }
        };
        r.feed(bytes.as_deref()).map_err(|rule| Refusal::Metadata {
            path: fetch.path.clone(),
            rule,
        })?;
    }
    Ok(())
}
