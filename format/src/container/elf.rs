//! Just enough ELF reading to tell *why* a file has no ferry footer.
//!
//! `strip` and similar tools rewrite an executable to what its ELF headers
//! describe, silently dropping the appended payload; a cut download or copy ends
//! at an arbitrary byte past those headers. The file's length against the ELF
//! extent tells the two apart, so each gets its own error.

use std::io::{Read, Seek, SeekFrom};

/// Bytes every ferry launcher carries in its read-only data, kept by `strip`.
pub const LAUNCHER_MARKER: &[u8] = b"ferry-launcher-marker-v1";

/// Most program headers read when sizing an ELF file.
const MAX_PROGRAM_HEADERS: u64 = 4096;

/// The last byte an ELF file's own headers account for, or `None` if the file
/// is not a little-endian ELF file this reader understands.
pub fn elf_extent<R: Read + Seek>(r: &mut R, file_len: u64) -> Option<u64> {
    let mut ident = [0u8; 64];
    r.seek(SeekFrom::Start(0)).ok()?;
    let n = read_up_to(r, &mut ident).ok()?;
    if n < 52 || ident[0..4] != *b"\x7fELF" || ident[5] != 1 {
        return None;
    }
    let wide = match ident[4] {
        1 => false,
        2 if n >= 64 => true,
        _ => return None,
    };
    let (phoff, shoff, phentsize, phnum, shentsize, shnum) = if wide {
        (
            u64_at(&ident, 0x20)?,
            u64_at(&ident, 0x28)?,
            u16_at(&ident, 0x36),
            u16_at(&ident, 0x38),
            u16_at(&ident, 0x3A),
            u16_at(&ident, 0x3C),
        )
    } else {
        (
            u32_at(&ident, 0x1C)?,
            u32_at(&ident, 0x20)?,
            u16_at(&ident, 0x2A),
            u16_at(&ident, 0x2C),
            u16_at(&ident, 0x2E),
            u16_at(&ident, 0x30),
        )
    };
    let mut extent = shoff.checked_add(shentsize.checked_mul(shnum)?)?;
    if phnum > MAX_PROGRAM_HEADERS || phentsize < if wide { 56 } else { 32 } {
        return Some(extent);
    }
    for i in 0..phnum {
        let at = phoff.checked_add(i * phentsize)?;
        if at.checked_add(phentsize)? > file_len {
            break;
        }
        let mut ph = [0u8; 56];
        r.seek(SeekFrom::Start(at)).ok()?;
        let len = if wide { 56 } else { 32 };
        r.read_exact(&mut ph[..len]).ok()?;
        let end = if wide {
            u64_at(&ph, 8)?.checked_add(u64_at(&ph, 32)?)?
        } else {
            u32_at(&ph, 4)?.checked_add(u32_at(&ph, 16)?)?
        };
        extent = extent.max(end);
    }
    Some(extent)
}

fn u16_at(b: &[u8], at: usize) -> u64 {
    u64::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from(u32::from_le_bytes(
        b.get(at..at + 4)?.try_into().ok()?,
    )))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn read_up_to<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Whether the first `limit` bytes hold the launcher marker.
pub fn has_launcher_marker<R: Read + Seek>(r: &mut R, limit: u64) -> bool {
    if r.seek(SeekFrom::Start(0)).is_err() {
        return false;
    }
    let mut window = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut remaining = limit;
    while remaining > 0 {
        let want = buf.len().min(remaining as usize);
        let Ok(n) = r.read(&mut buf[..want]) else {
            return false;
        };
        if n == 0 {
            break;
        }
        remaining -= n as u64;
        window.extend_from_slice(&buf[..n]);
        if window
            .windows(LAUNCHER_MARKER.len())
            .any(|w| w == LAUNCHER_MARKER)
        {
            return true;
        }
        let keep = LAUNCHER_MARKER.len() - 1;
        if window.len() > keep {
            window.drain(..window.len() - keep);
        }
    }
    false
}
