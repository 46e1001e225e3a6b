//! The per-app update state machine, persisted in `state.json` after every
//! transition (temp file, fsync, rename, fsync the directory), so after a crash
//! or power cut the agent resumes from the last step it finished.
//!
//! Transitions are a pure function with an exhaustive `match`: a new phase does
//! not compile until every path handles it. The state comes from disk, so an
//! illegal transition is an error, not an assertion. `docs/agent.md` has the
//! table of how each phase resumes.

use std::path::Path;

use anyhow::{Context as _, Result};
use ferry_format::report::Outcome as ReportOutcome;
use serde::{Deserialize, Serialize};

/// Schema of `state.json`.
pub const STATE_SCHEMA: u32 = 1;

/// Starts of one release without an outcome before it counts as unhealthy.
/// Above the crash campaign's kills per update (3), so crashes of the agent
/// alone never turn a good release into a rollback.
pub const MAX_STARTS: u32 = 5;

/// A release the agent is installing or has installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// Version.
    pub version: String,
    /// Manifest serial it came with (0 for offline installs).
    pub serial: u64,
    /// SHA-256 of the artifact.
    pub sha256: String,
    /// Size of the artifact.
    pub size: u64,
    /// Directory under `versions/`.
    pub dir: String,
}

impl Release {
    /// `<version>-<first 12 hex digits>`: the directory under `versions/`.
    pub fn dir_name(version: &str, sha256: &str) -> String {
        format!("{version}-{}", &sha256[..12.min(sha256.len())])
    }
}

/// Where an update stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// Nothing in progress.
    Idle,
    /// Downloading `target` into the downloads directory.
    Downloading {
        /// What is being fetched.
        target: Release,
    },
    /// `target` is verified and stored under `versions/`, not yet current.
    Verified {
        /// The verified release.
        target: Release,
    },
    /// `current` points at `target`; the unit still runs the old binary.
    Installed {
        /// The new current release.
        target: Release,
    },
    /// The unit is being restarted onto `target`.
    Restarting {
        /// The release being started.
        target: Release,
    },
    /// `target` runs and is being watched.
    Probation {
        /// The release on probation.
        target: Release,
    },
    /// `target` failed; `current` is being put back to the previous release.
    RollingBack {
        /// The failed release.
        target: Release,
        /// Why it failed.
        reason: String,
    },
    /// Even the previous release is unhealthy: the agent stops acting.
    Hold {
        /// Why.
        reason: String,
    },
}

impl Step {
    /// The crash point right after this step is persisted (see
    /// [`crate::failpoint`]); operator-only steps and bookkeeping have none.
    pub fn failpoint(&self) -> Option<&'static str> {
        Some(match self {
            Step::StartDownload(_) => "after-persist:start-download",
            Step::Verified => "after-persist:verified",
            Step::Swapped => "after-persist:swapped",
            Step::Restarting => "after-persist:restarting",
            Step::Started => "after-persist:started",
            Step::Healthy => "after-persist:healthy",
            Step::Unhealthy(_) => "after-persist:unhealthy",
            Step::RolledBack => "after-persist:rolled-back",
            Step::Abandon => "after-persist:abandon",
            Step::PreviousUnhealthy(_)
            | Step::Release
            | Step::OperatorRollback
            | Step::Refused { .. }
            | Step::Failed { .. }
            | Step::KeysRotated(_)
            | Step::Floors { .. }
            | Step::ManifestSeen(_)
            | Step::AttemptFrom(_)
            | Step::Switch(_)
            | Step::Wait(_)
            | Step::ReportQueued => return None,
        })
    }

    /// The outcome this step ends an attempt with, if it ends one: what
    /// `status` shows as the last result and what is reported.
    pub fn ending(&self) -> Option<ReportOutcome> {
        match self {
            Step::Healthy => Some(ReportOutcome::Committed),
            Step::RolledBack => Some(ReportOutcome::RolledBack),
            Step::PreviousUnhealthy(_) => Some(ReportOutcome::Hold),
            Step::Refused { .. } => Some(ReportOutcome::Refused),
            Step::Failed { .. } => Some(ReportOutcome::Error),
            Step::StartDownload(_)
            | Step::Verified
            | Step::Swapped
            | Step::Restarting
            | Step::Started
            | Step::Unhealthy(_)
            | Step::Abandon
            | Step::Release
            | Step::OperatorRollback
            | Step::KeysRotated(_)
            | Step::Floors { .. }
            | Step::ManifestSeen(_)
            | Step::AttemptFrom(_)
            | Step::Switch(_)
            | Step::Wait(_)
            | Step::ReportQueued => None,
        }
    }
}

impl Phase {
    /// The stable name shown in `status` and the journal.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Downloading { .. } => "downloading",
            Phase::Verified { .. } => "verified",
            Phase::Installed { .. } => "installed",
            Phase::Restarting { .. } => "restarting",
            Phase::Probation { .. } => "probation",
            Phase::RollingBack { .. } => "rolling_back",
            Phase::Hold { .. } => "hold",
        }
    }
}

/// A release that must not be installed again until a higher serial appears.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Denied {
    /// Its version.
    pub version: String,
    /// Its artifact's SHA-256.
    pub sha256: String,
    /// The serial it came with.
    pub serial: u64,
    /// Why it was denied.
    pub reason: String,
}

/// The outcome of the last update attempt, for `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastResult {
    /// Unix seconds.
    pub at: u64,
    /// `committed`, `rolled_back`, `refused`, `hold`, `error`, `up_to_date`
    /// (the names `state.json` always had).
    pub outcome: ReportOutcome,
    /// Version concerned, if any.
    pub version: Option<String>,
    /// Details.
    pub message: String,
}

/// Everything persisted about one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppState {
    /// Schema.
    pub schema: u32,
    /// App name.
    pub app: String,
    /// What `current` points at.
    pub current: Option<Release>,
    /// What `previous` points at.
    pub previous: Option<Release>,
    /// Highest manifest serial accepted (replay protection).
    pub last_serial: u64,
    /// Newest `published_at` seen, never beyond the clock plus a small skew:
    /// a clock before it is unset (boards boot in 1970).
    pub last_published_at: u64,
    /// SHA-256 of the channel manifest whose outcome is final: while the
    /// app's role names the same one, a poll has nothing to do.
    #[serde(default)]
    pub manifest_sha256: Option<String>,
    /// SHA-256 of the channel manifest the attempt in progress came from
    /// (`None`: an operator's file): when an operator's install supersedes
    /// it, that manifest counts as seen, so the next poll does not undo it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_manifest: Option<String>,
    /// The app's release keys (sorted ids and threshold) the floors above
    /// were raised under: when the repository rotates them, the floors a
    /// leaked key could have pushed up start again.
    #[serde(default)]
    pub release_keys: Vec<String>,
    /// Channel followed instead of the configured one (`ferryd switch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Releases not to retry.
    pub denied: Vec<Denied>,
    /// The update in progress.
    #[serde(flatten)]
    pub phase: Phase,
    /// How often the target was started without an outcome (survives
    /// reboots): a release that takes the agent or the board down at each
    /// start is rolled back after [`MAX_STARTS`], not retried forever.
    pub attempts: u32,
    /// Why a verified release is not installed yet (an install window, an
    /// inhibitor), while it waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// The last outcome.
    pub last_result: Option<LastResult>,
    /// The report of the last outcome until it is in the report queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_report: Option<ferry_format::report::Report>,
}

/// Events that move the machine.
#[derive(Debug, Clone)]
pub enum Step {
    /// A download of `target` starts.
    StartDownload(Release),
    /// The download is complete and verified and stored.
    Verified,
    /// `current` now points at the target.
    Swapped,
    /// The restart job was issued.
    Restarting,
    /// The restart finished; probation starts.
    Started,
    /// Probation passed.
    Healthy,
    /// The target failed.
    Unhealthy(String),
    /// The previous release runs healthy again.
    RolledBack,
    /// The previous release is unhealthy too.
    PreviousUnhealthy(String),
    /// Abandon the attempt without touching `current` (refused download etc.).
    Abandon,
    /// Leave `hold` on an operator's command (install or rollback).
    Release,
    /// An operator asks to go back to the previous release.
    OperatorRollback,
    /// What the repository offers was refused (nothing was touched).
    Refused {
        /// The version concerned, if known.
        version: Option<String>,
        /// Why.
        message: String,
    },
    /// The attempt failed on the way (network, disk) before installing.
    Failed {
        /// The version concerned, if known.
        version: Option<String>,
        /// Why.
        message: String,
    },
    /// The app's release keys changed: the floors they raised start again.
    KeysRotated(Vec<String>),
    /// A verified manifest raises the replay and clock floors.
    Floors {
        /// Its serial.
        serial: u64,
        /// Its publication time, already capped at the clock plus a skew.
        published_at: u64,
    },
    /// The channel manifest with this hash needs no more work (`None`:
    /// look at the channel again on the next poll).
    ManifestSeen(Option<String>),
    /// The attempt about to start comes from the channel manifest with this
    /// hash, which counts as unseen until the attempt's outcome is final
    /// (`None`: from an operator's file, the channel's manifest stays seen).
    AttemptFrom(Option<String>),
    /// Follow another channel (`None`: the configured one) from the next poll.
    Switch(Option<String>),
    /// A verified release waits (`Some(why)`), or no longer does.
    Wait(Option<String>),
    /// The pending report is in the queue.
    ReportQueued,
}

/// A transition that the current phase does not allow.
#[derive(Debug, thiserror::Error)]
#[error("state `{phase}` does not allow step {step}")]
pub struct IllegalTransition {
    phase: &'static str,
    step: String,
}

impl AppState {
    /// The state of an app the agent has never touched.
    pub fn new(app: &str) -> Self {
        Self {
            schema: STATE_SCHEMA,
            app: app.to_owned(),
            current: None,
            previous: None,
            last_serial: 0,
            last_published_at: 0,
            manifest_sha256: None,
            attempt_manifest: None,
            release_keys: Vec::new(),
            channel: None,
            denied: Vec::new(),
            phase: Phase::Idle,
            attempts: 0,
            waiting: None,
            last_result: None,
            pending_report: None,
        }
    }

    /// The release the phase is about, if any.
    pub fn phase_target(&self) -> Option<&Release> {
        match &self.phase {
            Phase::Downloading { target }
            | Phase::Verified { target }
            | Phase::Installed { target }
            | Phase::Restarting { target }
            | Phase::Probation { target }
            | Phase::RollingBack { target, .. } => Some(target),
            Phase::Idle | Phase::Hold { .. } => None,
        }
    }

    /// Whether this release is on the deny list.
    pub fn is_denied(&self, sha256: &str, serial: u64) -> bool {
        self.denied
            .iter()
            .any(|d| d.sha256 == sha256 && d.serial >= serial)
    }

    /// Applies `step`, returning the new state (the caller persists it).
    pub fn apply(&self, step: Step) -> Result<AppState, IllegalTransition> {
        let mut next = self.clone();
        let illegal = || IllegalTransition {
            phase: self.phase.name(),
            step: format!("{step:?}"),
        };
        next.phase = match (&self.phase, step.clone()) {
            // Bookkeeping, in any phase: it moves no binary.
            (_, Step::KeysRotated(ids)) => {
                next.last_serial = 0;
                next.last_published_at = 0;
                next.manifest_sha256 = None;
                next.release_keys = ids;
                self.phase.clone()
            }
            (
                _,
                Step::Floors {
                    serial,
                    published_at,
                },
            ) => {
                next.last_serial = next.last_serial.max(serial);
                next.last_published_at = next.last_published_at.max(published_at);
                self.phase.clone()
            }
            (_, Step::ManifestSeen(sha)) => {
                next.manifest_sha256 = sha;
                self.phase.clone()
            }
            (Phase::Idle, Step::AttemptFrom(manifest)) => {
                if manifest.is_some() {
                    next.manifest_sha256 = None;
                }
                next.attempt_manifest = manifest;
                Phase::Idle
            }
            (_, Step::ReportQueued) => {
                next.pending_report = None;
                self.phase.clone()
            }
            (Phase::Verified { .. }, Step::Wait(why)) => {
                next.waiting = why;
                self.phase.clone()
            }
            (Phase::Idle | Phase::Hold { .. }, Step::Switch(channel)) => {
                next.channel = channel;
                next.last_serial = 0;
                next.manifest_sha256 = None;
                self.phase.clone()
            }
            (Phase::Idle, Step::Refused { .. } | Step::Failed { .. }) => Phase::Idle,
            // An operator's file refused while held: the hold stays.
            (Phase::Hold { reason }, Step::Refused { .. }) => Phase::Hold {
                reason: reason.clone(),
            },
            (Phase::Idle, Step::StartDownload(target)) => {
                next.attempts = 0;
                Phase::Downloading { target }
            }
            (Phase::Downloading { target }, Step::Verified) => Phase::Verified {
                target: target.clone(),
            },
            (Phase::Downloading { .. } | Phase::Verified { .. }, Step::Abandon) => {
                next.waiting = None;
                Phase::Idle
            }
            (Phase::Verified { target }, Step::Swapped) => {
                next.waiting = None;
                next.previous = self.current.clone();
                next.current = Some(target.clone());
                Phase::Installed {
                    target: target.clone(),
                }
            }
            // After a crash in any of these, the restart and the whole
            // probation are done again; each start counts.
            (
                Phase::Installed { target }
                | Phase::Restarting { target }
                | Phase::Probation { target },
                Step::Restarting,
            ) => {
                next.attempts += 1;
                Phase::Restarting {
                    target: target.clone(),
                }
            }
            (Phase::Restarting { target }, Step::Started) => Phase::Probation {
                target: target.clone(),
            },
            (Phase::Probation { target }, Step::Healthy) => {
                if target.serial > next.last_serial {
                    next.last_serial = target.serial;
                }
                next.attempts = 0;
                Phase::Idle
            }
            (
                Phase::Installed { target }
                | Phase::Restarting { target }
                | Phase::Probation { target },
                Step::Unhealthy(reason),
            ) => Phase::RollingBack {
                target: target.clone(),
                reason,
            },
            (Phase::RollingBack { target, reason }, Step::RolledBack) => {
                next.denied.push(Denied {
                    version: target.version.clone(),
                    sha256: target.sha256.clone(),
                    serial: target.serial,
                    reason: reason.clone(),
                });
                // `current` goes back to what `previous` was.
                next.current = self.previous.clone();
                next.attempts = 0;
                Phase::Idle
            }
            (Phase::RollingBack { target, .. }, Step::PreviousUnhealthy(reason)) => {
                next.denied.push(Denied {
                    version: target.version.clone(),
                    sha256: target.sha256.clone(),
                    serial: target.serial,
                    reason: reason.clone(),
                });
                next.current = self.previous.clone();
                next.attempts = 0;
                Phase::Hold { reason }
            }
            (Phase::Hold { .. }, Step::Release) => Phase::Idle,
            // After a rollback `previous` names the release now current:
            // going "back" to it again would deny the healthy one.
            (Phase::Idle | Phase::Hold { .. }, Step::OperatorRollback) => match &self.current {
                Some(current)
                    if self
                        .previous
                        .as_ref()
                        .is_some_and(|p| p.sha256 != current.sha256) =>
                {
                    Phase::RollingBack {
                        target: current.clone(),
                        reason: "rolled back by the operator".into(),
                    }
                }
                _ => return Err(illegal()),
            },
            (
                Phase::Idle
                | Phase::Downloading { .. }
                | Phase::Verified { .. }
                | Phase::Installed { .. }
                | Phase::Restarting { .. }
                | Phase::Probation { .. }
                | Phase::RollingBack { .. }
                | Phase::Hold { .. },
                _,
            ) => return Err(illegal()),
        };
        Ok(next)
    }

    /// Reads `state.json`; a missing file is a fresh state.
    pub fn load(path: &Path, app: &str) -> Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let s: Self = serde_json::from_slice(&bytes)
                    .with_context(|| format!("state file `{}` is corrupt", path.display()))?;
                if s.schema != STATE_SCHEMA || s.app != app {
                    anyhow::bail!(
                        "state file `{}` is for another app or schema",
                        path.display()
                    );
                }
                Ok(s)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::new(app)),
            Err(e) => Err(e).with_context(|| format!("cannot read `{}`", path.display())),
        }
    }

    /// Writes `state.json` durably (never half-written).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("state holds only plain values");
        bytes.push(b'\n');
        ferry_fsutil::write_atomic(path, &bytes, 0o644)
            .with_context(|| format!("cannot write `{}`", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(v: &str, serial: u64) -> Release {
        let sha = format!("{:0>64}", serial);
        Release {
            version: v.into(),
            serial,
            dir: Release::dir_name(v, &sha),
            sha256: sha,
            size: 1,
        }
    }

    #[test]
    fn happy_path_commits_and_records_serial() {
        let s = AppState::new("a");
        let s = s.apply(Step::StartDownload(rel("1", 1))).unwrap();
        let s = s.apply(Step::Verified).unwrap();
        let s = s.apply(Step::Swapped).unwrap();
        assert_eq!(s.current.as_ref().unwrap().version, "1");
        let s = s
            .apply(Step::Restarting)
            .unwrap()
            .apply(Step::Started)
            .unwrap();
        let s = s.apply(Step::Healthy).unwrap();
        assert_eq!(
            (s.phase.clone(), s.last_serial, s.attempts),
            (Phase::Idle, 1, 0)
        );
    }

    #[test]
    fn failure_rolls_back_and_denies() {
        let mut s = AppState::new("a");
        for (v, serial) in [("1", 1), ("2", 2)] {
            s = s.apply(Step::StartDownload(rel(v, serial))).unwrap();
            s = s
                .apply(Step::Verified)
                .unwrap()
                .apply(Step::Swapped)
                .unwrap();
            s = s
                .apply(Step::Restarting)
                .unwrap()
                .apply(Step::Started)
                .unwrap();
            if v == "1" {
                s = s.apply(Step::Healthy).unwrap();
            }
        }
        let s = s.apply(Step::Unhealthy("exit 3".into())).unwrap();
        let back = s.apply(Step::RolledBack).unwrap();
        assert_eq!(back.current.as_ref().unwrap().version, "1");
        assert!(back.is_denied(&rel("2", 2).sha256, 2));
        assert!(
            !back.is_denied(&rel("2", 2).sha256, 3),
            "a higher serial may retry"
        );
        let hold = s.apply(Step::PreviousUnhealthy("also bad".into())).unwrap();
        assert!(matches!(hold.phase, Phase::Hold { .. }));
        assert!(
            hold.apply(Step::StartDownload(rel("3", 3))).is_err(),
            "hold does not flap"
        );
        assert!(matches!(
            hold.apply(Step::Release).unwrap().phase,
            Phase::Idle
        ));
    }

    #[test]
    fn an_attempt_remembers_its_manifest_and_a_file_keeps_the_channels_seen() {
        let mut s = AppState::new("a");
        s.manifest_sha256 = Some("m1".into());
        let from_channel = s.apply(Step::AttemptFrom(Some("m2".into()))).unwrap();
        assert_eq!(from_channel.manifest_sha256, None);
        assert_eq!(from_channel.attempt_manifest.as_deref(), Some("m2"));
        let from_file = s.apply(Step::AttemptFrom(None)).unwrap();
        assert_eq!(from_file.manifest_sha256.as_deref(), Some("m1"));
        assert_eq!(from_file.attempt_manifest, None);
    }

    #[test]
    fn a_crash_during_probation_restarts_the_probation() {
        let s = AppState::new("a")
            .apply(Step::StartDownload(rel("1", 1)))
            .unwrap()
            .apply(Step::Verified)
            .unwrap()
            .apply(Step::Swapped)
            .unwrap()
            .apply(Step::Restarting)
            .unwrap()
            .apply(Step::Started)
            .unwrap();
        let again = s.apply(Step::Restarting).unwrap();
        assert!(matches!(again.phase, Phase::Restarting { .. }));
        assert!(matches!(
            again.apply(Step::Started).unwrap().phase,
            Phase::Probation { .. }
        ));
    }

    #[test]
    fn illegal_steps_are_errors_and_state_round_trips() {
        let s = AppState::new("a");
        assert!(s.apply(Step::Swapped).is_err());
        assert!(s.apply(Step::Healthy).is_err());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        let s = s.apply(Step::StartDownload(rel("1", 1))).unwrap();
        s.save(&p).unwrap();
        assert_eq!(AppState::load(&p, "a").unwrap(), s);
        assert!(AppState::load(&p, "b").is_err());
        std::fs::write(&p, "{").unwrap();
        assert!(AppState::load(&p, "a").is_err());
    }
}
