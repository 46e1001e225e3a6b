//! Status reports: what an agent tells a collector after each update
//! attempt, as one JSON object per POST (and one line in the collector's
//! file). Shared by the agent, which sends them, and the packager's `ferry
//! collect` and `ferry fleet status`, which store and read them; the format is
//! specified in `docs/reports.md`.

use serde::{Deserialize, Serialize};

/// What an update attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The new version runs and was kept.
    Committed,
    /// The new version failed its health check; the old one runs again.
    RolledBack,
    /// The release was refused (signature, expiry, agent version, …).
    Refused,
    /// The agent stopped acting: the release and the previous version were
    /// both unhealthy (`hold` in `ferryd status`).
    Hold,
    /// The attempt failed before installing anything.
    Error,
    /// The device already runs the channel's release.
    UpToDate,
}

impl Outcome {
    /// The name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Committed => "committed",
            Outcome::RolledBack => "rolled_back",
            Outcome::Refused => "refused",
            Outcome::Hold => "hold",
            Outcome::Error => "error",
            Outcome::UpToDate => "up_to_date",
        }
    }
}

/// One status report of an agent, as posted and as stored (one per line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Unique per report (`<device_id>-<app>-<nanos or counter>`), for deduplication.
    pub id: String,
    /// The device.
    pub device_id: String,
    /// The app.
    pub app: String,
    /// The channel the device follows.
    pub channel: String,
    /// Version before the attempt.
    pub from: Option<String>,
    /// Version the attempt was about.
    pub to: Option<String>,
    /// What it came to.
    pub result: Outcome,
    /// Why, for `error`, `refused` and `rolled_back`.
    pub error: Option<String>,
    /// Serial of the manifest acted on.
    pub serial: Option<u64>,
    /// When, Unix seconds.
    pub at: u64,
    /// The agent's version.
    pub agent_version: String,
}
