//! `ferry publish`: puts a release into the static update repository
//! (`docs/repository.md`). It first checks the repository from the trusted
//! root down (so it never signs on top of something it cannot verify), then
//! writes the artifacts and the channel's manifest as new target files, the
//! app's role signed by the release key, and the snapshot and timestamp
//! signed by the timestamp key — timestamp last, so a reader never sees
//! metadata naming a file that is not there yet.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use ferry_format::clock::unix_now;
use ferry_format::manifest::{Artifact, ArtifactKind, Manifest, Rollout, SCHEMA, TARGETS};
use ferry_format::tuf::layout::{artifact_target, is_safe_target_path, timestamp_path};
use ferry_format::SecretKey;

use super::{open, Opened};
use crate::cli::PublishArgs;
use crate::keyfile;
use crate::log;
use crate::release::{check_release_key, write_release};
use crate::repository::{from_now, LocalRepo};

/// One file of a release.
struct Part {
    path: PathBuf,
    target: String,
    kind: ArtifactKind,
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
                let target = crate::target::of_file(path)?.multiarch().to_owned();
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
                    None => crate::target::of_file(path)
                        .map(|t| t.multiarch().to_owned())
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
    let role_expires = from_now(&args.expires_in)?;
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
        published_at: unix_now(),
        rollout: Rollout {
            percent: args.percent,
            halted: false,
        },
        min_agent_version: args.min_agent_version.clone(),
        notes: args.notes.clone(),
        url: args.release_url.clone(),
    };
    manifest
        .validate()
        .context("the release cannot be published")?;
    write_release(&repo, &set, &manifest, &files, &key, &online, role_expires)?;
    log::note(format!(
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
    ));
    println!("{}", repo.dir().join(timestamp_path()).display());
    Ok(ExitCode::SUCCESS)
}
