//! `ferry inspect`: what a ferry binary holds, for people or as JSON.

use std::fs::File;
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use ferry_format::{Container, PublicKey};
use ferry_fsutil::{write_atomic, AtomicFile};
use serde_json::json;

use super::detached_path;
use crate::cli::InspectArgs;
use crate::keyfile;

/// Signature state as shown to the user.
enum SigState {
    Unsigned,
    Unchecked,
    Valid(String),
    Invalid(String),
}

/// Runs `ferry inspect`.
pub fn run(args: InspectArgs) -> Result<ExitCode> {
    let keys = keyfile::load_publics(&args.pubkeys)?;
    let mut file =
        File::open(&args.file).with_context(|| format!("cannot open `{}`", args.file.display()))?;
    let c =
        Container::read_from(&mut file).with_context(|| format!("`{}`", args.file.display()))?;
    let state = match (&c.signature, keys.is_empty()) {
        (None, _) => SigState::Unsigned,
        (Some(_), true) => SigState::Unchecked,
        (Some(_), false) => match c.verify(&mut file, &keys) {
            Ok(k) => SigState::Valid(k.id().to_string()),
            Err(e) => SigState::Invalid(e.to_string()),
        },
    };
    if let Some(out) = &args.export_signed {
        export_signed(&mut file, &c, out)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&as_json(&c, &state))?);
    } else {
        print_human(&c, &state, &keys);
    }
    Ok(match state {
        SigState::Invalid(_) => ExitCode::FAILURE,
        // Asked to check a signature, and there is none: not a success.
        SigState::Unsigned if !keys.is_empty() => {
            eprintln!(
                "error: `{}` is not signed, so no --pubkey can vouch for it",
                args.file.display()
            );
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    })
}

fn sizes(c: &Container) -> [(&'static str, u64); 5] {
    let t = &c.trailer;
    [
        ("launcher", t.payload_offset),
        ("payload", t.payload_len),
        ("metadata", t.metadata_len),
        (
            "signature",
            c.file_len - c.signed_len - ferry_format::container::FOOTER_LEN,
        ),
        ("total", c.file_len),
    ]
}

fn as_json(c: &Container, state: &SigState) -> serde_json::Value {
    let sizes: serde_json::Map<String, serde_json::Value> = sizes(c)
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    let key_id = c.signature.as_ref().map(|s| s.key_id.to_string());
    let trusted = c.signature.as_ref().map(|s| s.trusted_comment.clone());
    let (state_name, error) = match state {
        SigState::Unsigned => ("unsigned", None),
        SigState::Unchecked => ("signed", None),
        SigState::Valid(_) => ("valid", None),
        SigState::Invalid(e) => ("invalid", Some(e.clone())),
    };
    json!({
        "metadata": c.metadata,
        "sizes": sizes,
        "signature": {
            "state": state_name,
            "key_id": key_id,
            "trusted_comment": trusted,
            "error": error,
        },
    })
}

fn print_human(c: &Container, state: &SigState, keys: &[PublicKey]) {
    let m = &c.metadata;
    println!("name:        {}", m.name);
    println!("version:     {}", m.version);
    println!("entry point: {}", m.entry_point);
    if let Some(py) = &m.python {
        let mode = match py.mode {
            ferry_format::container::PythonMode::Standalone => "standalone",
            ferry_format::container::PythonMode::System => "system",
        };
        println!("python:      {} ({mode})", py.version);
    }
    println!("build id:    {}", m.build_id);
    println!(
        "created at:  {} (unix {})",
        ferry_format::tuf::time::format_utc(m.created_at),
        m.created_at
    );
    println!("launcher:    {}", m.launcher_version);
    if let Some(g) = &m.glibc_floor {
        println!("needs glibc: {g} or newer");
    }
    println!("format:      {}", m.format_version);
    for (name, size) in sizes(c) {
        println!("{:<12} {size} bytes", format!("{name}:"));
    }
    let key = c
        .signature
        .as_ref()
        .map(|s| s.key_id.to_string())
        .unwrap_or_default();
    match state {
        SigState::Unsigned => println!("signature:   none (unsigned)"),
        SigState::Unchecked => {
            println!("signature:   by key {key} (not checked; pass --pubkey to check)")
        }
        SigState::Valid(k) => println!("signature:   valid, by trusted key {k}"),
        SigState::Invalid(e) => println!(
            "signature:   INVALID against {} trusted key(s): {e}",
            keys.len()
        ),
    }
}

/// Writes the signed region and the embedded signature as a file pair that the
/// stock `minisign -V` checks.
fn export_signed(file: &mut File, c: &Container, out: &std::path::Path) -> Result<()> {
    let sig = c
        .signature
        .as_ref()
        .context("the binary is not signed: nothing to export")?;
    file.seek(SeekFrom::Start(0))?;
    let mut w = AtomicFile::create(out, 0o644)
        .with_context(|| format!("cannot create `{}`", out.display()))?;
    io::copy(&mut file.take(c.signed_len), &mut w)?;
    w.commit()
        .with_context(|| format!("cannot write `{}`", out.display()))?;
    let sig_out = detached_path(out);
    write_atomic(&sig_out, sig.to_text().as_bytes(), 0o644)
        .with_context(|| format!("cannot write `{}`", sig_out.display()))?;
    eprintln!("wrote `{}` and `{}`", out.display(), sig_out.display());
    Ok(())
}
