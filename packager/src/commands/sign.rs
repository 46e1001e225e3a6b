//! `ferry sign`: embed a signature into a ferry binary, or write a detached
//! `.minisig` beside any other file.

use std::fs::File;
use std::io::{self, Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use ferry_format::trusted_comment::TrustedComment;
use ferry_format::{Container, Prehasher, SecretKey, Signature};
use ferry_fsutil::{write_atomic, AtomicFile};

use super::{detached_path, open, Opened};
use crate::cli::SignArgs;
use crate::keyfile;
use crate::log;

/// Runs `ferry sign`.
pub fn run(args: SignArgs) -> Result<ExitCode> {
    let key = keyfile::load_secret(&args.key, &args.password)?;
    match open(&args.file)? {
        Opened::Container(mut file, container) if !args.detached => {
            embed(&args.file, &mut file, &container, &key)?;
            log::note(format!(
                "signed `{}` ({} {}) with key {}",
                args.file.display(),
                container.metadata.name,
                container.metadata.version,
                key.id()
            ));
        }
        Opened::Container(mut file, _) | Opened::Plain(mut file) => {
            let out = detached(&args.file, &mut file, &key, args.trusted_comment.as_deref())?;
            log::note(format!("wrote `{}` with key {}", out.display(), key.id()));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Rewrites the container with a new signature: the signed bytes are copied to
/// a temporary sibling, the signature block appended, and the copy renamed over
/// the original, so the file is never half-signed.
pub fn embed(path: &Path, file: &mut File, container: &Container, key: &SecretKey) -> Result<()> {
    let tail = container
        .sign(file, key)
        .with_context(|| format!("cannot sign `{}`", path.display()))?;
    let mode = file.metadata()?.permissions().mode() & 0o7777;
    let mut out = AtomicFile::create(path, mode)
        .with_context(|| format!("cannot write next to `{}`", path.display()))?;
    file.seek(SeekFrom::Start(0))?;
    let copied = io::copy(&mut file.take(container.signed_len), &mut out)?;
    if copied != container.signed_len {
        anyhow::bail!("`{}` changed while it was being signed", path.display());
    }
    out.write_all(&tail)?;
    out.commit()
        .with_context(|| format!("cannot replace `{}`", path.display()))
}

/// Writes `FILE.minisig` (prehashed, as current minisign does).
fn detached(
    path: &Path,
    file: &mut File,
    key: &SecretKey,
    comment: Option<&str>,
) -> Result<std::path::PathBuf> {
    file.seek(SeekFrom::Start(0))?;
    let prehash = Prehasher::hash_reader(file)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    let trusted = match comment {
        Some(c) => c.to_owned(),
        None => {
            let now = ferry_format::clock::unix_now();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            TrustedComment::new()
                .with("timestamp", now)?
                .with("file", name.replace(['\t', '\n', '\r'], "_"))?
                .to_string()
        }
    };
    let sig = Signature::sign_prehashed(
        key,
        &prehash,
        &trusted,
        &format!("signature from ferry secret key {}", key.id()),
    )?;
    let out = detached_path(path);
    write_atomic(&out, sig.to_text().as_bytes(), 0o644)
        .with_context(|| format!("cannot write `{}`", out.display()))?;
    Ok(out)
}
