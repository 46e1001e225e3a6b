//! One extraction per build, at `<root>/<name>/<build id>/`, made exactly once.
//!
//! Warm path: the directory exists; take its shared run lock and go (a stat,
//! an open, a flock, two stats to confirm). Cold path: take the build's
//! exclusive [`ExtractLock`], look again (another run may have just finished),
//! remove partial trees left by killed runs, unpack into
//! `.<build id>.partial-<pid>` (whose run lock is taken before anything can
//! see it), then `rename(2)` it into place. A later run therefore never trusts
//! a half-written tree, and concurrent first runs wait for one extraction.

use std::ffi::OsString;
use std::fs::{self, DirBuilder, File};
use std::io::{self, Read};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::extract::{self, ExtractError};
use crate::lock::{self, ExtractLock};
use crate::trace;

/// Name of the run-lock file at the top of every extraction.
pub const RUN_LOCK_NAME: &str = ".ferry-lock";

/// Why an extraction could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A filesystem step failed.
    #[error("cannot {what} `{path}`: {err}")]
    Io {
        /// The step, e.g. "create".
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// Why.
        err: io::Error,
    },
    /// Unpacking failed; the partial tree was removed.
    #[error("cannot unpack into `{dir}`: {err}")]
    Extract {
        /// The final directory.
        dir: PathBuf,
        /// Why.
        err: ExtractError,
    },
    /// The cache root's filesystem is mounted read-only.
    #[error("cannot unpack into `{dir}`: the filesystem is read-only; set FERRY_CACHE_DIR to a writable directory")]
    ReadOnly {
        /// Where the extraction was to go.
        dir: PathBuf,
    },
    /// The cache root's filesystem (or the user's quota) is full; what was
    /// written is removed.
    #[error("cannot unpack into `{dir}`: no space left on device (what was written is removed); free space there, or set FERRY_CACHE_DIR to a filesystem with room")]
    NoSpace {
        /// Where the extraction was to go.
        dir: PathBuf,
    },
    /// The tree vanished (pruned) every time it was about to be used.
    #[error("the extraction `{0}` was removed by other runs each time it was about to be used; try again")]
    Unstable(PathBuf),
}

impl CacheError {
    /// Whether the environment, not the binary, is at fault and restarting
    /// cannot help (exit code 78).
    pub fn is_environment(&self) -> bool {
        matches!(self, CacheError::ReadOnly { .. })
    }

    /// The underlying OS error, if there is one.
    fn os_error(&self) -> Option<i32> {
        match self {
            CacheError::Io { err, .. } => err.raw_os_error(),
            CacheError::Extract {
                err: ExtractError::Write { err, .. },
                ..
            } => err.raw_os_error(),
            _ => None,
        }
    }

    /// Names a read-only or full filesystem as such, with the fix.
    fn explained(self, dir: &Path) -> CacheError {
        match self.os_error() {
            Some(libc::EROFS) => CacheError::ReadOnly {
                dir: dir.to_owned(),
            },
            Some(libc::ENOSPC | libc::EDQUOT) => CacheError::NoSpace {
                dir: dir.to_owned(),
            },
            _ => self,
        }
    }
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CacheError {
    let path = path.to_owned();
    move |err| CacheError::Io { what, path, err }
}

/// A ready extraction.
#[derive(Debug)]
pub struct Extraction {
    /// `<root>/<name>/<build id>`.
    pub dir: PathBuf,
    /// The shared run lock on the tree, to keep across `exec`.
    pub run_lock: File,
    /// Whether this run unpacked it.
    pub cold: bool,
}

/// `.<build id>.<tag>` names of the build's siblings.
pub fn sibling(name_dir: &Path, build_id: &str, tag: &str) -> PathBuf {
    name_dir.join(format!(".{build_id}.{tag}"))
}

/// Finds or makes the extraction of `build_id` under `name_dir`; `payload`
/// opens the compressed payload when unpacking is needed. A `shared` tree
/// (under a root others may read) is made readable, never writable, by
/// others: ferryd extracts as root for an app that runs as its own user.
pub fn ensure<R: Read>(
    name_dir: &Path,
    build_id: &str,
    shared: bool,
    mut payload: impl FnMut() -> io::Result<R>,
) -> Result<Extraction, CacheError> {
    let dir = name_dir.join(build_id);
    let lock_path = dir.join(RUN_LOCK_NAME);
    // A pruner can remove the tree between our look and our lock; then we
    // make it again. Three times in a row means something keeps removing it.
    for _ in 0..3 {
        if dir.is_dir() {
            if let Some(run_lock) =
                lock::lock_run(&lock_path).map_err(io_err("lock", &lock_path))?
            {
                trace!("warm: `{}` is ready", dir.display());
                return Ok(Extraction {
                    dir,
                    run_lock,
                    cold: false,
                });
            }
            trace!("`{}` was pruned while we looked", dir.display());
            continue;
        }
        if let Some(run_lock) = extract_once(name_dir, build_id, &dir, shared, &mut payload)
            .map_err(|e| e.explained(&dir))?
        {
            return Ok(Extraction {
                dir,
                run_lock,
                cold: true,
            });
        }
    }
    Err(CacheError::Unstable(dir))
}

/// The cold path; `None` when another run finished the tree while we waited.
fn extract_once<R: Read>(
    name_dir: &Path,
    build_id: &str,
    dir: &Path,
    shared: bool,
    payload: &mut impl FnMut() -> io::Result<R>,
) -> Result<Option<File>, CacheError> {
    let dir_mode = if shared { 0o755 } else { 0o700 };
    match DirBuilder::new().mode(dir_mode).create(name_dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err("create", name_dir)(e)),
    }
    let lock_path = sibling(name_dir, build_id, "lock");
    let waited = Instant::now();
    let guard = ExtractLock::acquire(&lock_path).map_err(io_err("lock", &lock_path))?;
    trace!(
        "cold: holding `{}` (waited {}us)",
        lock_path.display(),
        waited.elapsed().as_micros()
    );
    if dir.is_dir() {
        trace!("another run finished `{}` meanwhile", dir.display());
        return Ok(None);
    }
    remove_partials(name_dir, build_id);
    let partial = sibling(
        name_dir,
        build_id,
        &format!("partial-{}", std::process::id()),
    );
    DirBuilder::new()
        .mode(dir_mode)
        .create(&partial)
        .map_err(io_err("create", &partial))?;
    let result = fill(&partial, dir, shared, payload).and_then(|run_lock| {
        // The tree's files reach the disk before its name does: after a
        // power cut the cache holds a complete tree or none, never a tree
        // of empty files. One syncfs instead of a fsync per file.
        sync_filesystem(&partial).map_err(io_err("flush", &partial))?;
        fs::rename(&partial, dir).map_err(io_err("rename into place", &partial))?;
        ferry_fsutil::fsync_dir(name_dir).map_err(io_err("flush", name_dir))?;
        Ok(run_lock)
    });
    if result.is_err() {
        // Best effort: under our lock nobody else uses it; a leftover is
        // removed by the next run anyway.
        let _ = fs::remove_dir_all(&partial);
    }
    let run_lock = result?;
    drop(guard);
    Ok(Some(run_lock))
}

/// Flushes every dirty page of the filesystem that holds `dir`.
fn sync_filesystem(dir: &Path) -> io::Result<()> {
    let f = File::open(dir)?;
    // SAFETY: `f` is an open descriptor for the duration of the call.
    if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&f)) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Takes the new tree's run lock, then unpacks the payload into it (errors
/// name `dir`, the tree's final place: the partial one is removed).
fn fill<R: Read>(
    partial: &Path,
    dir: &Path,
    shared: bool,
    payload: &mut impl FnMut() -> io::Result<R>,
) -> Result<File, CacheError> {
    let lock_path = partial.join(RUN_LOCK_NAME);
    let run_lock =
        lock::create_run_lock(&lock_path, shared).map_err(io_err("create", &lock_path))?;
    let started = Instant::now();
    let failed = |err| CacheError::Extract {
        dir: dir.to_owned(),
        err,
    };
    let reader = payload().map_err(|e| failed(ExtractError::Read(e)))?;
    let summary = extract::unpack_zstd(reader, partial).map_err(failed)?;
    trace!(
        "unpacked {} entries, {} bytes in {}us",
        summary.entries,
        summary.bytes,
        started.elapsed().as_micros()
    );
    Ok(run_lock)
}

/// Removes `.<build id>.partial-*` trees and says how many. Only call while
/// holding the build's extract lock: then every one of them is a killed
/// run's leftover.
pub fn remove_partials(name_dir: &Path, build_id: &str) -> usize {
    let prefix: OsString = format!(".{build_id}.partial-").into();
    let Ok(entries) = fs::read_dir(name_dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name
            .as_encoded_bytes()
            .starts_with(prefix.as_encoded_bytes())
        {
            trace!("removing leftover `{}`", entry.path().display());
            // Best effort: a tree we cannot remove is only wasted space.
            if fs::remove_dir_all(entry.path()).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, path, *data).unwrap();
        }
        zstd::stream::encode_all(&b.into_inner().unwrap()[..], 1).unwrap()
    }

    const ID: &str = "abababababababababababababababababababababababababababababababab";

    #[test]
    fn cold_then_warm() {
        let tmp = tempfile::tempdir().unwrap();
        let name_dir = tmp.path().join("app");
        let bytes = payload(&[("ferry/entry.py", b"x")]);
        let mut opened = 0;
        let first = ensure(&name_dir, ID, false, || {
            opened += 1;
            Ok(&bytes[..])
        })
        .unwrap();
        assert!(first.cold);
        assert!(first.dir.join("ferry/entry.py").is_file());
        assert!(first.dir.join(RUN_LOCK_NAME).is_file());
        let second = ensure(&name_dir, ID, false, || -> io::Result<&[u8]> {
            panic!("warm path must not read the payload")
        })
        .unwrap();
        assert!(!second.cold);
        assert_eq!(opened, 1);
        let names: Vec<_> = fs::read_dir(&name_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [ID], "no lock or partial left beside it");
    }

    #[test]
    fn a_shared_tree_is_readable_by_others_and_locked_read_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let name_dir = tmp.path().join("app");
        let bytes = payload(&[("ferry/entry.py", b"x")]);
        let first = ensure(&name_dir, ID, true, || Ok(&bytes[..])).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&name_dir), 0o755);
        assert_eq!(mode(&first.dir), 0o755);
        assert_eq!(mode(&first.dir.join(RUN_LOCK_NAME)), 0o644);
        assert_eq!(mode(&first.dir.join("ferry/entry.py")), 0o644);
        drop(first);
        // A run that may only read the tree still takes its run lock.
        let lock = first_lock(&name_dir);
        fs::set_permissions(&lock, fs::Permissions::from_mode(0o444)).unwrap();
        let warm = ensure(&name_dir, ID, true, || -> io::Result<&[u8]> {
            panic!("warm path must not read the payload")
        })
        .unwrap();
        assert!(!warm.cold);
    }

    fn first_lock(name_dir: &Path) -> PathBuf {
        name_dir.join(ID).join(RUN_LOCK_NAME)
    }

    #[test]
    fn leftover_partial_is_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let name_dir = tmp.path().join("app");
        let stale = sibling(&name_dir, ID, "partial-999999");
        fs::create_dir_all(stale.join("ferry")).unwrap();
        fs::write(stale.join("ferry/entry.py"), b"half").unwrap();
        let bytes = payload(&[("ferry/entry.py", b"whole")]);
        let ex = ensure(&name_dir, ID, false, || Ok(&bytes[..])).unwrap();
        assert_eq!(fs::read(ex.dir.join("ferry/entry.py")).unwrap(), b"whole");
        assert!(!stale.exists());
    }

    #[test]
    fn failed_unpack_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let name_dir = tmp.path().join("app");
        let err = ensure(&name_dir, ID, false, || Ok(&b"garbage"[..])).unwrap_err();
        assert!(matches!(err, CacheError::Extract { .. }), "{err}");
        assert_eq!(fs::read_dir(&name_dir).unwrap().count(), 0);
    }
}
