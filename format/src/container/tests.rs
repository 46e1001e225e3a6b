//! Container tests: round trip, tampering, truncation, stripping, hostile
//! lengths, re-signing and signature transplants. Keys are unencrypted so the
//! suite stays fast (scrypt with minisign's parameters costs seconds per key).

use std::io::{self, Cursor, Read, Seek, SeekFrom};

use crate::digest::sha256_hex;

use super::*;
use crate::keys::{KeyId, PublicKey, SecretKey};
use crate::signature::{Signature, SignatureError};

const SHENTSIZE: usize = 64;
const SHNUM: usize = 2;

/// A 64-bit little-endian ELF header whose section header table (`e_shoff`,
/// `e_shnum`) ends exactly at the end of the returned bytes, so its ELF extent
/// is its length, with the launcher marker and some padding in between.
fn launcher_with(marker: &[u8], padding: usize) -> Vec<u8> {
    let mut out = vec![0u8; 64];
    out[0..4].copy_from_slice(b"\x7fELF");
    out[4] = 2; // ELFCLASS64
    out[5] = 1; // ELFDATA2LSB
    out[6] = 1; // EV_CURRENT
    out[0x10..0x12].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    out[0x12..0x14].copy_from_slice(&0x3Eu16.to_le_bytes()); // x86-64
    out[0x14..0x18].copy_from_slice(&1u32.to_le_bytes());
    out[0x34..0x36].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    out[0x36..0x38].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    out[0x3A..0x3C].copy_from_slice(&(SHENTSIZE as u16).to_le_bytes());
    out[0x3C..0x3E].copy_from_slice(&(SHNUM as u16).to_le_bytes());
    out.extend_from_slice(marker);
    out.extend((0..padding).map(|i| (i * 7 + 3) as u8));
    let shoff = out.len() as u64;
    out[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
    out.resize(out.len() + SHENTSIZE * SHNUM, 0);
    out
}

fn launcher() -> Vec<u8> {
    launcher_with(LAUNCHER_MARKER, 100)
}

fn payload() -> Vec<u8> {
    (0..300u32).map(|i| (i * 31 % 251) as u8).collect()
}

fn metadata_for(payload: &[u8], version: &str) -> Metadata {
    Metadata {
        format_version: FORMAT_VERSION,
        name: "demo-app".into(),
        version: version.into(),
        entry_point: "demo.app:main".into(),
        python: Some(PythonInfo {
            mode: PythonMode::Standalone,
            version: "3.11.7".into(),
            executable: Some("python/bin/python3.11".into()),
        }),
        build_id: sha256_hex(payload),
        created_at: 1_700_000_000,
        launcher_version: "0.1.0".into(),
        glibc_floor: Some("2.34".into()),
    }
}

fn key() -> SecretKey {
    SecretKey::generate().unwrap()
}

fn build(launcher: &[u8], payload: &[u8], meta: &Metadata, key: Option<&SecretKey>) -> Vec<u8> {
    let mut out = Vec::new();
    write_container(&mut out, &mut &launcher[..], &mut &payload[..], meta, key).unwrap();
    out
}

fn signed(key: &SecretKey) -> Vec<u8> {
    let p = payload();
    build(&launcher(), &p, &metadata_for(&p, "1.2.3"), Some(key))
}

fn read(bytes: &[u8]) -> Result<Container, ContainerError> {
    Container::read_from(&mut Cursor::new(bytes))
}

/// `read_from` then `verify`: the whole check a launcher performs.
fn check(bytes: &[u8], trusted: &[PublicKey]) -> Result<Container, ContainerError> {
    let c = read(bytes)?;
    c.verify(&mut Cursor::new(bytes), trusted)?;
    Ok(c)
}

/// The trailer of a container, as bytes and decoded.
fn trailer_of(bytes: &[u8]) -> (usize, Trailer) {
    let c = read(bytes).unwrap();
    let at = (c.signed_len - TRAILER_LEN) as usize;
    (at, c.trailer)
}

/// `bytes` with its trailer replaced by `t` (the version word written raw).
fn with_trailer(bytes: &[u8], edit: impl FnOnce(&mut [u8; TRAILER_LEN as usize])) -> Vec<u8> {
    let (at, t) = trailer_of(bytes);
    let mut rec = t.encode();
    edit(&mut rec);
    let mut out = bytes.to_vec();
    out[at..at + TRAILER_LEN as usize].copy_from_slice(&rec);
    out
}

fn set_u64(rec: &mut [u8], at: usize, v: u64) {
    rec[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn round_trip() {
    let k = key();
    let l = launcher();
    let p = payload();
    let meta = metadata_for(&p, "1.2.3");
    let bytes = build(&l, &p, &meta, Some(&k));

    let c = read(&bytes).unwrap();
    assert_eq!(c.metadata, meta);
    assert_eq!(c.file_len, bytes.len() as u64);
    assert_eq!(c.trailer.version, FORMAT_VERSION);
    assert_eq!(c.trailer.payload_offset, l.len() as u64);
    assert_eq!(
        c.payload_range(),
        l.len() as u64..(l.len() + p.len()) as u64
    );
    let r = c.payload_range();
    assert_eq!(&bytes[r.start as usize..r.end as usize], &p[..]);
    assert_eq!(&bytes[..l.len()], &l[..]);
    assert_eq!(
        &bytes[c.trailer.metadata_offset as usize..][..c.trailer.metadata_len as usize],
        &meta.to_json()[..]
    );

    let sig = c.signature.as_ref().unwrap();
    assert_eq!(sig.key_id, k.id());
    assert_eq!(sig.trusted_comment, trusted_comment(&meta).to_string());
    assert_eq!(
        sig.trusted_comment,
        format!(
            "timestamp:1700000000\tfile:demo-app\tapp:demo-app\tversion:1.2.3\tbuild:{}",
            meta.build_id
        )
    );
    let sig_len = c.file_len - c.signed_len - FOOTER_LEN;
    assert_eq!(sig.to_text().len() as u64, sig_len);
    assert_eq!(&bytes[bytes.len() - 8..], &FOOTER_MAGIC);

    let other = key().public_key();
    let trusted = [other, k.public_key()];
    let used = c.verify(&mut Cursor::new(&bytes), &trusted).unwrap();
    assert_eq!(used.id(), k.id());
}

#[test]
fn the_signed_region_checks_as_a_detached_minisign_signature() {
    // What `ferry inspect --export-signed` hands to `minisign -V`.
    let k = key();
    let bytes = signed(&k);
    let c = read(&bytes).unwrap();
    let sig = c.signature.as_ref().unwrap();
    let reparsed = Signature::parse(&sig.to_text()).unwrap();
    reparsed
        .verify_reader(&[k.public_key()], &mut &bytes[..c.signed_len as usize])
        .unwrap();
    // The same bytes located with the footer alone, as `head -c`/`tail -c` would.
    let sig_len = u64::from_le_bytes(bytes[bytes.len() - 16..][..8].try_into().unwrap());
    let signed_len = bytes.len() - 16 - sig_len as usize;
    assert_eq!(signed_len as u64, c.signed_len);
    let text = std::str::from_utf8(&bytes[signed_len..bytes.len() - 16]).unwrap();
    assert_eq!(text, sig.to_text());
}

#[derive(Debug, Clone, Copy)]
enum Region {
    Launcher,
    Payload,
    Metadata,
    Trailer,
    Signature,
    Footer,
}

fn region_of(c: &Container, at: u64) -> Region {
    let t = &c.trailer;
    if at < t.payload_offset {
        Region::Launcher
    } else if at < t.metadata_offset {
        Region::Payload
    } else if at < t.metadata_offset + t.metadata_len {
        Region::Metadata
    } else if at < c.signed_len {
        Region::Trailer
    } else if at < c.file_len - FOOTER_LEN {
        Region::Signature
    } else {
        Region::Footer
    }
}

/// Byte range of the untrusted comment's text (after its prefix): the one part
/// of a minisign signature no signature covers, by design.
fn untrusted_comment_range(bytes: &[u8], c: &Container) -> std::ops::Range<usize> {
    let start = c.signed_len as usize + "untrusted comment: ".len();
    let end = start
        + bytes[start..]
            .iter()
            .position(|&b| b == b'\n')
            .expect("a newline ends the untrusted comment");
    start..end
}

#[test]
fn every_single_byte_change_is_caught() {
    let k = key();
    let trusted = [k.public_key()];
    let bytes = signed(&k);
    let original = read(&bytes).unwrap();
    let untrusted = untrusted_comment_range(&bytes, &original);
    let mut caught = [0usize; 6];
    for at in 0..bytes.len() {
        for mask in [0x01u8, 0x20, 0x80, 0xFF] {
            let mut bad = bytes.clone();
            bad[at] ^= mask;
            let region = region_of(&original, at as u64);
            match check(&bad, &trusted) {
                Err(_) => caught[region as usize] += 1,
                Ok(c) => {
                    // Only the untrusted comment may change, and then nothing
                    // else of what was read may.
                    assert!(
                        untrusted.contains(&at),
                        "flipping byte {at} ({region:?}) with {mask:#04x} went unnoticed"
                    );
                    let (mut got, want) = (c.signature.unwrap(), original.signature.clone());
                    assert_ne!(Some(&got), want.as_ref());
                    got.untrusted_comment = want.as_ref().unwrap().untrusted_comment.clone();
                    assert_eq!(Some(got), want);
                    assert_eq!(c.metadata, original.metadata);
                }
            }
        }
    }
    assert!(caught.iter().all(|&n| n > 0), "{caught:?}");
}

#[test]
fn a_changed_byte_in_a_large_payload_is_caught() {
    // Larger than the 256 KiB hashing buffer, so chunk boundaries are crossed.
    let k = key();
    let trusted = [k.public_key()];
    let p: Vec<u8> = (0..600_000u32).map(|i| (i % 253) as u8).collect();
    let bytes = build(&launcher(), &p, &metadata_for(&p, "1.0"), Some(&k));
    check(&bytes, &trusted).unwrap();
    let start = launcher().len();
    for at in [
        0,
        start - 1,
        start,
        start + 262_143,
        start + 262_144,
        start + p.len() - 1,
    ] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x40;
        let err = check(&bad, &trusted).unwrap_err();
        assert!(
            matches!(
                err,
                ContainerError::Signature(SignatureError::ContentMismatch(_))
            ),
            "byte {at}: {err}"
        );
    }
}

#[test]
fn a_wrong_key_names_both_key_ids() {
    let k = key();
    let bytes = signed(&k);
    let other = key().public_key();
    let err = check(&bytes, std::slice::from_ref(&other)).unwrap_err();
    match &err {
        ContainerError::Signature(SignatureError::UnknownKey { signed_by, trusted }) => {
            assert_eq!(*signed_by, k.id());
            assert_eq!(trusted, &[other.id()]);
        }
        e => panic!("expected UnknownKey, got {e:?}"),
    }
    let text = err.to_string();
    assert!(text.contains(&k.id().to_string()), "{text}");
    assert!(text.contains(&other.id().to_string()), "{text}");
    let none = check(&bytes, &[]).unwrap_err().to_string();
    assert!(none.contains("trusted: none"), "{none}");
}

#[test]
fn a_cut_past_the_launcher_is_truncated() {
    let bytes = signed(&key());
    let extent = launcher().len();
    for cut in extent + 1..bytes.len() {
        match read(&bytes[..cut]) {
            Err(ContainerError::Truncated) => {}
            other => panic!("cut at {cut} of {}: {other:?}", bytes.len()),
        }
    }
}

#[test]
fn a_cut_to_the_elf_extent_is_stripped() {
    let bytes = signed(&key());
    let extent = launcher().len();
    assert!(matches!(
        read(&bytes[..extent]),
        Err(ContainerError::Stripped)
    ));
    assert!(ContainerError::Stripped.to_string().contains("strip"));
    // Shorter than the ELF headers say: cut inside the launcher.
    let marker_end = 64 + LAUNCHER_MARKER.len();
    for cut in marker_end..extent {
        assert!(
            matches!(read(&bytes[..cut]), Err(ContainerError::Truncated)),
            "cut at {cut}"
        );
    }
    // Cut before the marker: no longer recognisable as ferry's.
    for cut in [0, 1, 16, 63, 64, marker_end - 1] {
        assert!(
            matches!(read(&bytes[..cut]), Err(ContainerError::NotFerry(_))),
            "cut at {cut}"
        );
    }
}

#[test]
fn program_headers_count_towards_the_elf_extent() {
    // No section headers (as `sstrip` leaves): one PT_LOAD covers the file.
    let mut l = launcher_with(LAUNCHER_MARKER, 300);
    l.truncate(l.len() - SHENTSIZE * SHNUM);
    l[0x28..0x30].copy_from_slice(&0u64.to_le_bytes()); // e_shoff
    l[0x3C..0x3E].copy_from_slice(&0u16.to_le_bytes()); // e_shnum
    let phoff = 64 + LAUNCHER_MARKER.len() as u64;
    l[0x20..0x28].copy_from_slice(&phoff.to_le_bytes());
    l[0x38..0x3A].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
    let len = l.len() as u64;
    let ph = &mut l[phoff as usize..phoff as usize + 56];
    ph[0..4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    ph[8..16].copy_from_slice(&0u64.to_le_bytes()); // p_offset
    ph[32..40].copy_from_slice(&len.to_le_bytes()); // p_filesz
    assert_eq!(elf::elf_extent(&mut Cursor::new(&l), len), Some(len));

    let p = payload();
    let bytes = build(&l, &p, &metadata_for(&p, "1"), None);
    assert!(matches!(
        read(&bytes[..l.len()]),
        Err(ContainerError::Stripped)
    ));
    assert!(matches!(
        read(&bytes[..l.len() + 1]),
        Err(ContainerError::Truncated)
    ));
}

#[test]
fn other_files_are_not_ferry() {
    for bytes in [
        &b""[..],
        b"x",
        b"hello, this is a plain text file that is certainly not a ferry binary\n",
        &[0u8; 4096],
        b"\x7fELF",
    ] {
        match read(bytes) {
            Err(ContainerError::NotFerry(_)) => {}
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bytes)),
        }
    }
    // Another program: an ELF file without the marker, with or without data of
    // its own appended (PyInstaller, AppImage).
    let elf = launcher_with(b"some other program", 100);
    let mut appended = elf.clone();
    appended.extend_from_slice(&[0x55; 1000]);
    for bytes in [&elf, &appended] {
        assert!(matches!(read(bytes), Err(ContainerError::NotFerry(_))));
    }
}

#[test]
fn unsigned_then_signed() {
    let k = key();
    let p = payload();
    let meta = metadata_for(&p, "2.0");
    let bytes = build(&launcher(), &p, &meta, None);
    let c = read(&bytes).unwrap();
    assert!(c.signature.is_none());
    assert_eq!(c.signed_len + FOOTER_LEN, c.file_len);
    assert!(matches!(
        c.verify(&mut Cursor::new(&bytes), &[k.public_key()]),
        Err(ContainerError::Unsigned)
    ));

    let tail = c.sign(&mut Cursor::new(&bytes), &k).unwrap();
    let mut resigned = bytes[..c.signed_len as usize].to_vec();
    resigned.extend_from_slice(&tail);
    let r = check(&resigned, &[k.public_key()]).unwrap();
    assert_eq!(r.metadata, meta);
    // Signing on write and signing afterwards give the same signed bytes and
    // a signature over them with the same trusted comment.
    let direct = build(&launcher(), &p, &meta, Some(&k));
    let d = read(&direct).unwrap();
    assert_eq!(
        direct[..d.signed_len as usize],
        resigned[..r.signed_len as usize]
    );
    assert_eq!(
        d.signature.unwrap().trusted_comment,
        r.signature.as_ref().unwrap().trusted_comment
    );

    // Re-signing a signed container with another key replaces the signature.
    let k2 = key();
    let tail2 = r.sign(&mut Cursor::new(&resigned), &k2).unwrap();
    let mut again = resigned[..r.signed_len as usize].to_vec();
    again.extend_from_slice(&tail2);
    check(&again, &[k2.public_key()]).unwrap();
    assert!(matches!(
        check(&again, &[k.public_key()]),
        Err(ContainerError::Signature(SignatureError::UnknownKey { .. }))
    ));
}

#[test]
fn an_unknown_version_is_reported_before_the_signature() {
    let k = key();
    let bytes = signed(&k);
    for v in [0u32, 2, u32::MAX] {
        let bad = with_trailer(&bytes, |rec| rec[8..12].copy_from_slice(&v.to_le_bytes()));
        match read(&bad) {
            Err(ContainerError::UnsupportedVersion { found, supported }) => {
                assert_eq!((found, supported), (v, FORMAT_VERSION));
            }
            other => panic!("version {v}: {other:?}"),
        }
    }
    // Also in an unsigned container, and with lengths a later version might
    // lay out differently: the version is the first thing checked.
    let p = payload();
    let unsigned = build(&launcher(), &p, &metadata_for(&p, "1"), None);
    let bad = with_trailer(&unsigned, |rec| {
        rec[8..12].copy_from_slice(&7u32.to_le_bytes());
        rec[12..16].copy_from_slice(&1u32.to_le_bytes());
        set_u64(rec, 40, u64::MAX);
    });
    assert!(matches!(
        read(&bad),
        Err(ContainerError::UnsupportedVersion { found: 7, .. })
    ));
    let text = ContainerError::UnsupportedVersion {
        found: 7,
        supported: 1,
    }
    .to_string();
    assert!(text.contains('7') && text.contains("upgrade"), "{text}");
}

#[test]
fn bad_lengths_are_corrupt() {
    let bytes = signed(&key());
    let (at, t) = trailer_of(&bytes);
    let file_len = bytes.len() as u64;
    type Edit = Box<dyn Fn(&mut [u8; TRAILER_LEN as usize])>;
    let edits: Vec<(&str, Edit)> = vec![
        ("flags", Box::new(|r| r[12] = 1)),
        ("magic", Box::new(|r| r[0] ^= 0x20)),
        (
            "payload offset + 1",
            Box::new(move |r| set_u64(r, 16, t.payload_offset + 1)),
        ),
        ("payload offset 0", Box::new(|r| set_u64(r, 16, 0))),
        (
            "payload len + 1",
            Box::new(move |r| set_u64(r, 24, t.payload_len + 1)),
        ),
        ("payload len max", Box::new(|r| set_u64(r, 24, u64::MAX))),
        ("payload offset max", Box::new(|r| set_u64(r, 16, u64::MAX))),
        (
            "metadata offset past end",
            Box::new(move |r| set_u64(r, 32, file_len + 10)),
        ),
        (
            "metadata overlaps payload",
            Box::new(move |r| set_u64(r, 32, t.payload_offset)),
        ),
        ("metadata len max", Box::new(|r| set_u64(r, 40, u64::MAX))),
        ("metadata len huge", Box::new(|r| set_u64(r, 40, 1 << 40))),
        (
            "metadata len - 1",
            Box::new(move |r| set_u64(r, 40, t.metadata_len - 1)),
        ),
        (
            "metadata runs into the trailer",
            Box::new(move |r| set_u64(r, 40, t.metadata_len + 1)),
        ),
        (
            "all zero lengths",
            Box::new(move |r| {
                set_u64(r, 16, at as u64);
                set_u64(r, 24, 0);
                set_u64(r, 32, at as u64);
                set_u64(r, 40, 0);
            }),
        ),
    ];
    for (what, edit) in edits {
        let bad = with_trailer(&bytes, edit);
        match read(&bad) {
            Err(ContainerError::Corrupt(_)) => {}
            other => panic!("{what}: {other:?}"),
        }
    }
    // The footer's signature length: past the start, into the trailer, huge.
    for sig_len in [
        file_len,
        u64::MAX,
        (MAX_SIGNATURE_LEN + 1) as u64,
        file_len - FOOTER_LEN - TRAILER_LEN + 1,
        0,
        1,
    ] {
        let mut bad = bytes.clone();
        let n = bad.len();
        bad[n - 16..n - 8].copy_from_slice(&sig_len.to_le_bytes());
        match read(&bad) {
            Err(ContainerError::Corrupt(_)) => {}
            other => panic!("signature length {sig_len}: {other:?}"),
        }
    }
}

/// A file of `len` bytes that are all zero except `tail`, its last bytes:
/// lets a test hand `read_from` a trailer describing terabytes without a
/// terabyte anywhere.
struct SparseFile {
    len: u64,
    tail: Vec<u8>,
    pos: u64,
}

impl Read for SparseFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.len.saturating_sub(self.pos)) as usize;
        let tail_start = self.len - self.tail.len() as u64;
        for (i, b) in buf[..n].iter_mut().enumerate() {
            let at = self.pos + i as u64;
            *b = if at >= tail_start {
                self.tail[(at - tail_start) as usize]
            } else {
                0
            };
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for SparseFile {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.pos = match to {
            SeekFrom::Start(n) => n,
            SeekFrom::End(d) => self.len.checked_add_signed(d).expect("seek in range"),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d).expect("seek in range"),
        };
        Ok(self.pos)
    }
}

#[test]
fn consistent_but_huge_lengths_are_refused_before_allocating() {
    // Regions that tile a 1 TiB file exactly: only the length limits stand
    // between this trailer and a terabyte allocation.
    let len: u64 = 1 << 40;
    let trailer_at = len - FOOTER_LEN - TRAILER_LEN;
    let huge_meta = Trailer {
        version: FORMAT_VERSION,
        payload_offset: 100,
        payload_len: 1000,
        metadata_offset: 1100,
        metadata_len: trailer_at - 1100,
    };
    let just_over = Trailer {
        payload_len: trailer_at - 100 - (MAX_METADATA_LEN + 1),
        metadata_offset: trailer_at - (MAX_METADATA_LEN + 1),
        metadata_len: MAX_METADATA_LEN + 1,
        ..huge_meta
    };
    for t in [huge_meta, just_over] {
        let mut tail = t.encode().to_vec();
        tail.extend_from_slice(&Footer { signature_len: 0 }.encode());
        let mut f = SparseFile { len, tail, pos: 0 };
        match Container::read_from(&mut f) {
            Err(ContainerError::Corrupt(m)) => assert!(m.contains("metadata length"), "{m}"),
            other => panic!("{t:?}: {other:?}"),
        }
    }
    // A huge signature length in the footer.
    let mut f = SparseFile {
        len,
        tail: Footer {
            signature_len: len - 100,
        }
        .encode()
        .to_vec(),
        pos: 0,
    };
    assert!(matches!(
        Container::read_from(&mut f),
        Err(ContainerError::Corrupt(_))
    ));
    // An ELF header claiming a terabyte extent, without a footer: classified
    // without reading a terabyte.
    let mut l = launcher();
    l[0x28..0x30].copy_from_slice(&(len - 100).to_le_bytes());
    let bytes = l.clone();
    assert!(matches!(read(&bytes), Err(ContainerError::Truncated)));
}

/// The signed region for `meta` and `payload`, assembled by hand so tests can
/// break rules `write_container` enforces.
fn signed_region(launcher: &[u8], payload: &[u8], json: &[u8], version: u32) -> Vec<u8> {
    let mut out = launcher.to_vec();
    out.extend_from_slice(payload);
    out.extend_from_slice(json);
    let t = Trailer {
        version,
        payload_offset: launcher.len() as u64,
        payload_len: payload.len() as u64,
        metadata_offset: (launcher.len() + payload.len()) as u64,
        metadata_len: json.len() as u64,
    };
    out.extend_from_slice(&t.encode());
    out
}

/// `region` followed by a signature by `key` with `comment` as trusted comment.
fn sign_region(region: &[u8], key: &SecretKey, comment: &str) -> Vec<u8> {
    let prehash = Prehasher::hash_reader(&mut &region[..]).unwrap();
    let sig = Signature::sign_prehashed(key, &prehash, comment, "test").unwrap();
    let text = sig.to_text();
    let mut out = region.to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(
        &Footer {
            signature_len: text.len() as u64,
        }
        .encode(),
    );
    out
}

#[test]
fn a_signature_from_another_container_fails() {
    let k = key();
    let trusted = [k.public_key()];
    let p = payload();
    let a = build(&launcher(), &p, &metadata_for(&p, "1.0"), Some(&k));
    let b = build(&launcher(), &p, &metadata_for(&p, "1.1"), Some(&k));
    let (ca, cb) = (read(&a).unwrap(), read(&b).unwrap());
    let mut moved = a[..ca.signed_len as usize].to_vec();
    moved.extend_from_slice(&b[cb.signed_len as usize..]);
    let c = read(&moved).unwrap();
    assert!(matches!(
        c.verify(&mut Cursor::new(&moved), &trusted),
        Err(ContainerError::Signature(SignatureError::ContentMismatch(
            _
        )))
    ));

    // A valid signature over these very bytes whose trusted comment vouches
    // for other metadata: the binding check catches it.
    let region = &a[..ca.signed_len as usize];
    let other = metadata_for(&p, "9.9");
    let forged = sign_region(region, &k, &trusted_comment(&other).to_string());
    match check(&forged, &trusted) {
        Err(ContainerError::BindingMismatch {
            field,
            signed,
            actual,
        }) => assert_eq!((field, &*signed, &*actual), ("version", "9.9", "1.0")),
        other => panic!("{other:?}"),
    }
    let no_comment = sign_region(region, &k, "timestamp:1");
    assert!(matches!(
        check(&no_comment, &trusted),
        Err(ContainerError::BindingMismatch { field: "app", .. })
    ));
    // And the right comment over the right bytes is accepted.
    let meta = metadata_for(&p, "1.0");
    let good = sign_region(region, &k, &trusted_comment(&meta).to_string());
    check(&good, &trusted).unwrap();
}

#[test]
fn a_payload_that_is_not_the_build_id_fails_even_when_signed() {
    let k = key();
    let p = payload();
    let mut meta = metadata_for(&p, "1.0");
    meta.build_id = sha256_hex(b"something else");
    let region = signed_region(&launcher(), &p, &meta.to_json(), FORMAT_VERSION);
    let bytes = sign_region(&region, &k, &trusted_comment(&meta).to_string());
    let c = read(&bytes).unwrap();
    match c.verify(&mut Cursor::new(&bytes), &[k.public_key()]) {
        Err(ContainerError::Corrupt(m)) => assert!(m.contains("build id"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        c.sign(&mut Cursor::new(&bytes), &k),
        Err(ContainerError::Corrupt(_))
    ));
    // write_container checks it while copying.
    let mut out = Vec::new();
    assert!(matches!(
        write_container(&mut out, &mut &launcher()[..], &mut &p[..], &meta, None),
        Err(ContainerError::Metadata(_))
    ));
}

#[test]
fn metadata_rules_are_applied_on_read() {
    let p = payload();
    let good = metadata_for(&p, "1.0");
    let mut json: serde_json::Value = serde_json::from_slice(&good.to_json()).unwrap();
    let cases: Vec<(&str, serde_json::Value)> = vec![
        ("format_version", 2.into()),
        ("name", ".hidden".into()),
        ("name", "a/b".into()),
        ("version", "1 0".into()),
        ("build_id", "ABC".into()),
        ("entry_point", "a\nb".into()),
    ];
    for (field, value) in cases {
        let saved = json[field].clone();
        json[field] = value.clone();
        let bytes = serde_json::to_vec(&json).unwrap();
        json[field] = saved;
        let mut region = signed_region(&launcher(), &p, &bytes, FORMAT_VERSION);
        region.extend_from_slice(&Footer { signature_len: 0 }.encode());
        let err = read(&region).unwrap_err();
        assert!(
            matches!(
                err,
                ContainerError::Metadata(_) | ContainerError::Corrupt(_)
            ),
            "{field} = {value}: {err:?}"
        );
    }
    // Not JSON at all.
    let mut region = signed_region(&launcher(), &p, b"{not json", FORMAT_VERSION);
    region.extend_from_slice(&Footer { signature_len: 0 }.encode());
    assert!(matches!(read(&region), Err(ContainerError::Metadata(_))));
    // Unknown fields are ignored: later writers may add some.
    json["added_later"] = "x".into();
    let mut region = signed_region(
        &launcher(),
        &p,
        &serde_json::to_vec(&json).unwrap(),
        FORMAT_VERSION,
    );
    region.extend_from_slice(&Footer { signature_len: 0 }.encode());
    assert_eq!(read(&region).unwrap().metadata, good);
}

#[test]
fn the_embedded_signature_must_be_canonical() {
    let k = key();
    let bytes = signed(&k);
    let c = read(&bytes).unwrap();
    let text = c.signature.as_ref().unwrap().to_text();
    let region = &bytes[..c.signed_len as usize];
    for respelled in [
        text.replace('\n', "\r\n"),
        format!("{text}\n"),
        text.trim_end().to_owned(),
        text.replacen("\ntrusted", " \ntrusted", 1),
        text.replace("\n", "\n\n"),
    ] {
        let mut bad = region.to_vec();
        bad.extend_from_slice(respelled.as_bytes());
        bad.extend_from_slice(
            &Footer {
                signature_len: respelled.len() as u64,
            }
            .encode(),
        );
        assert!(
            matches!(
                read(&bad),
                Err(ContainerError::Corrupt(_) | ContainerError::Signature(_))
            ),
            "{respelled:?}"
        );
    }
    // Not UTF-8.
    let mut bad = region.to_vec();
    bad.extend_from_slice(b"\xff\xfe");
    bad.extend_from_slice(&Footer { signature_len: 2 }.encode());
    assert!(matches!(
        read(&bad),
        Err(ContainerError::Signature(SignatureError::Malformed(_)))
    ));
}

#[test]
fn a_legacy_signature_is_refused_for_containers() {
    let k = key();
    let bytes = signed(&k);
    let c = read(&bytes).unwrap();
    let mut sig = c.signature.clone().unwrap();
    sig.algorithm = crate::signature::SignatureAlgorithm::Legacy;
    let text = sig.to_text();
    let mut bad = bytes[..c.signed_len as usize].to_vec();
    bad.extend_from_slice(text.as_bytes());
    bad.extend_from_slice(
        &Footer {
            signature_len: text.len() as u64,
        }
        .encode(),
    );
    assert!(matches!(
        check(&bad, &[k.public_key()]),
        Err(ContainerError::Signature(SignatureError::Malformed(_)))
    ));
}

#[test]
fn write_container_refuses_invalid_metadata() {
    let p = payload();
    let mut meta = metadata_for(&p, "1.0");
    meta.format_version = 2;
    let mut out = Vec::new();
    assert!(matches!(
        write_container(&mut out, &mut &launcher()[..], &mut &p[..], &meta, None),
        Err(ContainerError::Metadata(_))
    ));
    meta.format_version = FORMAT_VERSION;
    meta.name = "bad name".into();
    assert!(matches!(
        write_container(&mut out, &mut &launcher()[..], &mut &p[..], &meta, None),
        Err(ContainerError::Metadata(_))
    ));
}

#[test]
fn key_ids_print_as_minisign_does() {
    assert_eq!(
        KeyId([0xA2, 0xAE, 0xCA, 0xA8, 0xE6, 0xE8, 0xB0, 0xB2]).to_string(),
        "B2B0E8E6A8CAAEA2"
    );
}
