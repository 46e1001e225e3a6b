//! What a filesystem offers, from `statvfs(3)`: the agent checks the space
//! left before a download, the launcher refuses a cache root on a `noexec`
//! mount. One wrapper, so the unsafe call and its 32-bit field widths are
//! handled once.

use std::ffi::CString;
use std::io;
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The facts about a filesystem that ferry's programs act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsStats {
    /// Bytes an unprivileged process may still write (`f_bavail` blocks of
    /// `f_frsize`): the root reserve does not count.
    pub available: u64,
    /// Mounted `noexec`: nothing on it can be run or mapped executable.
    pub noexec: bool,
}

/// The [`FsStats`] of the filesystem holding `path`.
pub fn statvfs(path: &Path) -> io::Result<FsStats> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    let mut st = MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is NUL-terminated and `st` points to writable memory the
    // size of a `statvfs`; both outlive the call.
    if unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs succeeded, so it filled the (also zeroed) structure.
    let st = unsafe { st.assume_init() };
    // The field types are 32 bits wide on some targets, 64 on others.
    #[allow(clippy::useless_conversion)]
    let (blocks, block_size, flags) = (
        u64::from(st.f_bavail),
        u64::from(st.f_frsize),
        u64::from(st.f_flag),
    );
    #[allow(clippy::useless_conversion)]
    let noexec = flags & u64::from(libc::ST_NOEXEC) != 0;
    Ok(FsStats {
        available: blocks.saturating_mul(block_size),
        noexec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_has_stats_and_a_missing_one_an_error() {
        let dir = tempfile::tempdir().unwrap();
        statvfs(dir.path()).unwrap();
        assert!(statvfs(&dir.path().join("missing")).is_err());
        let nul = statvfs(Path::new("a\0b")).unwrap_err();
        assert_eq!(nul.kind(), io::ErrorKind::InvalidInput);
    }
}
