//! Crash points for the crash campaign (`tests/tests/crash.rs`,
//! `scripts/crash-campaign.sh`). Built only with the cargo feature
//! `failpoints`; without it [`hit`] is an empty inline function and the
//! release binary holds none of this.
//!
//! A point sits after every persist of the state file and before every
//! irreversible act. It is armed through a file named by the environment
//! variable `FERRY_FAILPOINT_FILE`, holding `NAME` or `NAME@N` (fire at the
//! N-th hit after the file was seen, default 1). When the point fires, the
//! file is renamed to `<file>.fired`, so it fires once and the campaign can
//! tell that it did, and the process calls `abort()`: the whole process dies
//! as on SIGKILL or a power cut, not one task as a panic would.

/// Every crash point, in the order an update meets them.
pub const ALL: &[&str] = &[
    "after-persist:start-download",
    "before-download-chunk",
    "before-verify",
    "before-store",
    "before-pre-extract",
    "after-persist:verified",
    "before-swap",
    "between-swap-links",
    "after-swap",
    "after-persist:swapped",
    "after-persist:restarting",
    "before-restart",
    "after-persist:started",
    "before-health",
    "after-persist:healthy",
    "after-queue-report",
    "before-prune",
    "after-persist:unhealthy",
    "before-rollback",
    "before-rollback-restart",
    "after-persist:rolled-back",
    "after-persist:abandon",
];

/// The variable naming the arming file.
pub const ENV: &str = "FERRY_FAILPOINT_FILE";

/// Marks a crash point; aborts the process if it is armed.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &'static str) {}

/// Marks a crash point; aborts the process if it is armed.
#[cfg(feature = "failpoints")]
pub fn hit(name: &'static str) {
    armed::hit(name)
}

#[cfg(feature = "failpoints")]
mod armed {
    use std::path::PathBuf;
    use std::sync::Mutex;

    /// The spec last read from the file and how often its point was hit since.
    static SEEN: Mutex<Option<(String, u64)>> = Mutex::new(None);

    pub fn hit(name: &'static str) {
        debug_assert!(super::ALL.contains(&name), "unknown crash point {name}");
        let Some(file) = std::env::var_os(super::ENV).map(PathBuf::from) else {
            return;
        };
        let Ok(spec) = std::fs::read_to_string(&file) else {
            return;
        };
        let spec = spec.trim().to_owned();
        let (point, at) = match spec.split_once('@') {
            Some((p, n)) => (p, n.parse::<u64>().unwrap_or(1)),
            None => (spec.as_str(), 1),
        };
        if point != name {
            return;
        }
        let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
        let count = match seen.as_mut() {
            Some((s, n)) if *s == spec => {
                *n += 1;
                *n
            }
            _ => {
                *seen = Some((spec.clone(), 1));
                1
            }
        };
        if count < at {
            return;
        }
        let mut fired = file.clone().into_os_string();
        fired.push(".fired");
        if std::fs::rename(&file, &fired).is_ok() {
            if let Some(dir) = file.parent() {
                let _ = ferry_fsutil::fsync_dir(dir);
            }
            log::error!("crash point `{spec}` fired: aborting");
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every listed point is placed in the code exactly once, and every
    /// placed point is listed: the campaign covers them all.
    #[test]
    fn every_point_is_placed_once_and_listed() {
        let src = concat!(
            include_str!("driver/mod.rs"),
            include_str!("driver/fetch.rs"),
            include_str!("driver/restart.rs"),
            include_str!("store.rs"),
            include_str!("repo/mod.rs"),
            include_str!("state.rs"),
        );
        let mut placed: Vec<&str> = src
            .split("failpoint::hit(\"")
            .skip(1)
            .map(|rest| &rest[..rest.find('"').unwrap()])
            .collect();
        // `after-persist:*` of steps are named by `Step::failpoint`.
        placed.extend(
            src.split("=> \"after-persist:")
                .skip(1)
                .map(|rest| &rest[..rest.find('"').unwrap()])
                .map(|s| {
                    super::ALL
                        .iter()
                        .find(|p| p.strip_prefix("after-persist:") == Some(s))
                        .copied()
                        .unwrap_or("unlisted")
                }),
        );
        let mut sorted = placed.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            placed.len(),
            "a point placed twice: {placed:?}"
        );
        for p in super::ALL {
            assert!(placed.contains(p), "`{p}` is listed but placed nowhere");
        }
        for p in &placed {
            assert!(super::ALL.contains(p), "`{p}` is placed but not listed");
        }
    }
}
