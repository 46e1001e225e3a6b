//! `ferry keygen`: a new minisign-format key pair.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use ferry_format::SecretKey;
use ferry_fsutil::AtomicFile;

use crate::cli::KeygenArgs;
use crate::keyfile;
use crate::log;

/// Runs `ferry keygen`.
pub fn run(args: KeygenArgs) -> Result<ExitCode> {
    if !args.force {
        for path in [&args.secret, &args.public] {
            if path.exists() {
                bail!(
                    "`{}` already exists\nhint: pass --force to replace it, or choose other paths with --secret/--public",
                    path.display()
                );
            }
        }
    }
    let password = if args.no_password {
        None
    } else {
        let pw = keyfile::password(&args.password, "Password for the new secret key: ", true)?;
        match pw {
            Some(pw) if !pw.is_empty() => Some(pw),
            Some(_) => bail!("empty password\nhint: pass --no-password for an unencrypted key"),
            None => bail!(
                "no password for the new secret key\nhint: set ${}, pass --password-file, run on a terminal, or pass --no-password for an unencrypted key (CI secret stores)",
                keyfile::PASSWORD_ENV
            ),
        }
    };
    let key = SecretKey::generate()?;
    let secret_text = key.to_text(password.as_deref())?;
    write_key(&args.secret, &secret_text, 0o600, args.force)?;
    let public = key.public_key();
    write_key(&args.public, &public.to_text(), 0o644, args.force)?;
    log::note(format!(
        "wrote secret key `{}`{} and public key `{}` (key id {})",
        args.secret.display(),
        if password.is_some() {
            " (password-protected)"
        } else {
            " (unencrypted)"
        },
        args.public.display(),
        public.id()
    ));
    println!("{}", public.to_base64());
    Ok(ExitCode::SUCCESS)
}

fn write_key(path: &std::path::Path, text: &str, mode: u32, replace: bool) -> Result<()> {
    let mut f = AtomicFile::create(path, mode)
        .with_context(|| format!("cannot create `{}`", path.display()))?;
    f.write_all(text.as_bytes())?;
    if replace { f.commit() } else { f.commit_new() }
        .with_context(|| format!("cannot write `{}`", path.display()))
}
