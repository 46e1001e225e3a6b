//! Minisign-compatible Ed25519 keys.
//!
//! Public keys, and secret keys both unencrypted (`minisign -W`) and protected by
//! a password (scrypt, as libsodium's `crypto_pwhash_scryptsalsa208sha256` with
//! minisign's parameters). Keys written here load in the stock `minisign` tool and
//! keys written by it load here, so users can sign or check releases by hand.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};

mod named;

pub use named::{load_public_key, LoadKeyError};

/// Two-byte algorithm tag of Ed25519 keys and legacy signatures.
pub(crate) const ALG_ED25519: [u8; 2] = *b"Ed";
const KDF_SCRYPT: [u8; 2] = *b"Sc";
const KDF_NONE: [u8; 2] = [0, 0];
const CHK_BLAKE2B: [u8; 2] = *b"B2";
/// libsodium's `crypto_pwhash_scryptsalsa208sha256_OPSLIMIT_SENSITIVE`, which minisign uses.
const OPSLIMIT_SENSITIVE: u64 = 33_554_432;
/// libsodium's `crypto_pwhash_scryptsalsa208sha256_MEMLIMIT_SENSITIVE`, which minisign uses.
const MEMLIMIT_SENSITIVE: u64 = 1_073_741_824;
/// Largest scrypt cost accepted from a key file (2^22 blocks = 4 GiB): a hostile
/// key file must not make us allocate without bound.
const MAX_SCRYPT_LOG_N: u8 = 22;
/// Key files are a few hundred bytes; refuse anything much larger before parsing.
pub const MAX_KEY_FILE_LEN: usize = 4096;

const PUBLIC_KEY_BYTES: usize = 2 + 8 + 32;
const SECRET_KEY_BYTES: usize = 2 + 2 + 2 + 32 + 8 + 8 + KEYNUM_SK_BYTES;
const KEYNUM_SK_BYTES: usize = 8 + 64 + 32;

/// Errors of reading or unlocking a key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The text is not a key in minisign's format.
    #[error("not a minisign {kind} key: {reason}")]
    Malformed {
        /// `public` or `secret`.
        kind: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The key uses an algorithm this version does not know.
    #[error("unsupported {what} `{tag}` in {kind} key")]
    Unsupported {
        /// `public` or `secret`.
        kind: &'static str,
        /// Which algorithm field.
        what: &'static str,
        /// The tag found.
        tag: String,
    },
    /// An encrypted secret key was opened without a password.
    #[error("secret key is password-protected and no password was given")]
    PasswordRequired,
    /// The password does not decrypt the key (its checksum does not match).
    #[error("wrong password for secret key")]
    WrongPassword,
    /// The scrypt parameters in the file are out of the accepted range.
    #[error("secret key asks for key derivation parameters out of range ({0})")]
    KdfParameters(String),
    /// The operating system's random number generator failed.
    #[error("cannot get random bytes from the operating system: {0}")]
    Random(String),
}

/// The 8-byte identifier minisign gives every key pair; shown as 16 hex digits
/// exactly as `minisign` prints it (the bytes read as a little-endian integer).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 8]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016X}", u64::from_le_bytes(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// A public key: what devices trust.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    id: KeyId,
    key: VerifyingKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.id)
    }
}

fn malformed(kind: &'static str, reason: impl Into<String>) -> KeyError {
    KeyError::Malformed {
        kind,
        reason: reason.into(),
    }
}

/// The last non-empty line that is not a comment: minisign key files hold one
/// `untrusted comment:` line and one base64 line.
fn key_line<'a>(kind: &'static str, text: &'a str) -> Result<&'a str, KeyError> {
    if text.len() > MAX_KEY_FILE_LEN {
        return Err(malformed(
            kind,
            format!("longer than {MAX_KEY_FILE_LEN} bytes"),
        ));
    }
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("untrusted comment:"));
    let line = lines
        .next()
        .ok_or_else(|| malformed(kind, "no base64 key line"))?;
    if lines.next().is_some() {
        return Err(malformed(kind, "more than one key line"));
    }
    Ok(line)
}

impl PublicKey {
    /// Parses the base64 form minisign prints (`minisign -P RW…`).
    pub fn from_base64(line: &str) -> Result<Self, KeyError> {
        let bytes = B64
            .decode(line.trim())
            .map_err(|e| malformed("public", format!("bad base64: {e}")))?;
        if bytes.len() != PUBLIC_KEY_BYTES {
            return Err(malformed(
                "public",
                format!("{} bytes, expected {PUBLIC_KEY_BYTES}", bytes.len()),
            ));
        }
        if bytes[..2] != ALG_ED25519 {
            return Err(KeyError::Unsupported {
                kind: "public",
                what: "signature algorithm",
                tag: String::from_utf8_lossy(&bytes[..2]).into_owned(),
            });
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&bytes[2..10]);
        let mut raw = [0u8; 32];
        raw.copy_from_slice(&bytes[10..42]);
        let key = VerifyingKey::from_bytes(&raw)
            .map_err(|_| malformed("public", "not a valid Ed25519 point"))?;
        Ok(Self { id: KeyId(id), key })
    }

    /// Parses a public key file (`minisign.pub`), or a bare base64 line.
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        Self::from_base64(key_line("public", text)?)
    }

    /// The base64 form, as `minisign -P` takes it.
    pub fn to_base64(&self) -> String {
        let mut bytes = Vec::with_capacity(PUBLIC_KEY_BYTES);
        bytes.extend_from_slice(&ALG_ED25519);
        bytes.extend_from_slice(&self.id.0);
        bytes.extend_from_slice(self.key.as_bytes());
        B64.encode(bytes)
    }

    /// The file form, as `minisign -G` writes it.
    pub fn to_text(&self) -> String {
        format!(
            "untrusted comment: minisign public key {}\n{}\n",
            self.id,
            self.to_base64()
        )
    }

    /// The key's identifier.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// A key from its raw Ed25519 form (as TUF metadata lists it), under the
    /// minisign key id `id`. The id only picks a key out of a list; every
    /// check is by the Ed25519 key itself.
    pub fn from_ed25519(id: KeyId, key: VerifyingKey) -> Self {
        Self { id, key }
    }

    pub(crate) fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }
}

/// A secret key, unlocked and ready to sign.
pub struct SecretKey {
    id: KeyId,
    key: SigningKey,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.id)
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N], KeyError> {
    let mut buf = [0u8; N];
    getrandom::getrandom(&mut buf).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(buf)
}

fn checksum(id: &KeyId, secret: &[u8; 64]) -> [u8; 32] {
    let mut h = Blake2b::<U32>::new();
    h.update(ALG_ED25519);
    h.update(id.0);
    h.update(secret);
    h.finalize().into()
}

/// scrypt parameters chosen from libsodium's `opslimit`/`memlimit` pair exactly as
/// libsodium's `pickparams` does, so keys encrypted by minisign decrypt here.
fn scrypt_params(opslimit: u64, memlimit: u64) -> Result<(u8, u32, u32), KeyError> {
    let opslimit = opslimit.max(32_768);
    let r: u32 = 8;
    let pick_log_n = |max_n: u64| -> u8 {
        let mut log_n = 1u8;
        while log_n < 63 && (1u64 << log_n) <= max_n / 2 {
            log_n += 1;
        }
        log_n
    };
    let (log_n, p) = if opslimit < memlimit / 32 {
        (pick_log_n(opslimit / (u64::from(r) * 4)), 1u32)
    } else {
        let log_n = pick_log_n(memlimit / (u64::from(r) * 128));
        let max_rp = ((opslimit / 4) >> log_n).min(0x3fff_ffff);
        (log_n, (max_rp as u32) / r)
    };
    if log_n > MAX_SCRYPT_LOG_N || p == 0 || p > 64 {
        return Err(KeyError::KdfParameters(format!(
            "opslimit {opslimit}, memlimit {memlimit}"
        )));
    }
    Ok((log_n, r, p))
}

fn scrypt_stream(
    password: &str,
    salt: &[u8],
    opslimit: u64,
    memlimit: u64,
) -> Result<[u8; KEYNUM_SK_BYTES], KeyError> {
    let (log_n, r, p) = scrypt_params(opslimit, memlimit)?;
    let params =
        scrypt::Params::new(log_n, r, p, 32).map_err(|e| KeyError::KdfParameters(e.to_string()))?;
    let mut out = [0u8; KEYNUM_SK_BYTES];
    scrypt::scrypt(password.as_bytes(), salt, &params, &mut out)
        .map_err(|e| KeyError::KdfParameters(e.to_string()))?;
    Ok(out)
}

/// A secret key file as read from disk, before any password is applied.
pub struct SecretKeyFile {
    bytes: [u8; SECRET_KEY_BYTES],
}

impl SecretKeyFile {
    /// Parses a secret key file as minisign writes it.
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let line = key_line("secret", text)?;
        let decoded = B64
            .decode(line)
            .map_err(|e| malformed("secret", format!("bad base64: {e}")))?;
        let bytes: [u8; SECRET_KEY_BYTES] = decoded.as_slice().try_into().map_err(|_| {
            malformed(
                "secret",
                format!("{} bytes, expected {SECRET_KEY_BYTES}", decoded.len()),
            )
        })?;
        let unsupported = |what, tag: &[u8]| KeyError::Unsupported {
            kind: "secret",
            what,
            tag: String::from_utf8_lossy(tag).into_owned(),
        };
        if bytes[0..2] != ALG_ED25519 {
            return Err(unsupported("signature algorithm", &bytes[0..2]));
        }
        if bytes[2..4] != KDF_SCRYPT && bytes[2..4] != KDF_NONE {
            return Err(unsupported("key derivation", &bytes[2..4]));
        }
        if bytes[4..6] != CHK_BLAKE2B {
            return Err(unsupported("checksum algorithm", &bytes[4..6]));
        }
        Ok(Self { bytes })
    }

    /// Whether a password is needed to unlock the key.
    pub fn is_encrypted(&self) -> bool {
        self.bytes[2..4] == KDF_SCRYPT
    }

    /// Unlocks the key. `password` is ignored for an unencrypted key.
    pub fn unlock(&self, password: Option<&str>) -> Result<SecretKey, KeyError> {
        let mut keynum = [0u8; KEYNUM_SK_BYTES];
        keynum.copy_from_slice(&self.bytes[54..]);
        if self.is_encrypted() {
            let Some(password) = password else {
                return Err(KeyError::PasswordRequired);
            };
            let salt = &self.bytes[6..38];
            let ops = u64::from_le_bytes(self.bytes[38..46].try_into().expect("8 bytes"));
            let mem = u64::from_le_bytes(self.bytes[46..54].try_into().expect("8 bytes"));
            let stream = scrypt_stream(password, salt, ops, mem)?;
            for (b, s) in keynum.iter_mut().zip(stream) {
                *b ^= s;
            }
        }
        let id = KeyId(keynum[..8].try_into().expect("8 bytes"));
        let secret: [u8; 64] = keynum[8..72].try_into().expect("64 bytes");
        let stored_chk = &keynum[72..];
        let computed = checksum(&id, &secret);
        // minisign 0.11 leaves the checksum of unencrypted keys zeroed.
        let zero_ok = !self.is_encrypted() && stored_chk.iter().all(|&b| b == 0);
        if stored_chk != computed && !zero_ok {
            return Err(if self.is_encrypted() {
                KeyError::WrongPassword
            } else {
                malformed("secret", "checksum does not match the key")
            });
        }
        let key = SigningKey::from_keypair_bytes(&secret)
            .map_err(|_| malformed("secret", "public half does not match the secret half"))?;
        Ok(SecretKey { id, key })
    }
}

impl SecretKey {
    /// Generates a new key pair from the operating system's randomness.
    pub fn generate() -> Result<Self, KeyError> {
        let seed: [u8; 32] = random_bytes()?;
        let id: [u8; 8] = random_bytes()?;
        Ok(Self {
            id: KeyId(id),
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Loads and unlocks a secret key file.
    pub fn from_text(text: &str, password: Option<&str>) -> Result<Self, KeyError> {
        SecretKeyFile::from_text(text)?.unlock(password)
    }

    /// The file form. With a password the key is encrypted as `minisign -G` does,
    /// without one it is written as `minisign -G -W` does.
    pub fn to_text(&self, password: Option<&str>) -> Result<String, KeyError> {
        let secret = self.key.to_keypair_bytes();
        let mut keynum = Vec::with_capacity(KEYNUM_SK_BYTES);
        keynum.extend_from_slice(&self.id.0);
        keynum.extend_from_slice(&secret);
        keynum.extend_from_slice(&checksum(&self.id, &secret));
        let mut bytes = Vec::with_capacity(SECRET_KEY_BYTES);
        bytes.extend_from_slice(&ALG_ED25519);
        match password {
            Some(password) => {
                let salt: [u8; 32] = random_bytes()?;
                let stream =
                    scrypt_stream(password, &salt, OPSLIMIT_SENSITIVE, MEMLIMIT_SENSITIVE)?;
                for (b, s) in keynum.iter_mut().zip(stream) {
                    *b ^= s;
                }
                bytes.extend_from_slice(&KDF_SCRYPT);
                bytes.extend_from_slice(&CHK_BLAKE2B);
                bytes.extend_from_slice(&salt);
                bytes.extend_from_slice(&OPSLIMIT_SENSITIVE.to_le_bytes());
                bytes.extend_from_slice(&MEMLIMIT_SENSITIVE.to_le_bytes());
            }
            None => {
                bytes.extend_from_slice(&KDF_NONE);
                bytes.extend_from_slice(&CHK_BLAKE2B);
                bytes.extend_from_slice(&[0u8; 48]);
            }
        }
        bytes.extend_from_slice(&keynum);
        let comment = if password.is_some() {
            "minisign encrypted secret key"
        } else {
            "minisign secret key (unencrypted)"
        };
        Ok(format!(
            "untrusted comment: {comment}\n{}\n",
            B64.encode(bytes)
        ))
    }

    /// The key's identifier.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The public half, carrying the same key id.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            id: self.id,
            key: self.key.verifying_key(),
        }
    }

    pub(crate) fn sign_raw(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made by `minisign -G -W` (0.11).
    const MINISIGN_PUB: &str = "untrusted comment: minisign public key B2B0E8E6A8CAAEA2\n\
        RWSirsqo5uiwskCANl7DjNgrcDmVB53CDlZk3gKuDy2M826wiqinD7ZM\n";
    const MINISIGN_SEC: &str = "untrusted comment: minisign encrypted secret key\n\
        RWQAAEIyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAoq7KqObosLIbvgoEkibM0nPU6MGs3N6HcWYw7gaBPmYslgyU4MRbD0CANl7DjNgrcDmVB53CDlZk3gKuDy2M826wiqinD7ZMAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";

    #[test]
    fn reads_minisign_unencrypted_key_pair() {
        let public = PublicKey::from_text(MINISIGN_PUB).unwrap();
        assert_eq!(public.id().to_string(), "B2B0E8E6A8CAAEA2");
        let secret = SecretKey::from_text(MINISIGN_SEC, None).unwrap();
        assert_eq!(secret.public_key(), public);
        assert_eq!(public.to_text(), MINISIGN_PUB);
    }

    #[test]
    fn libsodium_parameters_for_minisign_defaults() {
        assert_eq!(
            scrypt_params(OPSLIMIT_SENSITIVE, MEMLIMIT_SENSITIVE).unwrap(),
            (20, 8, 1)
        );
        assert!(scrypt_params(u64::MAX, u64::MAX).is_err());
    }

    #[test]
    fn encrypted_round_trip_and_wrong_password() {
        let key = SecretKey::generate().unwrap();
        let text = key.to_text(Some("hunter2")).unwrap();
        let file = SecretKeyFile::from_text(&text).unwrap();
        assert!(file.is_encrypted());
        assert!(matches!(file.unlock(None), Err(KeyError::PasswordRequired)));
        assert!(matches!(
            file.unlock(Some("wrong")),
            Err(KeyError::WrongPassword)
        ));
        let back = file.unlock(Some("hunter2")).unwrap();
        assert_eq!(back.public_key(), key.public_key());
    }

    #[test]
    fn rejects_garbage() {
        assert!(PublicKey::from_text("").is_err());
        assert!(PublicKey::from_text("untrusted comment: x\nAAAA\n").is_err());
        assert!(SecretKey::from_text("RWQ=", None).is_err());
        assert!(PublicKey::from_text(&"A".repeat(MAX_KEY_FILE_LEN + 1)).is_err());
    }
}
