//! Status reports: one [`Report`] per update attempt, kept in a bounded on-disk
//! queue under `<state_dir>/reports/` until a collector accepts it, so no report
//! is lost while the collector (or the network) is down.
//!
//! Each report is one file, `<sequence>.json`, written durably (temporary file,
//! fsync, link, fsync of the directory). The sequence is zero-padded and one
//! more than the highest queued, so lexical order is enqueue order whatever the
//! wall clock does (devices without a real-time clock boot in 1970 and jump
//! forward, and NTP may step back). At most `max_entries` reports are kept: a
//! full queue drops its oldest report, with a warning.
//!
//! [`ReportQueue::flush`] POSTs the queued reports oldest first as JSON and
//! stops at the first failure, so order is kept and nothing is skipped.
//!
//! **Delivery is at least once.** A report is deleted only after the collector
//! answered 2xx; if that answer is lost (timeout, connection cut, power cut
//! before the file is deleted), or two flushes run at once, the same report is
//! sent again later. The collector must deduplicate by [`Report::id`], which is
//! unique per report. The JSON format is documented in `docs/reports.md`.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use ferry_fsutil::AtomicFile;
use reqwest::header::CONTENT_TYPE;

/// Default of the queue bound ([`ReportQueue::open`]'s `max_entries`).
pub const DEFAULT_MAX_ENTRIES: usize = 1000;
/// Time limit of one POST made with [`client`].
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest `error` kept in a report, in bytes (cut at a character boundary).
pub const MAX_ERROR_LEN: usize = 4096;
/// Digits of a queue file's sequence number (`u64::MAX` has 20).
const SEQ_DIGITS: usize = 20;
/// Attempts at finding a free sequence number when another writer races.
const ENQUEUE_ATTEMPTS: usize = 16;

pub use ferry_format::report::{Outcome, Report};

/// Errors of [`ReportQueue::flush`]. Every variant carries how many reports
/// were delivered (and removed from the queue) before it.
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    /// The queue could not be read.
    #[error("reading the report queue")]
    Queue {
        /// Reports delivered before.
        sent: usize,
        /// The cause.
        #[source]
        source: anyhow::Error,
    },
    /// The collector answered with a status other than 2xx.
    #[error("report collector {url}: HTTP status {status}")]
    Http {
        /// Where the reports go.
        url: String,
        /// The status.
        status: u16,
        /// Reports delivered before.
        sent: usize,
    },
    /// The request failed below HTTP (DNS, connection, TLS, timeout).
    #[error("report collector {url}: network error")]
    Network {
        /// Where the reports go.
        url: String,
        /// Reports delivered before.
        sent: usize,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// A delivered report's file could not be removed (it will be sent again).
    #[error("removing delivered report {}", path.display())]
    Remove {
        /// The file.
        path: PathBuf,
        /// Reports delivered before, this one included.
        sent: usize,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl FlushError {
    /// Reports delivered (and removed from the queue) before the failure.
    pub fn sent(&self) -> usize {
        match self {
            FlushError::Queue { sent, .. }
            | FlushError::Http { sent, .. }
            | FlushError::Network { sent, .. }
            | FlushError::Remove { sent, .. } => *sent,
        }
    }
}

/// The HTTP client for [`ReportQueue::flush`]: a [`REQUEST_TIMEOUT`] limit per
/// request, ferryd's `User-Agent`, and no redirects (a `302` turning the POST
/// into a GET that answers 200 must not count as delivered).
pub fn client() -> reqwest::Client {
    client_builder()
        .build()
        .expect("the TLS backend initialises (as for reqwest::Client::new)")
}

fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(crate::repo::USER_AGENT)
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
}

/// The bounded on-disk queue of reports not yet delivered.
#[derive(Debug)]
pub struct ReportQueue {
    /// `<state_dir>/reports/`.
    dir: PathBuf,
    /// Most reports kept.
    max_entries: usize,
    /// Highest sequence number this instance used, so it never reuses one
    /// even when the queue was emptied in between.
    last_seq: AtomicU64,
}

impl ReportQueue {
    /// Opens (creating it if needed) the queue in `<state_dir>/reports/`,
    /// keeping at most `max_entries` reports (see [`DEFAULT_MAX_ENTRIES`]).
    pub fn open(state_dir: &Path, max_entries: usize) -> anyhow::Result<Self> {
        if max_entries == 0 {
            bail!("the report queue must hold at least one report");
        }
        let dir = state_dir.join("reports");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the report queue {}", dir.display()))?;
        Ok(ReportQueue {
            dir,
            max_entries,
            last_seq: AtomicU64::new(0),
        })
    }

    /// The queue's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A report stamped now, with a unique id and this agent's version. An
    /// `error` longer than [`MAX_ERROR_LEN`] bytes is cut.
    #[allow(clippy::too_many_arguments)]
    pub fn new_report(
        device_id: &str,
        app: &str,
        channel: &str,
        from: Option<&str>,
        to: Option<&str>,
        result: Outcome,
        error: Option<&str>,
        serial: Option<u64>,
    ) -> Report {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Report {
            id: format!("{device_id}-{app}-{}-{counter}", since_epoch.as_nanos()),
            device_id: device_id.to_owned(),
            app: app.to_owned(),
            channel: channel.to_owned(),
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
            result,
            error: error.map(|e| truncate(e, MAX_ERROR_LEN).to_owned()),
            serial,
            at: since_epoch.as_secs(),
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    /// Adds `report` at the end of the queue, durably. When more than
    /// `max_entries` reports are then queued, the oldest are dropped with a
    /// warning.
    pub fn enqueue(&self, report: &Report) -> anyhow::Result<()> {
        let json = serde_json::to_vec(report).context("serialising a report")?;
        let mut attempt = 0;
        let path = loop {
            let on_disk = self.entries()?.last().map_or(0, |(seq, _)| *seq);
            let seq = on_disk.max(self.last_seq.load(Ordering::Relaxed)) + 1;
            self.last_seq.fetch_max(seq, Ordering::Relaxed);
            let path = self.dir.join(format!("{seq:0SEQ_DIGITS$}.json"));
            let mut file = AtomicFile::create(&path, 0o600)
                .with_context(|| format!("writing {}", path.display()))?;
            file.write_all(&json)
                .with_context(|| format!("writing {}", path.display()))?;
            // No clobbering: another process may have taken this number.
            match file.commit_new() {
                Ok(()) => break path,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    attempt += 1;
                    if attempt >= ENQUEUE_ATTEMPTS {
                        return Err(e).with_context(|| format!("writing {}", path.display()));
                    }
                }
                Err(e) => return Err(e).with_context(|| format!("writing {}", path.display())),
            }
        };
        log::debug!("queued report {} as {}", report.id, path.display());
        self.trim()
    }

    /// The queued reports, oldest first. Files that cannot be parsed are
    /// removed with a warning.
    pub fn pending(&self) -> anyhow::Result<Vec<(PathBuf, Report)>> {
        let mut out = Vec::new();
        for (_, path) in self.entries()? {
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                // Delivered or dropped meanwhile by another flush or enqueue.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            };
            match serde_json::from_slice::<Report>(&bytes) {
                Ok(report) => out.push((path, report)),
                Err(e) => {
                    log::warn!("removing unreadable report {}: {e}", path.display());
                    remove_if_present(&path)
                        .with_context(|| format!("removing {}", path.display()))?;
                }
            }
        }
        Ok(out)
    }

    /// POSTs the queued reports to `url`, oldest first, as JSON. A 2xx answer
    /// removes the report and goes on to the next; any other answer or a
    /// network error stops there and is returned, the rest staying queued in
    /// order. Returns how many reports were delivered. Time limits are the
    /// `client`'s (see [`client`]). Delivery is at least once.
    pub async fn flush(&self, client: &reqwest::Client, url: &str) -> Result<usize, FlushError> {
        let pending = self
            .pending()
            .map_err(|source| FlushError::Queue { sent: 0, source })?;
        let mut sent = 0;
        for (path, report) in pending {
            let body = serde_json::to_vec(&report).map_err(|e| FlushError::Queue {
                sent,
                source: anyhow::Error::new(e).context("serialising a report"),
            })?;
            let response = client
                .post(url)
                .header(CONTENT_TYPE, "application/json")
                .body(body)
                .send()
                .await
                .map_err(|source| FlushError::Network {
                    url: url.to_owned(),
                    sent,
                    source,
                })?;
            let status = response.status();
            if !status.is_success() {
                return Err(FlushError::Http {
                    url: url.to_owned(),
                    status: status.as_u16(),
                    sent,
                });
            }
            sent += 1;
            remove_if_present(&path).map_err(|source| FlushError::Remove {
                path: path.clone(),
                sent,
                source,
            })?;
            log::debug!("delivered report {}", report.id);
        }
        Ok(sent)
    }

    /// The queue's files (`<sequence>.json`), by sequence. Temporary files
    /// (`.`-prefixed) and foreign names are ignored.
    fn entries(&self) -> anyhow::Result<Vec<(u64, PathBuf)>> {
        let read = std::fs::read_dir(&self.dir)
            .with_context(|| format!("listing the report queue {}", self.dir.display()))?;
        let mut entries = Vec::new();
        for entry in read {
            let entry = entry
                .with_context(|| format!("listing the report queue {}", self.dir.display()))?;
            let name = entry.file_name();
            if let Some(seq) = name.to_str().and_then(parse_seq) {
                entries.push((seq, entry.path()));
            }
        }
        entries.sort_unstable();
        Ok(entries)
    }

    /// Drops the oldest reports beyond `max_entries`.
    fn trim(&self) -> anyhow::Result<()> {
        let entries = self.entries()?;
        let excess = entries.len().saturating_sub(self.max_entries);
        for (_, path) in &entries[..excess] {
            log::warn!(
                "report queue full ({} reports): dropping the oldest, {}",
                self.max_entries,
                path.display()
            );
            remove_if_present(path).with_context(|| format!("removing {}", path.display()))?;
        }
        Ok(())
    }
}

/// The sequence number of a queue file name, `<20 digits>.json`.
fn parse_seq(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".json")?;
    if digits.len() != SEQ_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use std::collections::{HashSet, VecDeque};
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// How the test server answers a request.
    #[derive(Debug, Clone, Copy)]
    enum Answer {
        Status(u16),
        /// Reads the request, then closes without answering.
        Drop,
    }

    /// A request received: its `Content-Type` and body.
    #[derive(Debug, Clone)]
    struct Received {
        content_type: Option<String>,
        body: Vec<u8>,
    }

    #[derive(Debug)]
    struct Script {
        /// Answers for the next requests, in order.
        next: VecDeque<Answer>,
        /// The answer once `next` is empty.
        default: Answer,
        received: Vec<Received>,
    }

    /// A one-request-per-connection HTTP/1.1 collector on loopback.
    struct Collector {
        url: String,
        script: Arc<Mutex<Script>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Collector {
        async fn start(default: Answer) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/reports", listener.local_addr().unwrap());
            let script = Arc::new(Mutex::new(Script {
                next: VecDeque::new(),
                default,
                received: Vec::new(),
            }));
            let shared = script.clone();
            let task = tokio::spawn(async move {
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    tokio::spawn(serve(stream, shared.clone()));
                }
            });
            Collector { url, script, task }
        }

        fn set_default(&self, answer: Answer) {
            self.script.lock().unwrap().default = answer;
        }

        fn then(&self, answer: Answer) {
            self.script.lock().unwrap().next.push_back(answer);
        }

        fn received(&self) -> Vec<Received> {
            self.script.lock().unwrap().received.clone()
        }
    }

    impl Drop for Collector {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    async fn serve(mut stream: TcpStream, script: Arc<Mutex<Script>>) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let header = |name: &str| {
            head.lines().find_map(|line| {
                let (n, v) = line.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_owned())
            })
        };
        let len: usize = header("content-length").map_or(0, |v| v.parse().unwrap());
        while buf.len() < head_end + len {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let answer = {
            let mut s = script.lock().unwrap();
            s.received.push(Received {
                content_type: header("content-type"),
                body: buf[head_end..head_end + len].to_vec(),
            });
            let default = s.default;
            s.next.pop_front().unwrap_or(default)
        };
        match answer {
            Answer::Drop => drop(stream),
            Answer::Status(code) => {
                let reply = format!(
                    "HTTP/1.1 {code} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                );
                let _ = stream.write_all(reply.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
        }
    }

    fn test_client() -> reqwest::Client {
        client_builder().no_proxy().build().unwrap()
    }

    fn report(n: u32) -> Report {
        ReportQueue::new_report(
            "dev-1",
            "demo",
            "stable",
            Some(&format!("1.0.{n}")),
            Some(&format!("1.0.{}", n + 1)),
            Outcome::Committed,
            None,
            Some(u64::from(n)),
        )
    }

    fn enqueue_three(queue: &ReportQueue) -> Vec<Report> {
        let reports: Vec<Report> = (0..3).map(report).collect();
        for r in &reports {
            queue.enqueue(r).unwrap();
        }
        reports
    }

    fn queued(queue: &ReportQueue) -> Vec<Report> {
        queue
            .pending()
            .unwrap()
            .into_iter()
            .map(|(_, r)| r)
            .collect()
    }

    #[tokio::test]
    async fn report_flush_keeps_everything_on_503_then_sends_in_order_on_200() {
        let dir = tempfile::tempdir().unwrap();
        let queue = ReportQueue::open(dir.path(), DEFAULT_MAX_ENTRIES).unwrap();
        let reports = enqueue_three(&queue);
        assert_eq!(queued(&queue), reports);

        let server = Collector::start(Answer::Status(503)).await;
        let err = queue.flush(&test_client(), &server.url).await.unwrap_err();
        assert!(
            matches!(
                err,
                FlushError::Http {
                    status: 503,
                    sent: 0,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(queued(&queue), reports);

        server.set_default(Answer::Status(200));
        assert_eq!(queue.flush(&test_client(), &server.url).await.unwrap(), 3);
        assert!(queue.pending().unwrap().is_empty());
        let delivered: Vec<Received> = server.received().into_iter().skip(1).collect();
        assert_eq!(delivered.len(), 3);
        for (got, want) in delivered.iter().zip(&reports) {
            assert_eq!(got.content_type.as_deref(), Some("application/json"));
            let parsed: Report = serde_json::from_slice(&got.body).unwrap();
            assert_eq!(&parsed, want);
        }
        // Nothing left: a further flush sends nothing.
        assert_eq!(queue.flush(&test_client(), &server.url).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn report_flush_stops_at_the_first_failure_and_keeps_order() {
        let dir = tempfile::tempdir().unwrap();
        let queue = ReportQueue::open(dir.path(), DEFAULT_MAX_ENTRIES).unwrap();
        let reports = enqueue_three(&queue);
        let server = Collector::start(Answer::Status(200)).await;
        server.then(Answer::Status(204));
        server.then(Answer::Drop);
        let err = queue.flush(&test_client(), &server.url).await.unwrap_err();
        assert!(
            matches!(err, FlushError::Network { sent: 1, .. }),
            "{err:?}"
        );
        assert_eq!(err.sent(), 1);
        assert_eq!(queued(&queue), reports[1..]);
        // A report enqueued meanwhile goes after the ones still queued.
        let late = report(9);
        queue.enqueue(&late).unwrap();
        assert_eq!(queue.flush(&test_client(), &server.url).await.unwrap(), 3);
        let bodies: Vec<Report> = server
            .received()
            .iter()
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect();
        assert_eq!(
            bodies,
            [
                reports[0].clone(),
                reports[1].clone(),
                reports[1].clone(),
                reports[2].clone(),
                late
            ]
        );
    }

    #[tokio::test]
    async fn report_flush_to_an_unreachable_collector_sends_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let queue = ReportQueue::open(dir.path(), DEFAULT_MAX_ENTRIES).unwrap();
        let reports = enqueue_three(&queue);
        // A port that was free a moment ago: connection refused.
        let url = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            format!("http://{}/reports", l.local_addr().unwrap())
        };
        let err = queue.flush(&test_client(), &url).await.unwrap_err();
        assert!(
            matches!(err, FlushError::Network { sent: 0, .. }),
            "{err:?}"
        );
        assert_eq!(queued(&queue), reports);
    }

    #[test]
    fn report_queue_keeps_the_newest_max_entries() {
        let dir = tempfile::tempdir().unwrap();
        let queue = ReportQueue::open(dir.path(), 2).unwrap();
        let reports = enqueue_three(&queue);
        assert_eq!(queued(&queue), reports[1..]);
        assert_eq!(std::fs::read_dir(queue.dir()).unwrap().count(), 2);
    }

    #[test]
    fn report_queue_order_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let first = enqueue_three(&ReportQueue::open(dir.path(), 10).unwrap());
        let queue = ReportQueue::open(dir.path(), 10).unwrap();
        let more: Vec<Report> = (3..5).map(report).collect();
        for r in &more {
            queue.enqueue(r).unwrap();
        }
        let all: Vec<Report> = first.into_iter().chain(more).collect();
        assert_eq!(queued(&queue), all);
    }

    #[test]
    fn report_corrupt_file_is_skipped_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let queue = ReportQueue::open(dir.path(), 10).unwrap();
        let a = report(1);
        queue.enqueue(&a).unwrap();
        let corrupt = queue.dir().join(format!("{:020}.json", 2));
        std::fs::write(&corrupt, b"{\"id\": truncated").unwrap();
        let b = report(3);
        queue.enqueue(&b).unwrap();
        // Foreign and temporary names are left alone.
        std::fs::write(queue.dir().join("notes.txt"), b"x").unwrap();
        std::fs::write(queue.dir().join(".00000000000000000009.json.tmp-1"), b"x").unwrap();

        assert_eq!(queued(&queue), [a.clone(), b.clone()]);
        assert!(!corrupt.exists());
        assert_eq!(queued(&queue), [a, b]);
        assert!(queue.dir().join("notes.txt").exists());
    }

    #[test]
    fn report_ids_are_unique_and_fields_filled() {
        let ids: HashSet<String> = (0..1000)
            .map(|_| {
                ReportQueue::new_report(
                    "dev",
                    "app",
                    "stable",
                    None,
                    None,
                    Outcome::Error,
                    None,
                    None,
                )
                .id
            })
            .collect();
        assert_eq!(ids.len(), 1000);

        let long = "é".repeat(MAX_ERROR_LEN);
        let r = ReportQueue::new_report(
            "dev",
            "app",
            "beta",
            Some("1"),
            Some("2"),
            Outcome::Error,
            Some(&long),
            Some(7),
        );
        assert!(r.id.starts_with("dev-app-"));
        assert_eq!(r.agent_version, env!("CARGO_PKG_VERSION"));
        assert!(r.at > 1_600_000_000);
        let error = r.error.unwrap();
        assert!(error.len() <= MAX_ERROR_LEN && error.len() >= MAX_ERROR_LEN - 1);
        assert!(long.starts_with(&error));
    }

    #[test]
    fn report_json_field_names_are_the_documented_ones() {
        let r = report(1);
        let v = serde_json::to_value(&r).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "agent_version",
                "app",
                "at",
                "channel",
                "device_id",
                "error",
                "from",
                "id",
                "result",
                "serial",
                "to"
            ]
        );
    }

    #[test]
    fn report_queue_refuses_zero_entries() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ReportQueue::open(dir.path(), 0).is_err());
    }
}
