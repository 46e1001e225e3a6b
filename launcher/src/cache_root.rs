//! Where extractions live: the cache root, chosen from the environment
//! (`$FERRY_CACHE_DIR`, `$CACHE_DIRECTORY`, `$XDG_CACHE_HOME/ferry`,
//! `$HOME/.cache/ferry`, `/var/cache/ferry`, first that applies), created 0700
//! when missing, and refused when another user could plant code in it (a
//! symlink, another owner, group- or world-writable) or when nothing in it could
//! run (a `noexec` mount, where Python would die with "failed to map segment").
//! Every refusal is one line naming the path, the problem and `FERRY_CACHE_DIR`.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Which setting a cache root came from, named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `$FERRY_CACHE_DIR`.
    FerryCacheDir,
    /// `$CACHE_DIRECTORY`, set by systemd's `CacheDirectory=`.
    CacheDirectory,
    /// `$XDG_CACHE_HOME/ferry`.
    XdgCacheHome,
    /// `$HOME/.cache/ferry`.
    Home,
    /// `/var/cache/ferry`, when nothing else is set.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::FerryCacheDir => "from $FERRY_CACHE_DIR",
            Self::CacheDirectory => "from $CACHE_DIRECTORY, systemd's CacheDirectory=",
            Self::XdgCacheHome => "from $XDG_CACHE_HOME",
            Self::Home => "from $HOME",
            Self::Default => "the default, as no $FERRY_CACHE_DIR, $CACHE_DIRECTORY, $XDG_CACHE_HOME or $HOME is set",
        })
    }
}

/// A cache root that cannot be used. Each message ends with the way out.
#[derive(Debug, thiserror::Error)]
pub enum CacheRootError {
    /// `$FERRY_CACHE_DIR` or `$CACHE_DIRECTORY` holds a relative path.
    #[error("cache directory `{path}` ({origin}) is not an absolute path; set FERRY_CACHE_DIR to an absolute path")]
    Relative {
        /// The path as given.
        path: PathBuf,
        /// Where it came from.
        origin: Origin,
    },
    /// The root did not exist and could not be created.
    #[error("cannot create cache directory `{path}` ({origin}): {err}; set FERRY_CACHE_DIR to a directory you own")]
    Create {
        /// The root.
        path: PathBuf,
        /// Where it came from.
        origin: Origin,
        /// Why.
        err: io::Error,
    },
    /// The root could not be inspected.
    #[error("cannot inspect cache directory `{path}` ({origin}): {err}; set FERRY_CACHE_DIR to a directory you own")]
    Inspect {
        /// The root.
        path: PathBuf,
        /// Where it came from.
        origin: Origin,
        /// Why.
        err: io::Error,
    },
    /// The root is a symlink (whoever controls its target controls the code run).
    #[error("cache directory `{path}` ({origin}) is a symlink, which is refused; set FERRY_CACHE_DIR to a real directory you own")]
    Symlink {
        /// The root.
        path: PathBuf,
        /// Where it came from.
        origin: Origin,
    },
    /// The root exists but is not a directory.
    #[error("cache directory `{path}` ({origin}) is not a directory; set FERRY_CACHE_DIR to a directory you own")]
    NotDirectory {
        /// The root.
        path: PathBuf,
        /// Where it came from.
        origin: Origin,
    },
    /// The root belongs to another user.
    #[error("cache directory `{path}` ({origin}) is owned by uid {owner}, not by uid {euid} running this program; set FERRY_CACHE_DIR to a directory you own")]
    Owner {
        /// The root.
        path: PathBuf,
        /// Where it came from.
        origin: Origin,
        /// Its owner.
        owner: u32,
        /// The effective uid.
        euid: u32,
    },
    /// Other users could write into the root.
    #[error("cache directory `{path}` ({origin}) is writable by group or others (mode {mode:04o}); run `chmod go-w` on it or set FERRY_CACHE_DIR to a private directory")]
    Writable {
        /// The root.
        path: PathBuf,
        /// Where it came from.
        origin: Origin,
        /// Its permission bits.
        mode: u32,
    },
    /// The root is on a filesystem mounted `noexec`.
    #[error("cache directory `{path}` ({origin}) is on a filesystem mounted `noexec`, where the unpacked interpreter cannot run; set FERRY_CACHE_DIR to a directory on a filesystem mounted with exec")]
    NoExec {
        /// The root.
        path: PathBuf,
        /// Where it came from.
        origin: Origin,
    },
}

/// Picks the cache root from environment values (`get` looks one up). Empty
/// values count as unset; a relative `$XDG_CACHE_HOME` or `$HOME` is ignored,
/// as the XDG specification says, while a relative explicit setting is an error.
pub fn choose(get: impl Fn(&str) -> Option<OsString>) -> Result<(PathBuf, Origin), CacheRootError> {
    let set = |key: &str| get(key).filter(|v| !v.is_empty()).map(PathBuf::from);
    let explicit = |path: PathBuf, origin| {
        if path.is_absolute() {
            Ok((path, origin))
        } else {
            Err(CacheRootError::Relative { path, origin })
        }
    };
    if let Some(path) = set("FERRY_CACHE_DIR") {
        return explicit(path, Origin::FerryCacheDir);
    }
    if let Some(value) = get("CACHE_DIRECTORY").filter(|v| !v.is_empty()) {
        // systemd joins several CacheDirectory= paths with `:`; the first is ours.
        let first = value.as_bytes().split(|&b| b == b':').next().unwrap_or(b"");
        if !first.is_empty() {
            let path = PathBuf::from(std::ffi::OsStr::from_bytes(first));
            return explicit(path, Origin::CacheDirectory);
        }
    }
    if let Some(path) = set("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        return Ok((path.join("ferry"), Origin::XdgCacheHome));
    }
    if let Some(path) = set("HOME").filter(|p| p.is_absolute()) {
        return Ok((path.join(".cache").join("ferry"), Origin::Home));
    }
    Ok((PathBuf::from("/var/cache/ferry"), Origin::Default))
}

/// The effective user id.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Creates `path` (0700, with missing parents) if it does not exist, then
/// checks it is safe to unpack code into; `true` when its trees are shared
/// with other users ([`is_shared`]). Costs two syscalls when it exists.
pub fn prepare(path: &Path, origin: Origin) -> Result<bool, CacheRootError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            crate::trace!("creating cache root `{}`", path.display());
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(|err| CacheRootError::Create {
                    path: path.to_owned(),
                    origin,
                    err,
                })?;
            fs::symlink_metadata(path).map_err(|err| CacheRootError::Inspect {
                path: path.to_owned(),
                origin,
                err,
            })?
        }
        Err(err) => {
            return Err(CacheRootError::Inspect {
                path: path.to_owned(),
                origin,
                err,
            })
        }
    };
    check_metadata(path, origin, &meta, euid())?;
    let fs = ferry_fsutil::fsstat::statvfs(path).map_err(|err| CacheRootError::Inspect {
        path: path.to_owned(),
        origin,
        err,
    })?;
    check_exec_mount(path, origin, fs.noexec)?;
    Ok(is_shared(&meta))
}

/// Refuses a root that is a symlink, not a directory, owned by someone other
/// than `euid` or root, or writable by group or others. A root-owned root is
/// how ferryd shares trees it extracted with an app that may read but not
/// change them (`docs/agent.md`).
pub fn check_metadata(
    path: &Path,
    origin: Origin,
    meta: &fs::Metadata,
    euid: u32,
) -> Result<(), CacheRootError> {
    let path = path.to_owned();
    if meta.file_type().is_symlink() {
        return Err(CacheRootError::Symlink { path, origin });
    }
    if !meta.is_dir() {
        return Err(CacheRootError::NotDirectory { path, origin });
    }
    if meta.uid() != euid && meta.uid() != 0 {
        return Err(CacheRootError::Owner {
            path,
            origin,
            owner: meta.uid(),
            euid,
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(CacheRootError::Writable { path, origin, mode });
    }
    Ok(())
}

/// Whether trees under this root are for other users to read too: the root
/// itself is readable and searchable by group and others (ferryd's 0755).
pub fn is_shared(meta: &fs::Metadata) -> bool {
    meta.mode() & 0o055 == 0o055
}

/// Refuses a root whose filesystem is mounted `noexec` (`noexec` as
/// [`ferry_fsutil::fsstat::statvfs`] reports it).
pub fn check_exec_mount(path: &Path, origin: Origin, noexec: bool) -> Result<(), CacheRootError> {
    if noexec {
        return Err(CacheRootError::NoExec {
            path: path.to_owned(),
            origin,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    fn choose_from(vars: &[(&str, &str)]) -> Result<(PathBuf, Origin), CacheRootError> {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        choose(|k| map.get(k).cloned())
    }

    #[test]
    fn order_of_precedence() {
        let all = [
            ("FERRY_CACHE_DIR", "/f"),
            ("CACHE_DIRECTORY", "/c1:/c2"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        let pick = |n: usize| choose_from(&all[n..]).unwrap();
        assert_eq!(pick(0), (PathBuf::from("/f"), Origin::FerryCacheDir));
        assert_eq!(pick(1), (PathBuf::from("/c1"), Origin::CacheDirectory));
        assert_eq!(pick(2), (PathBuf::from("/x/ferry"), Origin::XdgCacheHome));
        assert_eq!(pick(3), (PathBuf::from("/h/.cache/ferry"), Origin::Home));
        assert_eq!(
            pick(4),
            (PathBuf::from("/var/cache/ferry"), Origin::Default)
        );
    }

    #[test]
    fn empty_and_relative_values() {
        // Empty values are unset: a service with HOME="" falls through.
        assert_eq!(
            choose_from(&[("FERRY_CACHE_DIR", ""), ("HOME", "")])
                .unwrap()
                .1,
            Origin::Default
        );
        // A relative XDG_CACHE_HOME is ignored, as the XDG spec says.
        assert_eq!(
            choose_from(&[("XDG_CACHE_HOME", "rel"), ("HOME", "/h")])
                .unwrap()
                .1,
            Origin::Home
        );
        let err = choose_from(&[("FERRY_CACHE_DIR", "rel")]).unwrap_err();
        assert!(err.to_string().contains("FERRY_CACHE_DIR"), "{err}");
        assert!(matches!(
            choose_from(&[("CACHE_DIRECTORY", ":/x")]).unwrap().1,
            Origin::Default
        ));
    }

    #[test]
    fn creates_missing_root_private() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("a/b/ferry");
        prepare(&root, Origin::FerryCacheDir).unwrap();
        let mode = fs::metadata(&root).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // And accepted again, warm.
        prepare(&root, Origin::FerryCacheDir).unwrap();
    }

    #[test]
    fn refuses_world_writable() {
        let tmp = tempfile::tempdir().unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let err = prepare(tmp.path(), Origin::XdgCacheHome).unwrap_err();
        assert!(matches!(err, CacheRootError::Writable { mode: 0o777, .. }));
        let msg = err.to_string();
        assert!(msg.contains("FERRY_CACHE_DIR") && msg.contains("$XDG_CACHE_HOME"));
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o770)).unwrap();
        assert!(matches!(
            prepare(tmp.path(), Origin::XdgCacheHome),
            Err(CacheRootError::Writable { .. })
        ));
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
        prepare(tmp.path(), Origin::XdgCacheHome).unwrap();
    }

    #[test]
    fn refuses_symlink() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        fs::create_dir(&real).unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o700)).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = prepare(&link, Origin::FerryCacheDir).unwrap_err();
        assert!(matches!(err, CacheRootError::Symlink { .. }), "{err}");
        assert!(err.to_string().contains(&*link.to_string_lossy()));
    }

    #[test]
    fn refuses_file() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        fs::write(&file, b"").unwrap();
        assert!(matches!(
            prepare(&file, Origin::FerryCacheDir),
            Err(CacheRootError::NotDirectory { .. })
        ));
    }

    #[test]
    fn refuses_other_owner() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("theirs");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        if euid() == 0 {
            std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
            let err = prepare(&dir, Origin::Home).unwrap_err();
            assert!(
                matches!(err, CacheRootError::Owner { owner: 65534, .. }),
                "{err}"
            );
        }
        // Whoever runs the test: the check itself, with another uid.
        let meta = fs::symlink_metadata(&dir).unwrap();
        if meta.uid() == 0 {
            // Root's directories are everyone's to trust: checked below.
            assert!(check_metadata(&dir, Origin::Home, &meta, 1000).is_ok());
            return;
        }
        let err = check_metadata(&dir, Origin::Home, &meta, meta.uid() + 1).unwrap_err();
        assert!(err.to_string().contains("set FERRY_CACHE_DIR"), "{err}");
    }

    #[test]
    fn a_root_owned_root_is_trusted_and_shared_when_others_may_read_it() {
        let meta = fs::symlink_metadata("/").unwrap();
        assert_eq!(meta.uid(), 0);
        check_metadata(Path::new("/"), Origin::FerryCacheDir, &meta, 1000).unwrap();
        assert!(is_shared(&meta));
        let tmp = tempfile::tempdir().unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o700)).unwrap();
        assert!(!is_shared(&fs::symlink_metadata(tmp.path()).unwrap()));
    }

    #[test]
    fn refuses_noexec_flag() {
        let p = Path::new("/x");
        check_exec_mount(p, Origin::Default, false).unwrap();
        let err = check_exec_mount(p, Origin::Default, true).unwrap_err();
        assert!(err.to_string().contains("noexec"));
        assert!(err.to_string().contains("FERRY_CACHE_DIR"));
    }

    /// A real `noexec` tmpfs, when this test may mount one (root, a mount
    /// namespace that allows it). Where it may not, the flag logic above is
    /// what is tested, and this says so on stderr.
    #[test]
    fn refuses_noexec_mount() {
        let tmp = tempfile::tempdir().unwrap();
        let mnt = tmp.path().join("mnt");
        fs::create_dir(&mnt).unwrap();
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                "noexec,size=1m,mode=0700",
                "ferry-test",
            ])
            .arg(&mnt)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("refuses_noexec_mount: cannot mount a tmpfs here; flag logic tested in refuses_noexec_flag");
            return;
        }
        let result = prepare(&mnt, Origin::FerryCacheDir);
        let _ = Command::new("umount").arg(&mnt).status();
        let err = result.unwrap_err();
        assert!(matches!(err, CacheRootError::NoExec { .. }), "{err}");
    }
}
