//! Writing a repository the way someone else would: with the right keys (a
//! publisher, or an attacker holding a leaked key) or the wrong ones,
//! through `ferry_format::tuf`, so a test can put any bytes where the agent
//! will look and know which rule refuses them.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ferry_format::manifest::Manifest;
use ferry_format::tuf::layout::{channel_target, target_file_path};
use ferry_format::tuf::writer::{Draft, NewFile};
use ferry_format::tuf::{Refresh, TargetFile, TrustedSet};
use ferry_format::SecretKey;

use super::repo::Repo;

/// Far in the future (2100).
pub const FAR: u64 = 4_102_444_800;

/// A repository directory and the keys of its roles.
pub struct Forge {
    /// The repository directory.
    pub dir: PathBuf,
    /// Where the keys and `root.json` are.
    pub keys_dir: PathBuf,
    /// The root (and targets) key.
    pub root: SecretKey,
    /// The timestamp and snapshot key.
    pub online: SecretKey,
    /// simple_api's release key.
    pub release: SecretKey,
    /// The repository as it was when the forge was made: what every forged
    /// state is built on.
    pub base: TrustedSet,
    /// The version the next forged documents get: above every one written
    /// before, so each forged state is newer than all the device has seen.
    next: Cell<u64>,
}

/// Loads an unencrypted secret key file.
pub fn key(path: &Path) -> SecretKey {
    SecretKey::from_text(&std::fs::read_to_string(path).unwrap(), None).unwrap()
}

impl Forge {
    /// The forge of a test repository (keys made by `signed_repo::create`).
    pub fn new(repo: &Repo) -> Forge {
        let d = repo.dir.path();
        let mut f = Forge {
            dir: repo.path(),
            keys_dir: d.to_owned(),
            root: key(&d.join("root.key")),
            online: key(&d.join("timestamp.key")),
            release: key(&d.join("release.key")),
            base: TrustedSet::from_root(&std::fs::read(d.join("root.json")).unwrap()).unwrap(),
            next: Cell::new(1000),
        };
        f.base = f.trusted();
        f
    }

    /// A version above every one forged before.
    pub fn next_version(&self) -> u64 {
        let v = self.next.get();
        self.next.set(v + 1);
        v
    }

    /// What a client trusting `root.json` accepts from the directory now,
    /// down to simple_api's role (expiry not judged).
    pub fn trusted(&self) -> TrustedSet {
        let root = std::fs::read(self.keys_dir.join("root.json")).unwrap();
        let mut r = Refresh::new(
            TrustedSet::from_root(&root).unwrap(),
            Some("simple_api"),
            None,
        );
        while let Some(f) = r.next() {
            let bytes = std::fs::read(self.dir.join(&f.path)).ok();
            r.feed(bytes.as_deref()).unwrap();
        }
        r.finish().unwrap()
    }

    /// The stable channel's manifest when the forge was made.
    pub fn manifest(&self) -> Manifest {
        let set = &self.base;
        let role = &set.delegated("simple_api").unwrap().doc;
        let target = channel_target("simple_api", "stable");
        let sha = role.targets[&target].sha256().unwrap().to_owned();
        let bytes = std::fs::read(self.dir.join(target_file_path(&target, &sha))).unwrap();
        Manifest::from_json(&bytes).unwrap()
    }

    /// The path of the stable manifest's artifact for this machine.
    pub fn artifact_path(&self) -> PathBuf {
        let m = self.manifest();
        let set = &self.base;
        let role = &set.delegated("simple_api").unwrap().doc;
        let a = m
            .artifact_for(ferry_format::manifest::host_target())
            .unwrap();
        let sha = role.targets[&a.target].sha256().unwrap().to_owned();
        self.dir.join(target_file_path(&a.target, &sha))
    }

    /// Writes files into the repository.
    pub fn write(&self, files: &[NewFile]) {
        for f in files {
            let path = self.dir.join(&f.path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, &f.bytes).unwrap();
        }
    }

    /// Publishes `bytes` as simple_api's stable manifest on top of
    /// [`Forge::base`]: the app's role signed by `release`, snapshot and
    /// timestamp by `online` (expiring at `expires`), all at a new highest
    /// version; `edit` may change the role before it is signed.
    pub fn channel_with(
        &self,
        bytes: &[u8],
        release: &SecretKey,
        online: &SecretKey,
        expires: u64,
        edit: impl FnOnce(&mut ferry_format::tuf::Targets),
    ) {
        let set = &self.base;
        let version = self.next_version();
        let mut role = set.delegated("simple_api").unwrap().doc.clone();
        role.version = version;
        let target = channel_target("simple_api", "stable");
        let sha = ferry_format::digest::sha256_hex(bytes);
        self.write(&[NewFile {
            path: target_file_path(&target, &sha),
            bytes: bytes.to_vec(),
        }]);
        role.targets.insert(
            target,
            TargetFile {
                length: bytes.len() as u64,
                hashes: BTreeMap::from([("sha256".to_owned(), sha)]),
                custom: None,
            },
        );
        edit(&mut role);
        let mut d = Draft::on(Some(set));
        d.raise_online_versions(version);
        d.put_role("simple_api", &role, &[release]);
        self.write(&d.finish(&[online], FAR, expires).unwrap());
    }

    /// [`Forge::channel_with`] with the right keys and no edit.
    pub fn channel(&self, bytes: &[u8]) {
        self.channel_with(bytes, &self.release, &self.online, FAR, |_| {});
    }
}
