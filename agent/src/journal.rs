//! Where the agent's logs go, and the structured events it records.
//!
//! Under systemd, stderr is connected to the journal and the agent sends its entries
//! to journald natively (`systemd-journal-logger`), so each one keeps its priority
//! and its structured fields. Run by hand, it writes one line per entry to stderr
//! instead. Everything logs through the `log` facade.
//!
//! Every state transition of an update is one [`Event`]: a journal entry with a
//! stable `MESSAGE_ID` (one per kind, never changed once released, so catalogs and
//! `journalctl MESSAGE_ID=…` keep working), `FERRY_EVENT` (its snake_case name),
//! `FERRY_APP`, `FERRY_VERSION` when there is one, and whatever extra fields the
//! caller adds (`FERRY_SERIAL`, `FERRY_ERROR`…). Tests assert on these fields, not on
//! the message text.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use log::kv::{self, VisitSource};
use log::{Level, LevelFilter, Log, Metadata, Record};

/// The journal's `SYSLOG_IDENTIFIER` and the stderr line prefix.
pub const IDENTIFIER: &str = "ferryd";

/// The `log` target of [`event`] entries.
pub const EVENT_TARGET: &str = "ferryd::event";

/// Sets up logging once, at start-up: to journald when stderr is the journal,
/// otherwise to stderr. `verbose` lowers the threshold from info to debug.
pub fn init(verbose: bool) {
    let level = if verbose {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    };
    let mut fallback_reason = None;
    if systemd_journal_logger::connected_to_journal() {
        match systemd_journal_logger::JournalLog::new() {
            Ok(journal) => {
                // An error means a logger is already installed (a second `init`).
                let _ = journal
                    .with_syslog_identifier(IDENTIFIER.to_owned())
                    .install();
                log::set_max_level(level);
                return;
            }
            Err(err) => fallback_reason = Some(err),
        }
    }
    // On a terminal (the CLI), events go to stderr for the operator and, when
    // journald runs, to the journal too, so `ferryd check` leaves the same
    // structured record as the service. An error means a logger is already
    // installed (a second `init`).
    let journal = Path::new(JOURNAL_SOCKET)
        .exists()
        .then(|| systemd_journal_logger::JournalLog::new().ok())
        .flatten()
        .map(|j| j.with_syslog_identifier(IDENTIFIER.to_owned()));
    let _ = log::set_boxed_logger(Box::new(Tee { journal }));
    log::set_max_level(level);
    if let Some(err) = fallback_reason {
        log::warn!("cannot open the journal socket, logging to stderr instead: {err}");
    }
}

/// One kind of journal event, each with a stable `MESSAGE_ID` and `FERRY_EVENT` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// A poll of the repository began.
    CheckStarted,
    /// The channel offers nothing newer than what is installed.
    UpToDate,
    /// The channel offers a newer release that this device may take.
    UpdateAvailable,
    /// An artifact download began.
    DownloadStarted,
    /// An interrupted download continued from where it stopped.
    DownloadResumed,
    /// The artifact is on disk, complete.
    Downloaded,
    /// The artifact's hash and signatures checked out.
    Verified,
    /// The new binary unpacked itself on this device.
    Extracted,
    /// `current` now points at the new version.
    Installed,
    /// The unit is being restarted onto a new version.
    Restarting,
    /// The new version is running and being watched.
    Probation,
    /// The new version passed probation and is kept.
    Committed,
    /// A health check failed.
    HealthFailed,
    /// `current` is being put back to the previous version.
    RollingBack,
    /// The previous version runs again and is healthy.
    RolledBack,
    /// Even the previous version is unhealthy: the agent stopped changing things.
    Hold,
    /// A release was refused (bad signature, wrong app, replayed serial…).
    Refused,
    /// A release was skipped because it is on the local deny list.
    Denied,
    /// Old versions were deleted.
    Pruned,
    /// Any other failure.
    Error,
}

impl Event {
    /// Every event, in declaration order.
    pub const ALL: [Event; 20] = [
        Event::CheckStarted,
        Event::UpToDate,
        Event::UpdateAvailable,
        Event::DownloadStarted,
        Event::DownloadResumed,
        Event::Downloaded,
        Event::Verified,
        Event::Extracted,
        Event::Installed,
        Event::Restarting,
        Event::Probation,
        Event::Committed,
        Event::HealthFailed,
        Event::RollingBack,
        Event::RolledBack,
        Event::Hold,
        Event::Refused,
        Event::Denied,
        Event::Pruned,
        Event::Error,
    ];

    /// The `FERRY_EVENT` value: a stable snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            Event::CheckStarted => "check_started",
            Event::UpToDate => "up_to_date",
            Event::UpdateAvailable => "update_available",
            Event::DownloadStarted => "download_started",
            Event::DownloadResumed => "download_resumed",
            Event::Downloaded => "downloaded",
            Event::Verified => "verified",
            Event::Extracted => "extracted",
            Event::Installed => "installed",
            Event::Restarting => "restarting",
            Event::Probation => "probation",
            Event::Committed => "committed",
            Event::HealthFailed => "health_failed",
            Event::RollingBack => "rolling_back",
            Event::RolledBack => "rolled_back",
            Event::Hold => "hold",
            Event::Refused => "refused",
            Event::Denied => "denied",
            Event::Pruned => "pruned",
            Event::Error => "error",
        }
    }

    /// The journal `MESSAGE_ID`: 128 bits as 32 lowercase hex digits, fixed forever.
    pub fn message_id(self) -> &'static str {
        match self {
            Event::CheckStarted => "c99c4c999cee4e819243c0d1ecc7f03d",
            Event::UpToDate => "2c84cd506109428bbb8552d0e85eee90",
            Event::UpdateAvailable => "93e1d7bb62f04c8cbb0f472ae8b129b1",
            Event::DownloadStarted => "66fda1783879404d8f9b4373d51651e9",
            Event::DownloadResumed => "a6de439bf8ee4b72b72cccfc6646fccc",
            Event::Downloaded => "9a10e9d51c944cd3afbbe0ff928c6fa4",
            Event::Verified => "effa247a85bd4b678565874f6548c2ec",
            Event::Extracted => "52f4158098b94cba81858d25a5339d0c",
            Event::Installed => "34c20bf9b3f14dab9cdf4b224be21a60",
            Event::Restarting => "0265fe445f6b4426992179462d991192",
            Event::Probation => "f60bd8a26bc3478dacefa2bd45117a1b",
            Event::Committed => "582d02fc85df4ca18fa1863ce4a303af",
            Event::HealthFailed => "5e45aa9081da4bd88a2684537d929d0d",
            Event::RollingBack => "c994be41fbca4105a97ed3d966bd00c3",
            Event::RolledBack => "922414bb8a0b48ecb334897492d16d42",
            Event::Hold => "f6e8cc7937574031bf37cd23909d9952",
            Event::Refused => "114c10be6b894877be7eab3f60e2cab4",
            Event::Denied => "5b3489d7ed50404a99460e7fd0474d9b",
            Event::Pruned => "ae49e6cb700d4c1e9ad1510e04224586",
            Event::Error => "d22141b406a2421ab151e78670c4d06b",
        }
    }

    /// The event whose `FERRY_EVENT` is `name`.
    pub fn from_name(name: &str) -> Option<Event> {
        Event::ALL.into_iter().find(|ev| ev.name() == name)
    }

    /// The priority of its entry: error for failures that need a person, warning for
    /// a rollback the agent handles by itself, info for progress.
    pub fn level(self) -> Level {
        match self {
            Event::Error | Event::Refused | Event::HealthFailed | Event::Hold => Level::Error,
            Event::RollingBack | Event::RolledBack | Event::Denied => Level::Warn,
            Event::CheckStarted
            | Event::UpToDate
            | Event::UpdateAvailable
            | Event::DownloadStarted
            | Event::DownloadResumed
            | Event::Downloaded
            | Event::Verified
            | Event::Extracted
            | Event::Installed
            | Event::Restarting
            | Event::Probation
            | Event::Committed
            | Event::Pruned => Level::Info,
        }
    }
}

/// Field names [`event`] sets itself, or the journal logger sets; an extra field
/// with one of these names is dropped rather than sent twice.
const RESERVED_FIELDS: [&str; 12] = [
    "MESSAGE",
    "MESSAGE_ID",
    "PRIORITY",
    "FERRY_EVENT",
    "FERRY_APP",
    "FERRY_VERSION",
    "SYSLOG_IDENTIFIER",
    "SYSLOG_PID",
    "CODE_FILE",
    "CODE_LINE",
    "CODE_MODULE",
    "TARGET",
];

/// Logs one event for `app` (and `version`, if the event concerns one), with
/// `message` as the human-readable text and `fields` as extra journal fields.
///
/// Field names are journal field names such as `FERRY_SERIAL`: they are upper-cased,
/// characters other than `A`–`Z`, `0`–`9` and `_` become `_`, a name that does not
/// start with a letter gets a `FERRY` prefix, and names are cut at 64 bytes, the
/// journal's rules. A field that repeats one `event` sets itself is dropped.
pub fn event(ev: Event, app: &str, version: Option<&str>, fields: &[(&str, &str)], message: &str) {
    if ev.level() <= log::max_level() {
        event_to(log::logger(), ev, app, version, fields, message);
    }
}

fn event_to(
    logger: &dyn Log,
    ev: Event,
    app: &str,
    version: Option<&str>,
    fields: &[(&str, &str)],
    message: &str,
) {
    let mut pairs: Vec<(Cow<'_, str>, &str)> = Vec::with_capacity(4 + fields.len());
    pairs.push(("MESSAGE_ID".into(), ev.message_id()));
    pairs.push(("FERRY_EVENT".into(), ev.name()));
    pairs.push(("FERRY_APP".into(), app));
    if let Some(version) = version {
        pairs.push(("FERRY_VERSION".into(), version));
    }
    for (key, value) in fields {
        let key = field_name(key);
        if !RESERVED_FIELDS.contains(&key.as_ref()) {
            pairs.push((key, value));
        }
    }
    let pairs: &[(Cow<'_, str>, &str)] = &pairs;
    logger.log(
        &Record::builder()
            .level(ev.level())
            .target(EVENT_TARGET)
            .module_path_static(Some(module_path!()))
            .file_static(Some(file!()))
            .line(Some(line!()))
            .key_values(&pairs)
            .args(format_args!("{message}"))
            .build(),
    );
}

/// `key` as a valid journal field name (see [`event`]).
fn field_name(key: &str) -> Cow<'_, str> {
    let valid = |c: u8| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_';
    let bytes = key.as_bytes();
    if !bytes.is_empty()
        && bytes.len() <= 64
        && bytes[0].is_ascii_uppercase()
        && bytes.iter().all(|&c| valid(c))
    {
        return Cow::Borrowed(key);
    }
    let mut name: String = key
        .bytes()
        .map(|c| {
            let c = c.to_ascii_uppercase();
            if valid(c) {
                char::from(c)
            } else {
                '_'
            }
        })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_uppercase()) {
        let sep = if name.starts_with('_') { "" } else { "_" };
        name = format!("FERRY{sep}{name}");
    }
    name.truncate(64);
    Cow::Owned(name)
}

/// The logger used when stderr is not the journal: `ferryd: LEVEL message KEY=value…`.
/// journald's native socket.
const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// Logs to stderr, and to the journal as well when one runs.
struct Tee {
    journal: Option<systemd_journal_logger::JournalLog>,
}

impl Log for Tee {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            // One write per entry, so concurrent entries do not interleave; a
            // failed write to stderr has nowhere else to be reported.
            let _ = std::io::stderr()
                .lock()
                .write_all(stderr_line(record).as_bytes());
            if let Some(j) = &self.journal {
                j.log(record);
            }
        }
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// The stderr form of `record`, newline included. `MESSAGE_ID` is left out: it is
/// for journal catalogs, not people. Values with spaces, quotes or nothing in them
/// are quoted.
fn stderr_line(record: &Record<'_>) -> String {
    struct Fields<'a>(&'a mut String);
    impl<'kvs> VisitSource<'kvs> for Fields<'_> {
        fn visit_pair(
            &mut self,
            key: kv::Key<'kvs>,
            value: kv::Value<'kvs>,
        ) -> Result<(), kv::Error> {
            if key.as_str() == "MESSAGE_ID" {
                return Ok(());
            }
            let value = value.to_string();
            let plain = !value.is_empty()
                && !value
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\\');
            // Writing to a String cannot fail.
            let _ = if plain {
                write!(self.0, " {key}={value}")
            } else {
                write!(self.0, " {key}={value:?}")
            };
            Ok(())
        }
    }
    let mut line = format!("{IDENTIFIER}: {} {}", record.level(), record.args());
    // Our visitor never fails.
    let _ = record.key_values().visit(&mut Fields(&mut line));
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Mutex;

    /// What a logger saw of one record.
    #[derive(Debug)]
    struct Captured {
        level: Level,
        target: String,
        message: String,
        fields: Vec<(String, String)>,
        stderr: String,
    }

    impl Captured {
        fn field(&self, key: &str) -> Option<&str> {
            let mut values = self.fields.iter().filter(|(k, _)| k == key);
            let first = values.next().map(|(_, v)| v.as_str());
            assert!(values.next().is_none(), "field {key} repeated: {self:?}");
            first
        }
    }

    #[derive(Default)]
    struct Capture(Mutex<Vec<Captured>>);

    impl Log for Capture {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn log(&self, record: &Record<'_>) {
            struct Collect(Vec<(String, String)>);
            impl<'kvs> VisitSource<'kvs> for Collect {
                fn visit_pair(
                    &mut self,
                    key: kv::Key<'kvs>,
                    value: kv::Value<'kvs>,
                ) -> Result<(), kv::Error> {
                    self.0.push((key.to_string(), value.to_string()));
                    Ok(())
                }
            }
            let mut fields = Collect(Vec::new());
            record.key_values().visit(&mut fields).unwrap();
            self.0.lock().unwrap().push(Captured {
                level: record.level(),
                target: record.target().to_owned(),
                message: record.args().to_string(),
                fields: fields.0,
                stderr: stderr_line(record),
            });
        }
        fn flush(&self) {}
    }

    fn capture(
        ev: Event,
        version: Option<&str>,
        fields: &[(&str, &str)],
        message: &str,
    ) -> Captured {
        let logger = Capture::default();
        event_to(&logger, ev, "demo", version, fields, message);
        let mut records = logger.0.into_inner().unwrap();
        assert_eq!(records.len(), 1);
        records.remove(0)
    }

    #[test]
    fn an_event_carries_its_fields() {
        let r = capture(
            Event::Installed,
            Some("1.2.0"),
            &[("FERRY_SERIAL", "42"), ("FERRY_PREVIOUS", "1.1.0")],
            "installed demo 1.2.0",
        );
        assert_eq!(r.level, Level::Info);
        assert_eq!(r.target, EVENT_TARGET);
        assert_eq!(r.message, "installed demo 1.2.0");
        assert_eq!(
            r.field("MESSAGE_ID"),
            Some("34c20bf9b3f14dab9cdf4b224be21a60")
        );
        assert_eq!(r.field("FERRY_EVENT"), Some("installed"));
        assert_eq!(r.field("FERRY_APP"), Some("demo"));
        assert_eq!(r.field("FERRY_VERSION"), Some("1.2.0"));
        assert_eq!(r.field("FERRY_SERIAL"), Some("42"));
        assert_eq!(r.field("FERRY_PREVIOUS"), Some("1.1.0"));
        assert_eq!(r.fields.len(), 6);
    }

    #[test]
    fn an_event_without_version_has_no_version_field() {
        let r = capture(Event::CheckStarted, None, &[], "checking");
        assert_eq!(r.field("FERRY_VERSION"), None);
        assert_eq!(r.fields.len(), 3);
    }

    #[test]
    fn extra_field_names_are_made_valid_and_cannot_override() {
        let r = capture(
            Event::Error,
            Some("2.0"),
            &[
                ("ferry_error", "disk full"),
                ("http-status", "503"),
                ("_SYSTEMD_UNIT", "evil"),
                ("9lives", "x"),
                ("", "empty"),
                ("FERRY_APP", "other"),
                ("message_id", "0000"),
            ],
            "failed",
        );
        assert_eq!(r.level, Level::Error);
        assert_eq!(r.field("FERRY_ERROR"), Some("disk full"));
        assert_eq!(r.field("HTTP_STATUS"), Some("503"));
        assert_eq!(r.field("FERRY_SYSTEMD_UNIT"), Some("evil"));
        assert_eq!(r.field("FERRY_9LIVES"), Some("x"));
        assert_eq!(r.field("FERRY_"), Some("empty"));
        assert_eq!(r.field("FERRY_APP"), Some("demo"));
        assert_eq!(r.field("MESSAGE_ID"), Some(Event::Error.message_id()));
        for (key, _) in &r.fields {
            assert!(key.len() <= 64);
            assert!(key.starts_with(|c: char| c.is_ascii_uppercase()), "{key}");
            assert!(
                key.bytes()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_'),
                "{key}"
            );
        }
    }

    #[test]
    fn long_field_names_are_cut_at_64_bytes() {
        let long = "X".repeat(100);
        assert_eq!(field_name(&long).len(), 64);
        assert_eq!(field_name("FERRY_OK"), Cow::Borrowed("FERRY_OK"));
    }

    #[test]
    fn levels_follow_severity() {
        for ev in [
            Event::Error,
            Event::Refused,
            Event::HealthFailed,
            Event::Hold,
        ] {
            assert_eq!(capture(ev, None, &[], "x").level, Level::Error, "{ev:?}");
        }
        for ev in [Event::RollingBack, Event::RolledBack, Event::Denied] {
            assert_eq!(capture(ev, None, &[], "x").level, Level::Warn, "{ev:?}");
        }
        let loud: HashSet<Event> = [
            Event::Error,
            Event::Refused,
            Event::HealthFailed,
            Event::Hold,
            Event::RollingBack,
            Event::RolledBack,
            Event::Denied,
        ]
        .into();
        for ev in Event::ALL.into_iter().filter(|ev| !loud.contains(ev)) {
            assert_eq!(ev.level(), Level::Info, "{ev:?}");
        }
    }

    #[test]
    fn message_ids_and_names_are_unique_and_well_formed() {
        let ids: HashSet<_> = Event::ALL.iter().map(|ev| ev.message_id()).collect();
        let names: HashSet<_> = Event::ALL.iter().map(|ev| ev.name()).collect();
        assert_eq!(ids.len(), Event::ALL.len());
        assert_eq!(names.len(), Event::ALL.len());
        for ev in Event::ALL {
            let id = ev.message_id();
            assert_eq!(id.len(), 32, "{ev:?}");
            assert!(
                id.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')),
                "{ev:?}"
            );
            let name = ev.name();
            assert!(
                name.bytes().all(|c| c.is_ascii_lowercase() || c == b'_'),
                "{name}"
            );
            assert_eq!(Event::from_name(name), Some(ev));
        }
        assert_eq!(Event::from_name("nope"), None);
    }

    #[test]
    fn stderr_lines_show_fields_but_not_the_message_id() {
        let r = capture(
            Event::HealthFailed,
            Some("1.2.0"),
            &[
                ("FERRY_ERROR", "unit restarted 2 times"),
                ("FERRY_EMPTY", ""),
            ],
            "demo 1.2.0 is unhealthy",
        );
        assert_eq!(
            r.stderr,
            "ferryd: ERROR demo 1.2.0 is unhealthy FERRY_EVENT=health_failed FERRY_APP=demo \
             FERRY_VERSION=1.2.0 FERRY_ERROR=\"unit restarted 2 times\" FERRY_EMPTY=\"\"\n"
        );
    }

    #[test]
    fn stderr_lines_of_plain_records() {
        let line = stderr_line(
            &Record::builder()
                .level(Level::Warn)
                .args(format_args!("poll failed: {}", "timeout"))
                .build(),
        );
        assert_eq!(line, "ferryd: WARN poll failed: timeout\n");
    }
}
