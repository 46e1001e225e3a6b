//! Checks before anything touches `current`, in the order DESIGN §6 gives:
//! the manifest's signature by a trusted key (before its JSON is parsed), its
//! trusted comment, app and channel, serial (replay), expiry (freeze), declared
//! size, agent version; then, after the download, the artifact's own embedded
//! signature and metadata. Each refusal is a typed error that says what was
//! wrong.

use std::fs::File;
use std::path::Path;

use ferry_format::manifest::{ArtifactKind, Manifest};
use ferry_format::{Container, Prehasher, PublicKey, Signature};
use sha2::{Digest as _, Sha256};

use crate::config::{AppSettings, Wariness};
use crate::state::AppState;

/// Why a release was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The signature text does not parse.
    #[error("manifest signature is malformed: {0}")]
    BadSignatureText(String),
    /// Not signed by a trusted key, or not matching.
    #[error("manifest signature check failed: {0}")]
    Signature(#[from] ferry_format::SignatureError),
    /// The manifest does not parse or validate.
    #[error("{0}")]
    Manifest(#[from] ferry_format::manifest::ManifestError),
    /// The trusted comment names other metadata.
    #[error("manifest signature's trusted comment `{0}` does not name this manifest's app, channel and serial")]
    Binding(String),
    /// For another app or channel.
    #[error("manifest is for {got}, this device follows {want}")]
    WrongTarget {
        /// What the manifest says.
        got: String,
        /// What is configured.
        want: String,
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
    /// Past `expires_at`.
    #[error("manifest expired at {expires_at} (now {now}): the repository may be frozen")]
    Expired {
        /// Expiry time.
        expires_at: u64,
        /// The device's clock.
        now: u64,
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

fn version_key(v: &str) -> Vec<u64> {
    v.split(['.', '-', '+'])
        .map(|p| p.parse().unwrap_or(0))
        .collect()
}

/// Verifies a fetched manifest against the device's keys, config and state.
pub fn check_manifest(
    bytes: &[u8],
    signature: &str,
    keys: &[PublicKey],
    app: &AppSettings,
    state: &AppState,
    max_size: u64,
    now: u64,
) -> Result<Manifest, Refusal> {
    let sig = Signature::parse(signature).map_err(|e| Refusal::BadSignatureText(e.to_string()))?;
    let mut pre = Prehasher::new();
    pre.update(bytes);
    sig.verify_prehash(keys, &pre.finish())?;
    let m = Manifest::from_json(bytes)?;
    if !m.matches_comment(&sig.trusted_comment) {
        return Err(Refusal::Binding(sig.trusted_comment.clone()));
    }
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
    // A clock before the newest publication seen is unset (boards without an
    // RTC boot in 1970): expiry cannot be judged, the other checks still hold.
    let clock_is_set = now >= state.last_published_at.max(m.published_at);
    if clock_is_set && now > m.expires_at {
        return Err(Refusal::Expired {
            expires_at: m.expires_at,
            now,
        });
    }
    if m.artifact.size > max_size {
        return Err(Refusal::TooLarge {
            size: m.artifact.size,
            limit: max_size,
        });
    }
    if let Some(needed) = &m.min_agent_version {
        let have = env!("CARGO_PKG_VERSION");
        if version_key(needed) > version_key(have) {
            return Err(Refusal::AgentTooOld {
                needed: needed.clone(),
                have: have.to_owned(),
            });
        }
    }
    Ok(m)
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
/// a valid embedded signature by a trusted key, and name this app and version.
pub fn check_artifact(
    path: &Path,
    kind: ArtifactKind,
    keys: &[PublicKey],
    app: &str,
    version: &str,
) -> Result<(), Refusal> {
    match kind {
        ArtifactKind::File => Ok(()),
        ArtifactKind::Ferry => {
            let mut f =
                File::open(path).map_err(|e| Refusal::Artifact(format!("cannot open: {e}")))?;
            let c = Container::read_from(&mut f).map_err(|e| Refusal::Artifact(e.to_string()))?;
            c.verify(&mut f, keys)
                .map_err(|e| Refusal::Artifact(e.to_string()))?;
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
        let sha = "ab".repeat(32);
        let mut m = Manifest {
            schema: 1,
            app: "simple_api".into(),
            channel: "stable".into(),
            serial: 1,
            version: "2.0.0".into(),
            artifact: ferry_format::manifest::Artifact {
                path: format!("blobs/sha256/{sha}"),
                sha256: sha,
                size: 1,
                kind: ArtifactKind::Ferry,
            },
            published_at: 1,
            expires_at: 2,
            rollout: ferry_format::manifest::Rollout {
                percent: 1,
                halted: false,
            },
            min_agent_version: None,
            notes: None,
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
