//! A trusted public key as a user names it: `ferry verify --pubkey`,
//! `ferry repo delegate --release-pubkey` and the launcher's `FERRY_VERIFY`
//! all take the same values by one rule, so a value that works in one works
//! in all:
//!
//! - a path to an existing file is read as a key file (`minisign.pub`, or a
//!   file holding just the base64 line), at most [`MAX_KEY_FILE_LEN`] bytes;
//! - anything else is the base64 key itself, as `minisign -P` takes it.
//!
//! A value is a path only if the file is there: a typo in a path reads as
//! bad base64, and the error names both possibilities.

use std::fs::File;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

use super::{KeyError, PublicKey, MAX_KEY_FILE_LEN};

/// Why a named public key did not load. The messages name the value as
/// given, without a hint: each program adds the one that fits it.
#[derive(Debug, thiserror::Error)]
pub enum LoadKeyError {
    /// The file exists but could not be read.
    #[error("cannot read public key file `{}`: {err}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        err: io::Error,
    },
    /// The file holds no minisign public key.
    #[error("`{}` is not a public key file: {err}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with its text.
        err: KeyError,
    },
    /// No file of that name, and no base64 key either.
    #[error("`{spec}` is neither a public key file nor a base64 public key ({err})")]
    NotAKey {
        /// The value as given.
        spec: String,
        /// Why it is no base64 key.
        err: KeyError,
    },
}

/// Loads the public key `spec` names, by the rule in this module's doc.
pub fn load_public_key(spec: &str) -> Result<PublicKey, LoadKeyError> {
    let path = Path::new(spec);
    if !path.exists() {
        return PublicKey::from_base64(spec).map_err(|err| LoadKeyError::NotAKey {
            spec: spec.to_owned(),
            err,
        });
    }
    let read_err = |err| LoadKeyError::Read {
        path: path.to_owned(),
        err,
    };
    let mut text = String::new();
    // One byte over the cap, so an oversized file is refused by `from_text`
    // without reading all of it.
    File::open(path)
        .and_then(|f| {
            f.take(MAX_KEY_FILE_LEN as u64 + 1)
                .read_to_string(&mut text)
        })
        .map_err(read_err)?;
    PublicKey::from_text(&text).map_err(|err| LoadKeyError::File {
        path: path.to_owned(),
        err,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SecretKey;

    #[test]
    fn a_file_or_the_base64_key() {
        let a = SecretKey::generate().unwrap().public_key();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.pub");
        std::fs::write(&file, a.to_text()).unwrap();
        assert_eq!(load_public_key(file.to_str().unwrap()).unwrap(), a);
        assert_eq!(load_public_key(&a.to_base64()).unwrap(), a);
        std::fs::write(&file, a.to_base64()).unwrap();
        assert_eq!(load_public_key(file.to_str().unwrap()).unwrap(), a);
    }

    #[test]
    fn errors_name_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("typo.pub");
        let err = load_public_key(missing.to_str().unwrap()).unwrap_err();
        assert!(matches!(err, LoadKeyError::NotAKey { .. }), "{err}");
        assert!(err.to_string().contains("typo.pub"), "{err}");

        let big = dir.path().join("big.pub");
        std::fs::write(&big, "A".repeat(MAX_KEY_FILE_LEN * 4)).unwrap();
        let err = load_public_key(big.to_str().unwrap()).unwrap_err();
        assert!(matches!(err, LoadKeyError::File { .. }), "{err}");

        let err = load_public_key(dir.path().to_str().unwrap()).unwrap_err();
        assert!(matches!(err, LoadKeyError::Read { .. }), "{err}");
    }
}
