//! The publisher's side: new versions of the documents, signed, in the order
//! they must reach the repository so that a reader never sees a document
//! naming one that is not there yet — targets and delegated roles first,
//! then the snapshot, then `timestamp.json` last (the only file replaced;
//! every other name is new).

use std::collections::BTreeMap;

use super::envelope::sign;
use super::layout::metadata_path;
use super::metadata::{Key, MetaFile, RoleKeys, Root, Snapshot, Targets, Timestamp, SPEC_VERSION};
use super::time::format_utc;
use super::trusted::TrustedSet;
use crate::digest::sha256_hex;
use crate::{PublicKey, SecretKey};

/// A version past `u64::MAX`: a repository pushed there cannot go on.
#[derive(Debug, thiserror::Error)]
#[error("{role} version {version} cannot be raised further; rotate the role's keys to reset it")]
pub struct VersionOverflow {
    /// The role.
    pub role: String,
    /// Its version.
    pub version: u64,
}

fn bump(role: &str, version: u64) -> Result<u64, VersionOverflow> {
    version.checked_add(1).ok_or(VersionOverflow {
        role: role.to_owned(),
        version,
    })
}

/// A file to write: repository-relative path and bytes.
#[derive(Debug, Clone)]
pub struct NewFile {
    /// Where.
    pub path: String,
    /// What.
    pub bytes: Vec<u8>,
}

/// Keys and threshold of a role, with the keys' TUF ids.
pub fn role_of(keys: &[PublicKey], threshold: u32) -> (BTreeMap<String, Key>, RoleKeys) {
    let map: BTreeMap<String, Key> = keys
        .iter()
        .map(|k| {
            let key = Key::from_public(k);
            (key.id(), key)
        })
        .collect();
    let keyids = map.keys().cloned().collect();
    (map, RoleKeys { keyids, threshold })
}

/// Who holds each top-level role.
#[derive(Debug, Clone)]
pub struct RootKeys<'a> {
    /// Root keys and how many must sign.
    pub root: (&'a [PublicKey], u32),
    /// Targets keys (ferry: the root keys by default; they delegate apps).
    pub targets: (&'a [PublicKey], u32),
    /// Snapshot and timestamp keys: the online role.
    pub timestamp: (&'a [PublicKey], u32),
}

/// A root document of `version` with these keys.
pub fn root_doc(version: u64, expires: u64, keys: &RootKeys<'_>) -> Root {
    let mut all = BTreeMap::new();
    let mut roles = BTreeMap::new();
    for (name, (k, t)) in [
        ("root", keys.root),
        ("targets", keys.targets),
        ("snapshot", keys.timestamp),
        ("timestamp", keys.timestamp),
    ] {
        let (map, role) = role_of(k, t);
        all.extend(map);
        roles.insert(name.to_owned(), role);
    }
    Root {
        type_: "root".into(),
        spec_version: SPEC_VERSION.into(),
        version,
        expires: format_utc(expires),
        keys: all,
        roles,
        consistent_snapshot: true,
    }
}

/// An empty targets document.
pub fn empty_targets(version: u64, expires: u64) -> Targets {
    Targets {
        type_: "targets".into(),
        spec_version: SPEC_VERSION.into(),
        version,
        expires: format_utc(expires),
        targets: BTreeMap::new(),
        delegations: None,
    }
}

fn meta_of(version: u64, bytes: &[u8]) -> MetaFile {
    MetaFile {
        version,
        length: Some(bytes.len() as u64),
        hashes: Some(BTreeMap::from([("sha256".to_owned(), sha256_hex(bytes))])),
    }
}

/// Changes to a repository, staged: each role set here is signed at once;
/// [`Draft::finish`] adds the snapshot and timestamp.
#[derive(Debug, Default)]
pub struct Draft {
    files: Vec<NewFile>,
    snapshot_meta: BTreeMap<String, MetaFile>,
    snapshot_version: u64,
    timestamp_version: u64,
}

impl Draft {
    /// A draft on top of what `set` trusts (empty for a new repository).
    pub fn on(set: Option<&TrustedSet>) -> Draft {
        let Some(set) = set else {
            return Draft::default();
        };
        Draft {
            files: Vec::new(),
            snapshot_meta: set
                .snapshot()
                .map(|s| s.doc.meta.clone())
                .unwrap_or_default(),
            snapshot_version: set.snapshot().map_or(0, |s| s.doc.version),
            timestamp_version: set.timestamp().map_or(0, |t| t.doc.version),
        }
    }

    /// Restarts snapshot and timestamp versions at 1: what follows a
    /// rotation of their keys, after which devices keep no floor for them.
    pub fn restart_online_versions(&mut self) {
        self.snapshot_version = 0;
        self.timestamp_version = 0;
    }

    /// Raises the next snapshot and timestamp versions to at least `min`.
    pub fn raise_online_versions(&mut self, min: u64) {
        self.snapshot_version = self.snapshot_version.max(min.saturating_sub(1));
        self.timestamp_version = self.timestamp_version.max(min.saturating_sub(1));
    }

    /// Adds a root (`metadata/<version>.root.json`), signed by `keys`.
    pub fn put_root(&mut self, root: &Root, keys: &[&SecretKey]) {
        self.files.push(NewFile {
            path: metadata_path("root", Some(root.version)),
            bytes: sign(root, keys),
        });
    }

    /// Adds a targets document (top-level when `role` is `targets`, else a
    /// delegated role), signed by `keys`, and names it in the snapshot.
    pub fn put_role(&mut self, role: &str, doc: &Targets, keys: &[&SecretKey]) {
        let bytes = sign(doc, keys);
        self.snapshot_meta
            .insert(format!("{role}.json"), meta_of(doc.version, &bytes));
        self.files.push(NewFile {
            path: metadata_path(role, Some(doc.version)),
            bytes,
        });
    }

    /// Signs the next snapshot and timestamp and returns every file, in the
    /// order to write them.
    pub fn finish(
        mut self,
        online: &[&SecretKey],
        snapshot_expires: u64,
        timestamp_expires: u64,
    ) -> Result<Vec<NewFile>, VersionOverflow> {
        let snapshot = Snapshot {
            type_: "snapshot".into(),
            spec_version: SPEC_VERSION.into(),
            version: bump("snapshot", self.snapshot_version)?,
            expires: format_utc(snapshot_expires),
            meta: self.snapshot_meta,
        };
        let snapshot_bytes = sign(&snapshot, online);
        let timestamp = Timestamp {
            type_: "timestamp".into(),
            spec_version: SPEC_VERSION.into(),
            version: bump("timestamp", self.timestamp_version)?,
            expires: format_utc(timestamp_expires),
            meta: BTreeMap::from([(
                "snapshot.json".to_owned(),
                meta_of(snapshot.version, &snapshot_bytes),
            )]),
        };
        self.files.push(NewFile {
            path: metadata_path("snapshot", Some(snapshot.version)),
            bytes: snapshot_bytes,
        });
        self.files.push(NewFile {
            path: metadata_path("timestamp", None),
            bytes: sign(&timestamp, online),
        });
        Ok(self.files)
    }

    /// Only the roots added (a root rotation that changes no online key).
    pub fn into_files(self) -> Vec<NewFile> {
        self.files
    }
}

/// The next version of `role`'s targets document.
pub fn next_version(role: &str, doc: &Targets) -> Result<u64, VersionOverflow> {
    bump(role, doc.version)
}

/// The next root version.
pub fn next_root_version(root: &Root) -> Result<u64, VersionOverflow> {
    bump("root", root.version)
}
