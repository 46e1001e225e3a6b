//! Checks before anything touches `current`. The repository's metadata was
//! verified by [`crate::trust`] (roles, thresholds, versions, expiry); here
//! the channel's manifest is checked against the app's role that signed its
//! hash, then against the device: app and channel, serial (replay), an
//! artifact for this device's target, its kind, size and the agent version;
//! after the download, the artifact's own embedded signature by one of the
//! app's release keys, and its metadata. Each refusal is a typed error that
//! says what was wrong.

use std::fs::File;
use std::path::Path;

use ferry_format::manifest::{Artifact, ArtifactKind, Manifest};
use ferry_format::tuf::{Key, TargetFile, Targets, TufError};
use ferry_format::Container;
use sha2::{Digest as _, Sha256};

use crate::config::{AppSettings, Wariness};
use crate::state::AppState;

/// Why a release was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// A metadata document broke a TUF rule.
    #[error("repository metadata `{path}` refused: {rule}")]
    Metadata {
        /// The file.
        path: String,
        /// The rule it broke (shown in the message, so not chained again).
        rule: TufError,
    },
    /// The repository served something no retry fixes (over a size cap, a
    /// refused redirect, a 404 for a file the metadata names…).
    #[error("{0}")]
    Repository(String),
    /// The manifest does not parse or validate.
    #[error("{0}")]
    Manifest(#[from] ferry_format::manifest::ManifestError),
    /// The manifest is not the file the app's role signed.
    #[error("the channel manifest is not the file the release keys signed ({0})")]
    ManifestHash(String),
    /// For another app or channel.
    #[error("manifest is for {got}, this device follows {want}")]
    WrongTarget {
        /// What the manifest says.
        got: String,
        /// What is configured.
        want: String,
    },
    /// Nothing is published on the channel.
    #[error("nothing is published for {app} on channel `{channel}`")]
    NoRelease {
        /// App.
        app: String,
        /// Channel.
        channel: String,
    },
    /// A serial lower than one already accepted: a replayed old manifest.
    #[error(
        "manifest serial {got} is lower than the last accepted serial {last} (replayed manifest?)"
    )]
    LowerSerial {
        /// Serial in the manifest.
        got: u64,
        /// Last accepted.
        last: u64,
    },
    /// The release has no artifact for this device.
    #[error("no {target} artifact in release {version}: this board needs one built for it (`ferry build --target {target}`, then publish it with the others)")]
    NoArtifact {
        /// The release.
        version: String,
        /// This device's target.
        target: String,
    },
    /// The app's role lists no such target file.
    #[error("release {version} names the target `{target}`, which the app's role does not sign")]
    UnsignedTarget {
        /// The release.
        version: String,
        /// The target path.
        target: String,
    },
    /// A plain file, and the device does not take those.
    #[error("release {version} is a plain file, not a ferry binary; the device takes those only with `allow-plain-files = true`")]
    PlainFile {
        /// The release.
        version: String,
    },
    /// Declared size over the limit.
    #[error("artifact declares {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// Declared size.
        size: u64,
        /// Configured limit.
        limit: u64,
    },
    /// Needs a newer agent.
    #[error("release needs ferryd {needed} or newer; this is {have}")]
    AgentTooOld {
        /// Required version.
        needed: String,
        /// This agent's version.
        have: String,
    },
    /// The artifact's own checks failed.
    #[error("artifact refused: {0}")]
    Artifact(String),
}

/// A release the channel offers this device, checked.
#[derive(Debug, Clone)]
pub struct Offer {
    /// The manifest.
    pub manifest: Manifest,
    /// This device's artifact.
    pub artifact: Artifact,
    /// Its size and hashes, as the app's role signs them.
    pub file: TargetFile,
    /// Its SHA-256.
    pub sha256: String,
}

/// Checks a channel manifest's bytes against the app's role (`info` is the
/// role's entry for it) and the device's config and state.
#[allow(clippy::too_many_arguments)]
pub fn check_manifest(
    bytes: &[u8],
    info: &TargetFile,
    role: &Targets,
    app: &AppSettings,
    state: &AppState,
    max_size: u64,
    allow_plain_files: bool,
    target: &str,
) -> Result<Offer, Refusal> {
    let actual = ferry_format::digest::sha256_hex(bytes);
    if bytes.len() as u64 != info.length || info.sha256() != Some(actual.as_str()) {
        return Err(Refusal::ManifestHash(format!(
            "{} bytes, SHA-256 {}",
            bytes.len(),
            &actual[..12]
        )));
    }
    let m = Manifest::from_json(bytes)?;
    if m.app != app.name || m.channel != app.channel {
        return Err(Refusal::WrongTarget {
            got: format!("{}/{}", m.app, m.channel),
            want: format!("{}/{}", app.name, app.channel),
        });
    }
    if m.serial < state.last_serial {
        return Err(Refusal::LowerSerial {
            got: m.serial,
            last: state.last_serial,
        });
    }
    let artifact = m
        .artifact_for(target)
        .cloned()
        .ok_or_else(|| Refusal::NoArtifact {
            version: m.version.clone(),
            target: target.to_owned(),
        })?;
    if artifact.kind == ArtifactKind::File && !allow_plain_files {
        return Err(Refusal::PlainFile {
            version: m.version.clone(),
        });
    }
    let file =
        role.targets
            .get(&artifact.target)
            .cloned()
            .ok_or_else(|| Refusal::UnsignedTarget {
                version: m.version.clone(),
                target: artifact.target.clone(),
            })?;
    let sha256 = file
        .sha256()
        .ok_or_else(|| Refusal::UnsignedTarget {
            version: m.version.clone(),
            target: artifact.target.clone(),
        })?
        .to_owned();
    if file.length > max_size {
        return Err(Refusal::TooLarge {
            size: file.length,
            limit: max_size,
        });
    }
    if let Some(needed) = &m.min_agent_version {
        let have = env!("CARGO_PKG_VERSION");
        if ferry_format::version::is_older(have, needed) {
            return Err(Refusal::AgentTooOld {
                needed: needed.clone(),
                have: have.to_owned(),
            });
        }
    }
    Ok(Offer {
        manifest: m,
        artifact,
        file,
        sha256,
    })
}

/// Whether this device takes the release under the rollout: not halted, and
/// the device's bucket (see [`bucket`]) below the percentage — a canary counts
/// as bucket 0 (first), a cautious device as bucket 99 (last, at 100 % only).
pub fn in_rollout(m: &Manifest, device_id: &str, wariness: Wariness) -> bool {
    let b = match wariness {
        Wariness::Canary => 0,
        Wariness::Normal => bucket(device_id, &m.app, &m.version),
        Wariness::Cautious => 99,
    };
    !m.rollout.halted && b < u64::from(m.rollout.percent)
}

/// The device's stable bucket, 0–99, for an app's version: the first 8 bytes
/// of SHA-256(`<device_id>:<app>:<version>`) as a big-endian integer, modulo
/// 100. Documented in docs/repository.md so anyone can compute which devices
/// a percentage reaches; SHA-256 does not change between Rust releases.
pub fn bucket(device_id: &str, app: &str, version: &str) -> u64 {
    let digest = Sha256::digest(format!("{device_id}:{app}:{version}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) % 100
}

/// Checks a downloaded artifact beyond its checksum: a ferry binary must carry
/// a valid embedded signature by one of the app's release keys (`keys`, from
/// its role's delegation), and name this app and version.
pub fn check_artifact(
    path: &Path,
    kind: ArtifactKind,
    keys: &[Key],
    app: &str,
    version: &str,
) -> Result<(), Refusal> {
    match kind {
        ArtifactKind::File => Ok(()),
        ArtifactKind::Ferry => {
            let mut f =
                File::open(path).map_err(|e| Refusal::Artifact(format!("cannot open: {e}")))?;
            let c = Container::read_from(&mut f).map_err(|e| Refusal::Artifact(e.to_string()))?;
            let sig = c
                .signature
                .as_ref()
                .ok_or_else(|| Refusal::Artifact("the binary is not signed".into()))?;
            // TUF keys carry no minisign key id: offer each under the id
            // the signature names; the Ed25519 check decides.
            let candidates: Vec<_> = keys
                .iter()
                .filter_map(|k| k.to_public(sig.key_id))
                .collect();
            let mut last = None;
            let mut verified = false;
            for key in &candidates {
                match c.verify(&mut f, std::slice::from_ref(key)) {
                    Ok(_) => {
                        verified = true;
                        break;
                    }
                    Err(e) => last = Some(e.to_string()),
                }
            }
            if !verified {
                return Err(Refusal::Artifact(format!(
                    "the embedded signature is not by a release key of `{app}`{}",
                    last.map(|e| format!(": {e}")).unwrap_or_default()
                )));
            }
            if c.metadata.name != app || c.metadata.version != version {
                return Err(Refusal::Artifact(format!(
                    "binary is {} {}, the manifest says {app} {version}",
                    c.metadata.name, c.metadata.version
                )));
            }
            Ok(())
        }
    }
}

/// The keys of `app`'s delegation in `targets`, and their sorted ids (what a
/// device remembers to notice a rotation).
pub fn release_keys(targets: &Targets, app: &str) -> (Vec<Key>, Vec<String>) {
    let Some(role) = targets.delegation(app) else {
        return (Vec::new(), Vec::new());
    };
    let keys = targets
        .delegations
        .as_ref()
        .map(|d| {
            role.keyids
                .iter()
                .filter_map(|id| d.keys.get(id).cloned())
                .collect()
        })
        .unwrap_or_default();
    let mut ids = role.keyids.clone();
    ids.sort();
    ids.push(format!("threshold={}", role.threshold));
    (keys, ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The simulation docs/repository.md reports: 10,000 machine-id-like
    /// device ids, the share of them each percentage reaches.
    #[test]
    fn ten_thousand_devices_land_within_one_percent() {
        let ids: Vec<String> = (0..10_000u64)
            .map(|i| hex::encode(&Sha256::digest(format!("device-{i}").as_bytes())[..16]))
            .collect();
        for version in ["1.0.0", "2.0.0"] {
            let mut line = format!("version {version}:");
            for percent in [1u64, 5, 10, 25, 50, 75, 90, 99] {
                let reached = ids
                    .iter()
                    .filter(|id| bucket(id, "simple_api", version) < percent)
                    .count();
                let share = reached as f64 / 100.0;
                line.push_str(&format!(" {percent}%→{share:.2}%"));
                assert!(
                    (share - percent as f64).abs() <= 1.0,
                    "{percent}% reached {share}%"
                );
            }
            println!("{line}");
        }
    }

    #[test]
    fn canaries_go_first_cautious_devices_last_and_halt_stops_all() {
        let mut m = Manifest {
            schema: ferry_format::manifest::SCHEMA,
            app: "simple_api".into(),
            channel: "stable".into(),
            serial: 1,
            version: "2.0.0".into(),
            artifacts: Default::default(),
            published_at: 1,
            rollout: ferry_format::manifest::Rollout {
                percent: 1,
                halted: false,
            },
            min_agent_version: None,
            notes: None,
            url: None,
        };
        // A device whose bucket is above 1.
        let device = (0..)
            .map(|i| format!("d{i}"))
            .find(|d| bucket(d, "simple_api", "2.0.0") > 1)
            .unwrap();
        assert!(in_rollout(&m, &device, Wariness::Canary));
        assert!(!in_rollout(&m, &device, Wariness::Normal));
        m.rollout.percent = 99;
        assert!(!in_rollout(&m, &device, Wariness::Cautious));
        m.rollout.percent = 100;
        assert!(in_rollout(&m, &device, Wariness::Cautious));
        m.rollout.halted = true;
        assert!(!in_rollout(&m, &device, Wariness::Canary));
    }

    #[test]
    fn buckets_are_stable_and_spread() {
        assert_eq!(bucket("dev", "app", "1.0"), bucket("dev", "app", "1.0"));
        let n = 10_000;
        let under_50 = (0..n)
            .filter(|i| bucket(&format!("device-{i}"), "app", "1.0") < 50)
            .count();
        let share = under_50 as f64 / n as f64;
        assert!((share - 0.5).abs() < 0.02, "{share}");
    }
}
