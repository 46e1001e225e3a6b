//! Durable file operations, in one copy for the packager, the launcher and the
//! agent: a file is written to a temporary sibling, flushed, renamed over its
//! destination and its directory flushed, so a reader (or a device after a power
//! cut) sees either the old complete file or the new complete file, never half.
//!
//! std and libc only: the launcher links this too and must stay small.

pub mod fsstat;

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A name for a temporary sibling of `dest` that no other writer picks.
pub fn temp_sibling(dest: &Path, tag: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut name = OsString::from(".");
    name.push(dest.file_name().unwrap_or_else(|| "file".as_ref()));
    name.push(format!(".{tag}-{}-{n}-{nanos}", std::process::id()));
    dest.with_file_name(name)
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Flushes a directory's entries (a rename is durable only after this).
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A file being written that appears at its destination only on [`commit`].
/// Dropped without commit, it removes its temporary file: no half-written
/// output is ever left at the destination.
///
/// [`commit`]: AtomicFile::commit
#[derive(Debug)]
pub struct AtomicFile {
    file: Option<File>,
    temp: PathBuf,
    dest: PathBuf,
    mode: u32,
}

impl AtomicFile {
    /// Starts writing `dest`, which gets `mode` permission bits on commit. The
    /// temporary file is created with `mode & 0o600` so secrets never sit in a
    /// readable file.
    pub fn create(dest: impl Into<PathBuf>, mode: u32) -> io::Result<Self> {
        let dest = dest.into();
        let temp = temp_sibling(&dest, "tmp");
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode & 0o600)
            .open(&temp)?;
        Ok(Self {
            file: Some(file),
            temp,
            dest,
            mode,
        })
    }

    /// The open temporary file.
    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("file is present until commit")
    }

    /// Flushes the data, sets the mode and renames over the destination, then
    /// flushes the directory.
    pub fn commit(self) -> io::Result<()> {
        self.finish(false)
    }

    /// Like [`commit`](Self::commit), but fails with `AlreadyExists` instead of
    /// replacing an existing destination.
    pub fn commit_new(self) -> io::Result<()> {
        self.finish(true)
    }

    fn finish(mut self, no_clobber: bool) -> io::Result<()> {
        let file = self.file.take().expect("file is present until commit");
        file.set_permissions(fs::Permissions::from_mode(self.mode))?;
        file.sync_all()?;
        drop(file);
        if no_clobber {
            // link(2) refuses an existing name; the temp name is removed on drop.
            fs::hard_link(&self.temp, &self.dest)?;
            fs::remove_file(&self.temp)?;
        } else {
            fs::rename(&self.temp, &self.dest)?;
        }
        fsync_dir(parent_of(&self.dest))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file().flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        // Removes the temporary file if not committed; after a commit it is
        // already gone and this fails harmlessly.
        let _ = fs::remove_file(&self.temp);
    }
}

/// Writes `bytes` to `dest` atomically and durably with `mode`.
pub fn write_atomic(dest: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut f = AtomicFile::create(dest, mode)?;
    f.write_all(bytes)?;
    f.commit()
}

/// Takes an exclusive lock on the lock file `path` (created if missing)
/// without waiting: `Ok(None)` while another process holds it. The lock
/// lasts as long as the returned file.
pub fn try_lock(path: &Path) -> io::Result<Option<File>> {
    let f = File::create(path)?;
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Points the symlink `link` at `target` atomically (a new link under a
/// temporary name, renamed over the old one), then flushes the directory.
pub fn replace_symlink(target: &Path, link: &Path) -> io::Result<()> {
    let temp = temp_sibling(link, "link");
    std::os::unix::fs::symlink(target, &temp)?;
    if let Err(e) = fs::rename(&temp, link) {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    fsync_dir(parent_of(link))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_atomic(&p, b"one", 0o644).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn dropped_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = AtomicFile::create(dir.path().join("f"), 0o755).unwrap();
        f.write_all(b"half").unwrap();
        drop(f);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn commit_new_refuses_existing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        fs::write(&p, b"old").unwrap();
        let mut f = AtomicFile::create(&p, 0o600).unwrap();
        f.write_all(b"new").unwrap();
        assert_eq!(
            f.commit_new().unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn symlink_swap() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("current");
        replace_symlink(Path::new("a"), &link).unwrap();
        replace_symlink(Path::new("b"), &link).unwrap();
        assert_eq!(fs::read_link(&link).unwrap(), Path::new("b"));
    }
}
