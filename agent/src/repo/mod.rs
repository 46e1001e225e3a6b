//! The repository client: fetches release manifests, their signatures and
//! artifacts from a static ferry repository (`docs/repository.md`).
//!
//! Everything read from the network is hostile. Manifests and signatures are
//! read up to their small caps and no further, whatever `Content-Length` says;
//! artifacts are refused when their declared size is over the limit, checked
//! against the free disk space first, streamed to disk (memory does not grow
//! with their size), cut at their declared size, resumed after a cut with HTTP
//! `Range`, and checked against their SHA-256 once complete. Every wait for the
//! server is bounded by an idle timeout. Redirects are followed only within the
//! same origin (scheme, host and port). Parsing and verifying manifests and
//! signatures is the caller's job: this module returns raw bytes.

use std::io::{self, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_format::tuf::layout::is_safe_target_path;
use nix::fcntl::OFlag;
use reqwest::header::{CONTENT_RANGE, LOCATION, RANGE};
use reqwest::{redirect, Certificate, RequestBuilder, Response, StatusCode, Url};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

#[cfg(test)]
mod tests;

/// Free space kept on top of the bytes still to download.
pub const FREE_SPACE_MARGIN: u64 = 1024 * 1024;
/// The `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("ferryd/", env!("CARGO_PKG_VERSION"));
/// Default of [`RepoConfig::connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Default of [`RepoConfig::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default of [`RepoConfig::download_deadline`].
pub const DEFAULT_DOWNLOAD_DEADLINE: Duration = Duration::from_secs(3600);
/// Default of [`RepoConfig::max_artifact_size`]: 1 GiB.
pub const DEFAULT_MAX_ARTIFACT_SIZE: u64 = 1 << 30;
/// Slowest transfer accepted, in bytes per second, averaged over each
/// [`RepoConfig::idle_timeout`]: a server that trickles bytes just often
/// enough never to be silent (slowloris) is cut off all the same.
pub const MIN_BYTES_PER_SECOND: u64 = 1024;
/// Same-origin redirects followed before giving up.
const MAX_REDIRECTS: usize = 5;
/// Longest `Location` quoted in a [`RepoError::Redirect`].
const MAX_LOCATION_LEN: usize = 256;

/// Where the repository is and how far to trust it.
#[derive(Debug, Clone)]
pub struct RepoConfig {
    /// `http(s)://host[:port][/path]`; a trailing slash is optional.
    pub base_url: String,
    /// PEM bundle of extra CA certificates trusted for `https`, on top of the
    /// built-in (webpki) roots.
    pub ca_file: Option<PathBuf>,
    /// Longest wait for a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Longest wait for the response headers or for the next bytes of a body:
    /// a server silent for this long is [`RepoError::Stalled`].
    pub idle_timeout: Duration,
    /// Largest artifact downloaded, whatever the (signed) manifest declares.
    pub max_artifact_size: u64,
    /// Longest one download may take in all, however steadily bytes arrive:
    /// the rest is resumed at the next poll.
    pub download_deadline: Duration,
}

impl RepoConfig {
    /// A configuration for `base_url` with the default timeouts and limit.
    pub fn new(base_url: impl Into<String>) -> Self {
        RepoConfig {
            base_url: base_url.into(),
            ca_file: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_artifact_size: DEFAULT_MAX_ARTIFACT_SIZE,
            download_deadline: DEFAULT_DOWNLOAD_DEADLINE,
        }
    }
}

/// What a successful [`RepoClient::download`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownloadOutcome {
    /// Bytes already in the partial file and kept (0 when starting afresh or
    /// when the server did not honour the `Range` request).
    pub resumed_from: u64,
    /// Bytes received from the network by this call.
    pub bytes_fetched: u64,
}

/// Errors of talking to the repository.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The configuration cannot work (bad base URL, unreadable CA file…).
    #[error("repository configuration: {0}")]
    InvalidConfig(String),
    /// An argument that would build an unsafe URL (or a malformed hash).
    #[error("invalid {what} {value:?}")]
    InvalidArgument {
        /// Which argument.
        what: &'static str,
        /// Its value.
        value: String,
    },
    /// The server answered with an unexpected status.
    #[error("{url}: HTTP status {status}")]
    Http {
        /// What was requested.
        url: String,
        /// The status.
        status: u16,
    },
    /// The request failed below HTTP (DNS, connection, TLS, protocol).
    #[error("{url}: network error")]
    Network {
        /// What was requested.
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The server redirected to another origin (or too many times).
    #[error("{url}: refused redirect (status {status}) to {}", location.as_deref().unwrap_or("(no Location)"))]
    Redirect {
        /// What was requested.
        url: String,
        /// The 3xx status.
        status: u16,
        /// The `Location` header, if printable (truncated).
        location: Option<String>,
    },
    /// A manifest or signature over its cap, or an artifact whose declared
    /// size is over [`RepoConfig::max_artifact_size`].
    #[error("{url}: larger than the limit of {limit} bytes")]
    TooLarge {
        /// What was (or would have been) requested.
        url: String,
        /// The limit.
        limit: u64,
    },
    /// The server sent (or announced) more bytes than the manifest declares.
    #[error("{url}: more bytes than the {declared} declared")]
    LongerThanDeclared {
        /// What was requested.
        url: String,
        /// The declared size.
        declared: u64,
    },
    /// The body ended (or the connection broke) before the declared size. The
    /// partial file is kept: the next call resumes it.
    #[error("{url}: {received} of the {declared} declared bytes received")]
    ShorterThanDeclared {
        /// What was requested.
        url: String,
        /// The declared size.
        declared: u64,
        /// Bytes in the partial file now.
        received: u64,
        /// The connection error, when the body did not end cleanly.
        #[source]
        cause: Option<reqwest::Error>,
    },
    /// A `206` whose `Content-Range` is not the range asked for, a `206` to a
    /// request without `Range`, or a `416`. The partial file is deleted, so
    /// the next call starts afresh.
    #[error("{url}: range response does not match the request: {detail}")]
    RangeMismatch {
        /// What was requested.
        url: String,
        /// What was wrong.
        detail: String,
    },
    /// The complete file does not have the expected SHA-256. The partial file
    /// is deleted.
    #[error("{url}: SHA-256 is {actual}, expected {expected}")]
    ChecksumMismatch {
        /// What was requested.
        url: String,
        /// The hash from the manifest.
        expected: String,
        /// The hash of the bytes received.
        actual: String,
    },
    /// No bytes from the server for the idle timeout.
    #[error("{url}: server silent for {seconds:.1} s")]
    Stalled {
        /// What was requested.
        url: String,
        /// The idle timeout, in seconds.
        seconds: f64,
    },
    /// Bytes arrive, but slower than [`MIN_BYTES_PER_SECOND`].
    #[error("{url}: only {bytes} bytes in {seconds:.1} s, slower than the floor of {MIN_BYTES_PER_SECOND} bytes/s; the transfer is cut and retried later")]
    TooSlow {
        /// What was requested.
        url: String,
        /// Bytes received in the window.
        bytes: u64,
        /// The window, in seconds.
        seconds: f64,
    },
    /// The download took longer than [`RepoConfig::download_deadline`]; the
    /// prefix received is kept for the next try to resume.
    #[error("{url}: not complete after the deadline of {seconds:.0} s; the rest is resumed later")]
    Deadline {
        /// What was requested.
        url: String,
        /// The deadline, in seconds.
        seconds: f64,
    },
    /// Not enough free disk space for the download.
    #[error("{dir}: {available} bytes free, {needed} needed")]
    NoSpace {
        /// Bytes still to download plus a margin.
        needed: u64,
        /// Bytes available to this process.
        available: u64,
        /// The directory of the partial file.
        dir: PathBuf,
    },
    /// Local I/O on the partial file.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl RepoError {
    /// Whether retrying later (with back-off) may succeed: network errors,
    /// `5xx`, `408`, `429`, stalls, short reads, range mismatches, missing disk
    /// space and local I/O errors. Not transient: `4xx`, refused redirects,
    /// sizes over a limit, more bytes than declared, checksum mismatches,
    /// invalid configuration or arguments — what the repository serves is
    /// wrong, and asking again will not fix it.
    pub fn is_transient(&self) -> bool {
        match self {
            RepoError::Network { .. }
            | RepoError::ShorterThanDeclared { .. }
            | RepoError::RangeMismatch { .. }
            | RepoError::Stalled { .. }
            | RepoError::TooSlow { .. }
            | RepoError::Deadline { .. }
            | RepoError::NoSpace { .. }
            | RepoError::Io(_) => true,
            RepoError::Http { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            RepoError::InvalidConfig(_)
            | RepoError::InvalidArgument { .. }
            | RepoError::Redirect { .. }
            | RepoError::TooLarge { .. }
            | RepoError::LongerThanDeclared { .. }
            | RepoError::ChecksumMismatch { .. } => false,
        }
    }

    /// Whether the partial file can no longer be trusted as a prefix of the
    /// artifact, and is deleted.
    fn discards_partial(&self) -> bool {
        matches!(
            self,
            RepoError::LongerThanDeclared { .. }
                | RepoError::RangeMismatch { .. }
                | RepoError::ChecksumMismatch { .. }
        )
    }
}

/// A client of one repository.
#[derive(Debug, Clone)]
pub struct RepoClient {
    http: reqwest::Client,
    /// The base URL without its trailing slash.
    base: String,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_artifact_size: u64,
    download_deadline: Duration,
}

impl RepoClient {
    /// A client for `cfg`: rustls with the built-in roots plus `ca_file`,
    /// same-origin redirects only, proxies from the environment
    /// (`HTTPS_PROXY`, `NO_PROXY`…).
    pub fn new(cfg: RepoConfig) -> Result<Self, RepoError> {
        Self::build(cfg, true)
    }

    fn build(cfg: RepoConfig, env_proxies: bool) -> Result<Self, RepoError> {
        let base = parse_base_url(&cfg.base_url)?;
        if cfg.connect_timeout.is_zero() || cfg.idle_timeout.is_zero() {
            return Err(RepoError::InvalidConfig(
                "timeouts must be longer than zero".into(),
            ));
        }
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .redirect(same_origin_redirects())
            .referer(false)
            .connect_timeout(cfg.connect_timeout);
        if !env_proxies {
            builder = builder.no_proxy();
        }
        if let Some(path) = &cfg.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                RepoError::InvalidConfig(format!("reading CA file {}: {e}", path.display()))
            })?;
            let certs = Certificate::from_pem_bundle(&pem).map_err(|e| {
                RepoError::InvalidConfig(format!("CA file {}: {e}", path.display()))
            })?;
            if certs.is_empty() {
                return Err(RepoError::InvalidConfig(format!(
                    "CA file {} holds no PEM certificate",
                    path.display()
                )));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| RepoError::InvalidConfig(format!("building the HTTP client: {e}")))?;
        Ok(RepoClient {
            http,
            base,
            connect_timeout: cfg.connect_timeout,
            idle_timeout: cfg.idle_timeout,
            max_artifact_size: cfg.max_artifact_size,
            download_deadline: cfg.download_deadline,
        })
    }

    /// The base URL, without trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Fetches `<base>/<path>` (metadata, or a small target such as a
    /// channel's manifest), reading at most `limit` bytes whatever
    /// `Content-Length` says. `404` and `403` are `Ok(None)` when
    /// `may_be_missing` (how the next root's absence is told), else errors.
    pub async fn fetch_file(
        &self,
        path: &str,
        limit: u64,
        may_be_missing: bool,
    ) -> Result<Option<Vec<u8>>, RepoError> {
        check_artifact_path(path)?;
        let url = format!("{}/{path}", self.base);
        let response = self.send(self.http.get(&url), &url).await?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND | StatusCode::FORBIDDEN if may_be_missing => return Ok(None),
            _ => return Err(status_error(&url, &response)),
        }
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        self.read_bounded(response, &url, limit).await.map(Some)
    }

    /// Downloads `<base>/<artifact_path>` into `partial`, resuming what it
    /// already holds, and checks its size and SHA-256.
    ///
    /// On success `partial` holds exactly the artifact, fsynced. On
    /// [`RepoError::ShorterThanDeclared`], [`RepoError::Stalled`] and network
    /// errors it keeps the prefix received, for the next call to resume; on
    /// [`RepoError::LongerThanDeclared`], [`RepoError::RangeMismatch`] and
    /// [`RepoError::ChecksumMismatch`] it is deleted.
    pub async fn download(
        &self,
        artifact_path: &str,
        declared_size: u64,
        expected_sha256: &str,
        partial: &Path,
    ) -> Result<DownloadOutcome, RepoError> {
        check_artifact_path(artifact_path)?;
        let expected = check_sha256(expected_sha256)?;
        let url = format!("{}/{artifact_path}", self.base);
        if declared_size > self.max_artifact_size {
            return Err(RepoError::TooLarge {
                url,
                limit: self.max_artifact_size,
            });
        }
        let result = match tokio::time::timeout(
            self.download_deadline,
            self.download_inner(&url, declared_size, &expected, partial),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(RepoError::Deadline {
                url: url.clone(),
                seconds: self.download_deadline.as_secs_f64(),
            }),
        };
        if let Err(e) = &result {
            if e.discards_partial() {
                match std::fs::remove_file(partial) {
                    Err(rm) if rm.kind() != io::ErrorKind::NotFound => {
                        return Err(RepoError::Io(io::Error::new(
                            rm.kind(),
                            format!("deleting bad partial {} ({e}): {rm}", partial.display()),
                        )))
                    }
                    _ => {}
                }
            }
        }
        result
    }

    async fn download_inner(
        &self,
        url: &str,
        declared: u64,
        expected: &str,
        partial: &Path,
    ) -> Result<DownloadOutcome, RepoError> {
        let dir = parent_dir(partial);
        let mut file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).bits())
            .open(partial)
            .await
            .map_err(|e| io_context(e, "opening", partial))?;
        let mut have = file
            .metadata()
            .await
            .map_err(|e| io_context(e, "reading", partial))?
            .len();
        if have > declared {
            // Not a prefix of this artifact: start afresh.
            file.set_len(0)
                .await
                .map_err(|e| io_context(e, "truncating", partial))?;
            have = 0;
        }
        let available = available_space(&dir).map_err(|e| io_context(e, "statvfs", &dir))?;
        check_space(&dir, declared - have, available)?;

        let mut outcome = DownloadOutcome {
            resumed_from: have,
            bytes_fetched: 0,
        };
        if have < declared {
            let streamed = self.fetch_into(url, declared, have, &mut file).await;
            // Whatever happened, let the bytes written reach the file (so a
            // resume sees them) before returning.
            let flushed = file.flush().await;
            let synced = file.sync_all().await;
            // Another writer can fill the disk after the space check.
            let full = |e: RepoError| match e {
                RepoError::Io(io) if is_disk_full(&io) => RepoError::NoSpace {
                    needed: declared - have,
                    available: available_space(&dir).unwrap_or(0),
                    dir: dir.clone(),
                },
                e => e,
            };
            let (start, fetched) = streamed.map_err(full)?;
            flushed
                .and(synced)
                .map_err(|e| full(io_context(e, "writing", partial)))?;
            outcome = DownloadOutcome {
                resumed_from: start,
                bytes_fetched: fetched,
            };
        } else {
            file.sync_all()
                .await
                .map_err(|e| io_context(e, "syncing", partial))?;
        }
        drop(file);

        let actual = sha256_file(partial).await?;
        if actual != expected {
            return Err(RepoError::ChecksumMismatch {
                url: url.to_owned(),
                expected: expected.to_owned(),
                actual,
            });
        }
        // Make the partial's directory entry durable too.
        if let Ok(d) = std::fs::File::open(&dir) {
            d.sync_all().map_err(|e| io_context(e, "syncing", &dir))?;
        }
        Ok(outcome)
    }

    /// Requests the bytes from `have` on and streams them into `file`.
    /// Returns where the body started (0 when the server ignored `Range`)
    /// and how many bytes it brought.
    async fn fetch_into(
        &self,
        url: &str,
        declared: u64,
        have: u64,
        file: &mut tokio::fs::File,
    ) -> Result<(u64, u64), RepoError> {
        let mut request = self.http.get(url);
        if have > 0 {
            request = request.header(RANGE, format!("bytes={have}-"));
        }
        let mut response = self.send(request, url).await?;
        let range_error = |detail: String| RepoError::RangeMismatch {
            url: url.to_owned(),
            detail,
        };
        let start = match response.status() {
            StatusCode::OK => 0,
            StatusCode::PARTIAL_CONTENT if have > 0 => {
                let value = response
                    .headers()
                    .get(CONTENT_RANGE)
                    .ok_or_else(|| range_error("206 without Content-Range".into()))?;
                let printable = String::from_utf8_lossy(value.as_bytes())
                    .chars()
                    .take(100)
                    .collect::<String>();
                match parse_content_range(value.as_bytes()) {
                    Some((first, last, total))
                        if first == have
                            && last == declared - 1
                            && total.is_none_or(|t| t == declared) =>
                    {
                        have
                    }
                    _ => {
                        return Err(range_error(format!(
                        "asked for bytes {have}-{} of {declared}, got Content-Range {printable:?}",
                        declared - 1
                    )))
                    }
                }
            }
            StatusCode::PARTIAL_CONTENT => {
                return Err(range_error("206 to a request without Range".into()))
            }
            StatusCode::RANGE_NOT_SATISFIABLE if have > 0 => {
                return Err(range_error(format!(
                    "416 to a request for bytes {have}- of {declared}"
                )))
            }
            _ => return Err(status_error(url, &response)),
        };
        let remaining = declared - start;
        if response.content_length().is_some_and(|len| len > remaining) {
            return Err(RepoError::LongerThanDeclared {
                url: url.to_owned(),
                declared,
            });
        }
        file.seek(SeekFrom::Start(start)).await?;
        if start < have {
            // The server ignored Range and sends everything: start afresh.
            file.set_len(start).await?;
        }

        let mut received = 0u64;
        let mut pace = Pace::new(self.idle_timeout);
        loop {
            let chunk = match tokio::time::timeout(self.idle_timeout, response.chunk()).await {
                Err(_) => return Err(self.stalled(url)),
                Ok(Err(e)) => {
                    return Err(RepoError::ShorterThanDeclared {
                        url: url.to_owned(),
                        declared,
                        received: start + received,
                        cause: Some(e),
                    })
                }
                Ok(Ok(None)) if received < remaining => {
                    return Err(RepoError::ShorterThanDeclared {
                        url: url.to_owned(),
                        declared,
                        received: start + received,
                        cause: None,
                    })
                }
                Ok(Ok(None)) => return Ok((start, received)),
                Ok(Ok(Some(chunk))) => chunk,
            };
            if chunk.len() as u64 > remaining - received {
                return Err(RepoError::LongerThanDeclared {
                    url: url.to_owned(),
                    declared,
                });
            }
            pace.count(chunk.len(), url)?;
            crate::failpoint::hit("before-download-chunk");
            file.write_all(&chunk).await?;
            received += chunk.len() as u64;
        }
    }

    /// Sends `request`, waiting at most the connect plus the idle timeout for
    /// the response headers.
    async fn send(&self, request: RequestBuilder, url: &str) -> Result<Response, RepoError> {
        match tokio::time::timeout(self.connect_timeout + self.idle_timeout, request.send()).await {
            Err(_) => Err(self.stalled(url)),
            Ok(Err(source)) => Err(RepoError::Network {
                url: url.to_owned(),
                source,
            }),
            Ok(Ok(response)) => Ok(response),
        }
    }

    /// Reads a whole body of at most `limit` bytes, stopping as soon as more
    /// arrive.
    async fn read_bounded(
        &self,
        mut response: Response,
        url: &str,
        limit: usize,
    ) -> Result<Vec<u8>, RepoError> {
        let too_large = || RepoError::TooLarge {
            url: url.to_owned(),
            limit: limit as u64,
        };
        if response
            .content_length()
            .is_some_and(|len| len > limit as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        let mut pace = Pace::new(self.idle_timeout);
        loop {
            match tokio::time::timeout(self.idle_timeout, response.chunk()).await {
                Err(_) => return Err(self.stalled(url)),
                Ok(Err(source)) => {
                    return Err(RepoError::Network {
                        url: url.to_owned(),
                        source,
                    })
                }
                Ok(Ok(None)) => return Ok(body),
                Ok(Ok(Some(chunk))) => {
                    if chunk.len() > limit - body.len() {
                        return Err(too_large());
                    }
                    pace.count(chunk.len(), url)?;
                    body.extend_from_slice(&chunk);
                }
            }
        }
    }

    fn stalled(&self, url: &str) -> RepoError {
        RepoError::Stalled {
            url: url.to_owned(),
            seconds: self.idle_timeout.as_secs_f64(),
        }
    }
}

/// Measures a body's transfer rate over consecutive windows.
struct Pace {
    window: Duration,
    started: std::time::Instant,
    bytes: u64,
}

impl Pace {
    fn new(window: Duration) -> Self {
        Pace {
            window,
            started: std::time::Instant::now(),
            bytes: 0,
        }
    }

    /// Counts a chunk; fails once a whole window went by below the floor.
    fn count(&mut self, len: usize, url: &str) -> Result<(), RepoError> {
        self.bytes += len as u64;
        let elapsed = self.started.elapsed();
        if elapsed < self.window {
            return Ok(());
        }
        if (self.bytes as f64) < MIN_BYTES_PER_SECOND as f64 * elapsed.as_secs_f64() {
            return Err(RepoError::TooSlow {
                url: url.to_owned(),
                bytes: self.bytes,
                seconds: elapsed.as_secs_f64(),
            });
        }
        *self = Pace::new(self.window);
        Ok(())
    }
}

/// Follows redirects within the origin of the first URL only; any other is
/// not followed, and the 3xx response becomes a [`RepoError::Redirect`].
fn same_origin_redirects() -> redirect::Policy {
    redirect::Policy::custom(|attempt| {
        let same_origin = attempt
            .previous()
            .first()
            .is_some_and(|first| first.origin() == attempt.url().origin());
        if same_origin && attempt.previous().len() <= MAX_REDIRECTS {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// The error for a response whose status is not the one expected.
fn status_error(url: &str, response: &Response) -> RepoError {
    let status = response.status();
    if status.is_redirection() {
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(MAX_LOCATION_LEN).collect());
        RepoError::Redirect {
            url: url.to_owned(),
            status: status.as_u16(),
            location,
        }
    } else {
        RepoError::Http {
            url: url.to_owned(),
            status: status.as_u16(),
        }
    }
}

/// Checks and normalises the base URL (no trailing slash).
fn parse_base_url(text: &str) -> Result<String, RepoError> {
    let invalid = |why: &str| RepoError::InvalidConfig(format!("base URL {text:?}: {why}"));
    let url = Url::parse(text).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // URLs end up in logs and errors.
        return Err(invalid("credentials in the URL are not supported"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("a query or fragment is not supported"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// A relative path of `/`-separated segments of `A-Z a-z 0-9 . _ + -`, none
/// empty or starting with `.`, at most 1024 bytes (the repository layout's
/// rule): nothing that could leave the repository.
fn check_artifact_path(path: &str) -> Result<(), RepoError> {
    if is_safe_target_path(path) {
        Ok(())
    } else {
        Err(RepoError::InvalidArgument {
            what: "artifact path",
            value: path.chars().take(200).collect(),
        })
    }
}

/// 64 hex digits, returned lowercase.
fn check_sha256(hex_digest: &str) -> Result<String, RepoError> {
    if hex_digest.len() == 64 && hex_digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex_digest.to_ascii_lowercase())
    } else {
        Err(RepoError::InvalidArgument {
            what: "SHA-256",
            value: hex_digest.chars().take(200).collect(),
        })
    }
}

/// Parses `bytes FIRST-LAST/TOTAL` (TOTAL may be `*`).
fn parse_content_range(value: &[u8]) -> Option<(u64, u64, Option<u64>)> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let rest = text.strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let number = |s: &str| -> Option<u64> {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    let (first, last) = (number(first)?, number(last)?);
    let total = if total == "*" {
        None
    } else {
        Some(number(total)?)
    };
    (first <= last).then_some((first, last, total))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn io_context(e: io::Error, doing: &str, path: &Path) -> RepoError {
    RepoError::Io(io::Error::new(
        e.kind(),
        format!("{doing} {}: {e}", path.display()),
    ))
}

/// Bytes available to an unprivileged process on the filesystem of `dir`.
pub fn available_space(dir: &Path) -> io::Result<u64> {
    Ok(ferry_fsutil::fsstat::statvfs(dir)?.available)
}

/// Whether a write failed for want of space (or quota). By kind, which
/// std derives from `ENOSPC`/`EDQUOT` and which `io_context` keeps.
fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// Refuses when `available` bytes do not hold `remaining` plus the margin.
pub fn check_space(dir: &Path, remaining: u64, available: u64) -> Result<(), RepoError> {
    let needed = remaining.saturating_add(FREE_SPACE_MARGIN);
    if available < needed {
        Err(RepoError::NoSpace {
            needed,
            available,
            dir: dir.to_path_buf(),
        })
    } else {
        Ok(())
    }
}

/// The lowercase hex SHA-256 of the file at `path`, read in a blocking task.
async fn sha256_file(path: &Path) -> Result<String, RepoError> {
    let owned = path.to_path_buf();
    let hashed = tokio::task::spawn_blocking(move || ferry_format::digest::sha256_file(&owned))
        .await
        .map_err(|e| RepoError::Io(io::Error::other(format!("hashing task failed: {e}"))))?;
    hashed
        .map(|(sha, _)| sha)
        .map_err(|e| io_context(e, "hashing", path))
}
