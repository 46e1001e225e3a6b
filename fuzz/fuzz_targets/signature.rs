//! `Signature::parse` on arbitrary text; whatever parses must re-parse from its
//! own text form to the same signature.
#![no_main]

use std::sync::OnceLock;

use ferry_format::{PublicKey, Signature};
use libfuzzer_sys::fuzz_target;

fn key() -> &'static PublicKey {
    static KEY: OnceLock<PublicKey> = OnceLock::new();
    KEY.get_or_init(|| {
        PublicKey::from_text(include_str!("../../format/tests/fuzz_key.pub")).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(sig) = Signature::parse(text) else {
        return;
    };
    let again = Signature::parse(&sig.to_text()).expect("a parsed signature re-parses");
    assert_eq!(again, sig);
    let _ = sig.verify_prehash(std::slice::from_ref(key()), &[0u8; 64]);
    let _ = sig.verify_reader(std::slice::from_ref(key()), &mut &data[..]);
});
