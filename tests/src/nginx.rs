//! A real nginx (Debian's) serving an update repository as static files, the
//! way a device's update server would: `sendfile`, ETags, byte ranges, no
//! directory listings.
//!
//! [`Nginx::serve`] writes a config into a private temporary directory (which
//! also holds its pid file, logs and temp paths, so nothing outside is
//! touched), starts `/usr/sbin/nginx -c <config> -g 'daemon off;'` as a child
//! process on a free loopback port, and returns once it answers. It runs as a
//! single process (`master_process off`) spawned with a parent-death signal, so
//! even a SIGKILLed test leaves no nginx behind; dropping the [`Nginx`] stops it
//! and removes the directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use crate::systemd::tied;
pub use crate::tls::Tls;
use crate::{server, tools};

/// How long nginx may take to answer its first request.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How often [`Nginx::serve`] tries again when the free port it picked was
/// taken before nginx could bind it.
const PORT_ATTEMPTS: usize = 5;

/// A running nginx serving one directory on `127.0.0.1`.
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    port: u16,
    https_port: Option<u16>,
    dir: TempDir,
}

impl Nginx {
    /// Serves `root` (the repository directory) at `http://127.0.0.1:<port>/`
    /// on a free port, with `sendfile on`, `autoindex off`, `etag on` and
    /// nginx's own Range support; returns once it answers. Errors name a missing
    /// nginx (`apt-get install nginx`) or show nginx's error log.
    pub fn serve(root: &Path) -> Result<Nginx> {
        Self::serve_with(root, None, &[], None)
    }

    /// Like [`Nginx::serve`], and also over `https` with `tls` on a second
    /// free port ([`Nginx::https_url`]).
    pub fn serve_tls(root: &Path, tls: &Tls) -> Result<Nginx> {
        Self::serve_with(root, None, &[], Some(tls))
    }

    /// Like [`Nginx::serve`], listening also on `addrs` (the host ends of
    /// boards' network links), on the same port.
    pub fn serve_also_on(root: &Path, addrs: &[std::net::Ipv4Addr]) -> Result<Nginx> {
        Self::serve_with(root, None, addrs, None)
    }

    /// Like [`Nginx::serve`], on a given port (a server that comes back where a
    /// failing one stood, in outage tests).
    pub fn serve_on(root: &Path, port: u16) -> Result<Nginx> {
        Self::serve_with(root, Some(port), &[], None)
    }

    fn serve_with(
        root: &Path,
        fixed_port: Option<u16>,
        extra: &[std::net::Ipv4Addr],
        tls: Option<&Tls>,
    ) -> Result<Nginx> {
        let nginx = tools::find("nginx", "nginx")?;
        let root = root
            .canonicalize()
            .with_context(|| format!("cannot serve `{}`: no such directory", root.display()))?;
        if !root.is_dir() {
            bail!("cannot serve `{}`: not a directory", root.display());
        }
        let text = root.to_string_lossy();
        if text.contains(['"', '\\', '$']) {
            bail!(
                "cannot serve `{}`: nginx config strings cannot hold `\"`, `\\` or `$`",
                root.display()
            );
        }
        if let Some(port) = fixed_port {
            return match Self::start(&nginx, &root, port, extra, tls) {
                Ok(started) => Ok(started),
                Err(Start::PortTaken(err) | Start::Failed(err)) => Err(err),
            };
        }
        let mut last_err = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = server::free_port()?;
            match Self::start(&nginx, &root, port, extra, tls) {
                Ok(started) => return Ok(started),
                Err(Start::PortTaken(err)) => last_err = Some(err),
                Err(Start::Failed(err)) => return Err(err),
            }
        }
        Err(last_err
            .unwrap_or_else(|| anyhow::anyhow!("no attempt made"))
            .context(format!(
                "nginx found no free port in {PORT_ATTEMPTS} attempts"
            )))
    }

    fn start(
        nginx: &Path,
        root: &Path,
        port: u16,
        extra: &[std::net::Ipv4Addr],
        tls: Option<&Tls>,
    ) -> std::result::Result<Nginx, Start> {
        let https = match tls {
            Some(tls) => Some((server::free_port().map_err(Start::Failed)?, tls)),
            None => None,
        };
        let dir = tempfile::Builder::new()
            .prefix("ferry-nginx-")
            .tempdir()
            .context("cannot create a temporary directory for nginx")
            .map_err(Start::Failed)?;
        let conf = dir.path().join("nginx.conf");
        fs::write(&conf, config(dir.path(), root, port, extra, https))
            .with_context(|| format!("cannot write `{}`", conf.display()))
            .map_err(Start::Failed)?;
        let mut cmd = Command::new(nginx);
        cmd.arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = tied::spawn(cmd).map_err(Start::Failed)?;
        let mut started = Nginx {
            child,
            port,
            https_port: https.map(|(p, _)| p),
            dir,
        };
        let url = started.url();
        match server::wait_http_while(&format!("{url}/"), START_TIMEOUT, &mut started.child) {
            Ok(_) => Ok(started),
            Err(err) => {
                let log = started.error_log();
                let err = err.context(format!(
                    "nginx did not serve `{}` at {url}\n--- error.log (tail)\n{}",
                    root.display(),
                    tools::tail(log.as_bytes())
                ));
                if log.contains("Address already in use") {
                    Err(Start::PortTaken(err))
                } else {
                    Err(Start::Failed(err))
                }
            }
        }
    }

    /// `https://localhost:<port>` when serving with [`Nginx::serve_tls`].
    pub fn https_url(&self) -> Option<String> {
        self.https_port.map(|p| format!("https://localhost:{p}"))
    }

    /// The port nginx listens on (on `127.0.0.1`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`, without a trailing `/`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The access log so far, one line per request:
    /// `"<request line>" <status> <bytes sent> "<Range header>"`.
    pub fn access_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// nginx's error log so far.
    pub fn error_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// The private directory holding the config and logs.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for Nginx {
    /// Stops nginx (SIGKILL: it serves nothing that must be flushed) and
    /// removes its directory.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Why one start failed: a port someone else took in the meantime is worth
/// another try, anything else is not.
enum Start {
    PortTaken(anyhow::Error),
    Failed(anyhow::Error),
}

/// The whole nginx config: every path in `dir`, serving `root` on `port`.
/// Paths are quoted; one with a `"` or `\` in it would need escaping, and
/// [`Nginx::serve`] refuses it.
fn config(
    dir: &Path,
    root: &Path,
    port: u16,
    extra: &[std::net::Ipv4Addr],
    https: Option<(u16, &Tls)>,
) -> String {
    let d = dir.display();
    let root = root.display();
    let https_server = https
        .map(|(p, tls)| {
            format!(
                r#"
    server {{
        listen 127.0.0.1:{p} ssl;
        server_name localhost;
        ssl_certificate "{}";
        ssl_certificate_key "{}";
        root "{root}";
        autoindex off;
        etag on;
    }}"#,
                tls.cert.display(),
                tls.key.display()
            )
        })
        .unwrap_or_default();
    let extra_listen: String = extra
        .iter()
        .map(|a| format!("\n        listen {a}:{port};"))
        .collect();
    format!(
        r#"# Written by ferry-tests (tests/src/nginx.rs) for one test.
master_process off;
worker_processes 1;
pid "{d}/nginx.pid";
error_log "{d}/error.log" notice;

events {{
    worker_connections 256;
}}

http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    log_format ferry '"$request" $status $body_bytes_sent "$http_range"';
    access_log "{d}/access.log" ferry;
    client_body_temp_path "{d}/client_body";
    proxy_temp_path "{d}/proxy";
    fastcgi_temp_path "{d}/fastcgi";
    uwsgi_temp_path "{d}/uwsgi";
    scgi_temp_path "{d}/scgi";
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 10;

    server {{
        listen 127.0.0.1:{port};{extra_listen}
        server_name localhost;
        root "{root}";
        autoindex off;
        etag on;
    }}{https_server}
}}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    fn raw_request(port: u16, request: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    }

    fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
        let head = answer.split("\r\n\r\n").next()?;
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    #[test]
    fn serves_files_with_ranges_and_etags_but_no_listing() {
        let repo = tempfile::tempdir().unwrap();
        fs::create_dir(repo.path().join("blobs")).unwrap();
        fs::write(repo.path().join("blobs/artifact.bin"), b"0123456789").unwrap();
        let nginx = Nginx::serve(repo.path()).unwrap();
        assert!(nginx.url().ends_with(&format!(":{}", nginx.port())));

        let (code, body) = server::get(&format!("{}/blobs/artifact.bin", nginx.url())).unwrap();
        assert_eq!((code, body.as_str()), (200, "0123456789"));
        let (code, _) = server::get(&format!("{}/blobs/missing", nginx.url())).unwrap();
        assert_eq!(code, 404);
        let (code, _) = server::get(&format!("{}/blobs/", nginx.url())).unwrap();
        assert_eq!(code, 403, "autoindex must be off");

        let answer = raw_request(
            nginx.port(),
            "GET /blobs/artifact.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nRange: bytes=2-5\r\nConnection: close\r\n\r\n",
        );
        assert!(answer.starts_with("HTTP/1.1 206 "), "{answer}");
        assert_eq!(header(&answer, "Content-Range"), Some("bytes 2-5/10"));
        assert!(answer.ends_with("\r\n\r\n2345"), "{answer}");

        let etag = header(&answer, "ETag").expect("an ETag").to_string();
        let answer = raw_request(
            nginx.port(),
            &format!("GET /blobs/artifact.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-None-Match: {etag}\r\nConnection: close\r\n\r\n"),
        );
        assert!(answer.starts_with("HTTP/1.1 304 "), "{answer}");

        let log = nginx.access_log();
        assert!(
            log.contains("\"GET /blobs/artifact.bin HTTP/1.1\" 206 4 \"bytes=2-5\""),
            "{log}"
        );
    }

    #[test]
    fn leaves_nothing_behind() {
        let repo = tempfile::tempdir().unwrap();
        let nginx = Nginx::serve(repo.path()).unwrap();
        let pid = nginx.child.id();
        let dir = nginx.dir();
        let url = nginx.url();
        drop(nginx);
        assert!(!dir.exists());
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
        assert!(server::get(&url).is_err());
    }

    #[test]
    fn a_missing_root_is_named() {
        let err = Nginx::serve(Path::new("/ferry-no-such-repo")).unwrap_err();
        assert!(
            format!("{err:#}").contains("/ferry-no-such-repo"),
            "{err:#}"
        );
    }
}
