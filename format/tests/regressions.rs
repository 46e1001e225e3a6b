//! Inputs the fuzzers found, kept so the bugs stay fixed.

use ferry_format::{SecretKey, Signature};

/// `fuzz/signature`: a comment line ending in CR CR LF parsed to a comment
/// ending in CR, which `to_text` then wrote as a line that parses to another
/// comment: parse and to_text did not round-trip. Comments holding a CR are now
/// refused on parse, as they are on signing.
#[test]
fn a_cr_inside_a_comment_is_refused() {
    let key = SecretKey::generate().unwrap();
    let sig = Signature::sign_prehashed(&key, &[7; 64], "timestamp:1", "comment").unwrap();
    let text = sig.to_text();
    assert_eq!(Signature::parse(&text).unwrap(), sig);
    // CR LF line endings stay accepted.
    assert_eq!(Signature::parse(&text.replace('\n', "\r\n")).unwrap(), sig);
    for bad in [
        text.replacen("comment\n", "comment\r\r\n", 1),
        text.replacen("comment\n", "com\rment\n", 1),
        text.replacen("timestamp:1\n", "timestamp:1\r\r\n", 1),
        text.replacen("timestamp:1\n", "time\rstamp:1\n", 1),
        text.replace('\n', "\r\r\n"),
    ] {
        assert!(Signature::parse(&bad).is_err(), "{bad:?}");
    }
}
