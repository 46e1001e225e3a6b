//! The release manifest: what a channel of an app currently offers, as JSON
//! in the static update repository. It is a TUF target (`<app>/<channel>.json`)
//! of the app's delegated role, so its hash and size are signed by the app's
//! release keys and its freshness by the timestamp role; it carries no
//! signature of its own. `docs/repository.md` is its specification.
//!
//! Manifests come from the network: they are size-capped before parsing, parsed
//! strictly (unknown fields, duplicate keys and wrong types are errors) and
//! validated once here, so the agent past this point trusts their shape.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::container::{is_valid_name, is_valid_version};
use crate::tuf::layout::{artifact_target, is_safe_target_path};

/// Largest manifest accepted, checked before parsing.
pub const MAX_MANIFEST_LEN: usize = 64 * 1024;
/// The schema this crate writes and reads.
pub const SCHEMA: u32 = 2;

/// The targets (Debian multiarch triples) a release can carry an artifact for.
pub const TARGETS: [&str; 3] = [
    "x86_64-linux-gnu",
    "aarch64-linux-gnu",
    "arm-linux-gnueabihf",
];

/// The target this program was built for.
pub fn host_target() -> &'static str {
    if cfg!(target_arch = "aarch64") {
        "aarch64-linux-gnu"
    } else if cfg!(target_arch = "arm") {
        "arm-linux-gnueabihf"
    } else {
        "x86_64-linux-gnu"
    }
}

/// Errors of reading a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Larger than [`MAX_MANIFEST_LEN`].
    #[error("manifest is {0} bytes, more than the limit of {MAX_MANIFEST_LEN}")]
    TooLarge(usize),
    /// Not JSON of the manifest's shape.
    #[error("manifest is not valid: {0}")]
    Malformed(String),
    /// A schema this version does not read.
    #[error("manifest schema {0} is not supported (this ferry reads schema {SCHEMA}); upgrade")]
    UnsupportedSchema(u32),
    /// A field breaks its rule.
    #[error("manifest field `{field}` is invalid: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// What kind of file the artifact is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactKind {
    /// A ferry binary with an embedded signature.
    Ferry,
    /// Any other single file (devices take it only when configured to).
    File,
}

/// One target's artifact of a release: a TUF target of the app's role, whose
/// size and SHA-256 that role signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// The TUF target path, `<app>/<version>/<target>/<app>`.
    pub target: String,
    /// `ferry` or `file`.
    pub kind: ArtifactKind,
}

/// Phased rollout state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    /// Share of devices that take the release, 0–100.
    pub percent: u8,
    /// When set, no further device takes the release.
    pub halted: bool,
}

/// A release manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Schema version.
    pub schema: u32,
    /// App name.
    pub app: String,
    /// Channel, e.g. `stable`.
    pub channel: String,
    /// Strictly increasing per app and channel.
    pub serial: u64,
    /// Version of the release.
    pub version: String,
    /// Target triple → artifact; room for more fields per artifact (a chunk
    /// index for deltas) in later schemas.
    pub artifacts: BTreeMap<String, Artifact>,
    /// Publication time, Unix seconds.
    pub published_at: u64,
    /// Rollout state.
    pub rollout: Rollout,
    /// Oldest agent version that may install this release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_agent_version: Option<String>,
    /// Free text for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// Where people read more about the release (an https:// or http:// page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ManifestError {
    ManifestError::Invalid {
        field,
        reason: reason.into(),
    }
}

impl Manifest {
    /// Parses and validates manifest bytes from an untrusted source.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.len() > MAX_MANIFEST_LEN {
            return Err(ManifestError::TooLarge(bytes.len()));
        }
        // Schema first, so a newer manifest gets "upgrade", not "unknown field".
        #[derive(Deserialize)]
        struct SchemaOnly {
            schema: u32,
        }
        let schema: SchemaOnly =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Malformed(e.to_string()))?;
        if schema.schema != SCHEMA {
            return Err(ManifestError::UnsupportedSchema(schema.schema));
        }
        let m: Self =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Malformed(e.to_string()))?;
        m.validate()?;
        Ok(m)
    }

    /// The JSON written to the repository (pretty, for people reading it).
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("manifest holds only plain values");
        v.push(b'\n');
        v
    }

    /// The artifact for `target`, if the release carries one.
    pub fn artifact_for(&self, target: &str) -> Option<&Artifact> {
        self.artifacts.get(target)
    }

    /// Checks every field's rule.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if !is_valid_name(&self.app) {
            return Err(invalid(
                "app",
                format!("`{}` is not a valid app name", self.app.escape_default()),
            ));
        }
        if !is_valid_name(&self.channel) {
            return Err(invalid(
                "channel",
                format!(
                    "`{}` is not a valid channel name",
                    self.channel.escape_default()
                ),
            ));
        }
        if !is_valid_version(&self.version) {
            return Err(invalid(
                "version",
                format!("`{}` is not a valid version", self.version.escape_default()),
            ));
        }
        if self.serial == 0 {
            return Err(invalid("serial", "must be at least 1"));
        }
        if self.artifacts.is_empty() {
            return Err(invalid("artifacts", "lists no artifact"));
        }
        for (target, artifact) in &self.artifacts {
            if !is_valid_name(target) {
                return Err(invalid(
                    "artifacts",
                    format!("`{}` is not a valid target", target.escape_default()),
                ));
            }
            let expected = artifact_target(&self.app, &self.version, target);
            if artifact.target != expected || !is_safe_target_path(&artifact.target) {
                return Err(invalid(
                    "artifacts",
                    format!("the {target} artifact must be the target `{expected}`"),
                ));
            }
        }
        if self.rollout.percent > 100 {
            return Err(invalid("rollout.percent", "must be 0-100"));
        }
        if let Some(v) = &self.min_agent_version {
            if !is_valid_version(v) {
                return Err(invalid("min_agent_version", "must be a version"));
            }
        }
        if self.notes.as_ref().is_some_and(|n| n.len() > 4096) {
            return Err(invalid("notes", "longer than 4096 bytes"));
        }
        if let Some(url) = &self.url {
            let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
            if !scheme_ok || url.len() > 2048 || url.chars().any(char::is_whitespace) {
                return Err(invalid(
                    "url",
                    "must be an http(s):// address without spaces, at most 2048 bytes",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            schema: SCHEMA,
            app: "demo".into(),
            channel: "stable".into(),
            serial: 3,
            version: "1.2.0".into(),
            artifacts: BTreeMap::from([(
                "x86_64-linux-gnu".to_owned(),
                Artifact {
                    target: "demo/1.2.0/x86_64-linux-gnu/demo".into(),
                    kind: ArtifactKind::Ferry,
                },
            )]),
            published_at: 1_700_000_000,
            rollout: Rollout {
                percent: 100,
                halted: false,
            },
            min_agent_version: None,
            notes: Some("first".into()),
            url: None,
        }
    }

    #[test]
    fn round_trip() {
        let m = sample();
        assert_eq!(Manifest::from_json(&m.to_json()).unwrap(), m);
        assert!(m.artifact_for("x86_64-linux-gnu").is_some());
        assert!(m.artifact_for("aarch64-linux-gnu").is_none());
    }

    #[test]
    fn refuses_bad_input() {
        let good = String::from_utf8(sample().to_json()).unwrap();
        let cases = [
            good.replace("\"schema\": 2", "\"schema\": 1"),
            good.replace("\"serial\": 3", "\"serial\": \"3\""),
            good.replace("\"serial\": 3", "\"serial\": 3, \"serial\": 4"),
            good.replace("\"notes\"", "\"extra\": 1, \"notes\""),
            good.replace("\"percent\": 100", "\"percent\": 101"),
            good.replace("\"app\": \"demo\"", "\"app\": \"../x\""),
            good.replace(
                "demo/1.2.0/x86_64-linux-gnu/demo",
                "other/1.2.0/x86_64-linux-gnu/demo",
            ),
            "{".repeat(10_000),
            "not json".into(),
        ];
        for c in cases {
            assert!(
                Manifest::from_json(c.as_bytes()).is_err(),
                "accepted: {}",
                &c[..c.len().min(200)]
            );
        }
        assert!(matches!(
            Manifest::from_json(&vec![b' '; MAX_MANIFEST_LEN + 1]),
            Err(ManifestError::TooLarge(_))
        ));
    }
}
