//! A real Mosquitto broker (Debian's) on loopback with a password file, the
//! way a home's broker for Home Assistant is set up, and a subscriber made of
//! Debian's `mosquitto_sub` that records what the broker carries.
//!
//! [`Mosquitto::start`] writes a config, a password file (made with
//! `mosquitto_passwd`) and a log into a private directory, and starts
//! `mosquitto -c <config>` as a child tied to the test (a parent-death
//! signal), on a free port. [`Mosquitto::stop`] and [`Mosquitto::restart`]
//! take it away and bring it back on the same port, for outage tests; it
//! keeps nothing across a restart (no persistence), as a broker that lost
//! its retained messages would. [`Mosquitto::start_tls`] adds a TLS
//! listener with a certificate from [`crate::tls::private_ca`].

use std::io::{BufRead as _, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use tempfile::TempDir;

use crate::systemd::tied;
use crate::tls::Tls;
use crate::{server, tools};

/// The user every client logs in as.
pub const USER: &str = "ferry";
/// Its password.
pub const PASSWORD: &str = "mqtt-test-password";

/// A running broker.
pub struct Mosquitto {
    child: Option<Child>,
    port: u16,
    tls_port: Option<u16>,
    dir: TempDir,
}

impl Mosquitto {
    /// A broker on `127.0.0.1` on a free port that lets in only [`USER`].
    pub fn start() -> Result<Mosquitto> {
        Self::start_with(None)
    }

    /// Like [`Mosquitto::start`], and also over TLS with `tls` on a second
    /// free port ([`Mosquitto::tls_url`]); the harness's own clients keep
    /// to the plain listener.
    pub fn start_tls(tls: &Tls) -> Result<Mosquitto> {
        Self::start_with(Some(tls))
    }

    fn start_with(tls: Option<&Tls>) -> Result<Mosquitto> {
        let dir = tempfile::Builder::new()
            .prefix("ferry-mosquitto-")
            .tempdir()?;
        let passwords = dir.path().join("passwords");
        std::fs::write(&passwords, "")?;
        let out = Command::new(tools::find("mosquitto_passwd", "mosquitto")?)
            .args(["-b"])
            .arg(&passwords)
            .args([USER, PASSWORD])
            .output()
            .context("cannot run mosquitto_passwd")?;
        if !out.status.success() {
            bail!(
                "mosquitto_passwd failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let port = server::free_port()?;
        let mut config = format!(
            "allow_anonymous false\npassword_file {}\npersistence false\nlog_dest file {}\nlog_type all\nlistener {port} 127.0.0.1\n",
            passwords.display(),
            dir.path().join("mosquitto.log").display()
        );
        let tls_port = match tls {
            Some(tls) => {
                let tls_port = server::free_port()?;
                // Mosquitto reads certificates after dropping root for its
                // own user, who cannot enter the tests' private directories:
                // it keeps root here (a loopback broker for one test).
                config.insert_str(0, "user root\n");
                config.push_str(&format!(
                    "listener {tls_port} 127.0.0.1\ncertfile {}\nkeyfile {}\n",
                    tls.cert.display(),
                    tls.key.display()
                ));
                Some(tls_port)
            }
            None => None,
        };
        std::fs::write(dir.path().join("mosquitto.conf"), config)?;
        let mut broker = Mosquitto {
            child: None,
            port,
            tls_port,
            dir,
        };
        broker.restart()?;
        Ok(broker)
    }

    /// Starts the broker again on its port (after [`Mosquitto::stop`]).
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        let mut cmd = Command::new(tools::find("mosquitto", "mosquitto")?);
        cmd.arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = tied::spawn(cmd)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "mosquitto exited ({status}) before it listened on {}\n--- log\n{}",
                    self.port,
                    self.log()
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!(
                    "mosquitto did not listen on {} within 10 s\n--- log\n{}",
                    self.port,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
        Ok(())
    }

    /// Stops the broker (SIGKILL: clients see the connection drop).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The broker's port on `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `mqtt://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// `mqtts://127.0.0.1:<port>` of the TLS listener, when it has one.
    pub fn tls_url(&self) -> Option<String> {
        self.tls_port.map(|p| format!("mqtts://127.0.0.1:{p}"))
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// Publishes `payload` to `topic` with `mosquitto_pub` (QoS 1).
    pub fn publish(&self, topic: &str, payload: &str) -> Result<()> {
        let out = Command::new(tools::find("mosquitto_pub", "mosquitto-clients")?)
            .args(self.login())
            .args(["-q", "1", "-t", topic, "-m", payload])
            .output()?;
        if !out.status.success() {
            bail!(
                "mosquitto_pub to `{topic}` failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// A subscriber to `filters` that records every message from now on.
    pub fn subscribe(&self, filters: &[&str]) -> Result<Subscriber> {
        let mut cmd = Command::new(tools::find("mosquitto_sub", "mosquitto-clients")?);
        cmd.args(self.login())
            // Retained flag, topic, payload: one message per line.
            .args(["-F", "%r %t %p", "-q", "1"]);
        for f in filters {
            cmd.args(["-t", f]);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = tied::spawn(cmd)?;
        let stdout = child.stdout.take().context("mosquitto_sub's stdout")?;
        let messages = Arc::new(Mutex::new(Vec::new()));
        let sink = messages.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut parts = line.splitn(3, ' ');
                let (Some(r), Some(topic)) = (parts.next(), parts.next()) else {
                    continue;
                };
                sink.lock().unwrap().push(Message {
                    retained: r == "1",
                    topic: topic.to_owned(),
                    payload: parts.next().unwrap_or("").to_owned(),
                });
            }
        });
        Ok(Subscriber { child, messages })
    }

    /// Waits until the broker holds a retained message on `topic` that
    /// satisfies `pred`, as a newcomer would receive it (each look is a
    /// fresh subscription: a live copy does not count).
    pub fn wait_retained(
        &self,
        topic: &str,
        timeout: Duration,
        pred: impl Fn(&Message) -> bool,
    ) -> Result<Message> {
        let deadline = Instant::now() + timeout;
        loop {
            let look = self.subscribe(&[topic])?;
            let until = Instant::now() + Duration::from_secs(2);
            while Instant::now() < until {
                if let Some(m) = look.on(topic).into_iter().find(|m| m.retained && pred(m)) {
                    return Ok(m);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if Instant::now() > deadline {
                bail!(
                    "no retained message on `{topic}` as expected within {timeout:?}; the broker holds: {:#?}",
                    look.on(topic)
                );
            }
        }
    }

    fn login(&self) -> Vec<String> {
        vec![
            "-h".into(),
            "127.0.0.1".into(),
            "-p".into(),
            self.port.to_string(),
            "-u".into(),
            USER.into(),
            "-P".into(),
            PASSWORD.into(),
        ]
    }

    /// Writes the password to `path` (a file an agent config names).
    pub fn write_password(path: &Path) -> Result<PathBuf> {
        std::fs::write(path, format!("{PASSWORD}\n"))?;
        Ok(path.to_owned())
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One message a [`Subscriber`] saw.
#[derive(Debug, Clone)]
pub struct Message {
    /// Whether the broker delivered it as retained (stored before we came).
    pub retained: bool,
    /// Its topic.
    pub topic: String,
    /// Its payload as text.
    pub payload: String,
}

impl Message {
    /// The payload as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.payload).unwrap_or(serde_json::Value::Null)
    }
}

/// A running `mosquitto_sub`; stops when dropped.
pub struct Subscriber {
    child: Child,
    messages: Arc<Mutex<Vec<Message>>>,
}

impl Subscriber {
    /// Every message so far, in order.
    pub fn messages(&self) -> Vec<Message> {
        self.messages.lock().unwrap().clone()
    }

    /// The messages on `topic` so far, in order.
    pub fn on(&self, topic: &str) -> Vec<Message> {
        self.messages()
            .into_iter()
            .filter(|m| m.topic == topic)
            .collect()
    }

    /// Waits until a message on `topic` satisfies `pred`, and returns it.
    pub fn wait_for(
        &self,
        topic: &str,
        timeout: Duration,
        pred: impl Fn(&Message) -> bool,
    ) -> Result<Message> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self.on(topic).into_iter().find(|m| pred(m)) {
                return Ok(m);
            }
            if Instant::now() > deadline {
                bail!(
                    "no message on `{topic}` as expected within {timeout:?}; seen there: {:#?}",
                    self.on(topic)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
