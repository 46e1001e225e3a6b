//! Loading keys named on the command line, and finding the password of a
//! protected secret key (file, environment, or terminal prompt).

use std::io::IsTerminal as _;
use std::path::Path;

use anyhow::{bail, Context as _, Result};
use ferry_format::keys::{load_public_key, LoadKeyError};
use ferry_format::{KeyError, PublicKey, SecretKey, SecretKeyFile};

use crate::cli::PasswordArgs;

/// Environment variable holding a secret key's password.
pub const PASSWORD_ENV: &str = "FERRY_KEY_PASSWORD";

/// Reads a file's text, refusing anything larger than `limit` bytes.
pub fn read_small_text(path: &Path, limit: u64, what: &str) -> Result<String> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read {what} `{}`", path.display()))?;
    if meta.len() > limit {
        bail!(
            "{what} `{}` is {} bytes, more than a {what} can be ({limit})",
            path.display(),
            meta.len()
        );
    }
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {what} `{}`", path.display()))
}

/// Loads one trusted public key: a file path, or the base64 key itself (the
/// rule of [`ferry_format::keys::load_public_key`]).
pub fn load_public(spec: &str) -> Result<PublicKey> {
    load_public_key(spec).map_err(|e| match e {
        LoadKeyError::NotAKey { .. } => anyhow::anyhow!(
            "{e}\nhint: pass the `.pub` file that `ferry keygen` or `minisign -G` wrote"
        ),
        other => other.into(),
    })
}

/// Loads every trusted public key named.
pub fn load_publics(specs: &[String]) -> Result<Vec<PublicKey>> {
    specs.iter().map(|s| load_public(s)).collect()
}

static ENV_PASSWORD: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// Moves `$FERRY_KEY_PASSWORD` out of the process environment, so no child
/// (pip, a build add-on's make steps) ever inherits it. `ferry`'s `main`
/// calls this first, before any thread or child exists.
pub fn take_password_from_env() {
    let value = std::env::var(PASSWORD_ENV).ok();
    std::env::remove_var(PASSWORD_ENV);
    let _ = ENV_PASSWORD.set(value);
}

fn env_password() -> Option<String> {
    match ENV_PASSWORD.get() {
        Some(taken) => taken.clone(),
        None => std::env::var(PASSWORD_ENV).ok(),
    }
}

/// Refuses a secret file (a key, a password) that others can read or write.
pub fn check_private(path: &Path, what: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("cannot read {what} `{}`", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "{what} `{}` is accessible to other users (mode {:04o})\nhint: `chmod 600 {}`",
            path.display(),
            mode & 0o7777,
            path.display()
        );
    }
    Ok(())
}

/// Finds a password: `--password-file`, then `$FERRY_KEY_PASSWORD`, then a
/// prompt if stdin is a terminal.
pub fn password(args: &PasswordArgs, prompt: &str, confirm: bool) -> Result<Option<String>> {
    if let Some(file) = &args.password_file {
        check_private(file, "password file")?;
        let text = read_small_text(file, 4096, "password file")?;
        return Ok(Some(text.lines().next().unwrap_or("").to_owned()));
    }
    if let Some(pw) = env_password() {
        return Ok(Some(pw));
    }
    if !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    let pw = rpassword::prompt_password(prompt).context("cannot read the password")?;
    if confirm {
        let again = rpassword::prompt_password("Repeat the password: ")
            .context("cannot read the password")?;
        if again != pw {
            bail!("the two passwords differ");
        }
    }
    Ok(Some(pw))
}

/// Loads and unlocks a secret key file.
pub fn load_secret(path: &Path, args: &PasswordArgs) -> Result<SecretKey> {
    check_private(path, "secret key")?;
    let text = read_small_text(
        path,
        ferry_format::keys::MAX_KEY_FILE_LEN as u64,
        "secret key file",
    )?;
    let file = SecretKeyFile::from_text(&text)
        .with_context(|| format!("cannot load secret key `{}`", path.display()))?;
    let pw = if file.is_encrypted() {
        password(args, "Password of the secret key: ", false)?
    } else {
        None
    };
    file.unlock(pw.as_deref()).map_err(|e| match e {
        KeyError::PasswordRequired => anyhow::anyhow!(
            "secret key `{}` is password-protected and no password was given\nhint: set ${PASSWORD_ENV}, pass --password-file, or run on a terminal to be prompted",
            path.display()
        ),
        other => anyhow::Error::new(other)
            .context(format!("cannot unlock secret key `{}`", path.display())),
    })
}
