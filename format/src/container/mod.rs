//! The single-file container:
//!
//! ```text
//! [ launcher ][ payload ][ metadata JSON ][ trailer ]   <- signed bytes
//! [ signature (minisign text) ][ footer ]
//! ```
//!
//! Reading starts at the end (the footer), and every offset and length read is
//! checked against the file size before anything is allocated. The signature
//! covers every byte before it, launcher included.

mod elf;
mod layout;
mod metadata;
#[cfg(test)]
mod tests;

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;

use sha2::{Digest, Sha256};

pub use elf::LAUNCHER_MARKER;
pub use layout::{
    Footer, Trailer, FOOTER_LEN, FOOTER_MAGIC, FORMAT_VERSION, TRAILER_LEN, TRAILER_MAGIC,
};
pub use metadata::{
    is_valid_name, is_valid_version, Metadata, PythonInfo, PythonMode, MAX_METADATA_LEN,
};

use crate::keys::{PublicKey, SecretKey};
use crate::signature::{Prehasher, Signature, SignatureError, MAX_SIGNATURE_LEN};
use crate::trusted_comment::TrustedComment;

/// Errors of reading, checking or writing a container.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// No ferry footer and no sign of a ferry launcher.
    #[error("not a ferry binary: {0}")]
    NotFerry(String),
    /// A ferry launcher whose appended payload was removed.
    #[error("the ferry payload was stripped from this file (`strip` or a packaging step dropped the data appended to the launcher); do not strip ferry binaries, copy the original file again")]
    Stripped,
    /// The file ends before its footer.
    #[error("the file is truncated: it ends before the ferry footer; copy or download it again")]
    Truncated,
    /// A format version this reader does not know.
    #[error("ferry format version {found} is not supported (this ferry reads version {supported}); upgrade ferry")]
    UnsupportedVersion {
        /// Version in the file.
        found: u32,
        /// Version this crate reads.
        supported: u32,
    },
    /// Structure that contradicts itself or the file size.
    #[error("corrupt ferry binary: {0}")]
    Corrupt(String),
    /// Metadata that does not parse or breaks a rule.
    #[error("corrupt ferry binary: metadata: {0}")]
    Metadata(String),
    /// The container carries no signature.
    #[error("the binary is not signed; sign it with `ferry sign FILE --key KEY`")]
    Unsigned,
    /// The signature does not check out.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// The signature is valid but vouches for other metadata.
    #[error("the signature does not belong to this binary: its trusted comment says {field} `{signed}`, the metadata says `{actual}`")]
    BindingMismatch {
        /// Which field differs.
        field: &'static str,
        /// Value in the trusted comment.
        signed: String,
        /// Value in the metadata.
        actual: String,
    },
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A container's structure as read from its file.
#[derive(Debug, Clone)]
pub struct Container {
    /// Total file length.
    pub file_len: u64,
    /// Length of the signed region (everything before the signature).
    pub signed_len: u64,
    /// The trailer.
    pub trailer: Trailer,
    /// The metadata.
    pub metadata: Metadata,
    /// The embedded signature, if signed.
    pub signature: Option<Signature>,
}

fn read_at<R: Read + Seek>(r: &mut R, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    r.seek(SeekFrom::Start(offset))?;
    r.read_exact(buf)
}

fn corrupt(msg: impl Into<String>) -> ContainerError {
    ContainerError::Corrupt(msg.into())
}

/// Why there is no footer: truncated, stripped, or not ferry's at all.
///
/// Only an ELF file carrying the launcher marker is a damaged ferry binary: one
/// exactly as long as its ELF headers describe is what `strip` leaves, any other
/// length is a cut copy. An ELF file without the marker is some other program,
/// possibly with data of its own appended (PyInstaller, AppImage).
fn classify_missing_footer<R: Read + Seek>(r: &mut R, file_len: u64) -> ContainerError {
    match elf::elf_extent(r, file_len) {
        Some(extent) if elf::has_launcher_marker(r, extent.min(file_len)) => {
            if file_len == extent {
                ContainerError::Stripped
            } else {
                ContainerError::Truncated
            }
        }
        Some(_) => ContainerError::NotFerry("an executable without a ferry footer".into()),
        None => ContainerError::NotFerry("no ferry footer at the end of the file".into()),
    }
}

impl Container {
    /// Reads and checks the structure of a container (not its signature).
    pub fn read_from<R: Read + Seek>(r: &mut R) -> Result<Self, ContainerError> {
        let file_len = r.seek(SeekFrom::End(0))?;
        if file_len < FOOTER_LEN {
            return Err(classify_missing_footer(r, file_len));
        }
        let mut footer = [0u8; FOOTER_LEN as usize];
        read_at(r, file_len - FOOTER_LEN, &mut footer)?;
        let Some(footer) = Footer::decode(&footer) else {
            return Err(classify_missing_footer(r, file_len));
        };
        if footer.signature_len > MAX_SIGNATURE_LEN as u64 {
            return Err(corrupt(format!(
                "signature length {} exceeds the limit of {MAX_SIGNATURE_LEN}",
                footer.signature_len
            )));
        }
        let signed_len = (file_len - FOOTER_LEN)
            .checked_sub(footer.signature_len)
            .filter(|&n| n >= TRAILER_LEN)
            .ok_or_else(|| corrupt("footer points before the start of the file"))?;
        let trailer_offset = signed_len - TRAILER_LEN;
        let mut trailer = [0u8; TRAILER_LEN as usize];
        read_at(r, trailer_offset, &mut trailer)?;
        let trailer = Trailer::decode(&trailer)?;
        let payload_end = trailer.payload_offset.checked_add(trailer.payload_len);
        let metadata_end = trailer.metadata_offset.checked_add(trailer.metadata_len);
        if payload_end != Some(trailer.metadata_offset) || metadata_end != Some(trailer_offset) {
            return Err(corrupt(
                "trailer regions overlap, leave gaps, or point outside the file",
            ));
        }
        if trailer.metadata_len == 0 || trailer.metadata_len > MAX_METADATA_LEN {
            return Err(corrupt(format!(
                "metadata length {} is outside 1..={MAX_METADATA_LEN}",
                trailer.metadata_len
            )));
        }
        let mut meta = vec![0u8; trailer.metadata_len as usize];
        read_at(r, trailer.metadata_offset, &mut meta)?;
        let metadata = Metadata::from_json(&meta)?;
        if metadata.format_version != trailer.version {
            return Err(corrupt(
                "metadata and trailer disagree on the format version",
            ));
        }
        let signature = if footer.signature_len == 0 {
            None
        } else {
            let mut sig = vec![0u8; footer.signature_len as usize];
            read_at(r, signed_len, &mut sig)?;
            let text = String::from_utf8(sig)
                .map_err(|_| SignatureError::Malformed("embedded signature is not UTF-8".into()))?;
            let sig = Signature::parse(&text)?;
            // ferry and minisign write exactly this text; refusing any other
            // spelling (CR LF, trailing blanks) leaves one byte form per signature.
            if sig.to_text() != text {
                return Err(corrupt(
                    "the embedded signature is not in canonical minisign form",
                ));
            }
            Some(sig)
        };
        Ok(Self {
            file_len,
            signed_len,
            trailer,
            metadata,
            signature,
        })
    }

    /// Byte range of the payload.
    pub fn payload_range(&self) -> Range<u64> {
        self.trailer.payload_offset..self.trailer.metadata_offset
    }

    /// Checks the embedded signature against `trusted` keys in one streaming
    /// pass: BLAKE2b-512 of the signed bytes, SHA-256 of the payload against the
    /// build id, and the trusted comment against the metadata. Returns the key.
    pub fn verify<'k, R: Read + Seek>(
        &self,
        r: &mut R,
        trusted: &'k [PublicKey],
    ) -> Result<&'k PublicKey, ContainerError> {
        let sig = self.signature.as_ref().ok_or(ContainerError::Unsigned)?;
        sig.find_key(trusted)?;
        let (prehash, payload_sha) = self.hash_signed(r)?;
        let key = sig.verify_prehash(trusted, &prehash)?;
        check_binding(&sig.trusted_comment, &self.metadata)?;
        if payload_sha != self.metadata.build_id {
            return Err(corrupt(
                "the payload does not match the build id in the metadata",
            ));
        }
        Ok(key)
    }

    /// BLAKE2b-512 of the signed region and hex SHA-256 of the payload.
    fn hash_signed<R: Read + Seek>(&self, r: &mut R) -> io::Result<([u8; 64], String)> {
        r.seek(SeekFrom::Start(0))?;
        let mut pre = Prehasher::new();
        let mut sha = Sha256::new();
        let payload = self.payload_range();
        let mut buf = vec![0u8; 256 * 1024];
        let mut pos = 0u64;
        while pos < self.signed_len {
            let want = buf.len().min((self.signed_len - pos) as usize);
            r.read_exact(&mut buf[..want])?;
            let chunk = &buf[..want];
            pre.update(chunk);
            let start = payload.start.max(pos);
            let end = payload.end.min(pos + want as u64);
            if start < end {
                sha.update(&chunk[(start - pos) as usize..(end - pos) as usize]);
            }
            pos += want as u64;
        }
        Ok((pre.finish(), hex::encode(sha.finalize())))
    }

    /// Signs the container with `key`: returns the bytes that replace everything
    /// after the signed region (signature text and footer).
    pub fn sign<R: Read + Seek>(
        &self,
        r: &mut R,
        key: &SecretKey,
    ) -> Result<Vec<u8>, ContainerError> {
        let (prehash, payload_sha) = self.hash_signed(r)?;
        if payload_sha != self.metadata.build_id {
            return Err(corrupt(
                "the payload does not match the build id in the metadata",
            ));
        }
        signature_block(key, &prehash, &self.metadata)
    }
}

/// The trusted comment ferry writes for a container: what the signature vouches for.
pub fn trusted_comment(meta: &Metadata) -> TrustedComment {
    // Names and versions were validated: they hold no tabs or newlines.
    TrustedComment::new()
        .with("timestamp", meta.created_at)
        .and_then(|c| c.with("file", &meta.name))
        .and_then(|c| c.with("app", &meta.name))
        .and_then(|c| c.with("version", &meta.version))
        .and_then(|c| c.with("build", &meta.build_id))
        .expect("validated metadata fits a trusted comment")
}

fn check_binding(comment: &str, meta: &Metadata) -> Result<(), ContainerError> {
    let comment = TrustedComment::parse(comment);
    for (field, actual) in [
        ("app", &meta.name),
        ("version", &meta.version),
        ("build", &meta.build_id),
    ] {
        let signed = comment.get(field).unwrap_or("(missing)");
        if signed != actual {
            return Err(ContainerError::BindingMismatch {
                field,
                signed: signed.to_owned(),
                actual: actual.clone(),
            });
        }
    }
    Ok(())
}

fn signature_block(
    key: &SecretKey,
    prehash: &[u8; 64],
    meta: &Metadata,
) -> Result<Vec<u8>, ContainerError> {
    let untrusted = format!(
        "ferry signature of {} {} by key {}",
        meta.name,
        meta.version,
        key.id()
    );
    let sig =
        Signature::sign_prehashed(key, prehash, &trusted_comment(meta).to_string(), &untrusted)?;
    let mut out = sig.to_text().into_bytes();
    out.extend_from_slice(
        &Footer {
            signature_len: out.len() as u64,
        }
        .encode(),
    );
    Ok(out)
}

/// A writer that feeds everything written through it to the prehash.
struct HashingWriter<'w, W: Write> {
    inner: &'w mut W,
    hasher: Prehasher,
    written: u64,
}

impl<W: Write> Write for HashingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes a whole container in one pass: launcher, payload, metadata, trailer,
/// then a signature by `key` (or an unsigned footer). The metadata's `build_id`
/// must be the SHA-256 of the payload; this is checked while copying.
pub fn write_container<W: Write>(
    out: &mut W,
    launcher: &mut impl Read,
    payload: &mut impl Read,
    metadata: &Metadata,
    key: Option<&SecretKey>,
) -> Result<Trailer, ContainerError> {
    metadata.validate()?;
    if metadata.format_version != FORMAT_VERSION {
        return Err(ContainerError::Metadata(format!(
            "format version must be {FORMAT_VERSION}"
        )));
    }
    let mut w = HashingWriter {
        inner: out,
        hasher: Prehasher::new(),
        written: 0,
    };
    let payload_offset = io::copy(launcher, &mut w)?;
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut payload_len = 0u64;
    loop {
        let n = payload.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        w.write_all(&buf[..n])?;
        payload_len += n as u64;
    }
    if hex::encode(sha.finalize()) != metadata.build_id {
        return Err(ContainerError::Metadata(
            "build id is not the SHA-256 of the payload".into(),
        ));
    }
    let json = metadata.to_json();
    w.write_all(&json)?;
    let trailer = Trailer {
        version: FORMAT_VERSION,
        payload_offset,
        payload_len,
        metadata_offset: payload_offset + payload_len,
        metadata_len: json.len() as u64,
    };
    w.write_all(&trailer.encode())?;
    let prehash = w.hasher.finish();
    match key {
        Some(key) => out.write_all(&signature_block(key, &prehash, metadata)?)?,
        None => out.write_all(&Footer { signature_len: 0 }.encode())?,
    }
    Ok(trailer)
}
