//! Seed inputs for the fuzz targets in the workspace's `fuzz/`, signed with
//! the fixed fuzzing key whose public half the targets load
//! (`format/tests/fuzz_key.pub`, kept here so this crate needs nothing above it).
//!
//! Always checks that every seed is accepted by its parser (so the key pair and
//! the targets agree); with `FERRY_FUZZ_SEEDS=DIR` it also writes them to
//! `DIR/<target>/`, which `scripts/fuzz.sh` does before fuzzing.

use std::io::Cursor;
use std::path::Path;

use ferry_format::container::{write_container, LAUNCHER_MARKER};
use ferry_format::{
    Container, Metadata, PublicKey, PythonInfo, SecretKey, SecretKeyFile, Signature,
};
use sha2::{Digest, Sha256};

/// The fuzzing key pair. Public on purpose: it signs fuzz seeds and nothing
/// else, and no ferry binary or device may ever trust it.
const FUZZ_SECRET_KEY: &str = "untrusted comment: ferry fuzzing key, public on purpose, never trust it\n\
RWQAAEIyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA7lTYxU71FG4+/uU/InKinqabK/GMxyfV6hiMoLfKrLNnFh7lSfJApbp5dc0PS23VErAgw6Vb6JQgajDaCwFLa1CIhz3/S9XaDoawMwJvRiZvbDn1zKINNR82LKEovK/WOR2mHkAFGe4=\n";
const FUZZ_PUBLIC_KEY: &str = include_str!("fuzz_key.pub");

/// A minimal 64-bit ELF header whose section header table ends the launcher,
/// with the launcher marker inside.
fn launcher() -> Vec<u8> {
    let mut out = vec![0u8; 64];
    out[0..4].copy_from_slice(b"\x7fELF");
    out[4] = 2;
    out[5] = 1;
    out[6] = 1;
    out[0x3A..0x3C].copy_from_slice(&64u16.to_le_bytes());
    out[0x3C..0x3E].copy_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(LAUNCHER_MARKER);
    let shoff = out.len() as u64;
    out[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
    out.resize(out.len() + 64, 0);
    out
}

fn metadata(payload: &[u8], python: bool) -> Metadata {
    Metadata {
        format_version: 1,
        name: "seed-app".into(),
        version: "1.0.0".into(),
        entry_point: "seed.app:main".into(),
        python: python.then(|| PythonInfo {
            mode: ferry_format::container::PythonMode::Standalone,
            version: "3.11.7".into(),
            executable: Some("python/bin/python3.11".into()),
        }),
        build_id: hex::encode(Sha256::digest(payload)),
        created_at: 1_700_000_000,
        launcher_version: "0.1.0".into(),
        glibc_floor: python.then(|| "2.34".into()),
    }
}

fn container(payload: &[u8], python: bool, key: Option<&SecretKey>) -> Vec<u8> {
    let mut out = Vec::new();
    let meta = metadata(payload, python);
    write_container(
        &mut out,
        &mut &launcher()[..],
        &mut &payload[..],
        &meta,
        key,
    )
    .unwrap();
    out
}

/// `(target, name, bytes)` of every seed.
fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let key = SecretKey::from_text(FUZZ_SECRET_KEY, None).unwrap();
    let signed = container(b"print('hello')\n", true, Some(&key));
    let c = Container::read_from(&mut Cursor::new(&signed)).unwrap();
    let sig = c.signature.clone().unwrap();
    let meta = c.metadata.clone();
    let mut encrypted_header = FUZZ_SECRET_KEY.replace("RWQAAEIy", "RWRTY0Iy");
    encrypted_header.push('\n');
    vec![
        ("container", "signed", signed.clone()),
        ("container", "unsigned", container(b"", false, None)),
        (
            "container",
            "signed-python",
            container(&[7u8; 300], true, Some(&key)),
        ),
        ("container", "stripped", launcher()),
        ("signature", "embedded", sig.to_text().into_bytes()),
        (
            "signature",
            "crlf",
            sig.to_text().replace('\n', "\r\n").into_bytes(),
        ),
        ("public_key", "file", FUZZ_PUBLIC_KEY.as_bytes().to_vec()),
        (
            "public_key",
            "base64",
            key.public_key().to_base64().into_bytes(),
        ),
        (
            "secret_key",
            "unencrypted",
            FUZZ_SECRET_KEY.as_bytes().to_vec(),
        ),
        (
            "secret_key",
            "encrypted-header",
            encrypted_header.into_bytes(),
        ),
        ("metadata", "full", meta.to_json()),
        ("metadata", "minimal", metadata(b"", false).to_json()),
    ]
}

#[test]
fn fuzz_seeds_are_valid_and_signed_by_the_fuzzing_key() {
    let public = PublicKey::from_text(FUZZ_PUBLIC_KEY).unwrap();
    let secret = SecretKeyFile::from_text(FUZZ_SECRET_KEY).unwrap();
    assert!(!secret.is_encrypted());
    assert_eq!(secret.unlock(None).unwrap().public_key(), public);
    for (target, name, bytes) in seeds() {
        let text = String::from_utf8_lossy(&bytes);
        let ok = match target {
            "container" => match Container::read_from(&mut Cursor::new(&bytes)) {
                Ok(c) if c.signature.is_some() => c
                    .verify(&mut Cursor::new(&bytes), std::slice::from_ref(&public))
                    .is_ok(),
                Ok(_) => true,
                Err(e) => name == "stripped" && matches!(e, ferry_format::ContainerError::Stripped),
            },
            "signature" => Signature::parse(&text).is_ok(),
            "public_key" => PublicKey::from_text(&text).is_ok(),
            "secret_key" => SecretKeyFile::from_text(&text).is_ok(),
            "metadata" => Metadata::from_json(&bytes).is_ok(),
            _ => false,
        };
        assert!(ok, "seed {target}/{name}");
    }
    if let Some(dir) = std::env::var_os("FERRY_FUZZ_SEEDS") {
        for (target, name, bytes) in seeds() {
            let dir = Path::new(&dir).join(target);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
        }
    }
}
