//! systemd, over D-Bus: restart, stop and start an app's unit and read its state.
//!
//! The agent talks to `org.freedesktop.systemd1` on the system bus with zbus, never
//! through `systemctl`: a job's outcome comes from its `JobRemoved` signal, and a
//! unit's state from its properties, typed, without parsing text. The driver only
//! sees the [`UnitManager`] trait, so its tests can replace systemd with a fake;
//! [`SystemdBus`] is the real one, and end-to-end tests point it at a sandboxed
//! systemd's bus with [`SystemdBus::at_address`].

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::OnceCell;
use zbus::proxy::CacheProperties;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

/// What the agent reads of a unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitStatus {
    /// `ActiveState`: `active`, `activating`, `deactivating`, `inactive`, `failed`…
    pub active_state: String,
    /// `SubState`, which depends on the unit type: `running`, `auto-restart`, `dead`…
    pub sub_state: String,
    /// `NRestarts`: how many times systemd restarted the service by itself
    /// (`Restart=`) since it was last started explicitly.
    pub n_restarts: u32,
    /// `ExecMainStatus`: the main process's exit status, or the signal that killed it.
    pub exec_main_status: i32,
    /// `ExecMainCode`: how the main process ended, as a `siginfo_t` `si_code`
    /// (`CLD_EXITED` = 1, `CLD_KILLED` = 2, `CLD_DUMPED` = 3), or 0 while it runs.
    pub exec_main_code: i32,
    /// `MainPID`, in the pid namespace of that systemd; 0 when there is none.
    pub main_pid: u32,
    /// `ActiveEnterTimestamp`: when the unit last became active, in microseconds
    /// since the epoch (`CLOCK_REALTIME`); 0 if never.
    pub active_enter_timestamp_us: u64,
}

impl UnitStatus {
    /// Whether the unit is `active` and its process `running`.
    pub fn is_running(&self) -> bool {
        self.active_state == "active" && self.sub_state == "running"
    }
}

/// How a job ended: the `result` string of its `JobRemoved` signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// `done`: the job ran. For a `Type=simple` service this only means the process
    /// was forked; whether it stays up is for the health checks to see.
    Done,
    /// `failed`: the unit failed to start (or stop).
    Failed,
    /// `timeout`: systemd's own job timeout was hit.
    Timeout,
    /// `canceled`: the job was cancelled (for example replaced by a conflicting one).
    Canceled,
    /// `dependency`: a unit it requires failed.
    Dependency,
    /// `skipped`: the job did not apply to the unit's state.
    Skipped,
    /// Any result this module does not know, kept verbatim.
    Other(String),
}

impl JobOutcome {
    /// The outcome of a `JobRemoved` `result` string.
    pub fn from_result(result: &str) -> JobOutcome {
        match result {
            "done" => JobOutcome::Done,
            "failed" => JobOutcome::Failed,
            "timeout" => JobOutcome::Timeout,
            "canceled" => JobOutcome::Canceled,
            "dependency" => JobOutcome::Dependency,
            "skipped" => JobOutcome::Skipped,
            other => JobOutcome::Other(other.to_owned()),
        }
    }

    /// The `result` string systemd uses for this outcome.
    pub fn as_str(&self) -> &str {
        match self {
            JobOutcome::Done => "done",
            JobOutcome::Failed => "failed",
            JobOutcome::Timeout => "timeout",
            JobOutcome::Canceled => "canceled",
            JobOutcome::Dependency => "dependency",
            JobOutcome::Skipped => "skipped",
            JobOutcome::Other(result) => result,
        }
    }
}

impl fmt::Display for JobOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The jobs the agent issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Job {
    Restart,
    Stop,
    Start,
}

impl Job {
    /// The verb of "cannot … `unit`".
    fn verb(self) -> &'static str {
        match self {
            Job::Restart => "restart",
            Job::Stop => "stop",
            Job::Start => "start",
        }
    }
}

/// The verb of "cannot … `unit`" for [`UnitManager::status`].
const STATUS_VERB: &str = "read the status of";

/// What can go wrong talking to systemd. Every message names the unit (or address).
#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    /// The bus could not be reached.
    #[error("cannot connect to the system bus at `{address}`")]
    Connect {
        /// The bus address tried (`system` for the default system bus).
        address: String,
        /// What zbus reported (boxed: it is large, and errors are rare).
        #[source]
        source: Box<zbus::Error>,
    },
    /// systemd has no such unit.
    #[error(
        "systemd has no unit `{0}`\nhint: check the unit name in the agent's config, \
         and that its unit file is installed (then `systemctl daemon-reload`)"
    )]
    NoSuchUnit(String),
    /// The job did not finish in time.
    #[error("systemd did not finish the {action} job of `{unit}` within {timeout:?}")]
    Timeout {
        /// The unit.
        unit: String,
        /// The job: `restart`, `stop` or `start`.
        action: &'static str,
        /// How long the agent waited.
        timeout: Duration,
    },
    /// The unit lacks a property the agent reads, or it has an unexpected type:
    /// for example a `.target` has no `NRestarts`.
    #[error(
        "systemd gave no usable `{property}` for `{unit}`\nhint: the agent manages \
         `.service` units only"
    )]
    Property {
        /// The unit.
        unit: String,
        /// The property, e.g. `NRestarts`.
        property: &'static str,
    },
    /// A D-Bus call failed, or systemd refused it.
    #[error("cannot {action} `{unit}` over D-Bus")]
    Bus {
        /// The unit.
        unit: String,
        /// What the agent was doing: `restart`, `read the status of`…
        action: &'static str,
        /// What zbus or systemd reported (boxed: it is large, and errors are rare).
        #[source]
        source: Box<zbus::Error>,
    },
}

impl SystemdError {
    /// Classifies an error of a call about `unit`: systemd's `NoSuchUnit` error name
    /// becomes [`SystemdError::NoSuchUnit`], anything else a [`SystemdError::Bus`].
    fn from_call(unit: &str, action: &'static str, err: zbus::Error) -> SystemdError {
        if let zbus::Error::MethodError(name, _, _) = &err {
            if name.as_str() == "org.freedesktop.systemd1.NoSuchUnit" {
                return SystemdError::NoSuchUnit(unit.to_owned());
            }
        }
        SystemdError::Bus {
            unit: unit.to_owned(),
            action,
            source: Box::new(err),
        }
    }
}

/// The systemd operations the update driver needs. [`SystemdBus`] implements it
/// over D-Bus; tests of the driver may implement it with a fake.
///
/// The jobs use mode `replace` and wait for the job to be removed, at most
/// `timeout`; they return how the job ended, which is not whether the service
/// stays up: read [`UnitManager::status`] for that.
pub trait UnitManager {
    /// Restarts `unit` (`RestartUnit`, which starts it if it is stopped).
    fn restart(
        &self,
        unit: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<JobOutcome, SystemdError>> + Send;

    /// Stops `unit` (`StopUnit`).
    fn stop(
        &self,
        unit: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<JobOutcome, SystemdError>> + Send;

    /// Starts `unit` (`StartUnit`).
    fn start(
        &self,
        unit: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<JobOutcome, SystemdError>> + Send;

    /// Reads `unit`'s state. A unit systemd cannot find (and that is not still
    /// running from a since-deleted file) is [`SystemdError::NoSuchUnit`].
    fn status(&self, unit: &str) -> impl Future<Output = Result<UnitStatus, SystemdError>> + Send;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1",
    gen_blocking = false
)]
trait Manager {
    fn subscribe(&self) -> zbus::Result<()>;
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    fn reset_failed_unit(&self, name: &str) -> zbus::Result<()>;

    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: zbus::zvariant::ObjectPath<'_>,
        unit: &str,
        result: &str,
    ) -> zbus::Result<()>;
}

/// `org.freedesktop.DBus.Properties` of a unit object. `GetAll("")` (an empty
/// interface name) makes systemd's sd-bus answer with the properties of every
/// interface of the object at once, `org.freedesktop.systemd1.Unit` and
/// `org.freedesktop.systemd1.Service` alike, computed in one step: a consistent
/// snapshot. Reading the properties one by one, or one interface after the other,
/// can mix two processes of a crash-looping service (seen against systemd 252:
/// `SubState=auto-restart` of the crashed process with the `MainPID` and
/// `ExecMainStatus=0` of its successor).
#[zbus::proxy(
    interface = "org.freedesktop.DBus.Properties",
    default_service = "org.freedesktop.systemd1",
    gen_blocking = false
)]
trait UnitProperties {
    #[zbus(name = "GetAll")]
    fn get_all(&self, interface: &str) -> zbus::Result<HashMap<String, OwnedValue>>;
}

/// The properties [`UnitStatus`] is made of, from a `GetAll` reply about `unit`.
/// A unit systemd could not find and that does not run is [`SystemdError::NoSuchUnit`].
fn parse_status(
    unit: &str,
    props: &HashMap<String, OwnedValue>,
) -> Result<UnitStatus, SystemdError> {
    fn get<'a, T: TryFrom<&'a OwnedValue>>(
        unit: &str,
        props: &'a HashMap<String, OwnedValue>,
        property: &'static str,
    ) -> Result<T, SystemdError> {
        props
            .get(property)
            .and_then(|value| T::try_from(value).ok())
            .ok_or_else(|| SystemdError::Property {
                unit: unit.to_owned(),
                property,
            })
    }
    let load_state: &str = get(unit, props, "LoadState")?;
    let active_state: &str = get(unit, props, "ActiveState")?;
    // `not-found` alone is not enough: a unit whose file was deleted while it ran
    // stays active, and is still the agent's business.
    if load_state == "not-found" && active_state == "inactive" {
        return Err(SystemdError::NoSuchUnit(unit.to_owned()));
    }
    Ok(UnitStatus {
        active_state: active_state.to_owned(),
        sub_state: get::<&str>(unit, props, "SubState")?.to_owned(),
        n_restarts: get(unit, props, "NRestarts")?,
        exec_main_status: get(unit, props, "ExecMainStatus")?,
        exec_main_code: get(unit, props, "ExecMainCode")?,
        main_pid: get(unit, props, "MainPID")?,
        active_enter_timestamp_us: get(unit, props, "ActiveEnterTimestamp")?,
    })
}

/// systemd's manager on a D-Bus connection.
#[derive(Debug)]
pub struct SystemdBus {
    connection: zbus::Connection,
    manager: ManagerProxy<'static>,
    /// Set once `Subscribe()` succeeded on this connection: without a subscriber,
    /// systemd does not broadcast `JobRemoved`.
    subscribed: OnceCell<()>,
}

impl SystemdBus {
    /// Connects to the system bus (`$DBUS_SYSTEM_BUS_ADDRESS`, else the standard socket).
    pub async fn system() -> Result<Self, SystemdError> {
        let connect = async { zbus::connection::Builder::system()?.build().await };
        let connection = connect.await.map_err(|source| SystemdError::Connect {
            address: "system".to_owned(),
            source: Box::new(source),
        })?;
        Self::on(connection, "system").await
    }

    /// Connects to the bus at `address`, a D-Bus address such as
    /// `unix:path=/proc/<pid>/root/run/dbus/system_bus_socket` (a sandboxed systemd).
    pub async fn at_address(address: &str) -> Result<Self, SystemdError> {
        let connect = async { zbus::connection::Builder::address(address)?.build().await };
        let connection = connect.await.map_err(|source| SystemdError::Connect {
            address: address.to_owned(),
            source: Box::new(source),
        })?;
        Self::on(connection, address).await
    }

    /// The bus connection, which the agent's own D-Bus API shares.
    pub fn connection(&self) -> &zbus::Connection {
        &self.connection
    }

    async fn on(connection: zbus::Connection, address: &str) -> Result<Self, SystemdError> {
        let manager = ManagerProxy::builder(&connection)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|source| SystemdError::Connect {
                address: address.to_owned(),
                source: Box::new(source),
            })?;
        Ok(SystemdBus {
            connection,
            manager,
            subscribed: OnceCell::new(),
        })
    }

    async fn subscribe(&self) -> zbus::Result<()> {
        self.subscribed
            .get_or_try_init(|| async {
                match self.manager.subscribe().await {
                    // Someone subscribed this connection already: just as good.
                    Err(zbus::Error::MethodError(name, _, _))
                        if name.as_str() == "org.freedesktop.systemd1.AlreadySubscribed" =>
                    {
                        Ok(())
                    }
                    other => other,
                }
            })
            .await
            .map(|_| ())
    }

    /// Issues one job on `unit` and waits for its `JobRemoved`.
    async fn job(
        &self,
        kind: Job,
        unit: &str,
        timeout: Duration,
    ) -> Result<JobOutcome, SystemdError> {
        let run = async {
            let fail = |err| SystemdError::from_call(unit, kind.verb(), err);
            self.subscribe().await.map_err(fail)?;
            // Listen before issuing the job: a fast job may be removed before
            // its method call even returns.
            let mut removed = self.manager.receive_job_removed().await.map_err(fail)?;
            if kind != Job::Stop {
                // A deliberate (re)start must not be refused by the start
                // rate limit that earlier restarts used up (systemd's
                // `start-limit-hit`): reset it, and the failed state, first.
                // A unit that is not loaded has nothing to reset.
                let _ = self.manager.reset_failed_unit(unit).await;
            }
            let job = match kind {
                Job::Restart => self.manager.restart_unit(unit, "replace").await,
                Job::Stop => self.manager.stop_unit(unit, "replace").await,
                Job::Start => self.manager.start_unit(unit, "replace").await,
            }
            .map_err(fail)?;
            while let Some(signal) = removed.next().await {
                let args = signal.args().map_err(fail)?;
                if args.job().as_str() == job.as_str() {
                    return Ok(JobOutcome::from_result(args.result()));
                }
            }
            Err(fail(zbus::Error::Failure(format!(
                "the bus connection closed before job `{}` finished",
                job.as_str()
            ))))
        };
        tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| SystemdError::Timeout {
                unit: unit.to_owned(),
                action: kind.verb(),
                timeout,
            })?
    }

    async fn read_status(&self, unit: &str) -> Result<UnitStatus, SystemdError> {
        let fail = |err| SystemdError::from_call(unit, STATUS_VERB, err);
        // LoadUnit, not GetUnit: an installed unit that is not running may not be
        // loaded, and GetUnit would call it missing.
        let path = self.manager.load_unit(unit).await.map_err(fail)?;
        let props = UnitPropertiesProxy::builder(&self.connection)
            .path(path)
            .map_err(fail)?
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(fail)?
            .get_all("")
            .await
            .map_err(fail)?;
        parse_status(unit, &props)
    }
}

impl UnitManager for SystemdBus {
    async fn restart(&self, unit: &str, timeout: Duration) -> Result<JobOutcome, SystemdError> {
        self.job(Job::Restart, unit, timeout).await
    }

    async fn stop(&self, unit: &str, timeout: Duration) -> Result<JobOutcome, SystemdError> {
        self.job(Job::Stop, unit, timeout).await
    }

    async fn start(&self, unit: &str, timeout: Duration) -> Result<JobOutcome, SystemdError> {
        self.job(Job::Start, unit, timeout).await
    }

    async fn status(&self, unit: &str) -> Result<UnitStatus, SystemdError> {
        self.read_status(unit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_results_map_both_ways() {
        let known = [
            ("done", JobOutcome::Done),
            ("failed", JobOutcome::Failed),
            ("timeout", JobOutcome::Timeout),
            ("canceled", JobOutcome::Canceled),
            ("dependency", JobOutcome::Dependency),
            ("skipped", JobOutcome::Skipped),
        ];
        for (text, outcome) in known {
            assert_eq!(JobOutcome::from_result(text), outcome);
            assert_eq!(outcome.as_str(), text);
            assert_eq!(outcome.to_string(), text);
        }
        let odd = JobOutcome::from_result("invalid");
        assert_eq!(odd, JobOutcome::Other("invalid".to_owned()));
        assert_eq!(odd.as_str(), "invalid");
    }

    fn method_error(name: &str) -> zbus::Error {
        let msg = zbus::Message::method_call("/org/freedesktop/systemd1", "RestartUnit")
            .unwrap()
            .build(&())
            .unwrap();
        let name = zbus::names::OwnedErrorName::try_from(name.to_owned()).unwrap();
        zbus::Error::MethodError(name, Some("Unit demo.service not found.".into()), msg)
    }

    #[test]
    fn no_such_unit_is_its_own_error_naming_the_unit() {
        let err = SystemdError::from_call(
            "demo.service",
            Job::Restart.verb(),
            method_error("org.freedesktop.systemd1.NoSuchUnit"),
        );
        assert!(matches!(&err, SystemdError::NoSuchUnit(u) if u == "demo.service"));
        assert!(err.to_string().contains("`demo.service`"), "{err}");
        assert!(err.to_string().contains("hint:"), "{err}");
    }

    #[test]
    fn other_errors_name_the_unit_and_the_action() {
        let err = SystemdError::from_call(
            "demo.service",
            Job::Stop.verb(),
            method_error("org.freedesktop.systemd1.UnitMasked"),
        );
        assert!(matches!(&err, SystemdError::Bus { .. }));
        assert_eq!(err.to_string(), "cannot stop `demo.service` over D-Bus");
        let status = SystemdError::from_call(
            "demo.service",
            STATUS_VERB,
            zbus::Error::Failure("x".into()),
        );
        assert_eq!(
            status.to_string(),
            "cannot read the status of `demo.service` over D-Bus"
        );
        let timeout = SystemdError::Timeout {
            unit: "demo.service".into(),
            action: Job::Restart.verb(),
            timeout: Duration::from_secs(90),
        };
        assert_eq!(
            timeout.to_string(),
            "systemd did not finish the restart job of `demo.service` within 90s"
        );
    }

    fn props(pairs: &[(&str, zbus::zvariant::Value<'_>)]) -> HashMap<String, OwnedValue> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.try_to_owned().unwrap()))
            .collect()
    }

    fn service_props(load: &str, active: &str) -> HashMap<String, OwnedValue> {
        use zbus::zvariant::Value;
        props(&[
            ("LoadState", Value::from(load)),
            ("ActiveState", Value::from(active)),
            ("SubState", Value::from("auto-restart")),
            ("NRestarts", Value::from(3u32)),
            ("ExecMainStatus", Value::from(1i32)),
            ("ExecMainCode", Value::from(1i32)),
            ("MainPID", Value::from(0u32)),
            (
                "ActiveEnterTimestamp",
                Value::from(1_700_000_000_000_000u64),
            ),
            ("Type", Value::from("simple")),
        ])
    }

    #[test]
    fn status_is_parsed_from_all_properties() {
        let status = parse_status("demo.service", &service_props("loaded", "activating")).unwrap();
        assert_eq!(
            status,
            UnitStatus {
                active_state: "activating".into(),
                sub_state: "auto-restart".into(),
                n_restarts: 3,
                exec_main_status: 1,
                exec_main_code: 1,
                main_pid: 0,
                active_enter_timestamp_us: 1_700_000_000_000_000,
            }
        );
    }

    #[test]
    fn a_unit_not_found_is_missing_unless_it_still_runs() {
        let err = parse_status("demo.service", &service_props("not-found", "inactive"));
        assert!(matches!(err, Err(SystemdError::NoSuchUnit(u)) if u == "demo.service"));
        // Its file was deleted while it ran: still there to watch and stop.
        let status = parse_status("demo.service", &service_props("not-found", "active")).unwrap();
        assert_eq!(status.active_state, "active");
        // Masked or broken units are reported as they are.
        assert!(parse_status("demo.service", &service_props("masked", "inactive")).is_ok());
    }

    #[test]
    fn a_missing_or_mistyped_property_is_named() {
        use zbus::zvariant::Value;
        let mut target = service_props("loaded", "active");
        target.remove("NRestarts");
        let err = parse_status("basic.target", &target).unwrap_err();
        assert!(
            matches!(&err, SystemdError::Property { unit, property: "NRestarts" } if unit == "basic.target"),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("`NRestarts` for `basic.target`"),
            "{err}"
        );

        let mut odd = service_props("loaded", "active");
        odd.insert("MainPID".into(), Value::from("42").try_to_owned().unwrap());
        assert!(matches!(
            parse_status("demo.service", &odd),
            Err(SystemdError::Property {
                property: "MainPID",
                ..
            })
        ));
    }

    #[test]
    fn running_means_active_and_running() {
        let mut s = UnitStatus {
            active_state: "active".into(),
            sub_state: "running".into(),
            n_restarts: 0,
            exec_main_status: 0,
            exec_main_code: 0,
            main_pid: 12,
            active_enter_timestamp_us: 1,
        };
        assert!(s.is_running());
        s.sub_state = "exited".into();
        assert!(!s.is_running());
    }

    /// A driver is generic over the trait, so a fake must be able to stand in.
    struct Fake;

    impl UnitManager for Fake {
        async fn restart(&self, _: &str, _: Duration) -> Result<JobOutcome, SystemdError> {
            Ok(JobOutcome::Done)
        }
        async fn stop(&self, _: &str, _: Duration) -> Result<JobOutcome, SystemdError> {
            Ok(JobOutcome::Done)
        }
        async fn start(&self, _: &str, _: Duration) -> Result<JobOutcome, SystemdError> {
            Ok(JobOutcome::Skipped)
        }
        async fn status(&self, unit: &str) -> Result<UnitStatus, SystemdError> {
            Err(SystemdError::NoSuchUnit(unit.to_owned()))
        }
    }

    async fn drive(m: &impl UnitManager) -> Result<JobOutcome, SystemdError> {
        m.restart("a.service", Duration::from_secs(1)).await
    }

    #[tokio::test]
    async fn the_trait_can_be_faked() {
        assert_eq!(drive(&Fake).await.unwrap(), JobOutcome::Done);
        assert!(matches!(
            Fake.status("b.service").await,
            Err(SystemdError::NoSuchUnit(_))
        ));
        // The futures are Send, so a driver can be spawned.
        let handle = tokio::spawn(async { drive(&Fake).await.map(|o| o.to_string()) });
        assert_eq!(handle.await.unwrap().unwrap(), "done");
    }
}
