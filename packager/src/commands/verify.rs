//! `ferry verify`: one verdict line, exit 0 for a valid signature by a trusted
//! key, 1 for anything else.

use std::io::{Seek as _, SeekFrom};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use ferry_format::{PublicKey, Signature};

use super::{detached_path, open, Opened};
use crate::cli::VerifyArgs;
use crate::keyfile;

/// Runs `ferry verify`.
pub fn run(args: VerifyArgs) -> Result<ExitCode> {
    let keys = keyfile::load_publics(&args.pubkeys)?;
    match check(&args.file, &keys, args.signature.as_deref()) {
        Ok(verdict) => {
            println!("{}: OK, {verdict}", args.file.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            let causes: Vec<String> = err.chain().map(ToString::to_string).collect();
            println!("{}: FAILED, {}", args.file.display(), causes.join(": "));
            Ok(ExitCode::FAILURE)
        }
    }
}

fn check(path: &Path, keys: &[PublicKey], sigfile: Option<&Path>) -> Result<String> {
    let opened = open(path)?;
    if let (Opened::Container(mut file, container), None) = (opened, sigfile) {
        let key = container.verify(&mut file, keys)?;
        let m = &container.metadata;
        return Ok(format!(
            "signed by key {} ({} {}, build {})",
            key.id(),
            m.name,
            m.version,
            &m.build_id[..12]
        ));
    }
    let sig_path = sigfile
        .map(Path::to_path_buf)
        .unwrap_or_else(|| detached_path(path));
    let text = keyfile::read_small_text(
        &sig_path,
        ferry_format::signature::MAX_SIGNATURE_LEN as u64,
        "signature file",
    )
    .with_context(|| "hint: sign it with `ferry sign` or `minisign -S`")?;
    let sig = Signature::parse(&text).with_context(|| format!("`{}`", sig_path.display()))?;
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open `{}`", path.display()))?;
    file.seek(SeekFrom::Start(0))?;
    let key = sig.verify_reader(keys, &mut file)?;
    Ok(format!(
        "signed by key {}, trusted comment: {}",
        key.id(),
        sig.trusted_comment
    ))
}
