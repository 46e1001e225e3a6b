//! The `flock(2)` locks that keep extractions consistent:
//!
//! - [`ExtractLock`]: exclusive, on `<root>/<name>/.<build id>.lock`, held while
//!   one run unpacks a build so concurrent first runs wait instead of racing.
//!   Its file is removed when released, so none pile up; acquiring re-checks
//!   that the locked file is still the one at the path, which makes that safe.
//! - the run lock: shared, on `<extraction>/.ferry-lock`, held by every running
//!   app for as long as it lives (the descriptor survives the `exec`), so the
//!   pruner, which needs it exclusively, never removes a tree in use.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Whether the open `file` is the file at `path` now (not unlinked or replaced).
fn is_at(file: &File, path: &Path) -> io::Result<bool> {
    let held = file.metadata()?;
    match fs::symlink_metadata(path) {
        Ok(now) => Ok(now.dev() == held.dev() && now.ino() == held.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn open_or_create(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// An exclusive lock on a lock file that is removed on release.
#[derive(Debug)]
pub struct ExtractLock {
    path: PathBuf,
    _file: File,
}

impl ExtractLock {
    /// Waits until the lock at `path` is held.
    pub fn acquire(path: &Path) -> io::Result<Self> {
        loop {
            let file = open_or_create(path)?;
            file.lock()?;
            if is_at(&file, path)? {
                return Ok(Self {
                    path: path.to_owned(),
                    _file: file,
                });
            }
            // The previous holder removed the file while we waited: try again
            // on the file now at the path.
        }
    }

    /// Takes the lock at `path` if nobody holds it; `None` if somebody does.
    pub fn try_acquire(path: &Path) -> io::Result<Option<Self>> {
        loop {
            let file = open_or_create(path)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => return Ok(None),
                Err(fs::TryLockError::Error(e)) => return Err(e),
            }
            if is_at(&file, path)? {
                return Ok(Some(Self {
                    path: path.to_owned(),
                    _file: file,
                }));
            }
        }
    }
}

impl Drop for ExtractLock {
    fn drop(&mut self) {
        // Unlink while still holding the lock, then close (which unlocks): a
        // waiter that opened this file sees it is gone and starts over.
        let _ = fs::remove_file(&self.path);
    }
}

/// Takes the shared run lock on `path`, creating the file if a tree lacks it.
/// Waits while a pruner holds it exclusively; returns `None` if, once held,
/// the file is no longer at `path` (the tree was pruned meanwhile). The file
/// is opened read-only when it exists: a shared lock needs no more, and an
/// app may only read the trees ferryd shares with it.
pub fn lock_run(path: &Path) -> io::Result<Option<File>> {
    let existing = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path);
    let file = match existing.or_else(|e| match e.kind() {
        io::ErrorKind::NotFound => open_or_create(path),
        _ => Err(e),
    }) {
        Ok(file) => file,
        // The tree went away between our look and the open.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    file.lock_shared()?;
    Ok(is_at(&file, path)?.then_some(file))
}

/// Creates the run-lock file of a new tree and takes its shared lock; a
/// `shared` tree's is readable by others, so their runs can lock it too.
pub fn create_run_lock(path: &Path, shared: bool) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(if shared { 0o644 } else { 0o600 })
        .open(path)?;
    file.lock_shared()?;
    Ok(file)
}

/// Takes the run lock at `path` exclusively if no app holds it; `None` if one
/// does. A missing lock file is created (and locked), so a launcher arriving
/// at the same moment contends on the same file instead of a different one.
pub fn try_lock_unused(path: &Path) -> io::Result<Option<File>> {
    let file = open_or_create(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Whether an app runs from the tree whose run lock is at `path`: a running
/// app holds it shared, so an exclusive try fails. Opens read-only and never
/// creates the file (a tree without one has never been run from); the probe's
/// lock is released at once.
pub fn is_in_use(path: &Path) -> io::Result<bool> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    match file.try_lock() {
        Ok(()) => Ok(false),
        Err(fs::TryLockError::WouldBlock) => Ok(true),
        Err(fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Keeps `file` open across `exec` (clears close-on-exec) and gives up
/// ownership, so its lock lives exactly as long as the app does.
pub fn keep_across_exec(file: File) -> io::Result<RawFd> {
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is an open descriptor owned by `file`; F_GETFD/F_SETFD only
    // read and write its descriptor flags.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(file.into_raw_fd())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extract_lock_excludes_and_cleans_up() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(".x.lock");
        let held = ExtractLock::acquire(&path).unwrap();
        assert!(ExtractLock::try_acquire(&path).unwrap().is_none());
        drop(held);
        assert!(!path.exists(), "released lock file is removed");
        let again = ExtractLock::try_acquire(&path).unwrap();
        assert!(again.is_some());
    }

    #[test]
    fn waiter_on_removed_file_starts_over() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(".x.lock");
        let held = ExtractLock::acquire(&path).unwrap();
        let p = path.clone();
        let waiter = std::thread::spawn(move || {
            let lock = ExtractLock::acquire(&p).unwrap();
            // The waiter holds the lock on the file that is at the path.
            let meta = fs::metadata(&p).unwrap();
            (meta.ino(), lock)
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop(held);
        let (ino, lock) = waiter.join().unwrap();
        assert_eq!(ino, lock._file.metadata().unwrap().ino());
    }

    #[test]
    fn in_use_probe_neither_creates_nor_keeps_a_lock() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(".ferry-lock");
        assert!(!is_in_use(&path).unwrap());
        assert!(!path.exists(), "the probe created the lock file");
        let run = create_run_lock(&path, false).unwrap();
        assert!(is_in_use(&path).unwrap());
        drop(run);
        assert!(!is_in_use(&path).unwrap());
        assert!(
            try_lock_unused(&path).unwrap().is_some(),
            "the probe kept its lock"
        );
    }

    #[test]
    fn run_lock_blocks_pruning_and_survives_exec_flag() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(".ferry-lock");
        let run = create_run_lock(&path, false).unwrap();
        assert!(try_lock_unused(&path).unwrap().is_none(), "in use");
        let second = lock_run(&path).unwrap().expect("shared locks coexist");
        drop(second);
        let fd = keep_across_exec(run).unwrap();
        // SAFETY: fd is a valid descriptor we own.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, 0);
        assert!(try_lock_unused(&path).unwrap().is_none(), "still in use");
        // SAFETY: fd is ours and closed once.
        unsafe { libc::close(fd) };
        assert!(try_lock_unused(&path).unwrap().is_some());
        let missing = tmp.path().join("missing");
        let _held = try_lock_unused(&missing)
            .unwrap()
            .expect("created and locked");
        assert!(missing.exists());
        assert!(try_lock_unused(&missing).unwrap().is_none());
    }

    #[test]
    fn run_lock_on_removed_tree_is_none() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(lock_run(&tmp.path().join("gone/.ferry-lock"))
            .unwrap()
            .is_none());
    }
}
