//! Safe unpacking of the payload (a zstd-compressed tar) into a fresh
//! directory, streamed: zstd decoder → tar reader → files, with fixed-size
//! buffers, so memory does not grow with the payload.
//!
//! The payload comes from our own file, but a file can be crafted: nothing in
//! it may write outside the directory. Refused, with the entry named:
//! absolute paths, `..` components, symlinks whose target is absolute or leaves
//! the directory, any path that passes through a symlink the archive made,
//! hard links, device files, fifos and every other entry type, and more than
//! [`MAX_ENTRIES`] entries. Files are created with `O_EXCL | O_NOFOLLOW`, so
//! nothing is ever written through a link.
//!
//! Symlink targets are checked lexically and strictly: `..` may only lead the
//! target (`../lib/libx.so`), never follow a name (`a/../b`), because `a` may
//! itself be a symlink and make such a target resolve elsewhere than it reads.
//! With that rule, every link resolves inside the directory however links chain.
//!
//! Mode bits come from the headers, less setuid, setgid and sticky;
//! directories always keep `u+rwx` so the pruner can remove the tree later.
//! File modification times come from the headers (timestamp-checked bytecode
//! stays valid); owners are not restored.

use std::collections::HashSet;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tar::EntryType;

/// Most entries a payload may hold.
pub const MAX_ENTRIES: u64 = 1_000_000;

/// Names at the top of the directory that belong to the launcher, not the archive.
pub const RESERVED_NAMES: &[&str] = &[crate::cache::RUN_LOCK_NAME];

/// Why unpacking stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// An entry that could write outside the directory, or of a refused kind.
    #[error("payload entry `{entry}` is refused: {reason}")]
    Unsafe {
        /// The entry's path as stored.
        entry: String,
        /// Why.
        reason: String,
    },
    /// More entries than [`MAX_ENTRIES`].
    #[error("the payload has more than {MAX_ENTRIES} entries")]
    TooManyEntries,
    /// The compressed stream or the tar structure is damaged.
    #[error("cannot read the payload: {0}")]
    Read(io::Error),
    /// Writing into the directory failed.
    #[error("cannot write `{path}`: {err}")]
    Write {
        /// What was being written.
        path: PathBuf,
        /// Why.
        err: io::Error,
    },
}

/// What was unpacked.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Entries unpacked.
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
}

/// Unpacks a zstd-compressed tar from `compressed` into `dest`, which exists.
pub fn unpack_zstd<R: Read>(compressed: R, dest: &Path) -> Result<Summary, ExtractError> {
    let decoder = zstd::stream::read::Decoder::new(compressed).map_err(ExtractError::Read)?;
    unpack_tar(decoder, dest)
}

/// Unpacks a plain tar stream into `dest`, which exists.
pub fn unpack_tar<R: Read>(tar: R, dest: &Path) -> Result<Summary, ExtractError> {
    unpack_tar_limited(tar, dest, MAX_ENTRIES)
}

fn unpack_tar_limited<R: Read>(
    tar: R,
    dest: &Path,
    max_entries: u64,
) -> Result<Summary, ExtractError> {
    let mut archive = tar::Archive::new(tar);
    let mut unpacker = Unpacker {
        dest,
        symlinks: HashSet::new(),
        dirs: Vec::new(),
        buf: vec![0u8; 256 * 1024],
        summary: Summary::default(),
    };
    let mut seen = 0u64;
    for entry in archive.entries().map_err(ExtractError::Read)? {
        let entry = entry.map_err(ExtractError::Read)?;
        seen += 1;
        if seen > max_entries {
            return Err(ExtractError::TooManyEntries);
        }
        unpacker.entry(entry)?;
    }
    unpacker.finish()
}

/// A validated path relative to the directory, `None` for the directory itself.
fn relative_path(raw: &[u8]) -> Result<Option<PathBuf>, &'static str> {
    if raw.is_empty() {
        return Err("empty path");
    }
    if raw[0] == b'/' {
        return Err("absolute path");
    }
    let mut path = PathBuf::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("path has a `..` component"),
            name => path.push(std::ffi::OsStr::from_bytes(name)),
        }
    }
    Ok((!path.as_os_str().is_empty()).then_some(path))
}

/// Checks the target of a symlink at `link` (relative to the directory).
fn check_link_target(link: &Path, target: &[u8]) -> Result<(), &'static str> {
    if target.is_empty() {
        return Err("symlink has an empty target");
    }
    if target[0] == b'/' {
        return Err("symlink target is absolute");
    }
    let base = link.parent().map_or(0, |p| p.components().count());
    // Lexical resolution first, for the plain "escapes" answer.
    let mut depth = base as i64;
    for part in target.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                depth -= 1;
                if depth < 0 {
                    return Err("symlink target points outside the extraction directory");
                }
            }
            _ => depth += 1,
        }
    }
    // Then the strict rule: `..` only before the first name.
    let mut named = false;
    for part in target.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." if named => {
                return Err("symlink target has `..` after a name (`a/../b`), which a link at `a` could redirect");
            }
            b".." => {}
            _ => named = true,
        }
    }
    Ok(())
}

fn write_err(rel: &Path) -> impl FnOnce(io::Error) -> ExtractError {
    let path = rel.to_owned();
    move |err| ExtractError::Write { path, err }
}

struct Unpacker<'d> {
    dest: &'d Path,
    /// Symlinks the archive made, relative to `dest`.
    symlinks: HashSet<PathBuf>,
    /// Directories and their modes, applied at the end so a read-only
    /// directory can still be filled.
    dirs: Vec<(PathBuf, u32)>,
    buf: Vec<u8>,
    summary: Summary,
}

impl Unpacker<'_> {
    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), ExtractError> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            // Archive-wide metadata (e.g. a commit id): nothing to write.
            return Ok(());
        }
        let raw = entry.path_bytes().into_owned();
        let refuse = |reason: &str| ExtractError::Unsafe {
            entry: String::from_utf8_lossy(&raw).into_owned(),
            reason: reason.to_owned(),
        };
        let rel = relative_path(&raw).map_err(refuse)?;
        if let Some(rel) = &rel {
            if let Some(link) = rel.ancestors().skip(1).find(|a| self.symlinks.contains(*a)) {
                return Err(refuse(&format!(
                    "its path passes through `{}`, a symlink made earlier in the payload",
                    link.display()
                )));
            }
            if self.symlinks.contains(rel) {
                return Err(refuse(
                    "it would replace a symlink made earlier in the payload",
                ));
            }
            if rel.parent() == Some(Path::new(""))
                && RESERVED_NAMES.iter().any(|n| rel.as_os_str() == *n)
            {
                return Err(refuse("this name is reserved for the launcher"));
            }
        }
        let mode = entry.header().mode().map_err(ExtractError::Read)? & 0o777;
        self.summary.entries += 1;
        match kind {
            EntryType::Regular => {
                let rel = rel.ok_or_else(|| refuse("a file cannot be the directory itself"))?;
                let mtime = entry.header().mtime().map_err(ExtractError::Read)?;
                self.file(&mut entry, &rel, mode, mtime)
            }
            EntryType::Directory => match rel {
                None => Ok(()),
                Some(rel) => self.dir(rel, mode),
            },
            EntryType::Symlink => {
                let rel = rel.ok_or_else(|| refuse("a symlink cannot be the directory itself"))?;
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refuse("symlink has no target"))?
                    .into_owned();
                check_link_target(&rel, &target).map_err(refuse)?;
                self.symlink(rel, &target)
            }
            EntryType::Link => Err(refuse("hard links are not allowed")),
            EntryType::Char | EntryType::Block => Err(refuse("device files are not allowed")),
            EntryType::Fifo => Err(refuse("fifos are not allowed")),
            EntryType::GNUSparse => Err(refuse("sparse files are not allowed")),
            other => Err(refuse(&format!(
                "entry type `{}` is not allowed (only files, directories and symlinks)",
                other.as_byte().escape_ascii()
            ))),
        }
    }

    fn parent(&self, rel: &Path) -> Result<(), ExtractError> {
        match rel.parent() {
            Some(p) if !p.as_os_str().is_empty() => DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(self.dest.join(p))
                .map_err(write_err(p)),
            _ => Ok(()),
        }
    }

    fn file<R: Read>(
        &mut self,
        entry: &mut R,
        rel: &Path,
        mode: u32,
        mtime: u64,
    ) -> Result<(), ExtractError> {
        self.parent(rel)?;
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.dest.join(rel))
            .map_err(write_err(rel))?;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ExtractError::Read(e)),
            };
            file.write_all(&self.buf[..n]).map_err(write_err(rel))?;
            self.summary.bytes += n as u64;
        }
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(write_err(rel))?;
        file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime))
            .map_err(write_err(rel))
    }

    fn dir(&mut self, rel: PathBuf, mode: u32) -> Result<(), ExtractError> {
        self.parent(&rel)?;
        let path = self.dest.join(&rel);
        match DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // Made earlier as a parent, or listed twice: fine if it is a
                // real directory (symlinks the archive made were refused above).
                let meta = fs::symlink_metadata(&path).map_err(write_err(&rel))?;
                if !meta.is_dir() {
                    return Err(ExtractError::Unsafe {
                        entry: rel.display().to_string(),
                        reason: "a directory entry where the payload already put a file".into(),
                    });
                }
            }
            Err(e) => return Err(write_err(&rel)(e)),
        }
        self.dirs.push((rel, mode | 0o700));
        Ok(())
    }

    fn symlink(&mut self, rel: PathBuf, target: &[u8]) -> Result<(), ExtractError> {
        self.parent(&rel)?;
        std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), self.dest.join(&rel))
            .map_err(write_err(&rel))?;
        self.symlinks.insert(rel);
        Ok(())
    }

    fn finish(self) -> Result<Summary, ExtractError> {
        for (rel, mode) in &self.dirs {
            fs::set_permissions(self.dest.join(rel), fs::Permissions::from_mode(*mode))
                .map_err(write_err(rel))?;
        }
        Ok(self.summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// Builds tars byte by byte where the `tar` crate's own checks would stop
    /// a hostile entry.
    struct Tar(tar::Builder<Vec<u8>>);

    impl Tar {
        fn new() -> Self {
            Self(tar::Builder::new(Vec::new()))
        }

        fn raw(
            mut self,
            kind: EntryType,
            path: &[u8],
            link: &[u8],
            mode: u32,
            data: &[u8],
        ) -> Self {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_size(data.len() as u64);
            h.set_mtime(1_700_000_000);
            let old = h.as_old_mut();
            old.name[..path.len()].copy_from_slice(path);
            old.linkname[..link.len()].copy_from_slice(link);
            h.set_cksum();
            self.0.append(&h, data).unwrap();
            self
        }

        fn file(self, path: &str, mode: u32, data: &[u8]) -> Self {
            self.raw(EntryType::Regular, path.as_bytes(), b"", mode, data)
        }

        fn dir(self, path: &str, mode: u32) -> Self {
            self.raw(EntryType::Directory, path.as_bytes(), b"", mode, b"")
        }

        fn symlink(self, path: &str, target: &str) -> Self {
            self.raw(
                EntryType::Symlink,
                path.as_bytes(),
                target.as_bytes(),
                0o777,
                b"",
            )
        }

        fn bytes(self) -> Vec<u8> {
            self.0.into_inner().unwrap()
        }
    }

    /// Unpacks into `<tmp>/dest`; returns the temp dir and the result.
    fn unpack(tar: Tar) -> (tempfile::TempDir, Result<Summary, ExtractError>) {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("dest")).unwrap();
        let bytes = tar.bytes();
        let result = unpack_tar(&bytes[..], &tmp.path().join("dest"));
        (tmp, result)
    }

    /// Asserts refusal naming `entry` and that nothing exists beside `dest`.
    fn assert_refused(tar: Tar, entry: &str, reason: &str) {
        let (tmp, result) = unpack(tar);
        let err = result.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&format!("`{entry}`")), "{msg}");
        assert!(msg.contains(reason), "{msg}");
        let beside: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(beside, ["dest"], "nothing written outside the directory");
    }

    #[test]
    fn ok_tree() {
        let tar = Tar::new()
            .dir("ferry/", 0o755)
            .file("ferry/entry.py", 0o644, b"print('hi')\n")
            .dir("python/bin", 0o755)
            .file("python/bin/python3.11", 0o4755, b"#!/bin/sh\n")
            .symlink("python/bin/python3", "python3.11")
            .symlink("python/lib64", "lib")
            .symlink("site-packages/up", "../python/bin")
            .file("site-packages/app/__init__.py", 0o644, b"")
            .dir("readonly", 0o555)
            .file("readonly/f", 0o444, b"x")
            .dir("./", 0o755);
        let (tmp, result) = unpack(tar);
        let summary = result.unwrap();
        assert_eq!(summary.entries, 11);
        assert_eq!(summary.bytes, 12 + 10 + 1);
        let d = tmp.path().join("dest");
        assert_eq!(
            fs::read(d.join("ferry/entry.py")).unwrap(),
            b"print('hi')\n"
        );
        let py = fs::metadata(d.join("python/bin/python3.11")).unwrap();
        assert_eq!(py.mode() & 0o7777, 0o755, "setuid dropped");
        assert_eq!(py.mtime(), 1_700_000_000);
        assert_eq!(
            fs::read_link(d.join("python/bin/python3")).unwrap(),
            Path::new("python3.11")
        );
        assert!(d.join("site-packages/up/python3.11").exists());
        assert_eq!(
            fs::metadata(d.join("readonly")).unwrap().mode() & 0o777,
            0o755,
            "directories keep u+rwx"
        );
        assert_eq!(
            fs::metadata(d.join("readonly/f")).unwrap().mode() & 0o777,
            0o444
        );
    }

    #[test]
    fn refuses_dotdot() {
        assert_refused(
            Tar::new()
                .file("ferry/entry.py", 0o644, b"")
                .file("../evil", 0o644, b"x"),
            "../evil",
            "`..`",
        );
        assert_refused(
            Tar::new().file("a/../../evil", 0o644, b"x"),
            "a/../../evil",
            "`..`",
        );
    }

    #[test]
    fn refuses_absolute() {
        assert_refused(
            Tar::new().file("/tmp/evil", 0o644, b"x"),
            "/tmp/evil",
            "absolute",
        );
    }

    #[test]
    fn refuses_escaping_symlinks() {
        assert_refused(Tar::new().symlink("l", "/etc"), "l", "absolute");
        assert_refused(Tar::new().symlink("a/l", "../../x"), "a/l", "outside");
        assert_refused(Tar::new().symlink("l", ".."), "l", "outside");
        assert_refused(Tar::new().symlink("a/l", "b/../../.."), "a/l", "outside");
        // In the directory as written, but `d` could be a link: refused too.
        assert_refused(Tar::new().symlink("s", "d/.."), "s", "after a name");
    }

    #[test]
    fn refuses_path_through_symlink() {
        // The link itself stays inside, but writing through it is refused.
        assert_refused(
            Tar::new()
                .dir("real", 0o755)
                .symlink("l", "real")
                .file("l/f", 0o644, b"x"),
            "l/f",
            "passes through `l`",
        );
        assert_refused(
            Tar::new().symlink("l", "real").dir("l/sub", 0o755),
            "l/sub",
            "passes through",
        );
        assert_refused(
            Tar::new().symlink("l", "x").file("l", 0o644, b"x"),
            "l",
            "replace a symlink",
        );
        // Spelled differently, still the same path.
        assert_refused(
            Tar::new().symlink("a/l", "x").file("./a//l/f", 0o644, b"x"),
            "./a//l/f",
            "passes through",
        );
    }

    #[test]
    fn refuses_hard_links() {
        assert_refused(
            Tar::new()
                .file("f", 0o644, b"x")
                .raw(EntryType::Link, b"h", b"f", 0o644, b""),
            "h",
            "hard links",
        );
    }

    #[test]
    fn refuses_devices_and_fifos() {
        assert_refused(
            Tar::new().raw(EntryType::Char, b"null", b"", 0o666, b""),
            "null",
            "device",
        );
        assert_refused(
            Tar::new().raw(EntryType::Block, b"sda", b"", 0o660, b""),
            "sda",
            "device",
        );
        assert_refused(
            Tar::new().raw(EntryType::Fifo, b"p", b"", 0o644, b""),
            "p",
            "fifos",
        );
        assert_refused(
            Tar::new().raw(EntryType::new(b'Z'), b"z", b"", 0o644, b""),
            "z",
            "entry type `Z`",
        );
    }

    #[test]
    fn refuses_duplicates_and_reserved_names() {
        let (_tmp, result) = unpack(Tar::new().file("f", 0o644, b"a").file("f", 0o644, b"b"));
        assert!(matches!(result, Err(ExtractError::Write { .. })));
        assert_refused(
            Tar::new().file(".ferry-lock", 0o644, b""),
            ".ferry-lock",
            "reserved",
        );
        assert_refused(
            Tar::new().file("f", 0o644, b"").dir("f", 0o755),
            "f",
            "already put a file",
        );
    }

    #[test]
    fn refuses_damaged_streams() {
        let mut bytes = Tar::new().file("f", 0o644, &[7u8; 2000]).bytes();
        bytes.truncate(1000);
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(
            unpack_tar(&bytes[..], tmp.path()),
            Err(ExtractError::Read(_))
        ));
        assert!(matches!(
            unpack_zstd(&b"not zstd at all"[..], tmp.path()),
            Err(ExtractError::Read(_))
        ));
    }

    #[test]
    fn refuses_too_many_entries() {
        let tar = Tar::new()
            .file("a", 0o644, b"")
            .file("b", 0o644, b"")
            .file("c", 0o644, b"");
        let tmp = tempfile::tempdir().unwrap();
        let bytes = tar.bytes();
        assert!(matches!(
            unpack_tar_limited(&bytes[..], tmp.path(), 2),
            Err(ExtractError::TooManyEntries)
        ));
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(
            unpack_tar_limited(&bytes[..], tmp.path(), 3)
                .unwrap()
                .entries,
            3
        );
    }

    #[test]
    fn zstd_round_trip() {
        let tar = Tar::new().file("ferry/entry.py", 0o644, b"x").bytes();
        let compressed = zstd::stream::encode_all(&tar[..], 3).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let s = unpack_zstd(&compressed[..], tmp.path()).unwrap();
        assert_eq!(s.entries, 1);
        assert_eq!(fs::read(tmp.path().join("ferry/entry.py")).unwrap(), b"x");
    }

    #[test]
    fn link_target_rules() {
        let ok = |l: &str, t: &str| check_link_target(Path::new(l), t.as_bytes());
        assert!(ok("a/b/l", "../../x").is_ok());
        assert!(ok("a/b/l", "./../x/./y").is_ok());
        assert!(ok("l", "x/y").is_ok());
        assert!(ok("a/b/l", "../../../x").is_err());
        assert!(ok("l", "").is_err());
        assert!(ok("l", "x/../y").is_err());
    }
}
