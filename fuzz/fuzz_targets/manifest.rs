//! `Manifest::from_json` on arbitrary bytes (what the agent reads from the
//! network); an accepted manifest round-trips, and every artifact it lists
//! is found under its target.
#![no_main]

use ferry_format::manifest::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Manifest::from_json(data) else {
        return;
    };
    assert_eq!(Manifest::from_json(&m.to_json()).unwrap(), m);
    for (target, artifact) in &m.artifacts {
        assert_eq!(m.artifact_for(target), Some(artifact));
    }
});
