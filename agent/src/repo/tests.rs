//! Tests of the repository client against the in-process fault server.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::*;
use ferry_tests::fault_server::{Behaviour, FaultServer};

const MANIFEST_PATH: &str = "/metadata/timestamp.json";
const META: &str = "metadata/timestamp.json";
const MAX_MANIFEST_LEN: usize = 64 * 1024;
const LIMIT: u64 = MAX_MANIFEST_LEN as u64;

fn config(url: &str) -> RepoConfig {
    RepoConfig {
        base_url: url.to_owned(),
        ca_file: None,
        connect_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(2),
        max_artifact_size: 64 * 1024 * 1024,
        download_deadline: Duration::from_secs(60),
    }
}

fn client(server: &FaultServer) -> RepoClient {
    RepoClient::build(config(&server.url()), false).expect("client")
}

fn client_with(server: &FaultServer, tweak: impl FnOnce(&mut RepoConfig)) -> RepoClient {
    let mut cfg = config(&server.url());
    tweak(&mut cfg);
    RepoClient::build(cfg, false).expect("client")
}

/// Pseudo-random, incompressible-looking bytes.
fn artifact(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn sha(bytes: &[u8]) -> String {
    ferry_format::digest::sha256_hex(bytes)
}

/// Serves `body` at `blobs/sha256/<sha>` and returns that path (without `/`).
fn blob(server: &FaultServer, body: &[u8], behaviour: Behaviour) -> String {
    let path = format!("blobs/sha256/{}", sha(body));
    server.route(&format!("/{path}"), body, behaviour);
    path
}

fn partial_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("artifact.partial")
}

fn normal() -> Behaviour {
    Behaviour::Normal { etag: None }
}

// ---------------------------------------------------------------- manifests

#[tokio::test]
async fn metadata_fetch_and_a_missing_next_root() {
    let server = FaultServer::start().await;
    server.route(MANIFEST_PATH, &b"{}"[..], normal());
    let client = client(&server);
    let got = client.fetch_file(META, LIMIT, false).await.unwrap();
    assert_eq!(got.as_deref(), Some(&b"{}"[..]));
    // The next root's absence is an answer; another file's is an error.
    assert_eq!(
        client
            .fetch_file("metadata/2.root.json", LIMIT, true)
            .await
            .unwrap(),
        None
    );
    let err = client
        .fetch_file("metadata/2.root.json", LIMIT, false)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RepoError::Http { status: 404, .. }),
        "{err:?}"
    );
    let requests = server.requests();
    assert_eq!(requests[0].path, MANIFEST_PATH);
    assert_eq!(
        requests[0].header("user-agent"),
        Some(concat!("ferryd/", env!("CARGO_PKG_VERSION")))
    );
}

#[tokio::test]
async fn manifest_endless_body_is_cut_at_the_limit() {
    let server = FaultServer::start().await;
    server.route(MANIFEST_PATH, "", Behaviour::Endless);
    let client = client(&server);

    let started = Instant::now();
    let err = client.fetch_file(META, LIMIT, false).await.unwrap_err();
    assert!(
        matches!(err, RepoError::TooLarge { limit, .. } if limit == MAX_MANIFEST_LEN as u64),
        "{err:?}"
    );
    assert!(!err.is_transient());
    assert!(started.elapsed() < Duration::from_secs(2));

    // The client hung up: the server's writes stop (what it managed to write
    // is the limit plus the socket buffers, not an ever-growing amount).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let request = &server.requests()[0];
    let sent = request.body_sent();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(request.body_sent(), sent, "server still writing");
    assert!(sent < 64 * 1024 * 1024, "{sent} bytes sent");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn manifest_content_length_over_the_limit_is_refused_before_reading() {
    let server = FaultServer::start().await;
    server.route(
        MANIFEST_PATH,
        vec![b' '; 8],
        Behaviour::Raw {
            content_length: Some(10 * 1024 * 1024),
        },
    );
    let err = client(&server)
        .fetch_file(META, LIMIT, false)
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::TooLarge { .. }), "{err:?}");
}

#[tokio::test]
async fn manifest_exactly_at_the_limit_is_accepted() {
    let server = FaultServer::start().await;
    server.route(
        MANIFEST_PATH,
        vec![b' '; MAX_MANIFEST_LEN],
        Behaviour::Raw {
            content_length: None,
        },
    );
    let fetched = client(&server)
        .fetch_file(META, LIMIT, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fetched.len(), MAX_MANIFEST_LEN);
}

#[tokio::test]
async fn manifest_http_errors_are_classified() {
    let server = FaultServer::start().await;
    let client = client(&server);
    // Nothing routed: 404.
    let err = client.fetch_file(META, LIMIT, false).await.unwrap_err();
    assert!(
        matches!(err, RepoError::Http { status: 404, .. }),
        "{err:?}"
    );
    assert!(!err.is_transient());

    server.route(MANIFEST_PATH, "", Behaviour::Status(503));
    let err = client.fetch_file(META, LIMIT, false).await.unwrap_err();
    assert!(
        matches!(err, RepoError::Http { status: 503, .. }),
        "{err:?}"
    );
    assert!(err.is_transient());

    // A 304 to an unconditional request is not "not modified".
    server.route(MANIFEST_PATH, "", Behaviour::Status(304));
    let err = client.fetch_file(META, LIMIT, false).await.unwrap_err();
    assert!(
        matches!(err, RepoError::Redirect { status: 304, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn manifest_cross_host_redirect_is_refused() {
    let server = FaultServer::start().await;
    let elsewhere = FaultServer::start_on([127, 0, 0, 2].into()).await;
    elsewhere.route(MANIFEST_PATH, "{}", normal());
    let location = format!("{}{MANIFEST_PATH}", elsewhere.url());
    server.route(MANIFEST_PATH, "", Behaviour::Redirect(location.clone()));

    let err = client(&server)
        .fetch_file(META, LIMIT, false)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RepoError::Redirect { status: 302, location: Some(l), .. } if *l == location),
        "{err:?}"
    );
    assert!(!err.is_transient());
    assert_eq!(elsewhere.connections(), 0);

    // Same host, another port: another origin, refused too.
    let other_port = FaultServer::start().await;
    other_port.route(MANIFEST_PATH, "{}", normal());
    let location = format!("{}{MANIFEST_PATH}", other_port.url());
    server.route(MANIFEST_PATH, "", Behaviour::Redirect(location));
    let err = client(&server)
        .fetch_file(META, LIMIT, false)
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::Redirect { .. }), "{err:?}");
    assert_eq!(other_port.connections(), 0);
}

#[tokio::test]
async fn same_origin_redirect_is_followed() {
    let server = FaultServer::start().await;
    server.route(MANIFEST_PATH, "", Behaviour::Redirect("/moved.json".into()));
    server.route("/moved.json", "{}", normal());
    let fetched = client(&server)
        .fetch_file(META, LIMIT, false)
        .await
        .unwrap();
    assert_eq!(fetched.as_deref(), Some(&b"{}"[..]));

    // A loop ends.
    server.route(MANIFEST_PATH, "", Behaviour::Redirect(MANIFEST_PATH.into()));
    let err = client(&server)
        .fetch_file(META, LIMIT, false)
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::Redirect { .. }), "{err:?}");
}

#[tokio::test]
async fn unsafe_names_make_no_request() {
    let server = FaultServer::start().await;
    let client = client(&server);
    for path in ["../etc", "metadata/a b", ".x", "", "metadata/x?y=1"] {
        let err = client.fetch_file(path, LIMIT, false).await.unwrap_err();
        assert!(matches!(err, RepoError::InvalidArgument { .. }), "{err:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let hash = sha(b"");
    for path in [
        "../x",
        "/blobs/x",
        "blobs//x",
        "blobs/./x",
        "http://evil/x",
        "blobs/x?y",
        "",
    ] {
        let err = client
            .download(path, 0, &hash, &partial_in(&dir))
            .await
            .unwrap_err();
        assert!(
            matches!(err, RepoError::InvalidArgument { .. }),
            "{path}: {err:?}"
        );
    }
    let err = client
        .download("blobs/x", 0, "not-hex", &partial_in(&dir))
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::InvalidArgument { .. }), "{err:?}");
    assert_eq!(server.connections(), 0);
}

#[test]
fn configuration_is_checked() {
    for bad in [
        "ftp://example.com/repo",
        "not a url",
        "http://user:pw@example.com/",
        "https://example.com/repo?x=1",
    ] {
        let err = RepoClient::new(RepoConfig::new(bad)).unwrap_err();
        assert!(matches!(err, RepoError::InvalidConfig(_)), "{bad}: {err:?}");
    }
    let ok = RepoClient::new(RepoConfig::new("https://example.com/repo/")).unwrap();
    assert_eq!(ok.base_url(), "https://example.com/repo");
    let ok = RepoClient::new(RepoConfig::new("http://127.0.0.1:8080")).unwrap();
    assert_eq!(ok.base_url(), "http://127.0.0.1:8080");

    let dir = tempfile::tempdir().unwrap();
    let missing = RepoConfig {
        ca_file: Some(dir.path().join("missing.pem")),
        ..RepoConfig::new("https://example.com")
    };
    assert!(matches!(
        RepoClient::new(missing),
        Err(RepoError::InvalidConfig(_))
    ));
    let garbage_path = dir.path().join("garbage.pem");
    std::fs::write(&garbage_path, "not a certificate\n").unwrap();
    let garbage = RepoConfig {
        ca_file: Some(garbage_path),
        ..RepoConfig::new("https://example.com")
    };
    assert!(matches!(
        RepoClient::new(garbage),
        Err(RepoError::InvalidConfig(_))
    ));
    let zero = RepoConfig {
        idle_timeout: Duration::ZERO,
        ..RepoConfig::new("https://example.com")
    };
    assert!(matches!(
        RepoClient::new(zero),
        Err(RepoError::InvalidConfig(_))
    ));
}

// ---------------------------------------------------------------- downloads

#[tokio::test]
async fn download_complete_and_verified() {
    let server = FaultServer::start().await;
    let body = artifact(300_000);
    let path = blob(&server, &body, normal());
    let dir = tempfile::tempdir().unwrap();
    let partial = partial_in(&dir);

    let outcome = client(&server)
        .download(&path, body.len() as u64, &sha(&body), &partial)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        DownloadOutcome {
            resumed_from: 0,
            bytes_fetched: body.len() as u64
        }
    );
    assert_eq!(std::fs::read(&partial).unwrap(), body);
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].header("range"), None);
}

#[tokio::test]
async fn download_cut_then_resumed_with_range() {
    let server = FaultServer::start().await;
    let body = artifact(200_000);
    let cut = 70_001;
    let path = blob(&server, &body, Behaviour::CutAfter(cut));
    let dir = tempfile::tempdir().unwrap();
    let partial = partial_in(&dir);
    let client = client(&server);

    let err = client
        .download(&path, body.len() as u64, &sha(&body), &partial)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RepoError::ShorterThanDeclared { received, declared, .. }
            if received == cut as u64 && declared == body.len() as u64),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert_eq!(std::fs::read(&partial).unwrap(), &body[..cut]);

    server.route(&format!("/{path}"), body.clone(), normal());
    let outcome = client
        .download(&path, body.len() as u64, &sha(&body), &partial)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        DownloadOutcome {
            resumed_from: cut as u64,
            bytes_fetched: (body.len() - cut) as u64
        }
    );
    assert_eq!(std::fs::read(&partial).unwrap(), body);

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].body_sent(), cut as u64);
    assert_eq!(
        requests[1].header("range"),
        Some(format!("bytes={cut}-").as_str())
    );
    assert_eq!(requests[1].body_sent(), (body.len() - cut) as u64);
}

#[tokio::test]
async fn download_restarts_when_the_server_ignores_range() {
    let server = FaultServer::start().await;
    let body = artifact(50_000);
    let path = blob(&server, &body, Behaviour::IgnoreRange);
    let dir = tempfile::tempdir().unwrap();
    let partial = partial_in(&dir);
    // A prefix of something else: must be replaced, not appended to.
    std::fs::write(&partial, vec![0u8; 10_000]).unwrap();

    let outcome = client(&server)
        .download(&path, body.len() as u64, &sha(&body), &partial)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        DownloadOutcome {
            resumed_from: 0,
            bytes_fetched: body.len() as u64
        }
    );
    assert_eq!(std::fs::read(&partial).unwrap(), body);
    assert_eq!(server.requests()[0].header("range"), Some("bytes=10000-"));
}

#[tokio::test]
async fn download_with_a_wrong_content_range_starts_afresh() {
    let server = FaultServer::start().await;
    let body = artifact(50_000);
    let path = blob(&server, &body, Behaviour::BadContentRange);
    let dir = tempfile::tempdir().unwrap();
    let partial = partial_in(&dir);
    std::fs::write(&partial, &body[..1000]).unwrap();
    let client = client(&server);

    let err = client
        .download(&path, body.len() as u64, &sha(&body), &partial)
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::RangeMismatch { .. }), "{err:?}");
    assert!(err.is_transient());
    assert!(!partial.exists());

    server.route(&format!("/{path}"), body.clone(), normal());
    let outcome = client
        .download(&path, body.len() as u64, &sha(&body), &partial)
        .await
        .unwrap();
    assert_eq!(outcome.resumed_from, 0);
    assert_eq!(std::fs::read(&partial).unwrap(), body);
}

#[tokio::test]
async fn download_of_an_already_complete_partial_makes_no_request() {
    let server = FaultServer::start().await;
    let body = artifact(10_000);
    let path = blob(&server, &body, normal());
    let dir = tempfile::tempdir().unwrap();
    let partial = partial_in(&dir);
    std::fs::write(&partial, &body).unwrap();

    let outcome = client(&server)
        .download(&path, body.len() as u64, &sha(&body), &partial)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        DownloadOutcome {
            resumed_from: body.len() as u64,
            bytes_fetched: 0
        }
    );
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn download_500_is_transient() {
    let server = FaultServer::start().await;
    let body = artifact(1000);
    let path = blob(&server, &body, Behaviour::Status(500));
    let dir = tempfile::tempdir().unwrap();
    let err = client(&server)
        .download(&path, body.len() as u64, &sha(&body), &partial_in(&dir))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RepoError::Http { status: 500, .. }),
        "{err:?}"
    );
    assert!(err.is_transient());

    server.route(&format!("/{path}"), body.clone(), Behaviour::Status(403));
    let err = client(&server)
        .download(&path, body.len() as u64, &sha(&body), &partial_in(&dir))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RepoError::Http { status: 403, .. }),
        "{err:?}"
    );
    assert!(!err.is_transient());
}

#[tokio::test]
async fn a_download_past_its_deadline_is_cut_and_resumable() {
    // Bytes keep coming, often enough for the idle timeout and the rate
    // floor's long window: only the overall deadline ends it.
    let server = FaultServer::start().await;
    let body = artifact(1_000_000);
    let path = blob(
        &server,
        &body,
        Behaviour::Trickle(Duration::from_millis(20)),
    );
    let dir = tempfile::tempdir().unwrap();
    let partial = partial_in(&dir);
    let client = client_with(&server, |c| {
        c.idle_timeout = Duration::from_secs(30);
        c.download_deadline = Duration::from_millis(500);
    });
    let err = client
        .download(&path, body.len() as u64, &sha(&body), &partial)
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::Deadline { .. }), "{err:?}");
    assert!(err.is_transient());
    assert!(err.to_string().contains("deadline"), "{err}");
    let kept = std::fs::read(&partial).unwrap();
    assert!(body.starts_with(&kept));
}

#[tokio::test]
async fn download_stall_ends_within_the_idle_timeout() {
    let server = FaultServer::start().await;
    let body = artifact(100_000);
    let path = blob(&server, &body, Behaviour::StallAfter(5000));
    let dir = tempfile::tempdir().unwrap();
    let partial = partial_in(&dir);
    let idle = Duration::from_millis(300);
    let client = client_with(&server, |c| c.idle_timeout = idle);

    let started = Instant::now();
    let err = client
        .download(&path, body.len() as u64, &sha(&body), &partial)
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, RepoError::Stalled { .. }), "{err:?}");
    assert!(err.is_transient());
    assert!(elapsed >= idle && elapsed < idle * 4, "{elapsed:?}");
    // What arrived is kept for a resume.
    assert_eq!(std::fs::read(&partial).unwrap(), &body[..5000]);
}

#[tokio::test]
async fn a_trickling_server_is_cut_off_however_often_it_sends() {
    // One byte every 100 ms is never silent for the 300 ms idle timeout, and
    // would take 100,000 s for this artifact: the rate floor cuts it.
    let server = FaultServer::start().await;
    let body = artifact(1_000_000);
    let path = blob(
        &server,
        &body,
        Behaviour::Trickle(Duration::from_millis(100)),
    );
    let dir = tempfile::tempdir().unwrap();
    let partial = partial_in(&dir);
    let idle = Duration::from_millis(300);
    let client = client_with(&server, |c| c.idle_timeout = idle);
    let started = Instant::now();
    let err = client
        .download(&path, body.len() as u64, &sha(&body), &partial)
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::TooSlow { .. }), "{err:?}");
    assert!(err.is_transient());
    assert!(err.to_string().contains("slower than the floor"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // What arrived stays for a resume.
    let kept = std::fs::read(&partial).unwrap();
    assert!(!kept.is_empty() && body.starts_with(&kept));

    // The manifest too: a trickled manifest never reaches the parser.
    server.route(
        MANIFEST_PATH,
        vec![b'{'; 10_000],
        Behaviour::Trickle(Duration::from_millis(100)),
    );
    let client = client_with(&server, |c| c.idle_timeout = idle);
    let err = client.fetch_file(META, LIMIT, false).await.unwrap_err();
    assert!(matches!(err, RepoError::TooSlow { .. }), "{err:?}");
}

#[tokio::test]
async fn stall_before_the_headers_ends_too() {
    // A listener that accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let mut cfg = config(&silent_url);
    cfg.connect_timeout = Duration::from_millis(300);
    cfg.idle_timeout = Duration::from_millis(300);
    let client = RepoClient::build(cfg, false).unwrap();
    let started = Instant::now();
    let err = client.fetch_file(META, LIMIT, false).await.unwrap_err();
    assert!(matches!(err, RepoError::Stalled { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn download_longer_than_declared_is_refused_and_deleted() {
    let server = FaultServer::start().await;
    let body = artifact(40_000);
    let path = format!("blobs/sha256/{}", sha(&body));
    let mut longer = body.clone();
    longer.extend_from_slice(b"trailing junk");
    let dir = tempfile::tempdir().unwrap();
    let partial = partial_in(&dir);
    let client = client(&server);

    // Delimited by closing: cut while streaming. An honest but too large
    // Content-Length: refused from the headers.
    for content_length in [None, Some(longer.len() as u64)] {
        server.route(
            &format!("/{path}"),
            longer.clone(),
            Behaviour::Raw { content_length },
        );
        let err = client
            .download(&path, body.len() as u64, &sha(&body), &partial)
            .await
            .unwrap_err();
        assert!(
            matches!(err, RepoError::LongerThanDeclared { declared, .. } if declared == body.len() as u64),
            "{content_length:?}: {err:?}"
        );
        assert!(!err.is_transient());
        assert!(!partial.exists(), "{content_length:?}");
    }
}

#[tokio::test]
async fn download_with_a_short_content_length_is_short() {
    let server = FaultServer::start().await;
    let body = artifact(40_000);
    // The server claims (and so sends, as far as HTTP goes) 100 bytes less.
    let path = blob(
        &server,
        &body,
        Behaviour::Raw {
            content_length: Some(body.len() as u64 - 100),
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let partial = partial_in(&dir);
    let err = client(&server)
        .download(&path, body.len() as u64, &sha(&body), &partial)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RepoError::ShorterThanDeclared { received, .. } if received == body.len() as u64 - 100),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert_eq!(
        std::fs::metadata(&partial).unwrap().len(),
        body.len() as u64 - 100
    );
}

#[tokio::test]
async fn download_with_wrong_bytes_is_a_checksum_mismatch() {
    let server = FaultServer::start().await;
    let body = artifact(30_000);
    let mut wrong = body.clone();
    wrong[12_345] ^= 1;
    let path = format!("blobs/sha256/{}", sha(&body));
    server.route(&format!("/{path}"), wrong.clone(), normal());
    let dir = tempfile::tempdir().unwrap();
    let partial = partial_in(&dir);

    let err = client(&server)
        .download(&path, body.len() as u64, &sha(&body), &partial)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RepoError::ChecksumMismatch { expected, actual, .. }
            if *expected == sha(&body) && *actual == sha(&wrong)),
        "{err:?}"
    );
    assert!(!err.is_transient());
    assert!(!partial.exists());
}

#[tokio::test]
async fn download_over_the_size_limit_makes_no_request() {
    let server = FaultServer::start().await;
    let body = artifact(2000);
    let path = blob(&server, &body, normal());
    let dir = tempfile::tempdir().unwrap();
    let partial = partial_in(&dir);
    let client = client_with(&server, |c| c.max_artifact_size = 1999);

    let err = client
        .download(&path, body.len() as u64, &sha(&body), &partial)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RepoError::TooLarge { limit: 1999, .. }),
        "{err:?}"
    );
    assert!(!err.is_transient());
    assert_eq!(server.connections(), 0);
    assert!(server.requests().is_empty());
    assert!(!partial.exists());
}

#[tokio::test]
async fn download_without_disk_space_makes_no_request() {
    let server = FaultServer::start().await;
    let body = artifact(2000);
    let path = blob(&server, &body, normal());
    let dir = tempfile::tempdir().unwrap();
    let client = client_with(&server, |c| c.max_artifact_size = u64::MAX);

    // 1 EiB fits on no test machine's disk.
    let err = client
        .download(&path, 1 << 60, &sha(&body), &partial_in(&dir))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RepoError::NoSpace { needed, dir: d, .. }
            if *needed == (1 << 60) + FREE_SPACE_MARGIN && d == dir.path()),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert_eq!(server.connections(), 0);
}

#[test]
fn space_check_counts_the_margin() {
    let dir = Path::new("/somewhere");
    check_space(dir, 1000, 1000 + FREE_SPACE_MARGIN).unwrap();
    let err = check_space(dir, 1000, 1000 + FREE_SPACE_MARGIN - 1).unwrap_err();
    assert!(matches!(
        err,
        RepoError::NoSpace { needed, available, .. }
            if needed == 1000 + FREE_SPACE_MARGIN && available == needed - 1
    ));
    assert!(available_space(Path::new("/")).unwrap() > 0);
    assert!(available_space(Path::new("/does/not/exist")).is_err());
}

/// A 1 MiB tmpfs, unmounted on drop; `None` where mounting is not allowed.
struct SmallTmpfs {
    dir: tempfile::TempDir,
}

impl SmallTmpfs {
    fn mount() -> Option<Self> {
        Self::mount_sized(c"size=1m")
    }

    fn mount_sized(options: &std::ffi::CStr) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let target = CString::new(dir.path().as_os_str().as_bytes()).ok()?;
        // SAFETY: all arguments are valid NUL-terminated strings.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                options.as_ptr().cast(),
            )
        };
        (rc == 0).then_some(SmallTmpfs { dir })
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        if let Ok(target) = CString::new(self.dir.path().as_os_str().as_bytes()) {
            // SAFETY: `target` is a valid NUL-terminated string.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

#[tokio::test]
async fn download_on_a_full_tmpfs_is_refused() {
    let Some(tmpfs) = SmallTmpfs::mount() else {
        eprintln!("cannot mount a tmpfs here: covered by space_check_counts_the_margin only");
        return;
    };
    let server = FaultServer::start().await;
    let small = artifact(1000);
    let small_path = blob(&server, &small, normal());
    let partial = tmpfs.dir.path().join("artifact.partial");
    let client = client(&server);

    // 1000 bytes + 1 MiB margin do not fit in 1 MiB.
    let err = client
        .download(&small_path, small.len() as u64, &sha(&small), &partial)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RepoError::NoSpace { available, .. } if *available <= 1024 * 1024),
        "{err:?}"
    );
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn a_disk_that_fills_during_the_download_keeps_the_prefix_and_resumes() {
    let Some(tmpfs) = SmallTmpfs::mount_sized(c"size=4m") else {
        eprintln!("cannot mount a tmpfs here: not covered");
        return;
    };
    let server = FaultServer::start().await;
    // 1 MB (plus the 1 MiB margin) fits in 4 MiB when the download starts;
    // during its pause another writer takes all the rest.
    let body = artifact(1_000_000);
    let path = blob(
        &server,
        &body,
        Behaviour::PauseAfter(300_000, Duration::from_millis(800)),
    );
    let partial = tmpfs.dir.path().join("artifact.partial");
    let filler = tmpfs.dir.path().join("filler");
    let (p, f) = (partial.clone(), filler.clone());
    let fill = tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0) == 0 {
            assert!(Instant::now() < deadline, "the download never started");
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut file = std::fs::File::create(&f).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
    });
    let client = client(&server);
    let err = client
        .download(&path, body.len() as u64, &sha(&body), &partial)
        .await
        .unwrap_err();
    fill.await.unwrap();
    assert!(matches!(&err, RepoError::NoSpace { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains(&tmpfs.dir.path().display().to_string()),
        "the error names the directory: {err}"
    );
    assert!(err.is_transient(), "a full disk is retried, not a refusal");
    let kept = std::fs::read(&partial).unwrap();
    assert!(
        !kept.is_empty() && body.starts_with(&kept),
        "a prefix is kept"
    );

    // Room again: the next attempt resumes from the prefix.
    std::fs::remove_file(&filler).unwrap();
    server.route(&format!("/{path}"), body.clone(), normal());
    let outcome = client
        .download(&path, body.len() as u64, &sha(&body), &partial)
        .await
        .unwrap();
    assert_eq!(outcome.resumed_from, kept.len() as u64);
    assert_eq!(std::fs::read(&partial).unwrap(), body);
}
