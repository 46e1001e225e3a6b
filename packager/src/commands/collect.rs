//! `ferry collect`: a small blocking HTTP/1.1 ingest for the agents' status
//! reports (`docs/reports.md`). Each `POST` carries one JSON report; it is
//! appended as one line to the output file (then fsynced) unless its `id` is
//! already stored, so agents may retry freely. Any 2xx answer means stored.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::cli::CollectArgs;
use crate::log;
use crate::reports::{parse_report, Report};

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;
/// Largest request head (request line and headers) accepted.
const MAX_HEAD: usize = 16 * 1024;

struct Store {
    file: File,
    ids: HashSet<String>,
    path: PathBuf,
}

impl Store {
    fn open(path: &Path) -> Result<Self> {
        let mut ids = HashSet::new();
        let mut ends_with_newline = true;
        match File::open(path) {
            Ok(f) => {
                let mut reader = BufReader::new(f);
                let mut line = Vec::new();
                for n in 1.. {
                    line.clear();
                    let read = reader
                        .read_until(b'\n', &mut line)
                        .with_context(|| format!("cannot read `{}`", path.display()))?;
                    if read == 0 {
                        break;
                    }
                    ends_with_newline = line.ends_with(b"\n");
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    match parse_report(&line) {
                        Ok((r, _)) => {
                            ids.insert(r.id);
                        }
                        Err(e) => {
                            log::warn(format!("`{}` line {n} is skipped: {e}", path.display()))
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", path.display())),
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open `{}`", path.display()))?;
        // A line cut short by a crash must not swallow the next one.
        if !ends_with_newline {
            file.write_all(b"\n")?;
        }
        Ok(Store {
            file,
            ids,
            path: path.to_owned(),
        })
    }

    /// Stores a report unless its id is known; `Ok(false)` for a duplicate.
    fn add(&mut self, report: &Report, value: &serde_json::Value) -> std::io::Result<bool> {
        if self.ids.contains(&report.id) {
            return Ok(false);
        }
        let mut line = serde_json::to_vec(value).expect("a JSON value serialises");
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.sync_data()?;
        self.ids.insert(report.id.clone());
        Ok(true)
    }
}

/// Runs `ferry collect` (until killed).
pub fn run(args: CollectArgs) -> Result<ExitCode> {
    let store = Arc::new(Mutex::new(Store::open(&args.out)?));
    let listener = TcpListener::bind(&args.listen)
        .with_context(|| format!("cannot listen on `{}`", args.listen))?;
    log::note(format!("listening on {}", listener.local_addr()?));
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                log::warn(format!("accept failed: {e}"));
                continue;
            }
        };
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            let _ = handle(stream, &store);
        });
    }
    Ok(ExitCode::SUCCESS)
}

fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let msg = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}\n",
        body.len() + 1
    );
    stream.write_all(msg.as_bytes())?;
    stream.flush()
}

/// Reads the request head up to the blank line; `None` when it is too long or
/// the connection ends first.
fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<(Vec<u8>, Vec<u8>)>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Ok(Some((buf, rest)));
        }
        if buf.len() > MAX_HEAD {
            return Ok(None);
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn handle(mut stream: TcpStream, store: &Mutex<Store>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let Some((head, mut body)) = read_head(&mut stream)? else {
        return respond(&mut stream, "400 Bad Request", "bad request head");
    };
    let head = String::from_utf8_lossy(&head);
    let mut lines = head.split("\r\n");
    let method = lines.next().and_then(|l| l.split(' ').next()).unwrap_or("");
    let mut length = None;
    let mut expect_continue = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            match value.parse::<usize>() {
                Ok(n) => length = Some(n),
                Err(_) => return respond(&mut stream, "400 Bad Request", "bad Content-Length"),
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return respond(
                &mut stream,
                "411 Length Required",
                "send a Content-Length, not a Transfer-Encoding",
            );
        } else if name.eq_ignore_ascii_case("expect") && value.eq_ignore_ascii_case("100-continue")
        {
            expect_continue = true;
        }
    }
    if method != "POST" {
        return respond(&mut stream, "405 Method Not Allowed", "POST a report");
    }
    let Some(length) = length else {
        return respond(&mut stream, "411 Length Required", "Content-Length needed");
    };
    if length > MAX_BODY {
        return respond(
            &mut stream,
            "413 Content Too Large",
            &format!("a report is at most {MAX_BODY} bytes"),
        );
    }
    if expect_continue && body.len() < length {
        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    if body.len() < length {
        let have = body.len();
        body.resize(length, 0);
        stream.read_exact(&mut body[have..])?;
    }
    body.truncate(length);
    let (report, value) = match parse_report(&body) {
        Ok(r) => r,
        Err(e) => {
            return respond(
                &mut stream,
                "400 Bad Request",
                &format!("not a report: {e}"),
            )
        }
    };
    let stored = {
        let mut s = store.lock().unwrap_or_else(|p| p.into_inner());
        s.add(&report, &value).map_err(|e| (e, s.path.clone()))
    };
    match stored {
        Ok(true) => respond(&mut stream, "200 OK", "stored"),
        Ok(false) => respond(&mut stream, "200 OK", "already stored"),
        Err((e, path)) => {
            log::error(format!("cannot append to `{}`: {e}", path.display()));
            respond(&mut stream, "500 Internal Server Error", "cannot store")
        }
    }
}
