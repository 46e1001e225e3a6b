//! `ferry inspect`: what a ferry binary or zipapp holds, for people or as JSON.

mod contents;
mod pyz;

use std::fs::File;
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use ferry_format::{Container, ContainerError, PublicKey};
use ferry_fsutil::{write_atomic, AtomicFile};
use serde_json::json;

use super::detached_path;
use crate::cli::InspectArgs;
use crate::keyfile;
use crate::log;
pub use contents::{Contents, Distribution};

/// Signature state as shown to the user.
pub(crate) enum SigState {
    Unsigned,
    Unchecked,
    Valid(String),
    Invalid(String),
}

impl SigState {
    fn name(&self) -> &'static str {
        match self {
            SigState::Unsigned => "unsigned",
            SigState::Unchecked => "signed",
            SigState::Valid(_) => "valid",
            SigState::Invalid(_) => "invalid",
        }
    }

    fn error(&self) -> Option<&str> {
        match self {
            SigState::Invalid(e) => Some(e),
            _ => None,
        }
    }
}

/// Runs `ferry inspect`.
pub fn run(args: InspectArgs) -> Result<ExitCode> {
    let keys = keyfile::load_publics(&args.pubkeys)?;
    let mut file =
        File::open(&args.file).with_context(|| format!("cannot open `{}`", args.file.display()))?;
    let state = match Container::read_from(&mut file) {
        Ok(c) => inspect_binary(&args, &mut file, &c, &keys)?,
        Err(ContainerError::NotFerry(why)) => match pyz::read(&mut file) {
            Ok(Some(app)) => {
                if args.export_signed.is_some() {
                    anyhow::bail!(
                        "`{}` is a zipapp: its signature is already a separate file (`{}`)\nhint: check it with `minisign -V -p KEY -m {}`",
                        args.file.display(),
                        detached_path(&args.file).display(),
                        args.file.display()
                    );
                }
                let state = pyz::signature_state(&args.file, &mut file, &keys)?;
                if args.json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&pyz::as_json(&app, &state))?
                    );
                } else {
                    pyz::print_human(&app, &state, &keys);
                }
                state
            }
            Ok(None) => anyhow::bail!(
                "`{}` is not a ferry binary or zipapp ({why})",
                args.file.display()
            ),
            Err(e) => return Err(e.context(format!("`{}`", args.file.display()))),
        },
        Err(e) => return Err(anyhow::Error::new(e).context(format!("`{}`", args.file.display()))),
    };
    Ok(match state {
        SigState::Invalid(_) => ExitCode::FAILURE,
        // Asked to check a signature, and there is none: not a success.
        SigState::Unsigned if !keys.is_empty() => {
            log::error(format!(
                "`{}` is not signed, so no --pubkey can vouch for it",
                args.file.display()
            ));
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    })
}

fn inspect_binary(
    args: &InspectArgs,
    file: &mut File,
    c: &Container,
    keys: &[PublicKey],
) -> Result<SigState> {
    let state = match (&c.signature, keys.is_empty()) {
        (None, _) => SigState::Unsigned,
        (Some(_), true) => SigState::Unchecked,
        (Some(_), false) => match c.verify(file, keys) {
            Ok(k) => SigState::Valid(k.id().to_string()),
            Err(e) => SigState::Invalid(e.to_string()),
        },
    };
    if let Some(out) = &args.export_signed {
        export_signed(file, c, out)?;
    }
    let range = c.payload_range();
    file.seek(SeekFrom::Start(range.start))?;
    // A payload that cannot be listed is shown as such: inspect describes,
    // `ferry verify` gives verdicts.
    let contents = Contents::from_payload(io::BufReader::new(
        (&mut *file).take(range.end - range.start),
    ))
    .map_err(|e| format!("{e:#}"));
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&as_json(c, &contents, &state))?
        );
    } else {
        print_human(c, &contents, &state, keys);
    }
    Ok(state)
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

/// Contents as read, or why they could not be.
type ReadContents = std::result::Result<Contents, String>;

fn as_json(c: &Container, contents: &ReadContents, state: &SigState) -> serde_json::Value {
    let sizes: serde_json::Map<String, serde_json::Value> = sizes(c)
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    json!({
        "kind": "binary",
        "metadata": c.metadata,
        "created_at_utc": ferry_format::tuf::time::format_utc(c.metadata.created_at),
        "sizes": sizes,
        "contents": contents.as_ref().ok(),
        "contents_error": contents.as_ref().err(),
        "signature": {
            "state": state.name(),
            "key_id": c.signature.as_ref().map(|s| s.key_id.to_string()),
            "trusted_comment": c.signature.as_ref().map(|s| s.trusted_comment.clone()),
            "error": state.error(),
        },
    })
}

fn print_human(c: &Container, contents: &ReadContents, state: &SigState, keys: &[PublicKey]) {
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
    print_created_at(m.created_at);
    println!("launcher:    {}", m.launcher_version);
    if let Some(g) = &m.glibc_floor {
        println!("needs glibc: {g} or newer");
    }
    println!("format:      {}", m.format_version);
    for (name, size) in sizes(c) {
        println!("{:<12} {size} bytes", format!("{name}:"));
    }
    match contents {
        Ok(contents) => print_contents(contents),
        Err(e) => println!("contents:    cannot be listed: {e}"),
    }
    let key = c
        .signature
        .as_ref()
        .map(|s| s.key_id.to_string())
        .unwrap_or_default();
    print_signature(state, &format!("by key {key}"), keys);
}

fn print_created_at(created_at: u64) {
    println!(
        "created at:  {} (unix {created_at})",
        ferry_format::tuf::time::format_utc(created_at),
    );
}

/// The lines every kind of artefact shares: what is inside.
fn print_contents(contents: &Contents) {
    println!(
        "extracted:   {} bytes ({:.1} MB) in {} files",
        contents.extracted_bytes,
        contents.extracted_bytes as f64 / 1e6,
        contents.files
    );
    println!(
        "native:      {} bundled libraries, {} extension modules",
        contents.native_libraries.len(),
        contents.extension_modules
    );
    for lib in &contents.native_libraries {
        println!("  {lib}");
    }
    println!("packages:    {}", contents.distributions.len());
    for d in &contents.distributions {
        println!("  {} {}", d.name, d.version);
    }
}

fn print_signature(state: &SigState, by: &str, keys: &[PublicKey]) {
    match state {
        SigState::Unsigned => println!("signature:   none (unsigned)"),
        SigState::Unchecked => {
            println!("signature:   {by} (not checked; pass --pubkey to check)")
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
fn export_signed(file: &mut File, c: &Container, out: &Path) -> Result<()> {
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
    log::note(format!(
        "wrote `{}` and `{}`",
        out.display(),
        sig_out.display()
    ));
    Ok(())
}
