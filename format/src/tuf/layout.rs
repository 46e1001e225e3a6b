//! Where each document and target lives in a ferry repository (consistent
//! snapshots, as python-tuf fetches them):
//!
//! ```text
//! metadata/<N>.root.json          every root, kept for good (devices walk them)
//! metadata/timestamp.json         the only file ever replaced
//! metadata/<N>.snapshot.json
//! metadata/<N>.targets.json
//! metadata/<N>.<app>.json         the app's delegated role
//! targets/<app>/<sha256>.<channel>.json              the channel's release manifest
//! targets/<app>/<version>/<target>/<sha256>.<file>   an artifact
//! ```

use crate::container::is_valid_name;

/// Top-level role names, which no app may take.
pub const TOP_LEVEL_ROLES: [&str; 4] = ["root", "timestamp", "snapshot", "targets"];

/// The directory of every signed document; a repository exists once it has one.
pub const METADATA_DIR: &str = "metadata";
/// The directory of every target file.
pub const TARGETS_DIR: &str = "targets";

/// The path of a document of role `role` at `version` (timestamp: no
/// version). Role names are app names, which need no URL quoting.
pub fn metadata_path(role: &str, version: Option<u64>) -> String {
    match version {
        Some(v) => format!("{METADATA_DIR}/{v}.{role}.json"),
        None => format!("{METADATA_DIR}/{role}.json"),
    }
}

/// The path of the timestamp: the one document replaced in place, written
/// last by a publisher and fetched first by a device.
pub fn timestamp_path() -> String {
    metadata_path("timestamp", None)
}

/// The path of root `version`; devices are provisioned with version 1 (or a
/// later one) and walk the rest.
pub fn root_path(version: u64) -> String {
    metadata_path("root", Some(version))
}

/// The path of target `target` whose SHA-256 is `sha256`: the hash prefixes
/// the file name, so a new file never replaces an old one in place.
pub fn target_file_path(target: &str, sha256: &str) -> String {
    match target.rsplit_once('/') {
        Some((dir, name)) => format!("{TARGETS_DIR}/{dir}/{sha256}.{name}"),
        None => format!("{TARGETS_DIR}/{sha256}.{target}"),
    }
}

/// The directory of an app's target files: its channels' manifests, and
/// one subdirectory per version.
pub fn app_target_dir(app: &str) -> String {
    format!("{TARGETS_DIR}/{app}")
}

/// The target path of a channel's manifest.
pub fn channel_target(app: &str, channel: &str) -> String {
    format!("{app}/{channel}.json")
}

/// The target path of an app's artifact of `version` for `target` (a
/// multiarch triple such as `aarch64-linux-gnu`).
pub fn artifact_target(app: &str, version: &str, target: &str) -> String {
    format!("{app}/{version}/{target}/{app}")
}

/// The path patterns an app's role is trusted for.
pub fn app_paths(app: &str) -> Vec<String> {
    vec![format!("{app}/*"), format!("{app}/*/*/*")]
}

/// Whether `name` can be an app's role: a valid name that is no top-level role.
pub fn is_valid_app_role(name: &str) -> bool {
    is_valid_name(name) && !TOP_LEVEL_ROLES.contains(&name)
}

/// Whether every segment of a target path is safe in a URL and a file name:
/// `A-Z a-z 0-9 . _ + -`, not empty, not starting with `.`.
pub fn is_safe_target_path(path: &str) -> bool {
    path.len() <= 1024
        && path.split('/').all(|seg| {
            !seg.is_empty()
                && !seg.starts_with('.')
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(metadata_path("timestamp", None), "metadata/timestamp.json");
        assert_eq!(metadata_path("app", Some(3)), "metadata/3.app.json");
        assert_eq!(timestamp_path(), "metadata/timestamp.json");
        assert_eq!(root_path(1), "metadata/1.root.json");
        assert_eq!(app_target_dir("app"), "targets/app");
        assert_eq!(
            target_file_path("app/1.0/x86_64-linux-gnu/app", "ab"),
            "targets/app/1.0/x86_64-linux-gnu/ab.app"
        );
        assert!(is_safe_target_path("app/1.0+local/x86_64-linux-gnu/app"));
        assert!(!is_safe_target_path("app/../x"));
        assert!(!is_safe_target_path("app//x"));
        assert!(!is_safe_target_path("app/a%2f"));
        assert!(!is_valid_app_role("targets"));
    }
}
