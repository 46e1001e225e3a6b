//! The client's side of TUF (specification §5, "detailed client workflow"):
//! what a device — or a publisher checking a repository before it signs
//! anything — trusts, and the rules each newer document must pass to replace
//! what is trusted. Pure: fetching and persisting are the caller's.
//!
//! Order: root (walked one version at a time), timestamp, snapshot, targets,
//! then each delegated role. `now` is `None` when the caller cannot trust its
//! clock (a board without an RTC that booted in 1970): expiry is then not
//! judged, every other rule still is.

use std::collections::BTreeMap;

use super::envelope::Envelope;
use super::metadata::{MetaFile, RoleDoc, RoleKeys, Root, Snapshot, Targets, Timestamp};
use super::time::parse_utc;
use super::TufError;
use crate::digest::sha256_hex;

/// A document trusted, with the exact bytes it came as (for persisting).
#[derive(Debug, Clone)]
pub struct Trusted<T> {
    /// The document.
    pub doc: T,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// What a new root changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RootChange {
    /// The timestamp or snapshot keys changed: their trusted documents (and
    /// the version floors they carried) were dropped, as §5.3.11 says, which
    /// is how a fast-forward by a leaked online key is undone.
    pub online_keys_rotated: bool,
    /// The targets keys changed: targets and delegated roles were dropped.
    pub targets_keys_rotated: bool,
}

/// Everything trusted, from one root down.
#[derive(Debug, Clone)]
pub struct TrustedSet {
    root: Trusted<Root>,
    timestamp: Option<Trusted<Timestamp>>,
    snapshot: Option<Trusted<Snapshot>>,
    targets: Option<Trusted<Targets>>,
    delegated: BTreeMap<String, Trusted<Targets>>,
}

fn role_keys<'r>(root: &'r Root, role: &str) -> Result<&'r RoleKeys, TufError> {
    root.roles.get(role).ok_or_else(|| TufError::Malformed {
        role: "root".into(),
        reason: format!("no `{role}` role"),
    })
}

/// The key material a role is checked with, comparable across roots.
fn role_material(root: &Root, role: &str) -> Option<(Vec<String>, u32)> {
    let r = root.roles.get(role)?;
    let mut keys: Vec<String> = r
        .keyids
        .iter()
        .filter_map(|id| root.keys.get(id).map(|k| k.keyval.public.clone()))
        .collect();
    keys.sort();
    Some((keys, r.threshold))
}

fn check_file(role: &str, bytes: &[u8], meta: &MetaFile) -> Result<(), TufError> {
    if let Some(len) = meta.length {
        if bytes.len() as u64 != len {
            return Err(TufError::LengthMismatch {
                role: role.to_owned(),
                got: bytes.len() as u64,
                expected: len,
            });
        }
    }
    if let Some(want) = meta.hashes.as_ref().and_then(|h| h.get("sha256")) {
        let got = sha256_hex(bytes);
        if &got != want {
            return Err(TufError::HashMismatch {
                role: role.to_owned(),
            });
        }
    }
    Ok(())
}

/// Refuses `doc` when `now` is known and past its expiry.
pub fn check_expiry<T: RoleDoc>(role: &str, doc: &T, now: Option<u64>) -> Result<(), TufError> {
    let expires = parse_utc(doc.expires()).map_err(|e| TufError::Malformed {
        role: role.to_owned(),
        reason: e.to_string(),
    })?;
    match now {
        Some(now) if now >= expires => Err(TufError::Expired {
            role: role.to_owned(),
            expires: doc.expires().to_owned(),
        }),
        _ => Ok(()),
    }
}

impl TrustedSet {
    /// Trusts `bytes` as root: the anchor a device is provisioned with. It
    /// must be signed by a threshold of its own root keys.
    pub fn from_root(bytes: &[u8]) -> Result<TrustedSet, TufError> {
        let env = Envelope::parse("root", bytes)?;
        let root: Root = env.decode("root")?;
        env.verify("root", &root.keys, role_keys(&root, "root")?)?;
        for role in ["root", "timestamp", "snapshot", "targets"] {
            role_keys(&root, role)?;
        }
        Ok(TrustedSet {
            root: Trusted {
                doc: root,
                bytes: bytes.to_vec(),
            },
            timestamp: None,
            snapshot: None,
            targets: None,
            delegated: BTreeMap::new(),
        })
    }

    /// Parses a document of top-level role `role` and checks it is signed by
    /// a threshold of the keys the trusted root gives that role.
    fn signed_by_top_level_role<T: RoleDoc>(
        &self,
        role: &str,
        bytes: &[u8],
    ) -> Result<T, TufError> {
        let env = Envelope::parse(role, bytes)?;
        let doc: T = env.decode(role)?;
        env.verify(role, &self.root.doc.keys, role_keys(&self.root.doc, role)?)?;
        Ok(doc)
    }

    /// Replaces root by the next version: signed by a threshold of the
    /// trusted root's root keys and of its own, version exactly one higher.
    pub fn update_root(&mut self, bytes: &[u8]) -> Result<RootChange, TufError> {
        let env = Envelope::parse("root", bytes)?;
        let new: Root = env.decode("root")?;
        let old = &self.root.doc;
        env.verify("root", &old.keys, role_keys(old, "root")?)?;
        env.verify("root", &new.keys, role_keys(&new, "root")?)?;
        let expected = old
            .version
            .checked_add(1)
            .ok_or(TufError::VersionMismatch {
                role: "root".into(),
                got: new.version,
                expected: u64::MAX,
            })?;
        if new.version != expected {
            return Err(TufError::VersionMismatch {
                role: "root".into(),
                got: new.version,
                expected,
            });
        }
        for role in ["root", "timestamp", "snapshot", "targets"] {
            role_keys(&new, role)?;
        }
        let changed = |role| role_material(old, role) != role_material(&new, role);
        let change = RootChange {
            online_keys_rotated: changed("timestamp") || changed("snapshot"),
            targets_keys_rotated: changed("targets"),
        };
        if change.online_keys_rotated {
            self.timestamp = None;
            self.snapshot = None;
        }
        if change.targets_keys_rotated {
            self.targets = None;
            self.delegated.clear();
        }
        self.root = Trusted {
            doc: new,
            bytes: bytes.to_vec(),
        };
        Ok(change)
    }

    /// Checks a new timestamp and trusts it. `Ok(false)`: the same version
    /// as the one trusted, which stays (nothing changed in the repository).
    pub fn update_timestamp(&mut self, bytes: &[u8], now: Option<u64>) -> Result<bool, TufError> {
        check_expiry("root", &self.root.doc, now)?;
        let new: Timestamp = self.signed_by_top_level_role("timestamp", bytes)?;
        let new_snap = new
            .meta
            .get("snapshot.json")
            .ok_or_else(|| TufError::Malformed {
                role: "timestamp".into(),
                reason: "no `snapshot.json` in `meta`".into(),
            })?
            .version;
        if let Some(old) = &self.timestamp {
            if new.version < old.doc.version {
                return Err(TufError::Rollback {
                    role: "timestamp".into(),
                    got: new.version,
                    trusted: old.doc.version,
                });
            }
            let old_snap = old.doc.meta.get("snapshot.json").map_or(0, |m| m.version);
            if new_snap < old_snap {
                return Err(TufError::Rollback {
                    role: "snapshot".into(),
                    got: new_snap,
                    trusted: old_snap,
                });
            }
            if new.version == old.doc.version {
                check_expiry("timestamp", &old.doc, now)?;
                return Ok(false);
            }
        }
        check_expiry("timestamp", &new, now)?;
        self.timestamp = Some(Trusted {
            doc: new,
            bytes: bytes.to_vec(),
        });
        Ok(true)
    }

    /// What the trusted timestamp says of the snapshot.
    pub fn snapshot_meta(&self) -> Option<&MetaFile> {
        self.timestamp.as_ref()?.doc.meta.get("snapshot.json")
    }

    /// Whether the trusted snapshot is not the one the timestamp names.
    pub fn needs_snapshot(&self) -> bool {
        match (&self.snapshot, self.snapshot_meta()) {
            (Some(s), Some(m)) => s.doc.version != m.version,
            _ => true,
        }
    }

    /// Checks a new snapshot against the timestamp and the trusted snapshot.
    /// `local`: it is the device's own stored copy, which may be older than
    /// the timestamp (a crash between two writes) and is then only a floor.
    pub fn update_snapshot(
        &mut self,
        bytes: &[u8],
        now: Option<u64>,
        local: bool,
    ) -> Result<(), TufError> {
        let meta = self
            .snapshot_meta()
            .cloned()
            .ok_or_else(|| TufError::Missing {
                what: "a trusted timestamp before the snapshot".into(),
            })?;
        if !local {
            check_file("snapshot", bytes, &meta)?;
        }
        let new: Snapshot = self.signed_by_top_level_role("snapshot", bytes)?;
        if !local && new.version != meta.version {
            return Err(TufError::VersionMismatch {
                role: "snapshot".into(),
                got: new.version,
                expected: meta.version,
            });
        }
        if let Some(old) = &self.snapshot {
            for (name, old_meta) in &old.doc.meta {
                match new.meta.get(name) {
                    None => {
                        return Err(TufError::RoleRemoved {
                            role: name.trim_end_matches(".json").to_owned(),
                        })
                    }
                    Some(m) if m.version < old_meta.version => {
                        return Err(TufError::Rollback {
                            role: name.trim_end_matches(".json").to_owned(),
                            got: m.version,
                            trusted: old_meta.version,
                        })
                    }
                    Some(_) => {}
                }
            }
        }
        if !local {
            check_expiry("snapshot", &new, now)?;
        }
        self.snapshot = Some(Trusted {
            doc: new,
            bytes: bytes.to_vec(),
        });
        Ok(())
    }

    /// What the trusted snapshot says of role `name` (`targets` or a
    /// delegated role).
    pub fn role_meta(&self, name: &str) -> Option<&MetaFile> {
        self.snapshot
            .as_ref()?
            .doc
            .meta
            .get(&format!("{name}.json"))
    }

    /// Whether the trusted copy of role `name` is not the snapshot's.
    pub fn needs_role(&self, name: &str) -> bool {
        let have = if name == "targets" {
            self.targets.as_ref()
        } else {
            self.delegated.get(name)
        };
        match (have, self.role_meta(name)) {
            (Some(t), Some(m)) => t.doc.version != m.version,
            _ => true,
        }
    }

    fn check_role_file(
        &self,
        name: &str,
        bytes: &[u8],
        local: bool,
    ) -> Result<(Envelope, Targets), TufError> {
        let meta = self
            .role_meta(name)
            .cloned()
            .ok_or_else(|| TufError::Missing {
                what: format!("role `{name}` in the trusted snapshot"),
            })?;
        if !local {
            check_file(name, bytes, &meta)?;
        }
        let env = Envelope::parse(name, bytes)?;
        let doc: Targets = env.decode(name)?;
        if !local && doc.version != meta.version {
            return Err(TufError::VersionMismatch {
                role: name.to_owned(),
                got: doc.version,
                expected: meta.version,
            });
        }
        Ok((env, doc))
    }

    /// Checks the top-level targets against the snapshot and the root.
    pub fn update_targets(
        &mut self,
        bytes: &[u8],
        now: Option<u64>,
        local: bool,
    ) -> Result<(), TufError> {
        let (env, doc) = self.check_role_file("targets", bytes, local)?;
        env.verify(
            "targets",
            &self.root.doc.keys,
            role_keys(&self.root.doc, "targets")?,
        )?;
        if !local {
            check_expiry("targets", &doc, now)?;
        }
        self.targets = Some(Trusted {
            doc,
            bytes: bytes.to_vec(),
        });
        Ok(())
    }

    /// Checks delegated role `name` against the snapshot and the delegation
    /// that the trusted targets makes to it.
    pub fn update_delegated(
        &mut self,
        name: &str,
        bytes: &[u8],
        now: Option<u64>,
        local: bool,
    ) -> Result<(), TufError> {
        let targets = self.targets.as_ref().ok_or_else(|| TufError::Missing {
            what: "trusted targets before a delegated role".into(),
        })?;
        let delegation = targets
            .doc
            .delegation(name)
            .ok_or_else(|| TufError::Missing {
                what: format!("a delegation to role `{name}` in targets"),
            })?;
        let keys = &targets
            .doc
            .delegations
            .as_ref()
            .expect("a delegation was found")
            .keys;
        let role = delegation.role_keys();
        let (env, doc) = self.check_role_file(name, bytes, local)?;
        env.verify(name, keys, &role)?;
        if !local {
            check_expiry(name, &doc, now)?;
        }
        self.delegated.insert(
            name.to_owned(),
            Trusted {
                doc,
                bytes: bytes.to_vec(),
            },
        );
        Ok(())
    }

    /// Refuses when any trusted document in the chain to role `name` is
    /// expired: what a poll that found nothing new still checks, so a
    /// repository frozen by a mirror is noticed.
    pub fn check_fresh(&self, name: &str, now: Option<u64>) -> Result<(), TufError> {
        check_expiry("root", &self.root.doc, now)?;
        if let Some(t) = &self.timestamp {
            check_expiry("timestamp", &t.doc, now)?;
        }
        if let Some(s) = &self.snapshot {
            check_expiry("snapshot", &s.doc, now)?;
        }
        if let Some(t) = &self.targets {
            check_expiry("targets", &t.doc, now)?;
        }
        if let Some(d) = self.delegated.get(name) {
            check_expiry(name, &d.doc, now)?;
        }
        Ok(())
    }

    /// The trusted root.
    pub fn root(&self) -> &Trusted<Root> {
        &self.root
    }
    /// The trusted timestamp.
    pub fn timestamp(&self) -> Option<&Trusted<Timestamp>> {
        self.timestamp.as_ref()
    }
    /// The trusted snapshot.
    pub fn snapshot(&self) -> Option<&Trusted<Snapshot>> {
        self.snapshot.as_ref()
    }
    /// The trusted top-level targets.
    pub fn targets(&self) -> Option<&Trusted<Targets>> {
        self.targets.as_ref()
    }
    /// The trusted delegated role `name`.
    pub fn delegated(&self, name: &str) -> Option<&Trusted<Targets>> {
        self.delegated.get(name)
    }
}
