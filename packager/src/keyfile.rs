//! Loading keys named on the command line, and finding the password of a
//! protected secret key (file, environment, or terminal prompt).

use std::io::IsTerminal as _;
use std::path::Path;

use anyhow::{bail, Context as _, Result};
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

/// Loads one trusted public key: a file path, or the base64 key itself.
pub fn load_public(spec: &str) -> Result<PublicKey> {
    let path = Path::new(spec);
    if path.exists() {
        let text = read_small_text(
            path,
            ferry_format::keys::MAX_KEY_FILE_LEN as u64,
            "public key file",
        )?;
        return PublicKey::from_text(&text)
            .with_context(|| format!("cannot load public key `{}`", path.display()));
    }
    PublicKey::from_base64(spec).with_context(|| {
        format!("`{spec}` is neither a public key file nor a base64 public key\nhint: pass the `.pub` file that `ferry keygen` or `minisign -G` wrote")
    })
}

/// Loads every trusted public key named.
pub fn load_publics(specs: &[String]) -> Result<Vec<PublicKey>> {
    specs.iter().map(|s| load_public(s)).collect()
}

/// Finds a password: `--password-file`, then `$FERRY_KEY_PASSWORD`, then a
/// prompt if stdin is a terminal.
pub fn password(args: &PasswordArgs, prompt: &str, confirm: bool) -> Result<Option<String>> {
    if let Some(file) = &args.password_file {
        let text = read_small_text(file, 4096, "password file")?;
        return Ok(Some(text.lines().next().unwrap_or("").to_owned()));
    }
    if let Ok(pw) = std::env::var(PASSWORD_ENV) {
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
