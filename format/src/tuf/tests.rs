//! The client rules against repositories built with the writer.

use std::collections::BTreeMap;

use super::layout::{app_paths, metadata_path};
use super::writer::{empty_targets, role_of, root_doc, Draft, NewFile, RootKeys};
use super::*;
use crate::SecretKey;

const FAR: u64 = 4_102_444_800; // 2100

struct Keys {
    root: SecretKey,
    online: SecretKey,
    release: SecretKey,
}

fn keys() -> Keys {
    Keys {
        root: SecretKey::generate().unwrap(),
        online: SecretKey::generate().unwrap(),
        release: SecretKey::generate().unwrap(),
    }
}

fn root_of(k: &Keys, version: u64, online: &SecretKey) -> Root {
    let r = [k.root.public_key()];
    let o = [online.public_key()];
    root_doc(
        version,
        FAR,
        &RootKeys {
            root: (&r, 1),
            targets: (&r, 1),
            timestamp: (&o, 1),
        },
    )
}

fn app_role(version: u64, expires: u64) -> Targets {
    let mut t = empty_targets(version, expires);
    t.targets.insert(
        "demo/stable.json".into(),
        TargetFile {
            length: 3,
            hashes: BTreeMap::from([("sha256".into(), "ab".repeat(32))]),
            custom: None,
        },
    );
    t
}

fn delegating_targets(version: u64, release: &SecretKey) -> Targets {
    let mut t = empty_targets(version, FAR);
    let (keys, role) = role_of(&[release.public_key()], 1);
    t.delegations = Some(Delegations {
        keys,
        roles: vec![DelegatedRole {
            name: "demo".into(),
            keyids: role.keyids,
            threshold: 1,
            terminating: true,
            paths: Some(app_paths("demo")),
        }],
    });
    t
}

/// A new repository: root 1, targets 1 delegating `demo`, demo 1.
fn new_repo(k: &Keys) -> (Vec<u8>, BTreeMap<String, Vec<u8>>) {
    let mut files = BTreeMap::new();
    let root = root_of(k, 1, &k.online);
    let mut d = Draft::on(None);
    d.put_root(&root, &[&k.root]);
    d.put_role("targets", &delegating_targets(1, &k.release), &[&k.root]);
    d.put_role("demo", &app_role(1, FAR), &[&k.release]);
    store(&mut files, d.finish(&[&k.online], FAR, FAR).unwrap());
    (files["metadata/1.root.json"].clone(), files)
}

fn store(files: &mut BTreeMap<String, Vec<u8>>, new: Vec<NewFile>) {
    for f in new {
        files.insert(f.path, f.bytes);
    }
}

fn refresh(
    set: TrustedSet,
    files: &BTreeMap<String, Vec<u8>>,
    now: Option<u64>,
) -> Result<TrustedSet, TufError> {
    let mut r = Refresh::new(set, Some("demo"), now);
    while let Some(fetch) = r.next() {
        r.feed(files.get(&fetch.path).map(Vec::as_slice))?;
    }
    r.finish()
}

fn err(r: Result<TrustedSet, TufError>) -> TufError {
    r.map(|_| ()).expect_err("refused")
}

#[test]
fn a_fresh_repository_refreshes_down_to_the_app() {
    let k = keys();
    let (root, files) = new_repo(&k);
    let set = refresh(TrustedSet::from_root(&root).unwrap(), &files, Some(1)).unwrap();
    let demo = set.delegated("demo").unwrap();
    assert!(demo.doc.targets.contains_key("demo/stable.json"));
    assert_eq!(set.timestamp().unwrap().doc.version, 1);
}

#[test]
fn an_app_the_snapshot_does_not_list_ends_the_refresh_without_its_role() {
    let k = keys();
    let root = root_of(&k, 1, &k.online);
    let mut files = BTreeMap::new();
    let mut d = Draft::on(None);
    d.put_root(&root, &[&k.root]);
    d.put_role("targets", &delegating_targets(1, &k.release), &[&k.root]);
    store(&mut files, d.finish(&[&k.online], FAR, FAR).unwrap());
    let anchor = files["metadata/1.root.json"].clone();
    let set = refresh(TrustedSet::from_root(&anchor).unwrap(), &files, None).unwrap();
    assert!(set.targets().is_some());
    assert!(set.role_meta("demo").is_none() && set.delegated("demo").is_none());
}

#[test]
fn a_replayed_timestamp_is_a_rollback() {
    let k = keys();
    let (root, mut files) = new_repo(&k);
    let old_ts = files["metadata/timestamp.json"].clone();
    let set = refresh(TrustedSet::from_root(&root).unwrap(), &files, None).unwrap();
    let mut d = Draft::on(Some(&set));
    d.put_role("demo", &app_role(2, FAR), &[&k.release]);
    store(&mut files, d.finish(&[&k.online], FAR, FAR).unwrap());
    let set = refresh(set, &files, None).unwrap();
    assert_eq!(set.delegated("demo").unwrap().doc.version, 2);
    files.insert("metadata/timestamp.json".into(), old_ts);
    assert!(matches!(
        err(refresh(set, &files, None)),
        TufError::Rollback { .. }
    ));
}

#[test]
fn a_role_signed_by_another_key_is_refused() {
    let k = keys();
    let (root, mut files) = new_repo(&k);
    let set = refresh(TrustedSet::from_root(&root).unwrap(), &files, None).unwrap();
    let attacker = SecretKey::generate().unwrap();
    let mut d = Draft::on(Some(&set));
    d.put_role("demo", &app_role(2, FAR), &[&attacker]);
    // The attacker also holds the online key here: only the release role's
    // signature is missing.
    store(&mut files, d.finish(&[&k.online], FAR, FAR).unwrap());
    assert!(matches!(
        err(refresh(set, &files, None)),
        TufError::Threshold { role, .. } if role == "demo"
    ));
}

#[test]
fn mixing_in_another_version_of_a_role_is_refused() {
    let k = keys();
    let (root, mut files) = new_repo(&k);
    let set = refresh(TrustedSet::from_root(&root).unwrap(), &files, None).unwrap();
    // Replace demo's document under the name the snapshot points at.
    let other = sign(&app_role(1, FAR - 1), &[&k.release]);
    files.insert(metadata_path("demo", Some(1)), other);
    let fresh = TrustedSet::from_root(&root).unwrap();
    assert!(matches!(
        err(refresh(fresh, &files, None)),
        TufError::LengthMismatch { .. } | TufError::HashMismatch { .. }
    ));
    drop(set);
}

#[test]
fn expiry_is_judged_only_with_a_trusted_clock() {
    let k = keys();
    let root = root_of(&k, 1, &k.online);
    let mut files = BTreeMap::new();
    let mut d = Draft::on(None);
    d.put_root(&root, &[&k.root]);
    d.put_role("targets", &delegating_targets(1, &k.release), &[&k.root]);
    d.put_role("demo", &app_role(1, FAR), &[&k.release]);
    store(&mut files, d.finish(&[&k.online], FAR, 1000).unwrap());
    let anchor = files["metadata/1.root.json"].clone();
    assert!(matches!(
        err(refresh(TrustedSet::from_root(&anchor).unwrap(), &files, Some(2000))),
        TufError::Expired { role, .. } if role == "timestamp"
    ));
    assert!(refresh(TrustedSet::from_root(&anchor).unwrap(), &files, None).is_ok());
}

#[test]
fn roots_rotate_one_version_at_a_time_signed_by_old_and_new() {
    let k = keys();
    let (root1, mut files) = new_repo(&k);
    let set = refresh(TrustedSet::from_root(&root1).unwrap(), &files, None).unwrap();
    let new_root_key = SecretKey::generate().unwrap();
    let k2 = Keys {
        root: new_root_key,
        online: SecretKey::generate().unwrap(),
        release: SecretKey::generate().unwrap(),
    };
    let mut root2 = root_of(&k2, 2, &k.online);
    // Only the new key: refused.
    let mut d = Draft::on(Some(&set));
    d.put_root(&root2, &[&k2.root]);
    store(&mut files, d.into_files());
    assert!(matches!(
        err(refresh(set.clone(), &files, None)),
        TufError::Threshold { role, .. } if role == "root"
    ));
    // Old and new: accepted. The targets keys changed with it, so targets
    // is signed again by the new key.
    root2.version = 2;
    let mut d = Draft::on(Some(&set));
    d.put_root(&root2, &[&k.root, &k2.root]);
    d.put_role("targets", &delegating_targets(2, &k.release), &[&k2.root]);
    store(&mut files, d.finish(&[&k.online], FAR, FAR).unwrap());
    let set = refresh(set, &files, None).unwrap();
    assert_eq!(set.root().doc.version, 2);
}

#[test]
fn rotating_the_online_key_resets_the_floors_a_leaked_one_raised() {
    let k = keys();
    let (root1, mut files) = new_repo(&k);
    let set = refresh(TrustedSet::from_root(&root1).unwrap(), &files, None).unwrap();
    // The leaked online key pushes timestamp and snapshot to the top.
    let mut d = Draft::on(Some(&set));
    d.put_role("demo", &app_role(2, FAR), &[&k.release]);
    let mut forged = d.finish(&[&k.online], FAR, FAR).unwrap();
    let ts_doc: Timestamp = Envelope::parse("timestamp", &forged[2].bytes)
        .unwrap()
        .decode("timestamp")
        .unwrap();
    let mut high = ts_doc;
    high.version = u64::MAX;
    forged[2].bytes = sign(&high, &[&k.online]);
    store(&mut files, forged);
    let set = refresh(set, &files, None).unwrap();
    assert_eq!(set.timestamp().unwrap().doc.version, u64::MAX);
    // The root key holder rotates the online key; versions restart at 1.
    let new_online = SecretKey::generate().unwrap();
    let root2 = root_of(&k, 2, &new_online);
    let mut d = Draft::on(Some(&set));
    d.restart_online_versions();
    d.put_root(&root2, &[&k.root]);
    d.put_role("demo", &app_role(3, FAR), &[&k.release]);
    store(&mut files, d.finish(&[&new_online], FAR, FAR).unwrap());
    let set = refresh(set, &files, None).unwrap();
    assert_eq!(set.timestamp().unwrap().doc.version, 1);
    assert_eq!(set.delegated("demo").unwrap().doc.version, 3);
}
