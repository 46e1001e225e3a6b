//! `SecretKeyFile::from_text` on arbitrary text, and `unlock(None)` for
//! unencrypted files only: encrypted ones are never unlocked here, scrypt with
//! minisign's parameters costs seconds per call.
#![no_main]

use ferry_format::SecretKeyFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(file) = SecretKeyFile::from_text(&text) else {
        return;
    };
    if file.is_encrypted() {
        return;
    }
    let Ok(key) = file.unlock(None) else {
        return;
    };
    let written = key.to_text(None).expect("writing an unencrypted key");
    let back = SecretKeyFile::from_text(&written)
        .and_then(|f| f.unlock(None))
        .expect("a written key reads back");
    assert_eq!(back.id(), key.id());
    assert_eq!(back.public_key(), key.public_key());
});
