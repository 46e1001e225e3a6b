//! The app's files on the device:
//!
//! ```text
//! <state>/<app>/versions/<version>-<hash12>/<app>   verified binaries, 0755
//! <state>/<app>/current  -> versions/…               swapped by rename(2)
//! <state>/<app>/previous -> versions/…
//! <state>/<app>/downloads/<sha256>.partial           resumable downloads
//! <state>/<app>/incoming/<name>                      operators' files, waiting their turn
//! <state>/<app>/state.json                           the state machine
//! <state>/<app>/.lock                                one agent at a time
//! ```
//!
//! `current` only ever points at a complete, verified binary: binaries are
//! written and fsynced under `versions/` before any symlink names them.

use std::fs::{self, File};
use std::io::{self, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use ferry_fsutil::{replace_symlink, AtomicFile};

use crate::state::Release;

/// One app's directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    app: String,
}

impl Store {
    /// The store of `app` under `state_dir`, created if missing.
    pub fn open(state_dir: &Path, app: &str) -> Result<Self> {
        let root = state_dir.join(app);
        for d in [
            root.clone(),
            root.join("versions"),
            root.join("downloads"),
            root.join("incoming"),
        ] {
            fs::create_dir_all(&d).with_context(|| format!("cannot create `{}`", d.display()))?;
        }
        Ok(Self {
            root,
            app: app.to_owned(),
        })
    }

    /// The app's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `state.json`.
    pub fn state_path(&self) -> PathBuf {
        self.root.join("state.json")
    }

    /// Where the agent keeps its private copy of an operator's file named
    /// `name` until its pass (which removes it) comes: apart from the
    /// downloads, which the pass before it may prune.
    pub fn incoming_path(&self, name: &str) -> PathBuf {
        self.root.join("incoming").join(name)
    }

    /// Removes the operators' copies a stopped agent left behind (none is
    /// waiting for a pass when the service starts).
    pub fn clear_incoming(&self) -> Result<()> {
        for e in fs::read_dir(self.root.join("incoming"))? {
            let _ = fs::remove_file(e?.path());
        }
        Ok(())
    }

    /// Where a download of `sha256` accumulates.
    pub fn partial_path(&self, sha256: &str) -> PathBuf {
        self.root
            .join("downloads")
            .join(format!("{sha256}.partial"))
    }

    /// The binary of a stored release.
    pub fn binary_path(&self, release: &Release) -> PathBuf {
        self.root
            .join("versions")
            .join(&release.dir)
            .join(&self.app)
    }

    /// Takes the app's lock: one agent (service or CLI) works on an app at a time.
    pub fn lock(&self) -> Result<File> {
        let path = self.root.join(".lock");
        ferry_fsutil::try_lock(&path)
            .with_context(|| format!("cannot lock `{}`", path.display()))?
            .with_context(|| {
                format!(
                    "another ferryd is working on `{}` right now\nhint: try again in a moment",
                    self.app
                )
            })
    }

    /// Copies a verified file into `versions/<dir>/<app>` (0755, fsynced,
    /// renamed into place), returning its path.
    pub fn store_binary(&self, source: &Path, release: &Release) -> Result<PathBuf> {
        let dir = self.root.join("versions").join(&release.dir);
        fs::create_dir_all(&dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
        let dest = dir.join(&self.app);
        let mut out = AtomicFile::create(&dest, 0o755)
            .with_context(|| format!("cannot create `{}`", dest.display()))?;
        let mut src =
            File::open(source).with_context(|| format!("cannot open `{}`", source.display()))?;
        src.seek(SeekFrom::Start(0))?;
        io::copy(&mut src, &mut out)?;
        out.commit()
            .with_context(|| format!("cannot write `{}`", dest.display()))?;
        ferry_fsutil::fsync_dir(&self.root.join("versions"))?;
        Ok(dest)
    }

    /// Points `current` at `release` and `previous` at what `current` was:
    /// `previous` first, so a crash in between leaves both at the old release.
    pub fn swap_to(&self, release: &Release, previous: Option<&Release>) -> Result<()> {
        if !self.binary_path(release).is_file() {
            bail!(
                "refusing to point `current` at `{}`: the binary is missing",
                release.dir
            );
        }
        if let Some(prev) = previous {
            self.point("previous", prev)?;
            crate::failpoint::hit("between-swap-links");
        }
        self.point("current", release)
    }

    /// Points the link `name` at `release`'s directory.
    pub fn point(&self, name: &str, release: &Release) -> Result<()> {
        let target = Path::new("versions").join(&release.dir);
        replace_symlink(&target, &self.root.join(name))
            .with_context(|| format!("cannot point `{name}` at `{}`", target.display()))
    }

    /// The directory name a link points at, if it exists.
    pub fn link_target(&self, name: &str) -> Option<String> {
        let t = fs::read_link(self.root.join(name)).ok()?;
        t.file_name().map(|n| n.to_string_lossy().into_owned())
    }

    /// The version directories on disk, newest version first (SemVer
    /// precedence of the `<version>` in `<version>-<hash12>`), not by file
    /// times: boards without a clock start in 1970.
    pub fn versions(&self) -> Result<Vec<String>> {
        let mut v: Vec<String> = Vec::new();
        for e in fs::read_dir(self.root.join("versions"))? {
            let e = e?;
            if e.file_type()?.is_dir() {
                v.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        v.sort_by(|a, b| {
            ferry_format::version::compare(version_of_dir(b), version_of_dir(a)).then(b.cmp(a))
        });
        Ok(v)
    }

    /// Removes all but the `keep` newest versions, never `current` or
    /// `previous`; and downloads other than `keep_download`. Returns what went.
    pub fn prune(&self, keep: usize, keep_download: Option<&str>) -> Result<Vec<String>> {
        let mut kept: Vec<String> = ["current", "previous"]
            .iter()
            .filter_map(|l| self.link_target(l))
            .collect();
        let versions = self.versions()?;
        for dir in &versions {
            if kept.len() >= keep {
                break;
            }
            if !kept.contains(dir) {
                kept.push(dir.clone());
            }
        }
        let mut removed = Vec::new();
        for dir in versions {
            if kept.contains(&dir) {
                continue;
            }
            fs::remove_dir_all(self.root.join("versions").join(&dir))
                .with_context(|| format!("cannot remove version `{dir}`"))?;
            removed.push(dir);
        }
        for e in fs::read_dir(self.root.join("downloads"))? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if keep_download.is_none_or(|k| !name.starts_with(k)) {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(removed)
    }
}

/// `1.2.0-rc.1-0123456789ab` → `1.2.0-rc.1`: a version directory's version.
fn version_of_dir(name: &str) -> &str {
    match name.rsplit_once('-') {
        Some((version, hash))
            if hash.len() == 12 && hash.bytes().all(|c| c.is_ascii_hexdigit()) =>
        {
            version
        }
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_ordered_by_version_not_by_file_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), "app").unwrap();
        // Made oldest version last: an mtime order would put it first.
        for name in [
            "1.10.0-aaaaaaaaaaaa",
            "2.0.0-rc.1-bbbbbbbbbbbb",
            "2.0.0-cccccccccccc",
            "1.9.0-dddddddddddd",
        ] {
            std::fs::create_dir_all(dir.path().join("app/versions").join(name)).unwrap();
        }
        assert_eq!(
            store.versions().unwrap(),
            [
                "2.0.0-cccccccccccc",
                "2.0.0-rc.1-bbbbbbbbbbbb",
                "1.10.0-aaaaaaaaaaaa",
                "1.9.0-dddddddddddd"
            ]
        );
        assert_eq!(version_of_dir("1.2.0-rc.1-0123456789ab"), "1.2.0-rc.1");
        assert_eq!(version_of_dir("odd"), "odd");
    }

    fn release(v: &str) -> Release {
        let sha = format!("{v:0>64}");
        Release {
            version: v.into(),
            serial: 1,
            dir: Release::dir_name(v, &sha),
            sha256: sha,
            size: 1,
        }
    }

    #[test]
    fn swap_and_prune_keep_current_and_previous() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), "app").unwrap();
        let src = dir.path().join("bin");
        std::fs::write(&src, b"binary").unwrap();
        let rels: Vec<Release> = ["1", "2", "3", "4"].iter().map(|v| release(v)).collect();
        for (i, r) in rels.iter().enumerate() {
            store.store_binary(&src, r).unwrap();
            // Distinct mtimes, oldest first.
            let t = std::time::SystemTime::UNIX_EPOCH
                + std::time::Duration::from_secs(1_000 + i as u64);
            File::open(store.root().join("versions").join(&r.dir))
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        store.swap_to(&rels[0], None).unwrap();
        store.swap_to(&rels[1], Some(&rels[0])).unwrap();
        assert_eq!(store.link_target("current").unwrap(), rels[1].dir);
        assert_eq!(store.link_target("previous").unwrap(), rels[0].dir);
        let removed = store.prune(2, None).unwrap();
        assert_eq!(removed.len(), 2, "{removed:?}");
        let left = store.versions().unwrap();
        assert!(
            left.contains(&rels[0].dir) && left.contains(&rels[1].dir),
            "{left:?}"
        );
        let missing = release("9");
        assert!(
            store.swap_to(&missing, None).is_err(),
            "never point at a missing binary"
        );
    }
}
