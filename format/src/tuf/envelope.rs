//! Signed documents: `{"signatures": [{"keyid", "sig"}], "signed": {...}}`.
//! A signature is a plain Ed25519 signature (hex) of the canonical JSON of
//! `signed`; a role is satisfied when at least its threshold of its distinct
//! keys signed.

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::Signature as Ed25519Signature;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::canonical::to_canonical;
use super::metadata::{Key, RoleDoc, RoleKeys};
use super::TufError;
use crate::SecretKey;

/// Largest metadata document read, checked before parsing.
pub const MAX_METADATA_LEN: usize = 1024 * 1024;

/// One signature of a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureEntry {
    /// The signing key's id.
    pub keyid: String,
    /// Hex of the 64-byte Ed25519 signature.
    pub sig: String,
}

/// A document as read: signatures, and `signed` kept as the JSON received so
/// that the canonical bytes checked are exactly what was signed.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The signatures.
    pub signatures: Vec<SignatureEntry>,
    signed: Value,
    canonical: Vec<u8>,
}

#[derive(Deserialize)]
struct RawEnvelope {
    signatures: Vec<SignatureEntry>,
    signed: Value,
}

impl Envelope {
    /// Parses a document of role `role` (named in errors) from untrusted bytes.
    pub fn parse(role: &str, bytes: &[u8]) -> Result<Envelope, TufError> {
        if bytes.len() > MAX_METADATA_LEN {
            return Err(TufError::Malformed {
                role: role.to_owned(),
                reason: format!(
                    "{} bytes, over the limit of {MAX_METADATA_LEN}",
                    bytes.len()
                ),
            });
        }
        let raw: RawEnvelope = serde_json::from_slice(bytes).map_err(|e| TufError::Malformed {
            role: role.to_owned(),
            reason: e.to_string(),
        })?;
        let canonical = to_canonical(&raw.signed).map_err(|e| TufError::Malformed {
            role: role.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Envelope {
            signatures: raw.signatures,
            signed: raw.signed,
            canonical,
        })
    }

    /// The `signed` object as a typed document, after checking its `_type`.
    pub fn decode<T: RoleDoc>(&self, role: &str) -> Result<T, TufError> {
        let ty = self.signed.get("_type").and_then(Value::as_str);
        if ty != Some(T::TYPE) {
            return Err(TufError::Malformed {
                role: role.to_owned(),
                reason: format!("`_type` is {ty:?}, expected `{}`", T::TYPE),
            });
        }
        T::deserialize(&self.signed).map_err(|e| TufError::Malformed {
            role: role.to_owned(),
            reason: e.to_string(),
        })
    }

    /// Checks that at least `role_keys.threshold` distinct keys of
    /// `role_keys`, looked up in `keys`, signed this document.
    pub fn verify(
        &self,
        role: &str,
        keys: &BTreeMap<String, Key>,
        role_keys: &RoleKeys,
    ) -> Result<(), TufError> {
        if role_keys.threshold == 0 {
            return Err(TufError::Malformed {
                role: role.to_owned(),
                reason: "threshold 0".into(),
            });
        }
        let allowed: BTreeSet<&str> = role_keys.keyids.iter().map(String::as_str).collect();
        let mut good = BTreeSet::new();
        for entry in &self.signatures {
            if !allowed.contains(entry.keyid.as_str()) || good.contains(entry.keyid.as_str()) {
                continue;
            }
            let Some(key) = keys.get(&entry.keyid).and_then(Key::ed25519) else {
                continue;
            };
            let Some(sig) = hex::decode(&entry.sig)
                .ok()
                .and_then(|b| <[u8; 64]>::try_from(b).ok())
            else {
                continue;
            };
            if key
                .verify_strict(&self.canonical, &Ed25519Signature::from_bytes(&sig))
                .is_ok()
            {
                good.insert(entry.keyid.as_str());
            }
        }
        if good.len() < role_keys.threshold as usize {
            return Err(TufError::Threshold {
                role: role.to_owned(),
                valid: good.len(),
                threshold: role_keys.threshold,
            });
        }
        Ok(())
    }
}

/// A document signed by `keys`, as the bytes written to the repository
/// (indented for people; signatures cover the canonical form).
pub fn sign<T: RoleDoc>(doc: &T, keys: &[&SecretKey]) -> Vec<u8> {
    let signed = serde_json::to_value(doc).expect("role documents are plain values");
    let canonical = to_canonical(&signed).expect("role documents hold integers only");
    let mut signatures: Vec<SignatureEntry> = keys
        .iter()
        .map(|k| SignatureEntry {
            keyid: Key::from_public(&k.public_key()).id(),
            sig: hex::encode(k.sign_raw(&canonical)),
        })
        .collect();
    signatures.sort_by(|a, b| a.keyid.cmp(&b.keyid));
    signatures.dedup_by(|a, b| a.keyid == b.keyid);
    let doc = serde_json::json!({ "signatures": signatures, "signed": signed });
    let mut out = serde_json::to_vec_pretty(&doc).expect("plain JSON");
    out.push(b'\n');
    out
}
