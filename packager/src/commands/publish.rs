//! `ferry publish`: puts a release into the static update repository
//! (`docs/repository.md`): the artifact as a content-addressed blob first, then
//! the manifest's signature, then the manifest itself, each written to a
//! temporary file and renamed, so a reader never sees a manifest whose blob is
//! missing.

use std::fs::File;
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use ferry_format::manifest::{Artifact, ArtifactKind, Manifest, Rollout, SCHEMA};
use ferry_format::{Prehasher, SecretKey, Signature};
use ferry_fsutil::AtomicFile;
use sha2::{Digest as _, Sha256};

use super::{detached_path, open, Opened};
use crate::cli::PublishArgs;
use crate::keyfile;

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

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The manifest path of an app's channel.
pub fn manifest_path(repo: &Path, app: &str, channel: &str) -> PathBuf {
    repo.join("apps").join(app).join(format!("{channel}.json"))
}

/// Reads the channel's current manifest, if any (it is ours: parse, not trust).
pub fn current_manifest(repo: &Path, app: &str, channel: &str) -> Result<Option<Manifest>> {
    let path = manifest_path(repo, app, channel);
    match std::fs::read(&path) {
        Ok(bytes) => Manifest::from_json(&bytes)
            .map(Some)
            .with_context(|| format!("the current manifest `{}` is unreadable", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read `{}`", path.display())),
    }
}

/// Signs and writes a manifest: signature first, manifest last.
pub fn write_manifest(repo: &Path, manifest: &Manifest, key: &SecretKey) -> Result<PathBuf> {
    let path = manifest_path(repo, &manifest.app, &manifest.channel);
    let dir = path.parent().expect("manifest path has a parent");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    let bytes = manifest.to_json();
    let mut pre = Prehasher::new();
    pre.update(&bytes);
    let sig = Signature::sign_prehashed(
        key,
        &pre.finish(),
        &manifest.trusted_comment().to_string(),
        &format!(
            "ferry manifest of {} {} by key {}",
            manifest.app,
            manifest.channel,
            key.id()
        ),
    )?;
    let sig_path = detached_path(&path);
    let mtime = next_mtime(&[&path, &sig_path]);
    write_with_mtime(&sig_path, sig.to_text().as_bytes(), mtime)?;
    write_with_mtime(&path, &bytes, mtime)?;
    Ok(path)
}

/// A modification time later than the files' current ones, in whole seconds.
/// Static servers derive ETags and `Last-Modified` from mtime (seconds) and
/// size (nginx: `"<mtime>-<size>"`): two manifests of the same size written
/// within one second would share an ETag, and a device holding the first one
/// would be answered `304 Not Modified` for the second forever.
fn next_mtime(paths: &[&Path]) -> SystemTime {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let newest = paths
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok()?.modified().ok())
        .filter_map(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs() + 1)
        .max()
        .unwrap_or(0);
    UNIX_EPOCH + Duration::from_secs(now.max(newest))
}

/// `write_atomic` with a chosen modification time.
fn write_with_mtime(path: &Path, bytes: &[u8], mtime: SystemTime) -> Result<()> {
    let mut f = AtomicFile::create(path, 0o644)
        .with_context(|| format!("cannot create `{}`", path.display()))?;
    io::Write::write_all(&mut f, bytes)?;
    f.file().set_modified(mtime)?;
    f.commit()
        .with_context(|| format!("cannot write `{}`", path.display()))
}

/// Copies the artifact into `blobs/sha256/<hex>` unless it is already there.
fn store_blob(repo: &Path, file: &mut File, sha256: &str, size: u64) -> Result<String> {
    let rel = format!("blobs/sha256/{sha256}");
    let dest = repo.join(&rel);
    if dest.metadata().map(|m| m.len() == size).unwrap_or(false) {
        return Ok(rel);
    }
    let dir = dest.parent().expect("blob path has a parent");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    let mut out = AtomicFile::create(&dest, 0o644)
        .with_context(|| format!("cannot create `{}`", dest.display()))?;
    file.seek(SeekFrom::Start(0))?;
    io::copy(file, &mut out)?;
    out.commit()
        .with_context(|| format!("cannot write `{}`", dest.display()))?;
    Ok(rel)
}

fn hash_file(file: &mut File) -> Result<(String, u64)> {
    file.seek(SeekFrom::Start(0))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok((hex::encode(h.finalize()), size));
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
}

/// Runs `ferry publish`.
pub fn run(args: PublishArgs) -> Result<ExitCode> {
    let key = keyfile::load_secret(&args.key, &args.password)?;
    let expires_in = parse_duration(&args.expires_in)?;
    if args.percent > 100 {
        bail!("--percent {} is outside 0-100", args.percent);
    }
    let (mut file, kind, app, version) = match open(&args.file)? {
        Opened::Container(mut file, c) => {
            let m = &c.metadata;
            c.verify(&mut file, &[key.public_key()]).map_err(|e| {
                anyhow::anyhow!(
                    "`{}` is not signed by the publishing key {}: {e}\nhint: sign it first with `ferry sign {} --key {}` (devices check the embedded signature)",
                    args.file.display(),
                    key.id(),
                    args.file.display(),
                    args.key.display()
                )
            })?;
            for (flag, given, actual) in [
                ("--app", &args.app, &m.name),
                ("--version", &args.version, &m.version),
            ] {
                if let Some(g) = given {
                    if g != actual {
                        bail!("{flag} `{g}` differs from the binary's own `{actual}`");
                    }
                }
            }
            (file, ArtifactKind::Ferry, m.name.clone(), m.version.clone())
        }
        Opened::Plain(file) => {
            let app = args
                .app
                .clone()
                .context("--app is needed for a file that is not a ferry binary")?;
            let version = args
                .version
                .clone()
                .context("--version is needed for a file that is not a ferry binary")?;
            (file, ArtifactKind::File, app, version)
        }
    };
    let previous = current_manifest(&args.repo, &app, &args.channel)?;
    let last = previous.as_ref().map(|m| m.serial).unwrap_or(0);
    let serial = match args.serial {
        Some(s) if s <= last => {
            bail!("--serial {s} is not above the channel's current serial {last}")
        }
        Some(s) => s,
        None => last + 1,
    };
    let (sha256, size) = hash_file(&mut file)?;
    let path = store_blob(&args.repo, &mut file, &sha256, size)?;
    let published_at = now();
    let manifest = Manifest {
        schema: SCHEMA,
        app,
        channel: args.channel.clone(),
        serial,
        version,
        artifact: Artifact {
            path,
            sha256,
            size,
            kind,
        },
        published_at,
        expires_at: published_at + expires_in,
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
    let written = write_manifest(&args.repo, &manifest, &key)?;
    eprintln!(
        "published {} {} to channel `{}` as serial {} ({} bytes, sha256 {}), expires in {}s",
        manifest.app,
        manifest.version,
        manifest.channel,
        serial,
        size,
        &manifest.artifact.sha256[..12],
        expires_in
    );
    println!("{}", written.display());
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
