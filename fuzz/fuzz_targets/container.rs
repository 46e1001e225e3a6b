//! `Container::read_from` on arbitrary bytes, then `verify` against the fixed
//! fuzzing key when it parses. The seeds (`scripts/fuzz.sh` writes them) are
//! containers signed by that key, so the verifying paths are reached too.
#![no_main]

use std::io::Cursor;
use std::sync::OnceLock;

use ferry_format::container::trusted_comment;
use ferry_format::{Container, PublicKey};
use libfuzzer_sys::fuzz_target;

fn key() -> &'static PublicKey {
    static KEY: OnceLock<PublicKey> = OnceLock::new();
    KEY.get_or_init(|| {
        PublicKey::from_text(include_str!("../../format/tests/fuzz_key.pub")).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(c) = Container::read_from(&mut Cursor::new(data)) else {
        return;
    };
    assert_eq!(c.file_len, data.len() as u64);
    assert!(c.signed_len <= c.file_len);
    assert!(c.payload_range().end <= c.signed_len);
    let _ = trusted_comment(&c.metadata);
    let _ = c.verify(&mut Cursor::new(data), std::slice::from_ref(key()));
});
