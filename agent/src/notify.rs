//! The service-manager notification protocol (`sd_notify(3)`), without libsystemd.
//!
//! `ferryd run` is a `Type=notify` service: it says `READY=1` once it is up, keeps
//! `STATUS=` saying what it is doing, pings `WATCHDOG=1` within `WatchdogSec=`, and
//! says `STOPPING=1` on the way out. The protocol is one datagram of `KEY=VALUE`
//! lines to the socket named by `$NOTIFY_SOCKET`, so std's `UnixDatagram` is all it
//! takes. Every function is a no-op when `$NOTIFY_SOCKET` is unset (the agent run
//! by hand, or by a test), and a failed send is logged, never fatal: the agent's
//! work does not depend on systemd hearing about it.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Tells systemd that start-up is complete (`READY=1`).
pub fn ready() {
    notify("READY=1");
}

/// Sets the one-line status `systemctl status` shows (`STATUS=`). Newlines in
/// `text` become spaces: the protocol separates assignments with newlines.
pub fn status(text: &str) {
    notify(&status_message(text));
}

/// Pings the watchdog (`WATCHDOG=1`); see [`watchdog_interval`] for how often.
pub fn watchdog() {
    notify("WATCHDOG=1");
}

/// Tells systemd that the service is shutting down (`STOPPING=1`).
pub fn stopping() {
    notify("STOPPING=1");
}

/// The watchdog timeout systemd enforces on this process (`WatchdogSec=`, passed
/// as `$WATCHDOG_USEC`), or `None` when there is none, when it is malformed, or when
/// `$WATCHDOG_PID` names another process. Ping at half of it, as `sd_watchdog_enabled(3)`
/// recommends.
pub fn watchdog_interval() -> Option<Duration> {
    let usec = std::env::var_os("WATCHDOG_USEC");
    let pid = std::env::var_os("WATCHDOG_PID");
    parse_watchdog(usec.as_deref(), pid.as_deref(), std::process::id())
}

fn notify(state: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(err) = send_to(&socket, state) {
        let what = state.split('=').next().unwrap_or(state);
        log::warn!(
            "cannot send {what} to the service manager at `{}`: {err}",
            socket.to_string_lossy()
        );
    }
}

fn status_message(text: &str) -> String {
    format!("STATUS={}", text.replace(['\n', '\r'], " "))
}

/// Sends one notification datagram to `socket`, a `$NOTIFY_SOCKET` value: a path,
/// or an abstract socket name written with a leading `@`.
fn send_to(socket: &OsStr, state: &str) -> io::Result<()> {
    let addr = socket_addr(socket)?;
    let sock = UnixDatagram::unbound()?;
    let sent = sock.send_to_addr(state.as_bytes(), &addr)?;
    if sent != state.len() {
        return Err(io::Error::other(format!(
            "short write: {sent} of {} bytes",
            state.len()
        )));
    }
    Ok(())
}

fn socket_addr(socket: &OsStr) -> io::Result<SocketAddr> {
    let bytes = socket.as_bytes();
    match bytes.first() {
        Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]),
        Some(b'/') => SocketAddr::from_pathname(socket),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "unsupported socket address (expected an absolute path or `@name`)",
        )),
    }
}

fn parse_watchdog(usec: Option<&OsStr>, pid: Option<&OsStr>, own_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        let pid: u32 = pid.to_str()?.parse().ok()?;
        if pid != own_pid {
            return None;
        }
    }
    let usec: u64 = usec?.to_str()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn os(s: &str) -> OsString {
        OsString::from(s)
    }

    fn receive(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let receiver = UnixDatagram::bind(&path).unwrap();
        send_to(path.as_os_str(), "READY=1").unwrap();
        assert_eq!(receive(&receiver), "READY=1");
        send_to(path.as_os_str(), &status_message("checking\nfor updates")).unwrap();
        assert_eq!(receive(&receiver), "STATUS=checking for updates");
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        let name = format!("ferryd-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let receiver = UnixDatagram::bind_addr(&addr).unwrap();
        send_to(&os(&format!("@{name}")), "WATCHDOG=1").unwrap();
        assert_eq!(receive(&receiver), "WATCHDOG=1");
    }

    #[test]
    fn reports_a_missing_socket_and_a_bad_address() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent");
        assert!(send_to(missing.as_os_str(), "READY=1").is_err());
        let err = send_to(&os("relative/path"), "READY=1").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(send_to(&os(""), "READY=1").is_err());
    }

    #[test]
    fn without_notify_socket_nothing_is_sent() {
        // The test process is not run by systemd: these must return quietly.
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            ready();
            status("idle");
            watchdog();
            stopping();
        }
    }

    #[test]
    fn watchdog_interval_honours_watchdog_pid() {
        let p = |s: &'static str| Some(OsStr::new(s));
        assert_eq!(
            parse_watchdog(p("30000000"), None, 7),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_watchdog(p("500"), p("7"), 7),
            Some(Duration::from_micros(500))
        );
        assert_eq!(parse_watchdog(p("30000000"), p("8"), 7), None);
        assert_eq!(parse_watchdog(p("30000000"), p("x"), 7), None);
        assert_eq!(parse_watchdog(None, None, 7), None);
        assert_eq!(parse_watchdog(p("0"), None, 7), None);
        assert_eq!(parse_watchdog(p("-5"), None, 7), None);
        assert_eq!(parse_watchdog(p(""), None, 7), None);
    }
}
