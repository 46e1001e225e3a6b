//! `ferry publish`: puts a release into the static update repository
//! (`docs/repository.md`). It first checks the repository from the trusted
//! root down (so it never signs on top of something it cannot verify), then
//! writes the artifacts and the channel's manifest as new target files, the
//! app's role signed by the release key, and the snapshot and timestamp
//! signed by the timestamp key — timestamp last, so a reader never sees
//! metadata naming a file that is not there yet.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use ferry_format::manifest::{Artifact, ArtifactKind, Manifest, Rollout, SCHEMA, TARGETS};
use ferry_format::tuf::layout::{artifact_target, channel_target, is_safe_target_path};
use ferry_format::tuf::writer::{empty_targets, next_version, Draft};
use ferry_format::tuf::{Key, TargetFile, TrustedSet};
use ferry_format::SecretKey;
use serde_json::json;

use super::{open, Opened};
use crate::cli::PublishArgs;
use crate::keyfile;
use crate::repository::{delegation_keys, hash_file, now, LocalRepo};

/// Parses `30d`, `12h`, `90m`, `45s` or plain seconds.
pub fn parse_duration(text: &str) -> Result<u64> {
    let t = text.trim();
    let (num, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let n: u64 = num
        .parse()
        .with_context(|| format!("`{text}` is not a duration like 30d, 12h, 90m"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("`{text}` has an unknown unit; use s, m, h or d"),
    };
    n.checked_mul(mult)
        .with_context(|| format!("`{text}` is too long"))
}

/// The target an ELF file is built for, from its header's machine field.
pub fn elf_target(path: &Path) -> Result<&'static str> {
    let mut head = [0u8; 20];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .with_context(|| format!("cannot read the ELF header of `{}`", path.display()))?;
    if &head[..4] != b"\x7fELF" {
        bail!("`{}` is not an ELF file", path.display());
    }
    let machine = if head[5] == 1 {
        u16::from_le_bytes([head[18], head[19]])
    } else {
        u16::from_be_bytes([head[18], head[19]])
    };
    match (machine, head[4]) {
        (62, 2) => Ok("x86_64-linux-gnu"),
        (183, 2) => Ok("aarch64-linux-gnu"),
        (40, 1) => Ok("arm-linux-gnueabihf"),
        _ => bail!(
            "`{}` is built for ELF machine {machine}, which ferry does not ship to",
            path.display()
        ),
    }
}

/// One file of a release.
struct Part {
    path: PathBuf,
    target: String,
    kind: ArtifactKind,
}

/// Refuses a release key that is not among the app's delegated keys.
pub fn check_release_key(set: &TrustedSet, app: &str, key: &SecretKey, path: &Path) -> Result<()> {
    let keys = delegation_keys(set, app)?;
    if !keys.iter().any(|k: &Key| k.is(&key.public_key())) {
        bail!(
            "`{}` (key {}) is not a release key of app `{app}`\nhint: the root key holder delegates it: `ferry repo delegate --app {app} --release-pubkey …`",
            path.display(),
            key.id()
        );
    }
    Ok(())
}

/// Writes a release: new target files, the app's role, snapshot, timestamp.
/// `new_files` are (target path, local file) pairs to add to the role.
pub fn write_release(
    repo: &LocalRepo,
    set: &TrustedSet,
    manifest: &Manifest,
    new_files: &[(String, PathBuf)],
    release: &SecretKey,
    online: &SecretKey,
    role_expires: u64,
) -> Result<()> {
    let app = &manifest.app;
    let mut role = match set.delegated(app) {
        Some(t) => {
            let mut doc = t.doc.clone();
            doc.version = next_version(app, &t.doc)?;
            doc
        }
        None => empty_targets(1, role_expires),
    };
    role.expires = ferry_format::tuf::time::format_utc(role_expires);
    for (target, file) in new_files {
        let (sha256, size) = hash_file(file)?;
        let listed_other = role
            .targets
            .get(target)
            .is_some_and(|old| old.sha256() != Some(sha256.as_str()));
        if listed_other || repo.has_other_target_file(target, &sha256)? {
            bail!(
                "`{target}` is already published with other bytes; versions are immutable, so publish this build under a new version"
            );
        }
        repo.copy_target(target, &sha256, file)?;
        role.targets.insert(
            target.clone(),
            TargetFile {
                length: size,
                hashes: BTreeMap::from([("sha256".to_owned(), sha256)]),
                custom: Some(json!({ "ferry": { "app": app, "version": manifest.version } })),
            },
        );
    }
    let bytes = manifest.to_json();
    let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    let target = channel_target(app, &manifest.channel);
    repo.write_file(
        &ferry_format::tuf::layout::target_file_path(&target, &sha256),
        &bytes,
    )?;
    role.targets.insert(
        target,
        TargetFile {
            length: bytes.len() as u64,
            hashes: BTreeMap::from([("sha256".to_owned(), sha256)]),
            custom: None,
        },
    );
    prune_unreferenced(repo, &mut role, app)?;
    let mut draft = Draft::on(Some(set));
    draft.put_role(app, &role, &[release]);
    let (snap, ts) = super::repo::online_expiries()?;
    repo.write(&draft.finish(&[online], snap, ts)?)
}

/// Drops from the app's role the artifacts no channel's manifest names any
/// more, so the role (which every device fetches when it changes) stays the
/// size of what is published, not of everything ever published. The files
/// stay in `targets/`; publishing such a version again names them again.
fn prune_unreferenced(
    repo: &LocalRepo,
    role: &mut ferry_format::tuf::Targets,
    app: &str,
) -> Result<()> {
    let prefix = format!("{app}/");
    let channels: Vec<String> = role
        .targets
        .keys()
        .filter_map(|t| t.strip_prefix(&prefix)?.strip_suffix(".json"))
        .filter(|c| !c.contains('/'))
        .map(str::to_owned)
        .collect();
    let mut keep = std::collections::BTreeSet::new();
    for channel in &channels {
        keep.insert(channel_target(app, channel));
        if let Some(m) = repo.channel(role, app, channel)? {
            keep.extend(m.artifacts.values().map(|a| a.target.clone()));
        }
    }
    role.targets.retain(|t, _| keep.contains(t));
    Ok(())
}

/// Reads each file of the release and checks they are one app and version.
fn parts(args: &PublishArgs, key: &SecretKey) -> Result<(Vec<Part>, String, String)> {
    let mut parts = Vec::new();
    let mut ident: Option<(String, String)> = None;
    for path in &args.files {
        let (part, app, version) = match open(path)? {
            Opened::Container(mut file, c) => {
                let m = &c.metadata;
                c.verify(&mut file, &[key.public_key()]).map_err(|e| {
                    anyhow::anyhow!(
                        "`{}` is not signed by the release key {}: {e}\nhint: sign it first with `ferry sign {} --key {}` (devices check the embedded signature)",
                        path.display(),
                        key.id(),
                        path.display(),
                        args.key.display()
                    )
                })?;
                for (flag, given, actual) in [
                    ("--app", &args.app, &m.name),
                    ("--version", &args.version, &m.version),
                ] {
                    if let Some(g) = given {
                        if g != actual {
                            bail!(
                                "{flag} `{g}` differs from `{}`'s own `{actual}`",
                                path.display()
                            );
                        }
                    }
                }
                let target = elf_target(path)?.to_owned();
                (
                    Part {
                        path: path.clone(),
                        target,
                        kind: ArtifactKind::Ferry,
                    },
                    m.name.clone(),
                    m.version.clone(),
                )
            }
            Opened::Plain(_) => {
                if args.files.len() > 1 {
                    bail!(
                        "`{}` is not a ferry binary; plain files are published one at a time",
                        path.display()
                    );
                }
                let app = args
                    .app
                    .clone()
                    .context("--app is needed for a file that is not a ferry binary")?;
                let version = args
                    .version
                    .clone()
                    .context("--version is needed for a file that is not a ferry binary")?;
                let target = match &args.target {
                    Some(t) => t.clone(),
                    None => elf_target(path)
                        .map(str::to_owned)
                        .unwrap_or_else(|_| ferry_format::manifest::host_target().to_owned()),
                };
                (
                    Part {
                        path: path.clone(),
                        target,
                        kind: ArtifactKind::File,
                    },
                    app,
                    version,
                )
            }
        };
        if !TARGETS.contains(&part.target.as_str()) {
            bail!(
                "target `{}` is not one of {}",
                part.target,
                TARGETS.join(", ")
            );
        }
        if parts.iter().any(|p: &Part| p.target == part.target) {
            bail!("two files for {}: give one binary per target", part.target);
        }
        match &ident {
            None => ident = Some((app, version)),
            Some((a, v)) if *a != app || *v != version => bail!(
                "`{}` is {app} {version}, but `{}` is {a} {v}: one release is one app and version",
                path.display(),
                args.files[0].display()
            ),
            Some(_) => {}
        }
        parts.push(part);
    }
    let (app, version) = ident.expect("at least one file");
    Ok((parts, app, version))
}

/// Runs `ferry publish`.
pub fn run(args: PublishArgs) -> Result<ExitCode> {
    let key = keyfile::load_secret(&args.key, &args.password)?;
    let online = keyfile::load_secret(&args.trust.timestamp_key, &args.password)?;
    let role_expires = now().saturating_add(parse_duration(&args.expires_in)?);
    if args.percent > 100 {
        bail!("--percent {} is outside 0-100", args.percent);
    }
    let (parts, app, version) = parts(&args, &key)?;
    let repo = LocalRepo::new(&args.trust.repo);
    let set = repo.load(&args.trust.root, Some(&app))?;
    check_release_key(&set, &app, &key, &args.key)?;
    let previous = match set.delegated(&app) {
        Some(role) => repo.channel(&role.doc, &app, &args.channel)?,
        None => None,
    };
    let last = previous.as_ref().map(|m| m.serial).unwrap_or(0);
    let serial = match args.serial {
        Some(s) if s <= last => {
            bail!("--serial {s} is not above the channel's current serial {last}")
        }
        Some(s) => s,
        None => last
            .checked_add(1)
            .context("the channel's serial cannot rise further")?,
    };
    let mut artifacts = BTreeMap::new();
    let mut files = Vec::new();
    for p in &parts {
        let target = artifact_target(&app, &version, &p.target);
        if !is_safe_target_path(&target) {
            bail!("version `{version}` cannot be part of a path: use A-Z a-z 0-9 . _ + - only");
        }
        artifacts.insert(
            p.target.clone(),
            Artifact {
                target: target.clone(),
                kind: p.kind,
            },
        );
        files.push((target, p.path.clone()));
    }
    let manifest = Manifest {
        schema: SCHEMA,
        app,
        channel: args.channel.clone(),
        serial,
        version,
        artifacts,
        published_at: now(),
        rollout: Rollout {
            percent: args.percent,
            halted: false,
        },
        min_agent_version: args.min_agent_version.clone(),
        notes: args.notes.clone(),
    };
    manifest
        .validate()
        .context("the release cannot be published")?;
    write_release(&repo, &set, &manifest, &files, &key, &online, role_expires)?;
    eprintln!(
        "published {} {} to channel `{}` as serial {} for {}",
        manifest.app,
        manifest.version,
        manifest.channel,
        serial,
        manifest
            .artifacts
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("{}", repo.dir().join("metadata/timestamp.json").display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d").unwrap(), 30 * 86_400);
        assert_eq!(parse_duration("90m").unwrap(), 5400);
        assert_eq!(parse_duration("45").unwrap(), 45);
        assert!(parse_duration("3w").is_err());
        assert!(parse_duration("d").is_err());
    }
}
