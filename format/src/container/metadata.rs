//! The container's metadata: what the binary is, as JSON between payload and
//! trailer. Validated on read so later code (cache paths, trusted comments,
//! log fields) can rely on its strings being safe.

use serde::{Deserialize, Serialize};

use super::ContainerError;

/// Largest metadata accepted, checked before reading it.
pub const MAX_METADATA_LEN: u64 = 1024 * 1024;

/// How the payload's Python runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PythonMode {
    /// The payload carries its interpreter.
    Standalone,
    /// The target's matching `python3.X` runs the payload.
    System,
}

/// The Python a payload was built for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PythonInfo {
    /// `standalone` or `system`.
    pub mode: PythonMode,
    /// Full version of the build interpreter, e.g. `3.11.7`.
    pub version: String,
    /// Interpreter path inside the payload (standalone), e.g. `python/bin/python3.11`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
}

/// Metadata of a ferry binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Container format version; equals the trailer's.
    pub format_version: u32,
    /// Application name: `[A-Za-z0-9._-]`, at most 128 bytes, not starting with `.`.
    pub name: String,
    /// Application version: printable, no whitespace, at most 128 bytes.
    pub version: String,
    /// What the launcher runs, e.g. `simple_api.app:main`.
    pub entry_point: String,
    /// The Python the payload runs on, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<PythonInfo>,
    /// Lowercase hex SHA-256 of the payload bytes.
    pub build_id: String,
    /// Build time, seconds since the Unix epoch (`SOURCE_DATE_EPOCH` when set).
    pub created_at: u64,
    /// Version of the launcher at the head of the file.
    pub launcher_version: String,
    /// Oldest glibc the payload's native code needs, e.g. `2.34`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glibc_floor: Option<String>,
}

fn check(ok: bool, what: &str, value: &str, rule: &str) -> Result<(), ContainerError> {
    if ok {
        Ok(())
    } else {
        Err(ContainerError::Metadata(format!(
            "{what} `{}` {rule}",
            value.escape_default()
        )))
    }
}

/// Whether `name` is a safe application name (also used for paths and units).
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether `version` is a safe version string.
pub fn is_valid_version(version: &str) -> bool {
    !version.is_empty()
        && version.len() <= 128
        && version.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
}

impl Metadata {
    /// Parses and validates metadata JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ContainerError> {
        let meta: Self = serde_json::from_slice(bytes)
            .map_err(|e| ContainerError::Metadata(format!("not valid metadata JSON: {e}")))?;
        meta.validate()?;
        Ok(meta)
    }

    /// The JSON form written into containers (field order fixed, so reproducible).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("metadata holds only strings and integers")
    }

    /// Checks every field's rule.
    pub fn validate(&self) -> Result<(), ContainerError> {
        check(
            is_valid_name(&self.name),
            "name",
            &self.name,
            "must be 1-128 of A-Z a-z 0-9 . _ - and not start with `.`",
        )?;
        check(
            is_valid_version(&self.version),
            "version",
            &self.version,
            "must be 1-128 printable characters without spaces or `/`",
        )?;
        check(
            !self.entry_point.is_empty()
                && self.entry_point.len() <= 1024
                && !self.entry_point.contains(['\n', '\r', '\t', '\0']),
            "entry point",
            &self.entry_point,
            "must be one line of at most 1024 bytes",
        )?;
        check(
            self.build_id.len() == 64
                && self
                    .build_id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "build id",
            &self.build_id,
            "must be 64 lowercase hex digits",
        )?;
        check(
            is_valid_version(&self.launcher_version),
            "launcher version",
            &self.launcher_version,
            "must be printable without spaces",
        )?;
        if let Some(py) = &self.python {
            check(
                is_valid_version(&py.version),
                "python version",
                &py.version,
                "must be printable without spaces",
            )?;
            if let Some(exe) = &py.executable {
                check(
                    !exe.is_empty()
                        && !exe.starts_with('/')
                        && !exe.split('/').any(|c| c == ".." || c.is_empty()),
                    "python executable",
                    exe,
                    "must be a relative path inside the payload",
                )?;
            }
        }
        if let Some(floor) = &self.glibc_floor {
            check(
                is_valid_version(floor),
                "glibc floor",
                floor,
                "must be printable without spaces",
            )?;
        }
        Ok(())
    }
}
