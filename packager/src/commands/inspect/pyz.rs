//! Inspecting a ferry zipapp: its `ferry.json`, its files, and the detached
//! `.minisig` beside it.

use std::fs::File;
use std::io::{BufReader, Read as _, Seek as _, SeekFrom};
use std::path::Path;

use anyhow::{Context as _, Result};
use ferry_format::{PublicKey, Signature};
use serde_json::json;

use super::{detached_path, print_contents, print_created_at, print_signature, Contents, SigState};
use crate::build::pyz::{PyzInfo, INFO_ENTRY};
use crate::keyfile;

/// The first line of the `__main__.py` every ferry zipapp carries.
const MAIN_MARK: &str = "# Made by ferry";

/// A ferry zipapp as read.
pub struct PyzApp {
    /// The interpreter its shebang names.
    pub shebang: String,
    /// What `ferry.json` says; `None` in zipapps made before it existed.
    pub info: Option<PyzInfo>,
    /// Its files.
    pub contents: Contents,
}

/// Reads `file` as a ferry zipapp: `Ok(None)` when it is not one at all.
pub fn read(file: &mut File) -> Result<Option<PyzApp>> {
    file.seek(SeekFrom::Start(0))?;
    let mut head = [0u8; 256];
    let n = file.read(&mut head)?;
    let Some(first_line) = head[..n]
        .strip_prefix(b"#!")
        .and_then(|rest| rest.split(|b| *b == b'\n').next())
    else {
        return Ok(None);
    };
    let shebang = String::from_utf8_lossy(first_line).trim().to_owned();
    file.seek(SeekFrom::Start(0))?;
    let Ok(mut zip) = zip::ZipArchive::new(BufReader::new(&mut *file)) else {
        return Ok(None);
    };
    let mut main = String::new();
    match zip.by_name("__main__.py") {
        Ok(f) => {
            f.take(MAIN_MARK.len() as u64).read_to_string(&mut main)?;
        }
        Err(_) => return Ok(None),
    }
    if main != MAIN_MARK {
        return Ok(None);
    }
    let info = match zip.by_name(INFO_ENTRY) {
        Ok(f) => {
            let mut text = String::new();
            f.take(64 * 1024).read_to_string(&mut text)?;
            Some(
                serde_json::from_str(&text)
                    .with_context(|| format!("the zipapp's `{INFO_ENTRY}` is not ferry's"))?,
            )
        }
        Err(_) => None,
    };
    let contents = Contents::from_zip(&mut zip, &["__main__.py", INFO_ENTRY])?;
    Ok(Some(PyzApp {
        shebang,
        info,
        contents,
    }))
}

/// The state of the detached signature beside `path`.
pub fn signature_state(path: &Path, file: &mut File, keys: &[PublicKey]) -> Result<SigState> {
    let sig_path = detached_path(path);
    if !sig_path.exists() {
        return Ok(SigState::Unsigned);
    }
    let text = keyfile::read_small_text(
        &sig_path,
        ferry_format::signature::MAX_SIGNATURE_LEN as u64,
        "signature file",
    )?;
    let sig = match Signature::parse(&text) {
        Ok(sig) => sig,
        Err(e) => return Ok(SigState::Invalid(format!("`{}`: {e}", sig_path.display()))),
    };
    if keys.is_empty() {
        return Ok(SigState::Unchecked);
    }
    file.seek(SeekFrom::Start(0))?;
    Ok(match sig.verify_reader(keys, file) {
        Ok(k) => SigState::Valid(k.id().to_string()),
        Err(e) => SigState::Invalid(e.to_string()),
    })
}

pub fn as_json(app: &PyzApp, state: &SigState) -> serde_json::Value {
    json!({
        "kind": "pyz",
        "shebang": app.shebang,
        "metadata": app.info,
        "created_at_utc": app.info.as_ref().map(|i| ferry_format::tuf::time::format_utc(i.created_at)),
        "contents": app.contents,
        "signature": {
            "state": state.name(),
            "error": state.error(),
        },
    })
}

pub fn print_human(app: &PyzApp, state: &SigState, keys: &[PublicKey]) {
    match &app.info {
        Some(i) => {
            println!("name:        {}", i.name);
            println!("version:     {}", i.version);
            println!("entry point: {}", i.entry_point);
            println!(
                "python:      {} (pyz, runs with `{}`)",
                i.python, app.shebang
            );
            println!("build id:    {}", i.build);
            print_created_at(i.created_at);
            if i.native {
                println!("unpacks:     native modules, once, into the cache on first run");
            }
        }
        None => {
            println!("kind:        ferry zipapp made before `ferry.json` (name and version unknown; rebuild to see them)");
            println!("python:      runs with `{}`", app.shebang);
        }
    }
    print_contents(&app.contents);
    print_signature(state, "detached .minisig", keys);
}
