//! Property tests of ferry-format's public API: containers round-trip for any
//! launcher, payload and valid metadata; keys and signatures round-trip through
//! their text forms; and no reader panics on any input or any mutation of a
//! valid one. Case counts are kept modest so the suite stays fast unoptimised.

use std::io::Cursor;
use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ferry_format::container::{
    trusted_comment, write_container, Footer, PythonMode, FOOTER_MAGIC, FORMAT_VERSION,
    TRAILER_MAGIC,
};
use ferry_format::{
    Container, ContainerError, Metadata, Prehasher, PublicKey, PythonInfo, SecretKey,
    SecretKeyFile, Signature, SignatureAlgorithm,
};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

/// One key pair for the whole run: generating is cheap, but verifying against a
/// fixed key keeps failures reproducible from the printed input alone.
fn key() -> &'static SecretKey {
    static KEY: OnceLock<SecretKey> = OnceLock::new();
    KEY.get_or_init(|| SecretKey::generate().unwrap())
}

/// Printable, no whitespace, no `/`: the version rule.
const VERSION_RE: &str = "[!-.0-~]{1,24}";

fn python_info() -> impl Strategy<Value = PythonInfo> {
    (
        prop_oneof![Just(PythonMode::Standalone), Just(PythonMode::System)],
        VERSION_RE,
        proptest::option::of(
            "[A-Za-z0-9_][A-Za-z0-9_.-]{0,8}(/[A-Za-z0-9_][A-Za-z0-9_.-]{0,8}){0,3}",
        ),
    )
        .prop_map(|(mode, version, executable)| PythonInfo {
            mode,
            version,
            executable,
        })
}

/// Valid metadata for a payload whose SHA-256 is `build_id`.
fn metadata(build_id: String) -> impl Strategy<Value = Metadata> {
    (
        "[A-Za-z0-9_-][A-Za-z0-9._-]{0,40}",
        VERSION_RE,
        "[^\n\r\t\u{0}]{1,60}",
        proptest::option::of(python_info()),
        any::<u64>(),
        VERSION_RE,
        proptest::option::of(VERSION_RE),
    )
        .prop_map(
            move |(name, version, entry_point, python, created_at, launcher, glibc)| Metadata {
                format_version: FORMAT_VERSION,
                name,
                version,
                entry_point,
                python,
                build_id: build_id.clone(),
                created_at,
                launcher_version: launcher,
                glibc_floor: glibc,
            },
        )
}

/// Launcher, payload and metadata for that payload.
fn parts() -> impl Strategy<Value = (Vec<u8>, Vec<u8>, Metadata)> {
    (
        proptest::collection::vec(any::<u8>(), 0..1024),
        proptest::collection::vec(any::<u8>(), 0..2048),
    )
        .prop_flat_map(|(launcher, payload)| {
            let id = hex::encode(Sha256::digest(&payload));
            (Just(launcher), Just(payload), metadata(id))
        })
}

fn build(launcher: &[u8], payload: &[u8], meta: &Metadata, key: Option<&SecretKey>) -> Vec<u8> {
    let mut out = Vec::new();
    write_container(&mut out, &mut &launcher[..], &mut &payload[..], meta, key).unwrap();
    out
}

/// `read_from` then, if signed, `verify` against the run's key: must not panic.
fn read_and_verify(bytes: &[u8]) -> Result<Container, ContainerError> {
    let c = Container::read_from(&mut Cursor::new(bytes))?;
    if c.signature.is_some() {
        c.verify(&mut Cursor::new(bytes), &[key().public_key()])?;
    }
    Ok(c)
}

#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Xor(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    /// Overwrite eight bytes with a little-endian length (hits trailer/footer fields).
    Length(usize, u64),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let len = prop_oneof![
        any::<u64>(),
        0u64..4096,
        Just(u64::MAX),
        Just(1u64 << 40),
        Just(1u64 << 20),
    ];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), 1u8..).prop_map(|(i, b)| Mutation::Xor(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), 1usize..32).prop_map(|(i, n)| Mutation::Remove(i, n)),
        (any::<usize>(), len).prop_map(|(i, v)| Mutation::Length(i, v)),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    // Indexes count mostly from the end, where the fixed records are.
    let at = |i: usize, len: usize| {
        if len == 0 {
            0
        } else if i.is_multiple_of(2) {
            len - 1 - (i / 2) % len.min(256)
        } else {
            (i / 2) % len
        }
    };
    match m {
        Mutation::Set(i, b) if !bytes.is_empty() => {
            let i = at(*i, bytes.len());
            bytes[i] = *b;
        }
        Mutation::Xor(i, b) if !bytes.is_empty() => {
            let i = at(*i, bytes.len());
            bytes[i] ^= *b;
        }
        Mutation::Truncate(i) => {
            let i = at(*i, bytes.len());
            bytes.truncate(i);
        }
        Mutation::Insert(i, b) => {
            let i = at(*i, bytes.len() + 1);
            bytes.splice(i..i, b.iter().copied());
        }
        Mutation::Remove(i, n) if !bytes.is_empty() => {
            let i = at(*i, bytes.len());
            let end = (i + n).min(bytes.len());
            bytes.drain(i..end);
        }
        Mutation::Length(i, v) if bytes.len() >= 8 => {
            let i = at(*i, bytes.len() - 7);
            bytes[i..i + 8].copy_from_slice(&v.to_le_bytes());
        }
        _ => {}
    }
}

fn single_line() -> impl Strategy<Value = String> {
    "[^\r\n]{0,80}"
}

/// A line of a signature file: any text, CRs included, but no LF.
fn any_line() -> impl Strategy<Value = String> {
    "[^\n]{0,40}(\r{0,2})"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn containers_round_trip((launcher, payload, meta) in parts(), signed in any::<bool>()) {
        let k = key();
        let bytes = build(&launcher, &payload, &meta, signed.then_some(k));
        let c = Container::read_from(&mut Cursor::new(&bytes)).unwrap();
        prop_assert_eq!(&c.metadata, &meta);
        prop_assert_eq!(c.file_len, bytes.len() as u64);
        let r = c.payload_range();
        prop_assert_eq!(r.start, launcher.len() as u64);
        prop_assert_eq!(&bytes[..launcher.len()], &launcher[..]);
        prop_assert_eq!(&bytes[r.start as usize..r.end as usize], &payload[..]);
        let trusted = [k.public_key()];
        match c.verify(&mut Cursor::new(&bytes), &trusted) {
            Ok(used) => {
                prop_assert!(signed);
                prop_assert_eq!(used.id(), k.id());
                let sig = c.signature.as_ref().unwrap();
                prop_assert_eq!(&sig.trusted_comment, &trusted_comment(&meta).to_string());
            }
            Err(ContainerError::Unsigned) => prop_assert!(!signed),
            Err(e) => prop_assert!(false, "verify failed: {}", e),
        }
    }

    #[test]
    fn metadata_round_trips_through_json(meta in metadata("ab".repeat(32))) {
        prop_assert_eq!(Metadata::from_json(&meta.to_json()).unwrap(), meta);
    }

    #[test]
    fn public_keys_round_trip(id in any::<[u8; 8]>(), crlf in any::<bool>()) {
        let point = B64.decode(key().public_key().to_base64()).unwrap();
        let mut raw = b"Ed".to_vec();
        raw.extend_from_slice(&id);
        raw.extend_from_slice(&point[10..]);
        let pk = PublicKey::from_base64(&B64.encode(&raw)).unwrap();
        prop_assert_eq!(pk.id().0, id);
        prop_assert_eq!(pk.id().to_string(), format!("{:016X}", u64::from_le_bytes(id)));
        let mut text = pk.to_text();
        if crlf {
            text = text.replace('\n', "\r\n");
        }
        prop_assert_eq!(&PublicKey::from_text(&text).unwrap(), &pk);
        prop_assert_eq!(&PublicKey::from_text(&pk.to_base64()).unwrap(), &pk);
        prop_assert_eq!(&PublicKey::from_base64(&pk.to_base64()).unwrap(), &pk);
    }

    #[test]
    fn secret_keys_round_trip_unencrypted(crlf in any::<bool>(), blank in any::<bool>()) {
        let k = SecretKey::generate().unwrap();
        let mut text = k.to_text(None).unwrap();
        if blank {
            text = format!("\n{text}\n\n");
        }
        if crlf {
            text = text.replace('\n', "\r\n");
        }
        let file = SecretKeyFile::from_text(&text).unwrap();
        prop_assert!(!file.is_encrypted());
        let back = file.unlock(None).unwrap();
        prop_assert_eq!(back.id(), k.id());
        prop_assert_eq!(back.public_key(), k.public_key());
    }

    #[test]
    fn signatures_round_trip(
        prehash in any::<[u8; 64]>(),
        trusted in single_line(),
        untrusted in single_line(),
        crlf in any::<bool>(),
    ) {
        let k = key();
        let sig = Signature::sign_prehashed(k, &prehash, &trusted, &untrusted).unwrap();
        prop_assert_eq!(sig.algorithm, SignatureAlgorithm::Prehashed);
        let mut text = sig.to_text();
        let parsed = Signature::parse(&text).unwrap();
        prop_assert_eq!(&parsed, &sig);
        prop_assert_eq!(parsed.to_text(), text.clone());
        if crlf {
            text = text.replace('\n', "\r\n");
            prop_assert_eq!(&Signature::parse(&text).unwrap(), &sig);
        }
        let trusted_keys = [k.public_key()];
        prop_assert!(parsed.verify_prehash(&trusted_keys, &prehash).is_ok());
        let mut other = prehash;
        other[0] ^= 1;
        prop_assert!(parsed.verify_prehash(&trusted_keys, &other).is_err());
    }

    #[test]
    fn signatures_over_content_verify(content in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let k = key();
        let prehash = Prehasher::hash_reader(&mut &content[..]).unwrap();
        let sig = Signature::sign_prehashed(k, &prehash, "timestamp:0", "t").unwrap();
        let parsed = Signature::parse(&sig.to_text()).unwrap();
        prop_assert!(parsed.verify_reader(&[k.public_key()], &mut &content[..]).is_ok());
    }
}

/// A small signed container that mutations start from.
fn seed_container() -> &'static (Vec<u8>, u64) {
    static SEED: OnceLock<(Vec<u8>, u64)> = OnceLock::new();
    SEED.get_or_init(|| {
        let payload = b"payload bytes of a tiny app".to_vec();
        let meta = Metadata {
            format_version: FORMAT_VERSION,
            name: "seed".into(),
            version: "1.0".into(),
            entry_point: "seed:main".into(),
            python: None,
            build_id: hex::encode(Sha256::digest(&payload)),
            created_at: 0,
            launcher_version: "0.1.0".into(),
            glibc_floor: None,
        };
        let bytes = build(b"\x7fELF launcher stand-in", &payload, &meta, Some(key()));
        let c = Container::read_from(&mut Cursor::new(&bytes)).unwrap();
        (bytes, c.signed_len)
    })
}

/// Random bytes framed like a container's tail, so readers get past the magic
/// checks and into the length checks.
fn framed() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(any::<u8>(), 0..256),
        any::<u32>().prop_map(|v| v % 3),
        proptest::collection::vec(any::<u64>(), 4),
        proptest::collection::vec(any::<u8>(), 0..256),
        prop_oneof![any::<u64>(), 0u64..512],
    )
        .prop_map(|(head, version, lens, sig, sig_len)| {
            let mut out = head;
            out.extend_from_slice(&TRAILER_MAGIC);
            out.extend_from_slice(&version.to_le_bytes());
            out.extend_from_slice(&[0; 4]);
            for l in lens {
                out.extend_from_slice(&(l % 1024).to_le_bytes());
            }
            out.extend_from_slice(&sig);
            out.extend_from_slice(&sig_len.to_le_bytes());
            out.extend_from_slice(&FOOTER_MAGIC);
            out
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn reading_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = read_and_verify(&bytes);
        let mut with_footer = bytes;
        with_footer.extend_from_slice(&Footer { signature_len: 0 }.encode());
        let _ = read_and_verify(&with_footer);
    }

    #[test]
    fn reading_framed_bytes_never_panics(bytes in framed()) {
        let _ = read_and_verify(&bytes);
    }

    #[test]
    fn mutated_containers_never_panic_and_never_pass_with_other_signed_bytes(
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let (orig, signed_len) = seed_container();
        let mut bytes = orig.clone();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        if let Ok(c) = read_and_verify(&bytes) {
            // Only bytes outside the signed region (the untrusted comment) may
            // have changed in a container that still verifies.
            prop_assert!(c.signature.is_some());
            prop_assert_eq!(c.signed_len, *signed_len);
            prop_assert_eq!(&bytes[..c.signed_len as usize], &orig[..*signed_len as usize]);
        }
    }

    #[test]
    fn signature_parse_never_panics(text in "(?s).{0,300}") {
        if let Ok(s) = Signature::parse(&text) {
            prop_assert_eq!(Signature::parse(&s.to_text()).unwrap(), s);
        }
    }

    #[test]
    fn signature_parse_of_framed_text_never_panics(
        untrusted in any_line(),
        sig in prop_oneof![
            proptest::collection::vec(any::<u8>(), 74).prop_map(|mut v| {
                v[..2].copy_from_slice(b"ED");
                v
            }),
            proptest::collection::vec(any::<u8>(), 0..80),
        ],
        trusted in any_line(),
        global in prop_oneof![
            proptest::collection::vec(any::<u8>(), 64),
            proptest::collection::vec(any::<u8>(), 0..70),
        ],
        tail in "(?s).{0,8}",
    ) {
        let text = format!(
            "untrusted comment: {untrusted}\n{}\ntrusted comment: {trusted}\n{}\n{tail}",
            B64.encode(sig),
            B64.encode(global),
        );
        if let Ok(s) = Signature::parse(&text) {
            // Whatever parses re-parses to the same signature.
            prop_assert_eq!(Signature::parse(&s.to_text()).unwrap(), s);
        }
    }

    #[test]
    fn key_parsers_never_panic(text in "(?s).{0,300}") {
        let _ = PublicKey::from_text(&text);
        let _ = PublicKey::from_base64(&text);
        if let Ok(f) = SecretKeyFile::from_text(&text) {
            if !f.is_encrypted() {
                let _ = f.unlock(None);
            }
        }
    }

    #[test]
    fn key_parsers_of_framed_bytes_never_panic(
        kdf in prop_oneof![Just(*b"Sc"), Just([0u8, 0]), any::<[u8; 2]>()],
        body in proptest::collection::vec(any::<u8>(), 152),
        public in proptest::collection::vec(any::<u8>(), 40),
    ) {
        let mut raw = b"Ed".to_vec();
        raw.extend_from_slice(&kdf);
        raw.extend_from_slice(b"B2");
        raw.extend_from_slice(&body);
        let text = format!("untrusted comment: x\n{}\n", B64.encode(&raw));
        if let Ok(f) = SecretKeyFile::from_text(&text) {
            // Never unlock encrypted keys here: scrypt costs seconds.
            let r = f.unlock(None);
            prop_assert!(!f.is_encrypted() || r.is_err());
        }
        let mut raw = b"Ed".to_vec();
        raw.extend_from_slice(&public);
        let _ = PublicKey::from_text(&B64.encode(&raw));
    }

    #[test]
    fn metadata_from_json_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Metadata::from_json(&bytes);
    }

    #[test]
    fn metadata_from_json_of_json_never_panics(json in json_value()) {
        let bytes = serde_json::to_vec(&json).unwrap();
        if let Ok(m) = Metadata::from_json(&bytes) {
            prop_assert_eq!(Metadata::from_json(&m.to_json()).unwrap(), m);
        }
    }
}

/// JSON objects using metadata's field names, with values of any type.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "[ -~]{0,20}".prop_map(serde_json::Value::from),
        Just(serde_json::Value::from("ab".repeat(32))),
        Just(serde_json::Value::from("standalone")),
    ];
    let value = leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map("[a-z]{1,8}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    });
    let field = prop_oneof![
        Just("format_version"),
        Just("name"),
        Just("version"),
        Just("entry_point"),
        Just("python"),
        Just("mode"),
        Just("executable"),
        Just("build_id"),
        Just("created_at"),
        Just("launcher_version"),
        Just("glibc_floor"),
    ];
    proptest::collection::btree_map(field, value, 0..11).prop_map(|m| {
        serde_json::Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    })
}
