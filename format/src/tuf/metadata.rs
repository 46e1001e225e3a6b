//! The four TUF roles' documents (specification 1.0), as python-tuf and
//! go-tuf read them: `root`, `timestamp`, `snapshot`, `targets` (top-level and
//! delegated). Fields ferry does not use are kept out; unknown fields in what
//! is read are tolerated, as the specification asks, and stay covered by the
//! signature because signatures are checked over the document as received.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::canonical::to_canonical;
use crate::digest::sha256_hex;
use crate::PublicKey;

/// The specification version ferry writes.
pub const SPEC_VERSION: &str = "1.0.31";

/// A role's public key; ferry uses Ed25519 only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    /// `ed25519`.
    pub keytype: String,
    /// `ed25519`.
    pub scheme: String,
    /// The key material.
    pub keyval: KeyVal,
}

/// A key's material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyVal {
    /// 64 lowercase hex digits: the raw Ed25519 public key.
    pub public: String,
}

impl Key {
    /// The TUF form of a minisign public key (the same Ed25519 key).
    pub fn from_public(pk: &PublicKey) -> Key {
        Key {
            keytype: "ed25519".into(),
            scheme: "ed25519".into(),
            keyval: KeyVal {
                public: hex::encode(pk.verifying_key().as_bytes()),
            },
        }
    }

    /// The key id: SHA-256 of the key's canonical JSON, as securesystemslib
    /// computes it.
    pub fn id(&self) -> String {
        let value = serde_json::to_value(self).expect("a key is plain strings");
        let canonical = to_canonical(&value).expect("a key has no numbers");
        sha256_hex(&canonical)
    }

    /// The Ed25519 key, if this is one ferry can check.
    pub fn ed25519(&self) -> Option<ed25519_dalek::VerifyingKey> {
        if self.keytype != "ed25519" || self.scheme != "ed25519" {
            return None;
        }
        let raw: [u8; 32] = hex::decode(&self.keyval.public).ok()?.try_into().ok()?;
        ed25519_dalek::VerifyingKey::from_bytes(&raw).ok()
    }

    /// This key as a minisign public key with the key id `id` (which a
    /// minisign signature names; TUF keys carry none).
    pub fn to_public(&self, id: crate::KeyId) -> Option<PublicKey> {
        Some(PublicKey::from_ed25519(id, self.ed25519()?))
    }

    /// Whether this is the same Ed25519 key as a minisign public key.
    pub fn is(&self, pk: &PublicKey) -> bool {
        self.ed25519().as_ref() == Some(pk.verifying_key())
    }
}

/// Which keys sign a role, and how many of them must.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleKeys {
    /// Ids of the keys in the document's `keys`.
    pub keyids: Vec<String>,
    /// Signatures needed, at least 1.
    pub threshold: u32,
}

/// The common head of every role's document.
pub trait RoleDoc: Serialize + for<'de> Deserialize<'de> {
    /// The `_type` value.
    const TYPE: &'static str;
    /// The document's version.
    fn version(&self) -> u64;
    /// The document's expiry, as written.
    fn expires(&self) -> &str;
}

macro_rules! role_doc {
    ($t:ty, $name:literal) => {
        impl RoleDoc for $t {
            const TYPE: &'static str = $name;
            fn version(&self) -> u64 {
                self.version
            }
            fn expires(&self) -> &str {
                &self.expires
            }
        }
    };
}

/// `root`: the keys and thresholds of every top-level role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Root {
    /// `root`.
    #[serde(rename = "_type")]
    pub type_: String,
    /// The specification version written.
    pub spec_version: String,
    /// Starts at 1, rises by exactly 1 per root.
    pub version: u64,
    /// `YYYY-MM-DDTHH:MM:SSZ`.
    pub expires: String,
    /// Every top-level role's keys, by id.
    pub keys: BTreeMap<String, Key>,
    /// `root`, `targets`, `snapshot`, `timestamp`.
    pub roles: BTreeMap<String, RoleKeys>,
    /// Whether snapshot, targets and target files carry version or hash
    /// prefixes (ferry always writes `true`).
    pub consistent_snapshot: bool,
}
role_doc!(Root, "root");

/// A metadata file named in `timestamp` or `snapshot`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaFile {
    /// The named document's version.
    pub version: u64,
    /// Its size in bytes, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    /// Its hashes, when given (`sha256` is the one ferry writes and checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashes: Option<BTreeMap<String, String>>,
}

/// `timestamp`: the current snapshot, short-lived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timestamp {
    /// `timestamp`.
    #[serde(rename = "_type")]
    pub type_: String,
    /// The specification version written.
    pub spec_version: String,
    /// Rises with every timestamp.
    pub version: u64,
    /// `YYYY-MM-DDTHH:MM:SSZ`.
    pub expires: String,
    /// `snapshot.json` only.
    pub meta: BTreeMap<String, MetaFile>,
}
role_doc!(Timestamp, "timestamp");

/// `snapshot`: the version of every targets document, so none can be mixed
/// with another's older or newer state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// `snapshot`.
    #[serde(rename = "_type")]
    pub type_: String,
    /// The specification version written.
    pub spec_version: String,
    /// Rises with every snapshot.
    pub version: u64,
    /// `YYYY-MM-DDTHH:MM:SSZ`.
    pub expires: String,
    /// `targets.json` and `<role>.json` of every delegated role.
    pub meta: BTreeMap<String, MetaFile>,
}
role_doc!(Snapshot, "snapshot");

/// A target file: its size and hashes, and ferry's own facts in `custom`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetFile {
    /// Size in bytes.
    pub length: u64,
    /// `sha256` → lowercase hex.
    pub hashes: BTreeMap<String, String>,
    /// Free-form facts (ferry writes `{"ferry": {...}}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<serde_json::Value>,
}

impl TargetFile {
    /// The SHA-256, when listed as 64 lowercase hex digits.
    pub fn sha256(&self) -> Option<&str> {
        self.hashes
            .get("sha256")
            .map(String::as_str)
            .filter(|h| is_hex64(h))
    }
}

/// A role that `targets` delegates to: ferry delegates each app to a role of
/// the app's name, trusted for `<app>/*` only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegatedRole {
    /// The role's name (ferry: the app's name).
    pub name: String,
    /// Ids of its keys in the delegation's `keys`.
    pub keyids: Vec<String>,
    /// Signatures needed.
    pub threshold: u32,
    /// Whether the search for a target stops here.
    pub terminating: bool,
    /// Path patterns the role is trusted for (`*` within one path segment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
}

impl DelegatedRole {
    /// The keys and threshold, in the form roles are checked with.
    pub fn role_keys(&self) -> RoleKeys {
        RoleKeys {
            keyids: self.keyids.clone(),
            threshold: self.threshold,
        }
    }

    /// Whether the role is trusted for `target` (TUF's `fnmatch` per segment).
    pub fn covers(&self, target: &str) -> bool {
        self.paths.as_ref().is_some_and(|paths| {
            paths.iter().any(|p| {
                let (pp, tp): (Vec<_>, Vec<_>) =
                    (p.split('/').collect(), target.split('/').collect());
                pp.len() == tp.len() && pp.iter().zip(&tp).all(|(p, t)| glob_segment(p, t))
            })
        })
    }
}

/// `*` and `?` within one path segment, everything else literal.
fn glob_segment(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The keys and roles `targets` delegates to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegations {
    /// Keys of every delegated role, by id.
    pub keys: BTreeMap<String, Key>,
    /// In order of trust.
    pub roles: Vec<DelegatedRole>,
}

/// `targets`: target files and delegations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Targets {
    /// `targets`.
    #[serde(rename = "_type")]
    pub type_: String,
    /// The specification version written.
    pub spec_version: String,
    /// Rises with every change.
    pub version: u64,
    /// `YYYY-MM-DDTHH:MM:SSZ`.
    pub expires: String,
    /// Target path → file.
    pub targets: BTreeMap<String, TargetFile>,
    /// Roles trusted for parts of the target namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegations: Option<Delegations>,
}
role_doc!(Targets, "targets");

impl Targets {
    /// The delegation named `name`, if any.
    pub fn delegation(&self, name: &str) -> Option<&DelegatedRole> {
        self.delegations
            .as_ref()?
            .roles
            .iter()
            .find(|r| r.name == name)
    }
}

/// Whether `s` is 64 lowercase hex digits.
pub fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delegated_paths_match_within_segments() {
        let role = DelegatedRole {
            name: "app".into(),
            keyids: vec![],
            threshold: 1,
            terminating: true,
            paths: Some(vec!["app/*".into(), "app/*/*/*".into()]),
        };
        assert!(role.covers("app/stable.json"));
        assert!(role.covers("app/1.0/x86_64-linux-gnu/app"));
        assert!(!role.covers("other/stable.json"));
        assert!(!role.covers("app/1.0/app"));
        assert!(!role.covers("app"));
        assert!(glob_segment("a*c?", "abbbcd"));
        assert!(!glob_segment("a*c", "abbbcd"));
    }
}
