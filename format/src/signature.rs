//! Minisign signatures: parse, write, create and check.
//!
//! ferry signs with the prehashed algorithm (`ED`: Ed25519 over the BLAKE2b-512
//! of the content) so files of any size are signed and checked in one streaming
//! pass with constant memory. Legacy (`Ed`) signatures made by older minisign
//! versions are still checked for detached files. The trusted comment is covered
//! by a second, global signature, so it cannot be edited or moved.

use std::io::{self, Read};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use blake2::{Blake2b512, Digest};
use ed25519_dalek::Signature as EdSignature;

use crate::keys::{KeyId, PublicKey, SecretKey, ALG_ED25519};

/// Two-byte tag of prehashed signatures.
const ALG_PREHASHED: [u8; 2] = *b"ED";
const UNTRUSTED_PREFIX: &str = "untrusted comment: ";
const TRUSTED_PREFIX: &str = "trusted comment: ";
/// Longest signature file accepted (minisign caps trusted comments at 8 KiB).
pub const MAX_SIGNATURE_LEN: usize = 16 * 1024;
/// Largest content checked against a legacy (non-prehashed) signature, which
/// needs the whole content in memory.
pub const MAX_LEGACY_CONTENT: u64 = 64 * 1024 * 1024;

/// How the content was hashed before signing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureAlgorithm {
    /// `Ed`: Ed25519 over the raw content (minisign's legacy format).
    Legacy,
    /// `ED`: Ed25519 over the BLAKE2b-512 of the content.
    Prehashed,
}

/// Errors of parsing or checking a signature.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// The text is not a minisign signature.
    #[error("malformed signature: {0}")]
    Malformed(String),
    /// Signed by a key that is not among the trusted ones.
    #[error("signed by key {signed_by}, which is not trusted (trusted: {})", list_ids(.trusted))]
    UnknownKey {
        /// The key id in the signature.
        signed_by: KeyId,
        /// The ids of the keys that were tried.
        trusted: Vec<KeyId>,
    },
    /// The content does not match the signature.
    #[error("signature by key {0} does not match the content: it was modified after signing")]
    ContentMismatch(KeyId),
    /// The trusted comment does not match its global signature.
    #[error("trusted comment signed by key {0} was modified after signing")]
    CommentMismatch(KeyId),
    /// Legacy signatures need the whole content in memory; this content is too big.
    #[error("legacy (non-prehashed) signature over {0} bytes: too large, re-sign with a current minisign or ferry")]
    LegacyTooLarge(u64),
    /// Reading the content failed.
    #[error("reading the signed content: {0}")]
    Io(#[from] io::Error),
}

fn list_ids(ids: &[KeyId]) -> String {
    if ids.is_empty() {
        return "none".into();
    }
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A parsed minisign signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// Free text, not covered by any signature.
    pub untrusted_comment: String,
    /// How the content was hashed.
    pub algorithm: SignatureAlgorithm,
    /// The signing key's id.
    pub key_id: KeyId,
    /// Ed25519 signature of the content (or its prehash).
    pub signature: [u8; 64],
    /// Text covered by the global signature.
    pub trusted_comment: String,
    /// Ed25519 signature of `signature || trusted_comment`.
    pub global_signature: [u8; 64],
}

/// Streaming BLAKE2b-512 of signed content.
#[derive(Default, Clone)]
pub struct Prehasher(Blake2b512);

impl Prehasher {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The 64-byte prehash.
    pub fn finish(self) -> [u8; 64] {
        self.0.finalize().into()
    }

    /// Hashes everything `reader` yields.
    pub fn hash_reader(reader: &mut impl Read) -> io::Result<[u8; 64]> {
        let mut h = Self::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                return Ok(h.finish());
            }
            h.update(&buf[..n]);
        }
    }
}

fn one_line(what: &str, text: &str) -> Result<(), SignatureError> {
    if text.contains(['\n', '\r']) {
        return Err(SignatureError::Malformed(format!(
            "{what} must be a single line"
        )));
    }
    Ok(())
}

impl Signature {
    /// Signs a prehash with `key`. Comments must be single lines.
    pub fn sign_prehashed(
        key: &SecretKey,
        prehash: &[u8; 64],
        trusted_comment: &str,
        untrusted_comment: &str,
    ) -> Result<Self, SignatureError> {
        one_line("trusted comment", trusted_comment)?;
        one_line("untrusted comment", untrusted_comment)?;
        let signature = key.sign_raw(prehash);
        let mut global = Vec::with_capacity(64 + trusted_comment.len());
        global.extend_from_slice(&signature);
        global.extend_from_slice(trusted_comment.as_bytes());
        Ok(Self {
            untrusted_comment: untrusted_comment.to_owned(),
            algorithm: SignatureAlgorithm::Prehashed,
            key_id: key.id(),
            signature,
            trusted_comment: trusted_comment.to_owned(),
            global_signature: key.sign_raw(&global),
        })
    }

    /// Parses a `.minisig` file.
    pub fn parse(text: &str) -> Result<Self, SignatureError> {
        let bad = |m: &str| SignatureError::Malformed(m.to_owned());
        if text.len() > MAX_SIGNATURE_LEN {
            return Err(bad("longer than 16 KiB"));
        }
        let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        let untrusted = lines
            .next()
            .and_then(|l| l.strip_prefix(UNTRUSTED_PREFIX))
            .ok_or_else(|| bad("first line must start with `untrusted comment: `"))?;
        let sig_line = lines.next().ok_or_else(|| bad("no signature line"))?;
        let trusted = lines
            .next()
            .and_then(|l| l.strip_prefix(TRUSTED_PREFIX))
            .ok_or_else(|| bad("third line must start with `trusted comment: `"))?;
        let global_line = lines
            .next()
            .ok_or_else(|| bad("no global signature line"))?;
        if lines.any(|l| !l.trim().is_empty()) {
            return Err(bad("unexpected text after the global signature"));
        }
        // A CR left inside a comment (after its line's CR LF ending) would not
        // survive `to_text` and `parse` again: refuse it, as signing does.
        one_line("untrusted comment", untrusted)?;
        one_line("trusted comment", trusted)?;
        let sig_bytes = B64
            .decode(sig_line.trim())
            .map_err(|e| bad(&format!("signature line is not base64: {e}")))?;
        if sig_bytes.len() != 74 {
            return Err(bad("signature line must decode to 74 bytes"));
        }
        let algorithm = match [sig_bytes[0], sig_bytes[1]] {
            ALG_PREHASHED => SignatureAlgorithm::Prehashed,
            ALG_ED25519 => SignatureAlgorithm::Legacy,
            _ => return Err(bad("unknown signature algorithm")),
        };
        let global = B64
            .decode(global_line.trim())
            .map_err(|e| bad(&format!("global signature is not base64: {e}")))?;
        let global_signature: [u8; 64] = global
            .as_slice()
            .try_into()
            .map_err(|_| bad("global signature must decode to 64 bytes"))?;
        Ok(Self {
            untrusted_comment: untrusted.to_owned(),
            algorithm,
            key_id: KeyId(sig_bytes[2..10].try_into().expect("8 bytes")),
            signature: sig_bytes[10..74].try_into().expect("64 bytes"),
            trusted_comment: trusted.to_owned(),
            global_signature,
        })
    }

    /// The `.minisig` text.
    pub fn to_text(&self) -> String {
        let tag = match self.algorithm {
            SignatureAlgorithm::Prehashed => ALG_PREHASHED,
            SignatureAlgorithm::Legacy => ALG_ED25519,
        };
        let mut bytes = Vec::with_capacity(74);
        bytes.extend_from_slice(&tag);
        bytes.extend_from_slice(&self.key_id.0);
        bytes.extend_from_slice(&self.signature);
        format!(
            "{UNTRUSTED_PREFIX}{}\n{}\n{TRUSTED_PREFIX}{}\n{}\n",
            self.untrusted_comment,
            B64.encode(bytes),
            self.trusted_comment,
            B64.encode(self.global_signature)
        )
    }

    /// Picks the trusted key this signature names.
    pub fn find_key<'k>(&self, trusted: &'k [PublicKey]) -> Result<&'k PublicKey, SignatureError> {
        trusted
            .iter()
            .find(|k| k.id() == self.key_id)
            .ok_or_else(|| SignatureError::UnknownKey {
                signed_by: self.key_id,
                trusted: trusted.iter().map(PublicKey::id).collect(),
            })
    }

    /// Checks the global signature over the trusted comment.
    fn check_comment(&self, key: &PublicKey) -> Result<(), SignatureError> {
        let mut global = Vec::with_capacity(64 + self.trusted_comment.len());
        global.extend_from_slice(&self.signature);
        global.extend_from_slice(self.trusted_comment.as_bytes());
        key.verifying_key()
            .verify_strict(&global, &EdSignature::from_bytes(&self.global_signature))
            .map_err(|_| SignatureError::CommentMismatch(self.key_id))
    }

    /// Checks a prehashed signature against the BLAKE2b-512 of the content.
    /// Returns the key that signed.
    pub fn verify_prehash<'k>(
        &self,
        trusted: &'k [PublicKey],
        prehash: &[u8; 64],
    ) -> Result<&'k PublicKey, SignatureError> {
        let key = self.find_key(trusted)?;
        if self.algorithm != SignatureAlgorithm::Prehashed {
            return Err(SignatureError::Malformed(
                "expected a prehashed (`ED`) signature".into(),
            ));
        }
        key.verifying_key()
            .verify_strict(prehash, &EdSignature::from_bytes(&self.signature))
            .map_err(|_| SignatureError::ContentMismatch(self.key_id))?;
        self.check_comment(key)?;
        Ok(key)
    }

    /// Checks the signature against everything `content` yields, with either
    /// algorithm. Returns the key that signed.
    pub fn verify_reader<'k>(
        &self,
        trusted: &'k [PublicKey],
        content: &mut impl Read,
    ) -> Result<&'k PublicKey, SignatureError> {
        let key = self.find_key(trusted)?;
        match self.algorithm {
            SignatureAlgorithm::Prehashed => {
                let prehash = Prehasher::hash_reader(content)?;
                self.verify_prehash(trusted, &prehash)
            }
            SignatureAlgorithm::Legacy => {
                let mut bytes = Vec::new();
                let read = content
                    .take(MAX_LEGACY_CONTENT + 1)
                    .read_to_end(&mut bytes)?;
                if read as u64 > MAX_LEGACY_CONTENT {
                    return Err(SignatureError::LegacyTooLarge(read as u64));
                }
                key.verifying_key()
                    .verify_strict(&bytes, &EdSignature::from_bytes(&self.signature))
                    .map_err(|_| SignatureError::ContentMismatch(self.key_id))?;
                self.check_comment(key)?;
                Ok(key)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // `minisign -S -s u.key -m f -t "tc here"` over "hello\n" with the key pair
    // of the keys module's tests.
    const PUB: &str = "RWSirsqo5uiwskCANl7DjNgrcDmVB53CDlZk3gKuDy2M826wiqinD7ZM";
    const SIG: &str = "untrusted comment: signature from minisign secret key\n\
        RUSirsqo5uiwsv8UIHRFHNKoxTO+KxTRApt8/y+q/bCT7OvxNazhr+VYyokGu52A4WsJpvRpx+PXdwFOK3X13kXvmZGO2I5MsQo=\n\
        trusted comment: tc here\n\
        +xtFAbaULTORkilRP1OGZWzWE35tOBtelO1JcxmQciuiz/JP1PtbqiN3eDG2TxA429Z/glzp2pLrVdcOd8z4DQ==\n";

    #[test]
    fn verifies_a_minisign_signature() {
        let keys = [PublicKey::from_base64(PUB).unwrap()];
        let sig = Signature::parse(SIG).unwrap();
        assert_eq!(sig.algorithm, SignatureAlgorithm::Prehashed);
        assert_eq!(sig.to_text(), SIG);
        sig.verify_reader(&keys, &mut &b"hello\n"[..]).unwrap();
        assert!(matches!(
            sig.verify_reader(&keys, &mut &b"hellO\n"[..]),
            Err(SignatureError::ContentMismatch(_))
        ));
        let mut edited = sig.clone();
        edited.trusted_comment = "tc there".into();
        assert!(matches!(
            edited.verify_reader(&keys, &mut &b"hello\n"[..]),
            Err(SignatureError::CommentMismatch(_))
        ));
    }

    #[test]
    fn unknown_key_names_both_ids() {
        let other = SecretKey::generate().unwrap().public_key();
        let sig = Signature::parse(SIG).unwrap();
        let err = sig
            .verify_reader(std::slice::from_ref(&other), &mut &b"hello\n"[..])
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("B2B0E8E6A8CAAEA2"), "{text}");
        assert!(text.contains(&other.id().to_string()), "{text}");
    }

    #[test]
    fn sign_and_verify_round_trip() {
        let key = SecretKey::generate().unwrap();
        let prehash = Prehasher::hash_reader(&mut &b"content"[..]).unwrap();
        let sig = Signature::sign_prehashed(&key, &prehash, "app:x", "hi").unwrap();
        let parsed = Signature::parse(&sig.to_text()).unwrap();
        assert_eq!(parsed, sig);
        parsed
            .verify_reader(&[key.public_key()], &mut &b"content"[..])
            .unwrap();
        assert!(Signature::sign_prehashed(&key, &prehash, "a\nb", "").is_err());
    }
}
