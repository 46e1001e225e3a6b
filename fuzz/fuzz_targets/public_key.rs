//! `PublicKey::from_text` and `from_base64` on arbitrary text; a parsed key
//! round-trips through both text forms.
#![no_main]

use ferry_format::PublicKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = PublicKey::from_base64(&text);
    let Ok(key) = PublicKey::from_text(&text) else {
        return;
    };
    assert_eq!(PublicKey::from_text(&key.to_text()).unwrap(), key);
    assert_eq!(PublicKey::from_base64(&key.to_base64()).unwrap(), key);
});
