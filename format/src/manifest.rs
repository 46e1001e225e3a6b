//! The release manifest: what a channel of an app currently offers, as JSON in
//! the static update repository (`apps/<app>/<channel>.json`), signed by a
//! detached minisign signature (`….json.minisig`). `docs/repository.md` is its
//! specification.
//!
//! Manifests come from the network: they are size-capped before parsing, parsed
//! strictly (unknown fields, duplicate keys and wrong types are errors) and
//! validated once here, so the agent past this point trusts their shape.

use serde::{Deserialize, Serialize};

use crate::container::{is_valid_name, is_valid_version};
use crate::trusted_comment::TrustedComment;

/// Largest manifest accepted, checked before parsing.
pub const MAX_MANIFEST_LEN: usize = 64 * 1024;
/// The schema this crate writes and reads.
pub const SCHEMA: u32 = 1;

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
    /// Any other single file.
    File,
}

/// The artifact a release points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// Repository-relative path, `blobs/sha256/<hex>`.
    pub path: String,
    /// Lowercase hex SHA-256 of the artifact.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
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
    /// The file to install.
    pub artifact: Artifact,
    /// Publication time, Unix seconds.
    pub published_at: u64,
    /// After this time (Unix seconds) the manifest is stale and refused.
    pub expires_at: u64,
    /// Rollout state.
    pub rollout: Rollout,
    /// Oldest agent version that may install this release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_agent_version: Option<String>,
    /// Free text for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ManifestError {
    ManifestError::Invalid {
        field,
        reason: reason.into(),
    }
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
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
        if !is_hex64(&self.artifact.sha256) {
            return Err(invalid(
                "artifact.sha256",
                "must be 64 lowercase hex digits",
            ));
        }
        if self.artifact.path != format!("blobs/sha256/{}", self.artifact.sha256) {
            return Err(invalid(
                "artifact.path",
                "must be `blobs/sha256/<artifact.sha256>`",
            ));
        }
        if self.rollout.percent > 100 {
            return Err(invalid("rollout.percent", "must be 0-100"));
        }
        if self.expires_at <= self.published_at {
            return Err(invalid("expires_at", "must be after published_at"));
        }
        if let Some(v) = &self.min_agent_version {
            if !is_valid_version(v) {
                return Err(invalid("min_agent_version", "must be a version"));
            }
        }
        if self.notes.as_ref().is_some_and(|n| n.len() > 4096) {
            return Err(invalid("notes", "longer than 4096 bytes"));
        }
        Ok(())
    }

    /// The trusted comment of the manifest's signature: what it is about, so
    /// the signature cannot be moved onto another app, channel or serial.
    pub fn trusted_comment(&self) -> TrustedComment {
        // Validated names and versions hold no tabs or newlines.
        TrustedComment::new()
            .with("timestamp", self.published_at)
            .and_then(|c| c.with("app", &self.app))
            .and_then(|c| c.with("channel", &self.channel))
            .and_then(|c| c.with("serial", self.serial))
            .and_then(|c| c.with("version", &self.version))
            .expect("validated manifest fits a trusted comment")
    }

    /// Whether a signature's trusted comment names this manifest's app,
    /// channel and serial.
    pub fn matches_comment(&self, comment: &str) -> bool {
        let c = TrustedComment::parse(comment);
        c.get("app") == Some(self.app.as_str())
            && c.get("channel") == Some(self.channel.as_str())
            && c.get("serial") == Some(self.serial.to_string().as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let sha = "ab".repeat(32);
        Manifest {
            schema: SCHEMA,
            app: "demo".into(),
            channel: "stable".into(),
            serial: 3,
            version: "1.2.0".into(),
            artifact: Artifact {
                path: format!("blobs/sha256/{sha}"),
                sha256: sha,
                size: 10,
                kind: ArtifactKind::Ferry,
            },
            published_at: 1_700_000_000,
            expires_at: 1_702_592_000,
            rollout: Rollout {
                percent: 100,
                halted: false,
            },
            min_agent_version: None,
            notes: Some("first".into()),
        }
    }

    #[test]
    fn round_trip() {
        let m = sample();
        assert_eq!(Manifest::from_json(&m.to_json()).unwrap(), m);
        assert!(m.matches_comment(&m.trusted_comment().to_string()));
        let mut other = m.clone();
        other.serial = 4;
        assert!(!other.matches_comment(&m.trusted_comment().to_string()));
    }

    #[test]
    fn refuses_bad_input() {
        let good = String::from_utf8(sample().to_json()).unwrap();
        let cases = [
            good.replace("\"schema\": 1", "\"schema\": 2"),
            good.replace("\"serial\": 3", "\"serial\": \"3\""),
            good.replace("\"serial\": 3", "\"serial\": 3, \"serial\": 4"),
            good.replace("\"notes\"", "\"extra\": 1, \"notes\""),
            good.replace("\"percent\": 100", "\"percent\": 101"),
            good.replace("\"app\": \"demo\"", "\"app\": \"../x\""),
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
