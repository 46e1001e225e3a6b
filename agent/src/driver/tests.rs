//! The driver in process: a fake systemd behind [`UnitManager`], a state
//! directory of its own, one test per row of the resume table and per
//! outcome of the steps after the download (the poll and the download are
//! proven against real repositories in `repo/tests.rs` and end to end).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::repo::RepoConfig;
use crate::state::Denied;
use crate::systemd::{JobOutcome, SystemdError, UnitStatus};

/// systemd as the tests script it: every restart job ends `done`, and the
/// unit then runs healthy, or has failed while `unhealthy` is set and fewer
/// than `heals_at` restarts were asked for.
#[derive(Clone)]
struct FakeSystemd {
    unhealthy: Arc<AtomicBool>,
    heals_at: Arc<AtomicU32>,
    restarts: Arc<AtomicU32>,
}

impl Default for FakeSystemd {
    fn default() -> Self {
        FakeSystemd {
            unhealthy: Arc::default(),
            heals_at: Arc::new(AtomicU32::new(u32::MAX)),
            restarts: Arc::default(),
        }
    }
}

impl FakeSystemd {
    fn status_now(&self) -> UnitStatus {
        let failed = self.unhealthy.load(Ordering::SeqCst)
            && self.restarts.load(Ordering::SeqCst) < self.heals_at.load(Ordering::SeqCst);
        UnitStatus {
            active_state: if failed { "failed" } else { "active" }.into(),
            sub_state: if failed { "failed" } else { "running" }.into(),
            n_restarts: 0,
            exec_main_status: if failed { 3 } else { 0 },
            exec_main_code: 0,
            main_pid: 100 + self.restarts.load(Ordering::SeqCst),
            active_enter_timestamp_us: 1,
        }
    }
}

impl UnitManager for FakeSystemd {
    fn restart(
        &self,
        _unit: &str,
        _timeout: Duration,
    ) -> impl std::future::Future<Output = Result<JobOutcome, SystemdError>> + Send {
        self.restarts.fetch_add(1, Ordering::SeqCst);
        async { Ok(JobOutcome::Done) }
    }
    async fn stop(&self, _unit: &str, _timeout: Duration) -> Result<JobOutcome, SystemdError> {
        Ok(JobOutcome::Done)
    }
    async fn start(&self, _unit: &str, _timeout: Duration) -> Result<JobOutcome, SystemdError> {
        Ok(JobOutcome::Done)
    }
    fn status(
        &self,
        _unit: &str,
    ) -> impl std::future::Future<Output = Result<UnitStatus, SystemdError>> + Send {
        let s = self.status_now();
        async move { Ok(s) }
    }
}

struct Device {
    agent: Agent<FakeSystemd>,
    systemd: FakeSystemd,
    store: Store,
    _dir: tempfile::TempDir,
}

/// A device with one app, `a`, whose releases `1` and `2` are stored.
fn device(extra_app: &str) -> (Device, Release, Release) {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "repository = \"http://127.0.0.1:9\"\nroot = \"root.json\"\nstate-dir = \"{}\"\ndevice-id = \"test\"\n[[app]]\nname = \"a\"\nunit = \"a.service\"\nprobation = \"0s\"\n{extra_app}\n",
        dir.path().join("state").display()
    );
    let settings = Settings::parse(&text, dir.path()).unwrap();
    let store = Store::open(&settings.state_dir, "a").unwrap();
    let mut releases = Vec::new();
    for (version, serial) in [("1.0.0", 1), ("2.0.0", 2)] {
        let src = dir.path().join(format!("bin-{version}"));
        std::fs::write(&src, format!("binary {version}")).unwrap();
        let (sha256, size) = ferry_format::digest::sha256_file(&src).unwrap();
        let r = Release {
            version: version.into(),
            serial,
            dir: Release::dir_name(version, &sha256),
            sha256,
            size,
        };
        store.store_binary(&src, &r).unwrap();
        releases.push(r);
    }
    let systemd = FakeSystemd::default();
    let repo = RepoClient::new(RepoConfig::new("http://127.0.0.1:9")).unwrap();
    let agent = Agent::new(settings, systemd.clone(), repo, None);
    let v2 = releases.pop().unwrap();
    let v1 = releases.pop().unwrap();
    (
        Device {
            agent,
            systemd,
            store,
            _dir: dir,
        },
        v1,
        v2,
    )
}

impl Device {
    /// Persists `state` as a crash would have left it: v1 current.
    fn crashed_in(&self, v1: &Release, phase: Phase, attempts: u32) {
        self.store.swap_to(v1, None).unwrap();
        let mut s = AppState::new("a");
        s.current = Some(v1.clone());
        s.phase = phase;
        s.attempts = attempts;
        s.save(&self.store.state_path()).unwrap();
    }

    fn state(&self) -> AppState {
        AppState::load(&self.store.state_path(), "a").unwrap()
    }

    async fn pass(&self, intent: Intent) -> Result<Outcome> {
        let app = self.agent.settings.apps[0].clone();
        self.agent.drive(&app, intent).await
    }

    fn current_dir(&self) -> Option<String> {
        self.store.link_target("current")
    }
}

#[tokio::test]
async fn idle_with_no_repository_is_a_transient_error_and_changes_nothing() {
    let (d, v1, _) = device("");
    d.crashed_in(&v1, Phase::Idle, 0);
    assert!(d.pass(Intent::Poll).await.is_err());
    assert_eq!(d.state().phase, Phase::Idle);
    assert_eq!(d.current_dir(), Some(v1.dir));
}

#[tokio::test]
async fn downloading_resumes_by_abandoning_then_polling() {
    let (d, v1, v2) = device("");
    d.crashed_in(&v1, Phase::Downloading { target: v2 }, 0);
    // The poll after the abandon fails (no repository): transient.
    assert!(d.pass(Intent::Poll).await.is_err());
    assert_eq!(d.state().phase, Phase::Idle);
    assert_eq!(d.current_dir(), Some(v1.dir));
}

#[tokio::test]
async fn verified_resumes_by_swapping_restarting_and_committing() {
    let (d, v1, v2) = device("");
    d.crashed_in(&v1, Phase::Verified { target: v2.clone() }, 0);
    let outcome = d.pass(Intent::Poll).await.unwrap();
    assert_eq!(outcome, Outcome::Committed("2.0.0".into()));
    let s = d.state();
    assert_eq!(s.phase, Phase::Idle);
    assert_eq!(s.current.as_ref(), Some(&v2));
    assert_eq!(s.previous.as_ref(), Some(&v1));
    assert_eq!(s.last_serial, 2);
    assert_eq!(s.attempts, 0);
    assert_eq!(
        s.last_result.as_ref().map(|r| r.outcome),
        Some(ReportOutcome::Committed)
    );
    assert_eq!(d.current_dir(), Some(v2.dir));
    assert_eq!(d.systemd.restarts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn verified_with_a_damaged_binary_is_abandoned() {
    let (d, v1, v2) = device("");
    std::fs::write(d.store.binary_path(&v2), "tampered").unwrap();
    d.crashed_in(&v1, Phase::Verified { target: v2 }, 0);
    // Abandoned, then the poll fails: nothing swapped.
    assert!(d.pass(Intent::Poll).await.is_err());
    assert_eq!(d.state().phase, Phase::Idle);
    assert_eq!(d.current_dir(), Some(v1.dir));
    assert_eq!(d.systemd.restarts.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn installed_restarting_and_probation_resume_with_a_restart_and_a_whole_probation() {
    for phase in ["installed", "restarting", "probation"] {
        let (d, v1, v2) = device("");
        d.store.swap_to(&v2, Some(&v1)).unwrap();
        let target = v2.clone();
        let p = match phase {
            "installed" => Phase::Installed { target },
            "restarting" => Phase::Restarting { target },
            _ => Phase::Probation { target },
        };
        let mut s = AppState::new("a");
        s.current = Some(v2.clone());
        s.previous = Some(v1.clone());
        s.phase = p;
        s.attempts = 1;
        s.save(&d.store.state_path()).unwrap();
        let outcome = d.pass(Intent::Poll).await.unwrap();
        assert_eq!(outcome, Outcome::Committed("2.0.0".into()), "{phase}");
        assert_eq!(d.state().phase, Phase::Idle, "{phase}");
        assert_eq!(d.current_dir(), Some(v2.dir.clone()), "{phase}");
        assert_eq!(d.systemd.restarts.load(Ordering::SeqCst), 1, "{phase}");
    }
}

#[tokio::test]
async fn an_unhealthy_release_is_rolled_back_and_denied() {
    let (d, v1, v2) = device("");
    d.crashed_in(&v1, Phase::Verified { target: v2.clone() }, 0);
    // v2 fails; v1, restarted by the rollback, runs healthy.
    d.systemd.unhealthy.store(true, Ordering::SeqCst);
    d.systemd.heals_at.store(2, Ordering::SeqCst);
    let outcome = d.pass(Intent::Poll).await.unwrap();
    assert!(matches!(outcome, Outcome::RolledBack(_)), "{outcome:?}");
    let s = d.state();
    assert_eq!(s.phase, Phase::Idle);
    assert_eq!(s.current.as_ref(), Some(&v1));
    assert!(s.is_denied(&v2.sha256, 2));
    assert_eq!(d.current_dir(), Some(v1.dir));
}

#[tokio::test]
async fn rolling_back_resumes_and_holds_when_the_previous_release_is_unhealthy_too() {
    let (d, v1, v2) = device("");
    d.store.swap_to(&v2, Some(&v1)).unwrap();
    let mut s = AppState::new("a");
    s.current = Some(v2.clone());
    s.previous = Some(v1.clone());
    s.phase = Phase::RollingBack {
        target: v2.clone(),
        reason: "exit 3".into(),
    };
    s.save(&d.store.state_path()).unwrap();
    d.systemd.unhealthy.store(true, Ordering::SeqCst);
    let outcome = d.pass(Intent::Poll).await.unwrap();
    assert!(matches!(outcome, Outcome::Hold(_)), "{outcome:?}");
    let s = d.state();
    assert!(matches!(s.phase, Phase::Hold { .. }));
    assert_eq!(d.current_dir(), Some(v1.dir.clone()));
    // Hold stays until an operator acts.
    assert!(matches!(
        d.pass(Intent::Poll).await.unwrap(),
        Outcome::Hold(_)
    ));
    assert_eq!(
        s.denied,
        vec![Denied {
            version: "2.0.0".into(),
            sha256: v2.sha256.clone(),
            serial: 2,
            reason: s.denied[0].reason.clone(),
        }]
    );
    // An operator's file that is refused does not end the hold.
    let junk = d.store.state_path().with_file_name("junk");
    std::fs::write(&junk, "not a ferry binary").unwrap();
    let copy = junk.clone();
    let e = d
        .pass(Intent::Install { copy, force: true })
        .await
        .map(|o| format!("{o:?}"))
        .unwrap_or_else(|e| format!("{e:#}"));
    assert!(e.contains("not a ferry binary"), "{e}");
    assert!(
        matches!(d.state().phase, Phase::Hold { .. }),
        "{:?}",
        d.state().phase
    );
    assert!(matches!(
        d.pass(Intent::Poll).await.unwrap(),
        Outcome::Hold(_)
    ));
}

#[tokio::test]
async fn a_release_started_too_often_without_an_outcome_is_rolled_back() {
    let (d, v1, v2) = device("");
    d.store.swap_to(&v2, Some(&v1)).unwrap();
    let mut s = AppState::new("a");
    s.current = Some(v2.clone());
    s.previous = Some(v1.clone());
    s.phase = Phase::Probation { target: v2.clone() };
    s.attempts = MAX_STARTS;
    s.save(&d.store.state_path()).unwrap();
    let outcome = d.pass(Intent::Poll).await.unwrap();
    match outcome {
        Outcome::RolledBack(m) => assert!(m.contains("started 5 times"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(d.current_dir(), Some(v1.dir));
}

#[tokio::test]
async fn an_operator_rollback_goes_back_and_denies_the_current_release() {
    let (d, v1, v2) = device("");
    d.store.swap_to(&v2, Some(&v1)).unwrap();
    let mut s = AppState::new("a");
    s.current = Some(v2.clone());
    s.previous = Some(v1.clone());
    s.save(&d.store.state_path()).unwrap();
    let outcome = d.pass(Intent::Rollback).await.unwrap();
    assert!(matches!(outcome, Outcome::RolledBack(_)), "{outcome:?}");
    assert_eq!(d.current_dir(), Some(v1.dir.clone()));
    assert!(d.state().is_denied(&v2.sha256, 2));
    // A second rollback has nothing older to go to: refused, and the
    // release it came back to stays current and allowed.
    let e = d.pass(Intent::Rollback).await.unwrap_err();
    assert!(format!("{e:#}").contains("cannot roll `a` back"), "{e:#}");
    assert_eq!(d.current_dir(), Some(v1.dir.clone()));
    assert!(!d.state().is_denied(&v1.sha256, 1));
    assert!(
        matches!(d.state().phase, Phase::Idle),
        "{:?}",
        d.state().phase
    );
    // Without a previous version there is nothing to go back to.
    let (d, v1, _) = device("");
    d.crashed_in(&v1, Phase::Idle, 0);
    let e = d.pass(Intent::Rollback).await.unwrap_err();
    assert!(format!("{e:#}").contains("cannot roll `a` back"), "{e:#}");
}

/// An `install-window` line that excludes now, whatever the time of day.
fn closed_window() -> String {
    let now = gate::local_minute_of_day();
    let start = (now + 120) % 1440;
    let end = (now + 180) % 1440;
    format!(
        "install-window = \"{:02}:{:02}-{:02}:{:02}\"",
        start / 60,
        start % 60,
        end / 60,
        end % 60
    )
}

#[tokio::test]
async fn a_swap_made_just_before_a_crash_is_recorded_and_watched_even_outside_the_window() {
    let (d, v1, v2) = device(&closed_window());
    d.crashed_in(&v1, Phase::Verified { target: v2.clone() }, 0);
    // The links were swapped; the crash came before state.json said so.
    d.store.swap_to(&v2, Some(&v1)).unwrap();
    let outcome = d.pass(Intent::Poll).await.unwrap();
    assert_eq!(outcome, Outcome::Committed("2.0.0".into()));
    let s = d.state();
    assert_eq!(
        s.current.as_ref().map(|r| r.dir.as_str()),
        Some(v2.dir.as_str())
    );
    assert_eq!(
        s.previous.as_ref().map(|r| r.dir.as_str()),
        Some(v1.dir.as_str())
    );
    assert_eq!(s.waiting, None);
}

#[tokio::test]
async fn outside_the_window_a_verified_release_waits_and_an_operator_install_does_not() {
    let (d, v1, v2) = device(&closed_window());
    d.crashed_in(&v1, Phase::Verified { target: v2.clone() }, 0);
    let outcome = d.pass(Intent::Poll).await.unwrap();
    match &outcome {
        Outcome::Waiting(why) => assert!(why.contains("install window"), "{why}"),
        other => panic!("{other:?}"),
    }
    let s = d.state();
    assert!(matches!(s.phase, Phase::Verified { .. }));
    assert!(s.waiting.as_deref().unwrap().contains("install window"));
    assert_eq!(d.current_dir(), Some(v1.dir.clone()));
    // Going on as an operator's install: the window does not apply.
    let outcome = d.pass(Intent::Continue { operator: true }).await.unwrap();
    assert_eq!(outcome, Outcome::Committed("2.0.0".into()));
    assert_eq!(d.state().waiting, None);
    assert_eq!(d.current_dir(), Some(v2.dir));
}

#[tokio::test]
async fn an_inhibitor_holds_the_swap_until_it_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("inhibit");
    let (d, v1, v2) = device(&format!("inhibit-file = \"{}\"", file.display()));
    d.crashed_in(&v1, Phase::Verified { target: v2.clone() }, 0);
    std::fs::write(&file, "").unwrap();
    let outcome = d.pass(Intent::Poll).await.unwrap();
    assert!(
        matches!(&outcome, Outcome::Waiting(why) if why.contains("inhibitor")),
        "{outcome:?}"
    );
    // Held over D-Bus as well: both must go.
    std::fs::remove_file(&file).unwrap();
    let fd = d
        .agent
        .inhibitors
        .hold("a", "kiosk", "a film is on")
        .unwrap();
    let outcome = d.pass(Intent::Continue { operator: false }).await.unwrap();
    assert!(
        matches!(&outcome, Outcome::Waiting(why) if why.contains("kiosk")),
        "{outcome:?}"
    );
    let released = d.agent.inhibitors.released();
    drop(fd);
    tokio::time::timeout(Duration::from_secs(5), released)
        .await
        .unwrap();
    let outcome = d.pass(Intent::Continue { operator: false }).await.unwrap();
    assert_eq!(outcome, Outcome::Committed("2.0.0".into()));
    assert_eq!(d.current_dir(), Some(v2.dir));
}

#[test]
fn install_windows_parse_and_wrap_past_midnight() {
    use crate::config::InstallWindow;
    let w: InstallWindow = "22:00-04:00".parse().unwrap();
    assert!(w.contains(23 * 60) && w.contains(60) && !w.contains(12 * 60));
    let w: InstallWindow = "02:00-05:00".parse().unwrap();
    assert!(w.contains(2 * 60) && !w.contains(5 * 60) && !w.contains(60));
    assert_eq!(w.to_string(), "02:00-05:00");
    for bad in ["2-5", "25:00-01:00", "02:00-02:00", "02:00", "2:00-05:00"] {
        assert!(bad.parse::<InstallWindow>().is_err(), "{bad}");
    }
}
