//! Optional self-verification: when `FERRY_VERIFY` names trusted public keys
//! (key files or base64 keys, several separated by `,`), the launcher checks
//! its own embedded signature before anything is unpacked, and refuses to run
//! on any failure. Off by default: the agent checked the file before install.

use std::ffi::OsStr;
use std::fs::File;

use ferry_format::keys::{load_public_key, LoadKeyError};
use ferry_format::{Container, ContainerError, PublicKey};

/// Why verification refused the binary.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// `FERRY_VERIFY` is not text.
    #[error("FERRY_VERIFY is not valid UTF-8; set it to public key files or base64 keys separated by `,`")]
    NotUtf8,
    /// `FERRY_VERIFY` names no key.
    #[error("FERRY_VERIFY is set but names no key; set it to public key files or base64 keys separated by `,`")]
    Empty,
    /// A key file could not be read, or a key did not parse.
    #[error("FERRY_VERIFY: {0}")]
    Key(LoadKeyError),
    /// The signature check failed.
    #[error("signature check failed (FERRY_VERIFY is set): {0}")]
    Failed(ContainerError),
}

/// Parses `FERRY_VERIFY`: `,`-separated items, each a key file or a base64
/// key by the rule of [`ferry_format::keys::load_public_key`].
pub fn keys_from_env(value: &OsStr) -> Result<Vec<PublicKey>, VerifyError> {
    let text = value.to_str().ok_or(VerifyError::NotUtf8)?;
    let keys = text
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .map(load_public_key)
        .collect::<Result<Vec<_>, _>>()
        .map_err(VerifyError::Key)?;
    if keys.is_empty() {
        return Err(VerifyError::Empty);
    }
    Ok(keys)
}

/// Checks `container` (read from `file`) against the keys in `FERRY_VERIFY`.
pub fn verify(container: &Container, file: &mut File, setting: &OsStr) -> Result<(), VerifyError> {
    let keys = keys_from_env(setting)?;
    let key = container.verify(file, &keys).map_err(VerifyError::Failed)?;
    crate::trace!("signature good, by key {}", key.id());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_format::SecretKey;

    #[test]
    fn parses_files_and_base64() {
        let a = SecretKey::generate().unwrap().public_key();
        let b = SecretKey::generate().unwrap().public_key();
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a.pub");
        std::fs::write(&file, a.to_text()).unwrap();
        let setting = format!("{}, {}", file.display(), b.to_base64());
        let keys = keys_from_env(OsStr::new(&setting)).unwrap();
        assert_eq!(
            keys.iter().map(|k| k.id()).collect::<Vec<_>>(),
            [a.id(), b.id()]
        );
        assert!(matches!(
            keys_from_env(OsStr::new(" , ")),
            Err(VerifyError::Empty)
        ));
        let err = keys_from_env(OsStr::new("nonsense")).unwrap_err();
        assert!(err.to_string().contains("`nonsense`"), "{err}");
    }
}
