//! An exclusive `flock(2)` on a lock file, held until dropped. Test binaries run
//! as separate processes under nextest, so work they share (building the Debian
//! root, a cached build of an example) is serialised across processes, not only
//! across threads. (std's `File::lock` is newer than the workspace's MSRV.)

use std::fs::{File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::Path;

use anyhow::{Context, Result};

/// A held exclusive lock; dropping it (closing the file) releases it.
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// Blocks until this process holds the exclusive lock on `path` (created if
    /// missing).
    pub fn exclusive(path: &Path) -> Result<FileLock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open lock file `{}`", path.display()))?;
        loop {
            // SAFETY: flock on a file descriptor that `file` owns and keeps open.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(FileLock { _file: file });
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err).with_context(|| format!("cannot lock `{}`", path.display()));
            }
        }
    }
}
