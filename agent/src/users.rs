//! Looking up the app's user, and changing a directory's owner and mode
//! without following a symlink planted in its place.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use anyhow::{bail, Context as _, Result};

/// The uid and gid of `name`, through NSS (`getpwnam_r`): users from
/// `/etc/passwd`, LDAP or systemd's `DynamicUser=` (nss-systemd) alike.
pub fn lookup(name: &str) -> Result<(u32, u32)> {
    let user = nix::unistd::User::from_name(name)
        .with_context(|| format!("cannot look up the user `{name}` (the app's `user`)"))?
        .with_context(|| format!("user `{name}` (the app's `user`) does not exist"))?;
    Ok((user.uid.as_raw(), user.gid.as_raw()))
}

/// Gives `dir` `mode` and (when given) `owner`, through a descriptor opened
/// with `O_NOFOLLOW | O_DIRECTORY`: a symlink where the directory should be
/// is refused, never followed to wherever it points. What is already right
/// is left alone, and the mode is changed while the agent owns the
/// directory: changing the mode of one root no longer owns needs
/// CAP_FOWNER, which the agent's unit does not grant.
pub fn secure_dir(dir: &Path, mode: u32, owner: Option<(u32, u32)>) -> Result<()> {
    let c = CString::new(dir.as_os_str().as_bytes())
        .with_context(|| format!("`{}` holds a NUL byte", dir.display()))?;
    // SAFETY: `c` is a valid NUL-terminated path; the descriptor is closed below.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ELOOP) || e.raw_os_error() == Some(libc::ENOTDIR) {
            bail!(
                "`{}` is a symlink or not a directory: refusing to change its owner or mode",
                dir.display()
            );
        }
        return Err(e).with_context(|| format!("cannot open `{}`", dir.display()));
    }
    // SAFETY: `fd` is an open descriptor owned here.
    let result = (|| {
        let os = |what: &str| {
            Err(std::io::Error::last_os_error())
                .with_context(|| format!("cannot {what} `{}`", dir.display()))
        };
        // SAFETY: `st` is written by fstat on success before it is read.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd, &mut st) } != 0 {
            return os("stat");
        }
        // SAFETY: plain syscalls on the descriptor owned here.
        let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
        if st.st_mode & 0o7777 != mode {
            if st.st_uid != euid && unsafe { libc::fchown(fd, euid, egid) } != 0 {
                return os("take back");
            }
            if unsafe { libc::fchmod(fd, mode) } != 0 {
                return os("chmod");
            }
            st.st_uid = euid;
            st.st_gid = egid;
        }
        if let Some((uid, gid)) = owner {
            if (st.st_uid, st.st_gid) != (uid, gid) && unsafe { libc::fchown(fd, uid, gid) } != 0 {
                return os("chown");
            }
        }
        Ok(())
    })();
    // SAFETY: closing the descriptor opened above, once.
    unsafe { libc::close(fd) };
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_looked_up_and_a_missing_one_is_named() {
        assert_eq!(lookup("root").unwrap(), (0, 0));
        let err = format!("{:#}", lookup("no-such-user-ferry").unwrap_err());
        assert!(
            err.contains("user `no-such-user-ferry` (the app's `user`) does not exist"),
            "{err}"
        );
    }

    #[test]
    fn a_symlink_in_place_of_the_directory_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("elsewhere");
        std::fs::create_dir(&target).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
        let link = d.path().join("cache");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = secure_dir(&link, 0o700, None).unwrap_err();
        assert!(format!("{err:#}").contains("symlink"), "{err:#}");
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755, "the link's target was left alone");
        secure_dir(&target, 0o700, None).unwrap();
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}
