//! A raw HTTP/1.1 server on loopback with scripted faults: what the
//! repository client's tests and the boards' bad-input tests meet instead of
//! a well-behaved server. One request per connection (`Connection: close`).
//! In async tests it runs on the caller's runtime ([`FaultServer::start`]);
//! in the synchronous end-to-end tests on a runtime of its own
//! ([`FaultServer::in_background`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How a path is served.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// 200 with `Content-Length` and `ETag: <etag>`; 304 when
    /// `If-None-Match` equals the ETag; 206 for `Range: bytes=N-`.
    Normal {
        /// The ETag, if the path has one.
        etag: Option<String>,
    },
    /// Always 200 with the whole body, whatever `Range` says.
    IgnoreRange,
    /// Like `Normal`, but the connection closes after N bytes of the body.
    CutAfter(usize),
    /// 200 with the full `Content-Length`, N bytes, then silence (until the
    /// client goes away).
    StallAfter(usize),
    /// 200 with the full `Content-Length`, then one byte of the body every
    /// interval (slowloris), until the body ends or the client goes away.
    Trickle(Duration),
    /// Like `Normal` without `Range`: N bytes, a pause, then the rest.
    PauseAfter(usize, Duration),
    /// This status with a short body.
    Status(u16),
    /// 200 with this `Content-Length` (none: delimited by closing) and
    /// exactly the route's body, then close.
    Raw {
        /// The `Content-Length` claimed, if any.
        content_length: Option<u64>,
    },
    /// 206 whose range starts one byte after the one asked for.
    BadContentRange,
    /// 302 to this location.
    Redirect(String),
    /// 200 without `Content-Length`, and a body that never ends.
    Endless,
}

/// A path's body and behaviour.
#[derive(Debug, Clone)]
struct Route {
    body: Vec<u8>,
    behaviour: Behaviour,
}

/// A request received.
#[derive(Debug, Clone)]
pub struct Request {
    /// The request's path.
    pub path: String,
    headers: Vec<(String, String)>,
    sent: Arc<AtomicU64>,
}

impl Request {
    /// The value of the header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Body bytes written to the socket so far for this request.
    pub fn body_sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }
}

#[derive(Default)]
struct State {
    routes: Mutex<HashMap<String, Route>>,
    log: Mutex<Vec<Request>>,
    connections: AtomicU64,
}

/// The server; stops accepting when dropped.
pub struct FaultServer {
    addr: SocketAddr,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl FaultServer {
    /// A server on 127.0.0.1, on a free port.
    pub async fn start() -> Self {
        Self::start_on([127, 0, 0, 1].into()).await
    }

    /// A server on `ip` (loopback), on a free port.
    pub async fn start_on(ip: IpAddr) -> Self {
        assert!(ip.is_loopback(), "tests only talk to loopback");
        let listener = TcpListener::bind((ip, 0)).await.expect("bind");
        let addr = listener.local_addr().expect("local_addr");
        let state = Arc::new(State::default());
        let accept_state = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accept_state.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, accept_state.clone()));
            }
        });
        FaultServer {
            addr,
            state,
            accept,
        }
    }

    /// `http://ip:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves `path` (starting with `/`) with `body` and `behaviour`,
    /// replacing what it served before.
    pub fn route(&self, path: &str, body: impl Into<Vec<u8>>, behaviour: Behaviour) {
        self.state.routes.lock().unwrap().insert(
            path.to_owned(),
            Route {
                body: body.into(),
                behaviour,
            },
        );
    }

    /// The requests received so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.state.log.lock().unwrap().clone()
    }

    /// Serves every path without a route of its own with `body` and
    /// `behaviour` (what a hostile server answers whatever is asked).
    pub fn fallback(&self, body: impl Into<Vec<u8>>, behaviour: Behaviour) {
        self.route(FALLBACK, body, behaviour);
    }

    /// A server on 127.0.0.1 with a runtime of its own, for tests that
    /// have none; it stops when the returned value is dropped.
    pub fn in_background() -> Background {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the fault server");
        let server = runtime.block_on(FaultServer::start());
        Background {
            server: Some(server),
            runtime: Some(runtime),
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::SeqCst)
    }
}

/// The route key of [`FaultServer::fallback`] (no request path has it).
const FALLBACK: &str = "*";

/// A [`FaultServer`] with the runtime it runs on.
pub struct Background {
    server: Option<FaultServer>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::ops::Deref for Background {
    type Target = FaultServer;
    fn deref(&self) -> &FaultServer {
        self.server.as_ref().expect("running")
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        drop(self.server.take());
        if let Some(runtime) = self.runtime.take() {
            // Connections still being answered (an endless body) end here.
            runtime.shutdown_background();
        }
    }
}

/// Reads the request head (bounded), answers it, closes.
async fn serve(mut stream: TcpStream, state: Arc<State>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 * 1024 {
            return;
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let path = request_line
        .split(' ')
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let headers: Vec<(String, String)> = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let request = Request {
        path: path.clone(),
        headers,
        sent: Arc::new(AtomicU64::new(0)),
    };
    state.log.lock().unwrap().push(request.clone());
    let route = {
        let routes = state.routes.lock().unwrap();
        routes.get(&path).or_else(|| routes.get(FALLBACK)).cloned()
    };
    let Some(route) = route else {
        let _ = respond(&mut stream, &request, "404 Not Found", &[], Some(b"no")).await;
        return;
    };
    let _ = answer(&mut stream, &request, route).await;
    let _ = stream.shutdown().await;
}

/// `Range: bytes=N-` → N.
fn range_start(request: &Request) -> Option<usize> {
    request
        .header("range")?
        .strip_prefix("bytes=")?
        .strip_suffix('-')?
        .parse()
        .ok()
}

async fn answer(stream: &mut TcpStream, request: &Request, route: Route) -> std::io::Result<()> {
    let body = &route.body[..];
    let len = body.len();
    match route.behaviour {
        Behaviour::Normal { etag } => {
            let etag_header = etag.as_ref().map(|e| ("ETag", e.clone()));
            if etag.is_some() && request.header("if-none-match") == etag.as_deref() {
                let headers: Vec<_> = etag_header.into_iter().collect();
                return respond(stream, request, "304 Not Modified", &headers, None).await;
            }
            let mut headers: Vec<_> = etag_header.into_iter().collect();
            match range_start(request) {
                Some(start) if start < len => {
                    headers.push(("Content-Range", format!("bytes {start}-{}/{len}", len - 1)));
                    headers.push(("Content-Length", (len - start).to_string()));
                    respond(
                        stream,
                        request,
                        "206 Partial Content",
                        &headers,
                        Some(&body[start..]),
                    )
                    .await
                }
                Some(_) => {
                    headers.push(("Content-Range", format!("bytes */{len}")));
                    headers.push(("Content-Length", "0".into()));
                    respond(stream, request, "416 Range Not Satisfiable", &headers, None).await
                }
                None => {
                    headers.push(("Content-Length", len.to_string()));
                    respond(stream, request, "200 OK", &headers, Some(body)).await
                }
            }
        }
        Behaviour::IgnoreRange => {
            let headers = [("Content-Length", len.to_string())];
            respond(stream, request, "200 OK", &headers, Some(body)).await
        }
        Behaviour::CutAfter(n) => {
            let start = range_start(request).unwrap_or(0).min(len);
            let (status, mut headers) = if start > 0 {
                let range = format!("bytes {start}-{}/{len}", len - 1);
                ("206 Partial Content", vec![("Content-Range", range)])
            } else {
                ("200 OK", vec![])
            };
            headers.push(("Content-Length", (len - start).to_string()));
            let end = (start + n).min(len);
            respond(stream, request, status, &headers, Some(&body[start..end])).await
        }
        Behaviour::StallAfter(n) => {
            let headers = [("Content-Length", len.to_string())];
            respond(
                stream,
                request,
                "200 OK",
                &headers,
                Some(&body[..n.min(len)]),
            )
            .await?;
            // Silence until the client closes (or 30 s pass).
            let mut buf = [0u8; 64];
            let _ = tokio::time::timeout(Duration::from_secs(30), async {
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
            Ok(())
        }
        Behaviour::Trickle(every) => {
            let headers = [("Content-Length", len.to_string())];
            respond(stream, request, "200 OK", &headers, Some(&[])).await?;
            for byte in body {
                tokio::time::sleep(every).await;
                if stream.write_all(&[*byte]).await.is_err() {
                    break;
                }
            }
            Ok(())
        }
        Behaviour::PauseAfter(n, pause) => {
            let headers = [("Content-Length", len.to_string())];
            let n = n.min(len);
            respond(stream, request, "200 OK", &headers, Some(&body[..n])).await?;
            tokio::time::sleep(pause).await;
            let _ = stream.write_all(&body[n..]).await;
            Ok(())
        }
        Behaviour::Status(code) => {
            let status = format!("{code} Scripted");
            let headers = [("Content-Length", "5".to_string())];
            respond(stream, request, &status, &headers, Some(b"error")).await
        }
        Behaviour::Raw { content_length } => {
            let headers: Vec<_> = content_length
                .map(|l| ("Content-Length", l.to_string()))
                .into_iter()
                .collect();
            respond(stream, request, "200 OK", &headers, Some(body)).await
        }
        Behaviour::BadContentRange => {
            let start = range_start(request).unwrap_or(0) + 1;
            let start = start.min(len.saturating_sub(1));
            let headers = [
                ("Content-Range", format!("bytes {start}-{}/{len}", len - 1)),
                ("Content-Length", (len - start).to_string()),
            ];
            respond(
                stream,
                request,
                "206 Partial Content",
                &headers,
                Some(&body[start..]),
            )
            .await
        }
        Behaviour::Redirect(location) => {
            let headers = [("Location", location), ("Content-Length", "0".into())];
            respond(stream, request, "302 Found", &headers, None).await
        }
        Behaviour::Endless => {
            respond(stream, request, "200 OK", &[], None).await?;
            let chunk = vec![b'{'; 8192];
            loop {
                stream.write_all(&chunk).await?;
                request.sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
        }
    }
}

/// Writes the status line, the headers, `Connection: close` and the body,
/// counting the body bytes written.
async fn respond(
    stream: &mut TcpStream,
    request: &Request,
    status: &str,
    headers: &[(&str, String)],
    body: Option<&[u8]>,
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    for chunk in body.unwrap_or_default().chunks(4096) {
        stream.write_all(chunk).await?;
        request.sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
    }
    stream.flush().await
}
