//! Pruning old extractions of one app, so the cache does not grow without end
//! (shiv never cleans; users report caches of tens of GB). Runs only after a
//! new extraction, never on the warm path. Keeps the [`KEEP`] most recently
//! made builds (by directory mtime; the current one always counts among
//! them) and removes older ones only when their run lock can be taken
//! exclusively, i.e. no app runs from them: a locked tree is skipped. A tree is
//! first renamed to `.<id>.trash-<pid>` (so no run picks it up any more), then
//! removed. Leftovers of killed runs are swept too: partial trees whose build
//! is not being extracted, and trash whose pruner is dead.
//!
//! Nothing here can fail the launch: problems are traced and skipped.

use std::fs;
use std::io;
use std::path::Path;
use std::time::SystemTime;

use crate::cache::{sibling, RUN_LOCK_NAME};
use crate::lock::{self, ExtractLock};
use crate::trace;

/// How many builds of one app stay extracted.
pub const KEEP: usize = 3;

/// What a name in `<root>/<name>/` is.
#[derive(Debug, PartialEq, Eq)]
enum Kind<'a> {
    /// A finished build, `<id>`.
    Build,
    /// `.<id>.partial-<pid>`.
    Partial(&'a str),
    /// `.<id>.trash-<pid>`.
    Trash(u32),
    /// Anything else (lock files, foreign names): left alone.
    Other,
}

fn is_build_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn classify(name: &str) -> Kind<'_> {
    if is_build_id(name) {
        return Kind::Build;
    }
    let Some(rest) = name.strip_prefix('.') else {
        return Kind::Other;
    };
    let Some((id, tail)) = rest.split_once('.') else {
        return Kind::Other;
    };
    if !is_build_id(id) {
        return Kind::Other;
    }
    if let Some(pid) = tail.strip_prefix("partial-") {
        if pid.parse::<u32>().is_ok() {
            return Kind::Partial(id);
        }
    }
    if let Some(pid) = tail.strip_prefix("trash-").and_then(|p| p.parse().ok()) {
        return Kind::Trash(pid);
    }
    Kind::Other
}

fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks whether the process exists.
    if unsafe { libc::kill(pid, 0) } == 0 {
        return true;
    }
    io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// The finished builds in `<root>/<name>/`, newest first (by the mtime of
/// the tree's top, which is when it was made: nothing in a running app
/// writes there), ties broken by id.
pub fn builds(name_dir: &Path) -> io::Result<Vec<(SystemTime, String)>> {
    let mut builds = Vec::new();
    for entry in fs::read_dir(name_dir)?.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if classify(name) != Kind::Build {
            continue;
        }
        let Ok(meta) = fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if meta.is_dir() {
            builds.push((
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                name.to_owned(),
            ));
        }
    }
    builds.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    Ok(builds)
}

/// Prunes `<root>/<name>/` after `current` was extracted.
pub fn prune(name_dir: &Path, current: &str) {
    let builds = match builds(name_dir) {
        Ok(builds) => builds,
        Err(e) => {
            trace!("prune: cannot list `{}`: {e}", name_dir.display());
            return;
        }
    };
    // The current build takes one of the KEEP places.
    let older = builds.iter().filter(|(_, id)| id != current);
    for (_, id) in older.skip(KEEP.saturating_sub(1)) {
        match remove_build(name_dir, id) {
            Removal::Removed(_) => trace!("prune: removed build {id}"),
            other => trace!("prune: keeping build {id}: {other:?}"),
        }
    }
    remove_leftovers(name_dir, Some(current));
}

/// Removes what killed runs left in `<root>/<name>/`: partial trees of builds
/// not being extracted now (never `current`'s), and trash whose pruner is
/// dead. Returns how many were removed.
pub fn remove_leftovers(name_dir: &Path, current: Option<&str>) -> usize {
    let Ok(entries) = fs::read_dir(name_dir) else {
        return 0;
    };
    let mut removed = 0;
    let mut partial_ids: Vec<String> = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        match classify(name) {
            Kind::Partial(id) if Some(id) != current && !partial_ids.iter().any(|p| p == id) => {
                partial_ids.push(id.to_owned());
            }
            Kind::Trash(pid) if !pid_alive(pid) => {
                trace!("prune: removing leftover `{name}`");
                if fs::remove_dir_all(entry.path()).is_ok() {
                    removed += 1;
                }
            }
            _ => {}
        }
    }
    for id in partial_ids {
        // Holding the build's extract lock proves no run is filling its partials.
        match ExtractLock::try_acquire(&sibling(name_dir, &id, "lock")) {
            Ok(Some(_guard)) => removed += crate::cache::remove_partials(name_dir, &id),
            Ok(None) => trace!("prune: build {id} is being extracted; its partial tree stays"),
            Err(e) => trace!("prune: cannot lock build {id}: {e}"),
        }
    }
    removed
}

/// What became of a build that was to be removed.
#[derive(Debug)]
pub enum Removal {
    /// Removed; it held this many bytes in regular files.
    Removed(u64),
    /// An app runs from it; it stays.
    InUse,
    /// It was not there (another pruner was first).
    Gone,
    /// It could not be locked, moved aside or removed.
    Failed(io::Error),
}

/// Removes the build `id` unless an app runs from it: with its run lock held
/// exclusively, the tree is renamed to `.<id>.trash-<pid>` (so no new run
/// picks it up) and then removed.
pub fn remove_build(name_dir: &Path, id: &str) -> Removal {
    let dir = name_dir.join(id);
    if !dir.is_dir() {
        return Removal::Gone;
    }
    let _held = match lock::try_lock_unused(&dir.join(RUN_LOCK_NAME)) {
        Ok(Some(held)) => held,
        Ok(None) => return Removal::InUse,
        Err(e) => return Removal::Failed(e),
    };
    let bytes = tree_bytes(&dir);
    let trash = sibling(name_dir, id, &format!("trash-{}", std::process::id()));
    if let Err(e) = fs::rename(&dir, &trash) {
        return Removal::Failed(e);
    }
    match fs::remove_dir_all(&trash) {
        Ok(()) => Removal::Removed(bytes),
        Err(e) => Removal::Failed(e),
    }
}

/// Bytes held by the regular files under `dir` (symlinks not followed).
pub fn tree_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        let Ok(meta) = fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if meta.is_dir() {
            total += tree_bytes(&entry.path());
        } else if meta.is_file() {
            total += meta.len();
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::time::Duration;

    fn id(n: u8) -> String {
        format!("{:064x}", n)
    }

    fn make_build(name_dir: &Path, n: u8, age_s: u64) -> std::path::PathBuf {
        let dir = name_dir.join(id(n));
        fs::create_dir_all(dir.join("ferry")).unwrap();
        fs::write(dir.join(RUN_LOCK_NAME), b"").unwrap();
        let t = SystemTime::now() - Duration::from_secs(age_s);
        File::open(&dir).unwrap().set_modified(t).unwrap();
        dir
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn classifies_names() {
        let a = id(1);
        assert_eq!(classify(&a), Kind::Build);
        assert_eq!(classify(&format!(".{a}.partial-12")), Kind::Partial(&a));
        assert_eq!(classify(&format!(".{a}.trash-12")), Kind::Trash(12));
        assert_eq!(classify(&format!(".{a}.lock")), Kind::Other);
        assert_eq!(classify("notes"), Kind::Other);
        assert_eq!(classify(&format!(".{a}.partial-x")), Kind::Other);
    }

    #[test]
    fn keeps_three_newest_and_in_use() {
        let tmp = tempfile::tempdir().unwrap();
        let nd = tmp.path();
        make_build(nd, 1, 50);
        let in_use = make_build(nd, 2, 40);
        make_build(nd, 3, 30);
        make_build(nd, 4, 20);
        make_build(nd, 5, 10);
        make_build(nd, 6, 0); // current
        let _app = lock::lock_run(&in_use.join(RUN_LOCK_NAME))
            .unwrap()
            .unwrap();
        prune(nd, &id(6));
        assert_eq!(names(nd), [id(2), id(4), id(5), id(6)]);
    }

    #[test]
    fn current_counts_even_if_older() {
        let tmp = tempfile::tempdir().unwrap();
        let nd = tmp.path();
        make_build(nd, 1, 100); // current, e.g. re-extracted after a prune
        make_build(nd, 2, 10);
        make_build(nd, 3, 5);
        make_build(nd, 4, 1);
        prune(nd, &id(1));
        assert_eq!(names(nd), [id(1), id(3), id(4)]);
    }

    #[test]
    fn sweeps_leftovers_of_killed_runs() {
        let tmp = tempfile::tempdir().unwrap();
        let nd = tmp.path();
        make_build(nd, 9, 0);
        // A dead pid: pid_max is below 2^22 on Linux.
        let dead = nd.join(format!(".{}.trash-4194304", id(1)));
        let partial = nd.join(format!(".{}.partial-4194304", id(2)));
        fs::create_dir_all(dead.join("x")).unwrap();
        fs::create_dir_all(partial.join("y")).unwrap();
        // Build 3 is being extracted right now: its partial must stay.
        let busy = nd.join(format!(".{}.partial-1", id(3)));
        fs::create_dir_all(&busy).unwrap();
        let _guard = ExtractLock::acquire(&sibling(nd, &id(3), "lock")).unwrap();
        prune(nd, &id(9));
        let left = names(nd);
        assert!(left.contains(&id(9)));
        assert!(!dead.exists());
        assert!(!partial.exists());
        assert!(busy.exists());
        assert!(
            !sibling(nd, &id(2), "lock").exists(),
            "lock of the sweep released and removed"
        );
    }
}
