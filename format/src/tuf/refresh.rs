//! One refresh of the trusted metadata (§5.3–§5.6), with no I/O of its own:
//! [`Refresh::next`] says which file to fetch, [`Refresh::feed`] takes it (or
//! its absence). The agent drives it over HTTP, the packager over the
//! repository directory, so both check a repository by the same code.

use super::layout::metadata_path;
use super::trusted::TrustedSet;
use super::TufError;

/// Most roots walked in one refresh (python-tuf allows 256).
pub const MAX_ROOT_ROTATIONS: u64 = 256;
/// Size cap of `timestamp.json` (python-tuf's).
pub const MAX_TIMESTAMP_LEN: u64 = 16 * 1024;
/// Size cap of a root.
pub const MAX_ROOT_LEN: u64 = 512 * 1024;
/// Size cap of a snapshot or targets document whose length is not named.
pub const MAX_ROLE_LEN: u64 = 1024 * 1024;

/// A file the refresh needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    /// Repository-relative path.
    pub path: String,
    /// Read at most this many bytes.
    pub max_len: u64,
    /// Whether its absence is an answer (the next root) rather than an error.
    pub may_be_missing: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Root(u64),
    Timestamp,
    Snapshot,
    Targets,
    App,
    Done,
}

/// A refresh in progress.
#[derive(Debug)]
pub struct Refresh {
    set: TrustedSet,
    app: Option<String>,
    now: Option<u64>,
    stage: Stage,
    rotations: u64,
    /// Whether any root rotation changed the timestamp, snapshot or targets keys.
    pub keys_rotated: bool,
}

impl Refresh {
    /// Starts from what is trusted; `app` is the delegated role wanted too,
    /// when the snapshot lists it.
    pub fn new(set: TrustedSet, app: Option<&str>, now: Option<u64>) -> Refresh {
        let next_root = set.root().doc.version.saturating_add(1);
        Refresh {
            set,
            app: app.map(str::to_owned),
            now,
            stage: Stage::Root(next_root),
            rotations: 0,
            keys_rotated: false,
        }
    }

    /// The next file to fetch, or `None` when the refresh is complete.
    pub fn next(&self) -> Option<Fetch> {
        let sized = |len: Option<u64>, cap: u64| len.unwrap_or(cap).min(cap);
        match self.stage {
            Stage::Root(v) => Some(Fetch {
                path: metadata_path("root", Some(v)),
                max_len: MAX_ROOT_LEN,
                may_be_missing: true,
            }),
            Stage::Timestamp => Some(Fetch {
                path: metadata_path("timestamp", None),
                max_len: MAX_TIMESTAMP_LEN,
                may_be_missing: false,
            }),
            Stage::Snapshot => {
                let meta = self.set.snapshot_meta()?;
                Some(Fetch {
                    path: metadata_path("snapshot", Some(meta.version)),
                    max_len: sized(meta.length, MAX_ROLE_LEN),
                    may_be_missing: false,
                })
            }
            Stage::Targets | Stage::App => {
                let name = self.role_name()?;
                let meta = self.set.role_meta(name)?;
                Some(Fetch {
                    path: metadata_path(name, Some(meta.version)),
                    max_len: sized(meta.length, MAX_ROLE_LEN),
                    may_be_missing: false,
                })
            }
            Stage::Done => None,
        }
    }

    fn role_name(&self) -> Option<&str> {
        match self.stage {
            Stage::Targets => Some("targets"),
            Stage::App => self.app.as_deref(),
            _ => None,
        }
    }

    /// Takes the file [`Refresh::next`] asked for (`None`: it does not exist).
    pub fn feed(&mut self, bytes: Option<&[u8]>) -> Result<(), TufError> {
        match (self.stage, bytes) {
            (Stage::Root(v), Some(bytes)) => {
                let change = self.set.update_root(bytes)?;
                self.keys_rotated |= change.online_keys_rotated || change.targets_keys_rotated;
                self.rotations += 1;
                self.stage = if self.rotations >= MAX_ROOT_ROTATIONS {
                    Stage::Timestamp
                } else {
                    Stage::Root(v.saturating_add(1))
                };
            }
            (Stage::Root(_), None) => self.stage = Stage::Timestamp,
            (Stage::Timestamp, Some(bytes)) => {
                self.set.update_timestamp(bytes, self.now)?;
                self.stage = Stage::Snapshot;
            }
            (Stage::Snapshot, Some(bytes)) => {
                self.set.update_snapshot(bytes, self.now, false)?;
                self.stage = Stage::Targets;
            }
            (Stage::Targets, Some(bytes)) => {
                self.set.update_targets(bytes, self.now, false)?;
                self.stage = Stage::App;
            }
            (Stage::App, Some(bytes)) => {
                let name = self.app.clone().expect("App stage has an app");
                self.set.update_delegated(&name, bytes, self.now, false)?;
                self.stage = Stage::Done;
            }
            (stage, None) => {
                return Err(TufError::Missing {
                    what: format!("{} in the repository", self.describe(stage)),
                })
            }
            (Stage::Done, Some(_)) => {}
        }
        self.skip_trusted();
        Ok(())
    }

    fn describe(&self, stage: Stage) -> String {
        self.next()
            .map(|f| f.path)
            .unwrap_or_else(|| format!("{stage:?}"))
    }

    /// Moves past documents already trusted in the version the repository
    /// names.
    fn skip_trusted(&mut self) {
        loop {
            self.stage = match self.stage {
                Stage::Snapshot if !self.set.needs_snapshot() => Stage::Targets,
                Stage::Targets if !self.set.needs_role("targets") => Stage::App,
                // An app the snapshot does not list (nothing published for
                // it yet) ends the refresh without its role: callers tell by
                // `TrustedSet::role_meta`.
                Stage::App => match self.app.as_deref() {
                    None => Stage::Done,
                    Some(app) if self.set.role_meta(app).is_none() => Stage::Done,
                    Some(app) if !self.set.needs_role(app) => Stage::Done,
                    Some(_) => return,
                },
                _ => return,
            }
        }
    }

    /// The trusted set after a complete refresh, with every document in the
    /// chain to the app checked for expiry.
    pub fn finish(self) -> Result<TrustedSet, TufError> {
        if self.stage != Stage::Done {
            return Err(TufError::Missing {
                what: format!("{} (refresh ended early)", self.describe(self.stage)),
            });
        }
        self.set
            .check_fresh(self.app.as_deref().unwrap_or("targets"), self.now)?;
        Ok(self.set)
    }

    /// What is trusted so far (also after a failed step: every document
    /// accepted before the failure raised its floor).
    pub fn trusted(&self) -> &TrustedSet {
        &self.set
    }

    /// Gives up the refresh, keeping what was accepted.
    pub fn into_trusted(self) -> TrustedSet {
        self.set
    }
}
