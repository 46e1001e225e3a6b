//! The install gate: whether a verified release may be swapped in and the
//! app restarted now. Downloading and verifying happen at any time; the swap
//! waits for the install window (local time) and for every inhibitor to be
//! released: a file the app creates while it must not be restarted, and
//! file descriptors handed out by the D-Bus `Inhibit` call (released when
//! the holder closes its end, or dies, as logind's inhibitors are). An
//! operator's explicit install skips the window, and with `--force` the
//! inhibitors too.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::AsyncReadExt as _;
use tokio::sync::Notify;

use super::{Agent, Intent};
use crate::config::{AppSettings, InstallWindow};
use crate::systemd::UnitManager;

/// One inhibitor held over D-Bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// Which app it holds back.
    pub app: String,
    /// Who holds it (free text from the caller).
    pub who: String,
    /// Why (free text from the caller).
    pub why: String,
    id: u64,
}

/// The inhibitors held over D-Bus, shared by the API and the driver.
#[derive(Debug, Clone, Default)]
pub struct Inhibitors {
    held: Arc<Mutex<Vec<Held>>>,
    released: Arc<Notify>,
}

impl Inhibitors {
    /// Holds back `app`'s installs until the returned descriptor (the write
    /// end of a pipe) is closed by everyone who has it. Needs a Tokio runtime.
    pub fn hold(&self, app: &str, who: &str, why: &str) -> std::io::Result<OwnedFd> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let (ours, theirs) = std::io::pipe()?;
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let mut watch = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(ours))?;
        self.lock().push(Held {
            app: app.to_owned(),
            who: who.to_owned(),
            why: why.to_owned(),
            id,
        });
        let me = self.clone();
        tokio::spawn(async move {
            // The read end reaches its end once every copy of the write end
            // is closed; a holder that writes is only read past.
            let mut buf = [0u8; 64];
            while let Ok(n) = watch.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
            me.lock().retain(|h| h.id != id);
            me.released.notify_waiters();
        });
        let theirs = OwnedFd::from(theirs);
        Ok(theirs)
    }

    /// The inhibitors held for `app`.
    pub fn held_for(&self, app: &str) -> Vec<Held> {
        self.lock()
            .iter()
            .filter(|h| h.app == app)
            .cloned()
            .collect()
    }

    /// Resolves when any inhibitor is released.
    pub async fn released(&self) {
        self.released.notified().await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<U: UnitManager> Agent<U> {
    /// Why `app`'s verified release may not be swapped in now, if it may not.
    /// The window comes first: outside it, a released inhibitor changes
    /// nothing, so it is the reason worth telling.
    pub(super) fn gate_verdict(&self, app: &AppSettings, intent: &Intent) -> Option<String> {
        let operator = intent.asked_now();
        if operator.is_none() {
            if let Some(window) = app.install_window.or(self.settings.install_window) {
                let now = ferry_format::clock::unix_now();
                if let Some(why) = outside(window, now, local_minute_of(now)) {
                    return Some(why);
                }
            }
        }
        if operator != Some(true) {
            if let Some(path) = &app.inhibit_file {
                if path.exists() {
                    return Some(format!(
                        "the app holds an inhibitor (`{}`); the update goes on when it removes the file",
                        path.display()
                    ));
                }
            }
            if let Some(h) = self.inhibitors.held_for(&app.name).first() {
                return Some(format!(
                    "inhibited by {}: {} (until it closes its inhibitor)",
                    h.who, h.why
                ));
            }
        }
        None
    }
}

/// 2025-01-01 00:00 UTC: a clock before it was never set (a board without
/// a real-time clock starts in 1970 until NTP answers), so the local time
/// it gives says nothing about the window.
const CLOCK_FLOOR: u64 = 1_735_689_600;

/// Why a swap at `unix_now` (`minute` past local midnight) is outside
/// `window`, if it is. The reason is persisted and published when it
/// changes: it names the window, not the minute, or every minute outside
/// the window would write state.json again.
fn outside(window: InstallWindow, unix_now: u64, minute: u16) -> Option<String> {
    if unix_now < CLOCK_FLOOR {
        return Some(format!(
            "the clock is not set yet (it reads before 2025), so the install window {window} cannot be told; waiting for the time (NTP)"
        ));
    }
    (!window.contains(minute)).then(|| format!("outside the install window {window} (local time)"))
}

extern "C" {
    /// POSIX `tzset(3)`, which the `libc` crate does not declare.
    fn tzset();
}

/// Minutes since local midnight, by the system's time zone (`TZ`,
/// `/etc/localtime`).
pub fn local_minute_of_day() -> u16 {
    local_minute_of(ferry_format::clock::unix_now())
}

/// Minutes past local midnight at `unix_now`.
fn local_minute_of(unix_now: u64) -> u16 {
    let now = unix_now as i64;
    // SAFETY: localtime_r writes into the `tm` we own; `now` outlives the call.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let t: libc::time_t = now as libc::time_t;
    // SAFETY: tzset only re-reads the zone (`TZ`, `/etc/localtime`); unlike
    // localtime, localtime_r does not, so a `timedatectl set-timezone`
    // would otherwise count only after ferryd restarts.
    unsafe { tzset() };
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return ((now.rem_euclid(86_400)) / 60) as u16;
    }
    (tm.tm_hour * 60 + tm.tm_min) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_inhibitor_is_released_when_its_descriptor_closes() {
        let inhibitors = Inhibitors::default();
        let fd = inhibitors.hold("app", "kiosk", "showing a film").unwrap();
        assert_eq!(inhibitors.held_for("app").len(), 1);
        assert!(inhibitors.held_for("other").is_empty());
        let released = inhibitors.released();
        tokio::pin!(released);
        drop(fd);
        tokio::time::timeout(std::time::Duration::from_secs(5), released)
            .await
            .expect("released");
        assert!(inhibitors.held_for("app").is_empty());
    }

    #[test]
    fn the_minute_of_day_is_a_minute_of_a_day() {
        assert!(local_minute_of_day() < 24 * 60);
    }

    #[test]
    fn a_clock_that_was_never_set_keeps_the_window_closed() {
        let window: InstallWindow = "00:00-23:59".parse().unwrap();
        // 1970, a minute past midnight: inside the window by the hour,
        // but the hour is not known.
        let why = outside(window, 60, 1).unwrap();
        assert!(why.contains("clock is not set"), "{why}");
        let set = CLOCK_FLOOR + 86_400;
        assert_eq!(outside(window, set, 1), None);
        let why = outside(window, set, 23 * 60 + 59).unwrap();
        assert_eq!(why, "outside the install window 00:00-23:59 (local time)");
    }
}
