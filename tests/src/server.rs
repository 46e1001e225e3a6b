//! Talking to a server under test over loopback: a free port to give it, and
//! polling a URL until it answers. A std-only HTTP/1.0 GET is all that needs,
//! so the harness pulls in no HTTP client.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// How long one request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two polls.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A TCP port on 127.0.0.1 that was free a moment ago (the OS picked it).
pub fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind(("127.0.0.1", 0)).context("cannot bind a port on 127.0.0.1")?;
    Ok(listener
        .local_addr()
        .context("cannot read the bound address")?
        .port())
}

/// One `GET` of an `http://host:port/path` URL: the status code and the body.
/// Any HTTP answer is `Ok`, whatever its status.
pub fn get(url: &str) -> Result<(u16, String)> {
    request("GET", url, &[], None)
}

/// One request of `method` to an `http://host:port/path` URL with extra
/// `headers` and a `body` (sent with its `Content-Length`): the status code
/// and the body. Any HTTP answer is `Ok`, whatever its status.
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Result<(u16, String)> {
    let (host, port, path) = split_url(url)?;
    let addr = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve `{host}` in `{url}`"))?
        .next()
        .with_context(|| format!("`{host}` in `{url}` has no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT)
        .with_context(|| format!("cannot connect to `{url}`"))?;
    stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .context("cannot set a read timeout")?;
    stream
        .set_write_timeout(Some(REQUEST_TIMEOUT))
        .context("cannot set a write timeout")?;
    let mut request =
        format!("{method} {path} HTTP/1.0\r\nHost: {host}:{port}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body.unwrap_or(""));
    stream
        .write_all(request.as_bytes())
        .with_context(|| format!("cannot send a request to `{url}`"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .with_context(|| format!("cannot read the answer of `{url}`"))?;
    parse_response(&response).with_context(|| format!("bad HTTP answer from `{url}`"))
}

/// Polls `url` until it answers (any status) or `timeout` passes; the error
/// then carries the last failure.
pub fn wait_http(url: &str, timeout: Duration) -> Result<(u16, String)> {
    poll(url, timeout, || Ok(()))
}

/// Like [`wait_http`], but fails at once when `child` (the server) exits.
pub fn wait_http_while(url: &str, timeout: Duration, child: &mut Child) -> Result<(u16, String)> {
    poll(url, timeout, || match child.try_wait() {
        Ok(None) => Ok(()),
        Ok(Some(status)) => bail!("the server exited ({status}) before `{url}` answered"),
        Err(err) => Err(anyhow!(err).context("cannot check on the server process")),
    })
}

fn poll(
    url: &str,
    timeout: Duration,
    mut still_running: impl FnMut() -> Result<()>,
) -> Result<(u16, String)> {
    split_url(url)?;
    let deadline = Instant::now() + timeout;
    loop {
        match get(url) {
            Ok(answer) => return Ok(answer),
            Err(err) => {
                still_running()?;
                if Instant::now() >= deadline {
                    return Err(err.context(format!("`{url}` did not answer within {timeout:?}")));
                }
            }
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// `http://host:port/path` → (host, port, path); port 80 and path `/` by default.
fn split_url(url: &str) -> Result<(&str, u16, &str)> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("`{url}` is not an http:// URL (https is not supported here)"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse().with_context(|| format!("bad port in `{url}`"))?,
        ),
        None => (authority, 80),
    };
    if host.is_empty() {
        bail!("no host in `{url}`");
    }
    Ok((host, port, path))
}

/// Status code and body of a raw HTTP/1.x answer.
fn parse_response(bytes: &[u8]) -> Result<(u16, String)> {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n").context("no end of headers")?;
    let status_line = head.lines().next().unwrap_or("");
    let mut words = status_line.split_whitespace();
    if !words.next().is_some_and(|v| v.starts_with("HTTP/")) {
        bail!("no HTTP status line: {status_line:?}");
    }
    let code = words
        .next()
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("no status code in {status_line:?}"))?;
    Ok((code, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_urls() {
        assert_eq!(
            split_url("http://127.0.0.1:8080/health?x=1").unwrap(),
            ("127.0.0.1", 8080, "/health?x=1")
        );
        assert_eq!(
            split_url("http://localhost").unwrap(),
            ("localhost", 80, "/")
        );
        assert!(split_url("https://x/").is_err());
        assert!(split_url("http://:80/").is_err());
    }

    #[test]
    fn parses_an_answer() {
        let (code, body) =
            parse_response(b"HTTP/1.0 503 SERVICE UNAVAILABLE\r\nA: b\r\n\r\n{\"x\":1}").unwrap();
        assert_eq!((code, body.as_str()), (503, "{\"x\":1}"));
        assert!(parse_response(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn waits_until_a_late_server_answers() {
        let port = free_port().unwrap();
        let server = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf).unwrap();
            conn.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .unwrap();
        });
        let answer = wait_http(
            &format!("http://127.0.0.1:{port}/health"),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(answer, (200, "ok".to_string()));
        server.join().unwrap();
    }

    #[test]
    fn gives_up_after_the_timeout() {
        let port = free_port().unwrap();
        let err = wait_http(
            &format!("http://127.0.0.1:{port}/"),
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("did not answer"), "{err:#}");
    }

    #[test]
    fn stops_waiting_when_the_server_exits() {
        let port = free_port().unwrap();
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "exit 4"])
            .spawn()
            .unwrap();
        let err = wait_http_while(
            &format!("http://127.0.0.1:{port}/"),
            Duration::from_secs(30),
            &mut child,
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("exited"), "{err:#}");
    }
}
