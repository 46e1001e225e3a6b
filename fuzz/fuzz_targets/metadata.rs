//! `Metadata::from_json` on arbitrary bytes; accepted metadata round-trips and
//! fits a trusted comment.
#![no_main]

use ferry_format::container::trusted_comment;
use ferry_format::Metadata;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(meta) = Metadata::from_json(data) else {
        return;
    };
    assert_eq!(Metadata::from_json(&meta.to_json()).unwrap(), meta);
    let _ = trusted_comment(&meta).to_string();
});
