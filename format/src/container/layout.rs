//! The fixed-size records at the end of a container: the trailer, which locates
//! payload and metadata, and the footer, which sizes the signature after it.
//! `docs/format.md` is the byte-level specification of both.

use super::ContainerError;

/// Magic at the start of the trailer.
pub const TRAILER_MAGIC: [u8; 8] = *b"FERRYTRL";
/// Magic in the last eight bytes of every container.
pub const FOOTER_MAGIC: [u8; 8] = *b"FERRYEND";
/// The container format version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Trailer size in bytes.
pub const TRAILER_LEN: u64 = 48;
/// Footer size in bytes.
pub const FOOTER_LEN: u64 = 16;

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(
        bytes[at..at + 4]
            .try_into()
            .expect("4 bytes in a fixed record"),
    )
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(
        bytes[at..at + 8]
            .try_into()
            .expect("8 bytes in a fixed record"),
    )
}

/// Where payload and metadata lie in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    /// Format version.
    pub version: u32,
    /// Offset of the payload, which is also the launcher's length.
    pub payload_offset: u64,
    /// Payload length.
    pub payload_len: u64,
    /// Offset of the metadata JSON.
    pub metadata_offset: u64,
    /// Metadata length.
    pub metadata_len: u64,
}

impl Trailer {
    /// The 48 bytes of the trailer.
    pub fn encode(&self) -> [u8; TRAILER_LEN as usize] {
        let mut out = [0u8; TRAILER_LEN as usize];
        out[0..8].copy_from_slice(&TRAILER_MAGIC);
        out[8..12].copy_from_slice(&self.version.to_le_bytes());
        // 12..16: flags, zero in version 1.
        out[16..24].copy_from_slice(&self.payload_offset.to_le_bytes());
        out[24..32].copy_from_slice(&self.payload_len.to_le_bytes());
        out[32..40].copy_from_slice(&self.metadata_offset.to_le_bytes());
        out[40..48].copy_from_slice(&self.metadata_len.to_le_bytes());
        out
    }

    /// Reads a trailer, refusing a wrong magic, an unknown version or flags.
    pub fn decode(bytes: &[u8; TRAILER_LEN as usize]) -> Result<Self, ContainerError> {
        if bytes[0..8] != TRAILER_MAGIC {
            return Err(ContainerError::Corrupt(
                "no trailer where the footer says it is".into(),
            ));
        }
        let version = u32_at(bytes, 8);
        if version != FORMAT_VERSION {
            return Err(ContainerError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if u32_at(bytes, 12) != 0 {
            return Err(ContainerError::Corrupt("unknown trailer flags".into()));
        }
        Ok(Self {
            version,
            payload_offset: u64_at(bytes, 16),
            payload_len: u64_at(bytes, 24),
            metadata_offset: u64_at(bytes, 32),
            metadata_len: u64_at(bytes, 40),
        })
    }
}

/// The footer: how many signature bytes precede it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    /// Length of the minisign signature text; 0 for an unsigned container.
    pub signature_len: u64,
}

impl Footer {
    /// The 16 bytes of the footer.
    pub fn encode(&self) -> [u8; FOOTER_LEN as usize] {
        let mut out = [0u8; FOOTER_LEN as usize];
        out[0..8].copy_from_slice(&self.signature_len.to_le_bytes());
        out[8..16].copy_from_slice(&FOOTER_MAGIC);
        out
    }

    /// Reads a footer; `None` when the magic is absent.
    pub fn decode(bytes: &[u8; FOOTER_LEN as usize]) -> Option<Self> {
        (bytes[8..16] == FOOTER_MAGIC).then(|| Self {
            signature_len: u64_at(bytes, 0),
        })
    }
}
