//! Looking up the app's user, and changing a directory's owner and mode
//! without following a symlink planted in its place.

use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use anyhow::{bail, Context as _, Result};
use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::{fchmod, fstat, Mode};
use nix::unistd::{fchown, getegid, geteuid, Gid, Uid};

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
    if dir.as_os_str().as_bytes().contains(&0) {
        bail!("`{}` holds a NUL byte", dir.display());
    }
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    // An `OwnedFd`: closed when it goes out of scope, on every return.
    let fd = match open(dir, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ELOOP | Errno::ENOTDIR) => bail!(
            "`{}` is a symlink or not a directory: refusing to change its owner or mode",
            dir.display()
        ),
        Err(e) => {
            return Err(std::io::Error::from(e))
                .with_context(|| format!("cannot open `{}`", dir.display()))
        }
    };
    let os = |what: &'static str| {
        move |e: Errno| {
            anyhow::Error::new(std::io::Error::from(e))
                .context(format!("cannot {what} `{}`", dir.display()))
        }
    };
    let st = fstat(&fd).map_err(os("stat"))?;
    let (euid, egid) = (geteuid(), getegid());
    let mut owned_by = (st.st_uid, st.st_gid);
    if st.st_mode & 0o7777 != mode {
        if st.st_uid != euid.as_raw() {
            fchown(&fd, Some(euid), Some(egid)).map_err(os("take back"))?;
        }
        fchmod(&fd, Mode::from_bits_retain(mode)).map_err(os("chmod"))?;
        owned_by = (euid.as_raw(), egid.as_raw());
    }
    if let Some((uid, gid)) = owner {
        if owned_by != (uid, gid) {
            fchown(&fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))).map_err(os("chown"))?;
        }
    }
    Ok(())
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

    /// As root (the agent's case): the mode is changed on a directory
    /// another user owns by taking it back first, then it is given away.
    #[test]
    fn a_directory_is_taken_back_changed_and_given_away() {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        if !geteuid().is_root() {
            eprintln!("not root: ownership changes not tested");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("cache");
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(1000), Some(1000)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        secure_dir(&dir, 0o755, Some((1001, 1002))).unwrap();
        let meta = std::fs::metadata(&dir).unwrap();
        assert_eq!(
            (meta.mode() & 0o7777, meta.uid(), meta.gid()),
            (0o755, 1001, 1002)
        );
        // Already right: left alone.
        secure_dir(&dir, 0o755, Some((1001, 1002))).unwrap();
        secure_dir(&dir, 0o755, None).unwrap();
        let meta = std::fs::metadata(&dir).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (1001, 1002));
    }
}
