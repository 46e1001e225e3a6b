//! `ferryd::systemd` against a real systemd: a sandbox booted by
//! `ferry_tests::systemd`, driven over its system bus with [`SystemdBus::at_address`],
//! as the agent drives the board's systemd. Needs root (the sandbox's namespaces);
//! a missing prerequisite fails the test, naming it.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use ferry_tests::systemd::{Sandbox, SandboxOptions};
use ferryd::systemd::{JobOutcome, SystemdBus, SystemdError, UnitManager, UnitStatus};

/// How long a job may take; generous, since a loaded CI machine may be slow.
const JOB_TIMEOUT: Duration = Duration::from_secs(30);

const SLEEPER: &str = "[Unit]
Description=a service that stays up

[Service]
ExecStart=/bin/sh -c 'echo started; exec sleep 1000'
";

const CRASHER: &str = "[Unit]
Description=a service that exits 1 at once, restarted by systemd
StartLimitIntervalSec=0

[Service]
ExecStart=/bin/false
Restart=on-failure
RestartSec=100ms
";

fn boot(name: &str) -> Result<Sandbox> {
    Sandbox::start(
        name,
        SandboxOptions {
            private_tmp: true,
            ..SandboxOptions::default()
        },
    )
}

/// Reads `unit`'s status until `done` holds, at most 30 s (a bound on a liveness
/// wait, not a timing check).
async fn wait_for(
    bus: &SystemdBus,
    unit: &str,
    what: &str,
    done: impl Fn(&UnitStatus) -> bool,
) -> Result<UnitStatus> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = bus.status(unit).await?;
        if done(&status) {
            return Ok(status);
        }
        ensure!(
            Instant::now() < deadline,
            "`{unit}` never got {what}; last status: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn restart_stop_and_start_a_running_service() -> Result<()> {
    let sandbox = boot("ferryd-bus-run")?;
    sandbox.install_unit("sleeper.service", SLEEPER)?;
    sandbox.install_unit("sleeper2.service", SLEEPER)?;
    let bus = SystemdBus::at_address(&sandbox.bus_address()).await?;

    let before = bus.status("sleeper.service").await?;
    assert_eq!(before.active_state, "inactive", "{before:?}");
    assert_eq!(before.main_pid, 0, "{before:?}");

    assert_eq!(
        bus.restart("sleeper.service", JOB_TIMEOUT).await?,
        JobOutcome::Done
    );
    let first = bus.status("sleeper.service").await?;
    assert!(first.is_running(), "{first:?}");
    assert_eq!(
        (first.active_state.as_str(), first.sub_state.as_str()),
        ("active", "running")
    );
    assert!(first.main_pid > 0, "{first:?}");
    assert_eq!(first.n_restarts, 0, "{first:?}");
    assert!(first.active_enter_timestamp_us > 0, "{first:?}");

    // The process really ran: its output is in the sandbox's journal.
    let said_started = || -> Result<bool> {
        let entries = sandbox.journal_json(Some("sleeper.service"))?;
        Ok(entries.iter().any(|e| e["MESSAGE"] == "started"))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !said_started()? {
        ensure!(Instant::now() < deadline, "no `started` in the journal");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A restart gives a new process; two jobs at once on one connection each get
    // their own `JobRemoved`.
    let (a, b) = tokio::join!(
        bus.restart("sleeper.service", JOB_TIMEOUT),
        bus.restart("sleeper2.service", JOB_TIMEOUT),
    );
    assert_eq!((a?, b?), (JobOutcome::Done, JobOutcome::Done));
    let second = bus.status("sleeper.service").await?;
    assert!(second.is_running(), "{second:?}");
    assert_ne!(second.main_pid, first.main_pid);
    assert!(second.active_enter_timestamp_us >= first.active_enter_timestamp_us);
    assert!(bus.status("sleeper2.service").await?.is_running());

    assert_eq!(
        bus.stop("sleeper.service", JOB_TIMEOUT).await?,
        JobOutcome::Done
    );
    let stopped = bus.status("sleeper.service").await?;
    assert_eq!(stopped.active_state, "inactive", "{stopped:?}");
    assert_eq!(stopped.main_pid, 0, "{stopped:?}");

    assert_eq!(
        bus.start("sleeper.service", JOB_TIMEOUT).await?,
        JobOutcome::Done
    );
    assert!(bus.status("sleeper.service").await?.is_running());

    sandbox.stop()
}

#[tokio::test]
async fn a_crashing_service_counts_restarts_and_keeps_its_exit_status() -> Result<()> {
    let sandbox = boot("ferryd-bus-crash")?;
    sandbox.install_unit("crasher.service", CRASHER)?;
    sandbox.install_unit(
        "oneshot-fail.service",
        "[Service]\nType=oneshot\nExecStart=/bin/false\n",
    )?;
    let bus = SystemdBus::at_address(&sandbox.bus_address()).await?;

    // Type=simple: the job is done once the process is forked, whatever it does.
    assert_eq!(
        bus.restart("crasher.service", JOB_TIMEOUT).await?,
        JobOutcome::Done
    );
    let once = wait_for(&bus, "crasher.service", "restarted", |s| s.n_restarts >= 1).await?;
    // Between a crash and the next restart (`auto-restart`), the status holds the
    // exit of the process that just ended; while a new one runs it is 0.
    let more = wait_for(&bus, "crasher.service", "restarted again", |s| {
        s.n_restarts > once.n_restarts && s.sub_state == "auto-restart"
    })
    .await?;
    assert!(more.n_restarts > once.n_restarts);
    assert_eq!(more.exec_main_status, 1, "{more:?}");
    assert_eq!(more.exec_main_code, libc::CLD_EXITED, "{more:?}");

    assert_eq!(
        bus.stop("crasher.service", JOB_TIMEOUT).await?,
        JobOutcome::Done
    );

    // Type=oneshot: the job waits for the process, and reports its failure.
    assert_eq!(
        bus.start("oneshot-fail.service", JOB_TIMEOUT).await?,
        JobOutcome::Failed
    );
    let failed = bus.status("oneshot-fail.service").await?;
    assert_eq!(failed.active_state, "failed", "{failed:?}");
    assert_eq!(failed.exec_main_status, 1, "{failed:?}");

    sandbox.stop()
}

#[tokio::test]
async fn missing_units_slow_jobs_and_bad_addresses_are_typed_errors() -> Result<()> {
    let sandbox = boot("ferryd-bus-errors")?;
    sandbox.install_unit(
        "slow.service",
        "[Service]\nType=oneshot\nExecStart=/bin/sleep 1000\n",
    )?;
    let bus = SystemdBus::at_address(&sandbox.bus_address()).await?;

    match bus.status("missing.service").await {
        Err(SystemdError::NoSuchUnit(unit)) => assert_eq!(unit, "missing.service"),
        other => panic!("status of a missing unit: {other:?}"),
    }
    let err = bus
        .restart("missing.service", JOB_TIMEOUT)
        .await
        .expect_err("restart of a missing unit");
    assert!(
        matches!(&err, SystemdError::NoSuchUnit(u) if u == "missing.service"),
        "{err:?}"
    );
    assert!(err.to_string().contains("`missing.service`"), "{err}");

    // Not a service: no `NRestarts` to read.
    let err = bus
        .status("multi-user.target")
        .await
        .expect_err("status of a target");
    assert!(
        matches!(&err, SystemdError::Property { unit, .. } if unit == "multi-user.target"),
        "{err:?}"
    );

    // A job that does not finish in time is a Timeout naming the unit.
    let err = bus
        .start("slow.service", Duration::from_millis(300))
        .await
        .expect_err("a oneshot that sleeps cannot finish in 300 ms");
    assert!(
        matches!(&err, SystemdError::Timeout { unit, action: "start", .. } if unit == "slow.service"),
        "{err:?}"
    );
    // The job was left to systemd; stopping replaces it.
    assert_eq!(
        bus.stop("slow.service", JOB_TIMEOUT).await?,
        JobOutcome::Done
    );

    sandbox.stop()?;

    let err = SystemdBus::at_address("unix:path=/nonexistent/ferryd-test/bus")
        .await
        .err()
        .context("connected to a bus that does not exist")?;
    assert!(matches!(err, SystemdError::Connect { .. }), "{err:?}");
    assert!(
        err.to_string().contains("/nonexistent/ferryd-test/bus"),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn deliberate_restarts_are_not_refused_by_the_start_rate_limit() -> Result<()> {
    let sandbox = boot("ferryd-bus-limit")?;
    // Two starts per minute: the third restart in a row would end
    // `start-limit-hit` (JobOutcome::Failed) if the agent did not reset it.
    sandbox.install_unit(
        "limited.service",
        "[Unit]\nStartLimitIntervalSec=60s\nStartLimitBurst=2\n\n[Service]\nExecStart=/bin/sleep 1000\n",
    )?;
    let bus = SystemdBus::at_address(&sandbox.bus_address()).await?;
    for i in 0..5 {
        assert_eq!(
            bus.restart("limited.service", JOB_TIMEOUT).await?,
            JobOutcome::Done,
            "restart {i}"
        );
    }
    // The limit is real: systemctl, which does not reset it, is refused
    // within three more restarts.
    let mut refused = false;
    for _ in 0..3 {
        refused |= !sandbox
            .systemctl(&["restart", "limited.service"])?
            .status
            .success();
    }
    ensure!(
        refused,
        "systemctl restarted past the start limit: the test proves nothing"
    );
    // And the agent's restart still goes through.
    assert_eq!(
        bus.restart("limited.service", JOB_TIMEOUT).await?,
        JobOutcome::Done
    );
    assert!(bus.status("limited.service").await?.is_running());
    sandbox.stop()
}
