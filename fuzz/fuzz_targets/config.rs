//! `Settings::parse` (ferryd's `/etc/ferry/agent.toml`) on arbitrary text:
//! whatever the file holds, the agent gets settings or an error, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Key files are looked up relative to a directory that holds none.
    let _ = ferryd::config::Settings::parse(text, Path::new("/nonexistent-ferry-fuzz"));
});
