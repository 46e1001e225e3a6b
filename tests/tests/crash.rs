//! The crash campaign: ferryd built with crash points (`--features
//! failpoints`, `target/<profile>/ferryd-failpoints`) runs on a real systemd
//! board and is made to die — at every crash point once, then by SIGKILL at
//! random moments of updates. After every death it is restarted by systemd
//! (as on a device) and the invariants are checked:
//!
//! - `current` names a complete binary whose SHA-256 is the one the state
//!   file records for it (verified), at every moment;
//! - the state file parses, at every moment;
//! - every update ends committed (good release) or rolled back (bad one);
//! - no version is lost that `keep` promises: `current` and `previous`
//!   resolve, every stored version is complete, and at least
//!   `min(keep, versions stored)` remain.
//!
//! `FERRY_CRASH_KILLS=N` sets the random kills (12 by default, so CI stays
//! short); `scripts/crash-campaign.sh` runs 1,000. `FERRY_CRASH_SEED`
//! replays a run. Both tests print "N kills, B broken installs, L lost
//! versions" and fail unless B and L are 0.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::repo::{current_version, variant, version_served, Repo, EXITS_AT_START, WAIT};
use common::text;
use ferry_format::digest::sha256_file;
use ferry_tests::board::{AgentConfig, Board};
use ferry_tests::{programs, server};

/// `keep` on the campaign's board.
const KEEP: usize = 3;

/// Points met only when the new release is unhealthy.
const ROLLBACK_PATH: &[&str] = &[
    "after-persist:unhealthy",
    "before-rollback",
    "before-rollback-restart",
    "after-persist:rolled-back",
];

/// The releases the campaign publishes in turn.
struct Releases {
    good: [(String, PathBuf); 2],
    bad: (String, PathBuf),
}

impl Releases {
    fn build() -> Releases {
        Releases {
            good: [
                ("1.0.0".into(), common::simple_api()),
                ("3.0.0".into(), variant("3.0.0", None)),
            ],
            bad: ("2.0.0".into(), variant("2.0.0", Some(EXITS_AT_START))),
        }
    }
}

/// A board running the crash-point build of ferryd, restarted by systemd
/// 300 ms after each death, with v1 installed.
struct Campaign {
    repo: Repo,
    board: Board,
    port: u16,
    /// Version directories stored so far (good and bad).
    stored: BTreeSet<String>,
    /// What runs now (after the last finished update).
    running: String,
    kills: usize,
    broken: Vec<String>,
    lost: Vec<String>,
}

impl Campaign {
    fn start(name: &str, releases: &Releases) -> Campaign {
        let agent = programs::program("ferryd-failpoints");
        let repo = Repo::new();
        let board = Board::start_with_agent(name, &agent).unwrap();
        let port = server::free_port().unwrap();
        board
            .configure(&AgentConfig {
                repository: &repo.nginx.url(),
                root: &repo.root(),
                app_extra: &format!("probation = \"1s\"\nkeep = {KEEP}"),
                // Reports queue up (nobody listens there): the campaign
                // crashes between persisting a report and queueing it too.
                top_extra: "report-url = \"http://127.0.0.1:9/reports\"",
                port,
            })
            .unwrap();
        board
            .agent_drop_in(
                "crash",
                "[Unit]\nStartLimitIntervalSec=0\n\n[Service]\nRestartSec=300ms\nLimitCORE=0\nEnvironment=FERRY_FAILPOINT_FILE=/var/lib/ferry/failpoint\n",
            )
            .unwrap();
        let mut c = Campaign {
            repo,
            board,
            port,
            stored: BTreeSet::new(),
            running: String::new(),
            kills: 0,
            broken: Vec::new(),
            lost: Vec::new(),
        };
        c.repo.publish(&releases.good[0].1, &[]);
        let out = c
            .board
            .sandbox
            .systemctl(&["start", "ferryd.service"])
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        c.finish_update("1.0.0", "committed", "v1");
        c
    }

    fn arm_file(&self) -> PathBuf {
        self.board.state.join("failpoint")
    }

    /// Arms one crash point (written whole, then renamed into place).
    fn arm(&self, point: &str) {
        let tmp = self.board.state.join(".failpoint.tmp");
        std::fs::write(&tmp, point).unwrap();
        std::fs::rename(&tmp, self.arm_file()).unwrap();
    }

    /// Waits for the armed point to fire; the agent has then died.
    fn wait_fired(&mut self, point: &str) {
        let fired = self.board.state.join("failpoint.fired");
        let deadline = Instant::now() + WAIT;
        while !fired.exists() {
            if Instant::now() > deadline {
                let status = self.board.app_status().unwrap_or_default();
                let journal = self
                    .board
                    .sandbox
                    .journal(&["-u", "ferryd.service", "-n", "40"])
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default();
                panic!("crash point `{point}` was never reached; status: {status:#}\n{journal}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        std::fs::remove_file(&fired).unwrap();
        self.kills += 1;
    }

    /// SIGKILLs the agent if it runs; whether it did.
    fn kill(&mut self) -> bool {
        let pid = self
            .board
            .sandbox
            .property("ferryd.service", "MainPID")
            .unwrap();
        if pid == "0" {
            return false;
        }
        let out = self.board.sandbox.exec(&["kill", "-9", &pid]).unwrap();
        if out.status.success() {
            self.kills += 1;
        }
        out.status.success()
    }

    /// Checks what must hold at every moment; records a broken install.
    fn check_any_moment(&mut self, when: &str) {
        if let Err(e) = check_current(&self.board.app_dir(), false) {
            self.broken.push(format!("{when}: {e}"));
        }
    }

    /// Waits until the update to `version` ends with `outcome`, then checks
    /// the install and the kept versions.
    fn finish_update(&mut self, version: &str, outcome: &str, when: &str) {
        let expected_current = if outcome == "committed" {
            version.to_owned()
        } else {
            self.running.clone()
        };
        let waited = self
            .board
            .wait_for(&format!("{when}: {version} {outcome}"), WAIT, |s| {
                s["phase"] == "idle"
                    && current_version(s) == expected_current
                    && s["last_result"]["outcome"] == outcome
                    && s["last_result"]["version"] == version
            });
        if let Err(e) = waited {
            self.broken.push(format!("{e:#}"));
            self.report();
            panic!("{when}: the update did not end {outcome}; see above");
        }
        self.running = expected_current.clone();
        let app_dir = self.board.app_dir();
        match check_current(&app_dir, true) {
            Ok(stored) => self.stored.extend(stored),
            Err(e) => self.broken.push(format!("{when}: {e}")),
        }
        if let Err(e) = check_kept(&app_dir, KEEP, self.stored.len()) {
            self.lost.push(format!("{when}: {e}"));
        }
        if version_served(self.port).as_deref() != Some(expected_current.as_str()) {
            self.broken
                .push(format!("{when}: the app does not serve {expected_current}"));
        }
    }

    fn report(&self) -> String {
        let line = format!(
            "{} kills, {} broken installs, {} lost versions",
            self.kills,
            self.broken.len(),
            self.lost.len()
        );
        println!("{line}");
        for b in &self.broken {
            println!("broken: {b}");
        }
        for l in &self.lost {
            println!("lost: {l}");
        }
        line
    }

    fn assert_clean(&self) {
        let line = self.report();
        assert!(
            self.broken.is_empty() && self.lost.is_empty(),
            "crash campaign failed: {line}"
        );
    }
}

/// The releases `state.json` names under `keys` (`current`, `previous`,
/// `target` of an update in progress), as (directory, SHA-256).
fn named_releases(state: &serde_json::Value, keys: &[&str]) -> Vec<(String, String)> {
    keys.iter()
        .filter_map(|k| {
            let r = &state[*k];
            Some((
                r["dir"].as_str()?.to_owned(),
                r["sha256"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// `current` resolves to a complete binary whose hash the state file records
/// (when `idle`, exactly `current`'s, and `previous` checks out too). Returns
/// the version directories on disk.
fn check_current(app_dir: &Path, idle: bool) -> Result<Vec<String>, String> {
    let state_bytes =
        std::fs::read(app_dir.join("state.json")).map_err(|e| format!("state.json: {e}"))?;
    let state: serde_json::Value = serde_json::from_slice(&state_bytes)
        .map_err(|e| format!("state.json does not parse: {e}"))?;
    let phase = state["phase"]
        .as_str()
        .ok_or_else(|| format!("state.json has no phase: {state}"))?;
    if idle && phase != "idle" {
        return Err(format!("phase is {phase}, not idle"));
    }
    let check_link = |link: &str, allowed: &[(String, String)]| -> Result<(), String> {
        let target = std::fs::read_link(app_dir.join(link))
            .map_err(|e| format!("`{link}` does not resolve: {e}"))?;
        let dir = target
            .file_name()
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some((_, sha)) = allowed.iter().find(|(d, _)| *d == dir) else {
            return Err(format!(
                "`{link}` -> {dir}, which state.json does not name ({phase})"
            ));
        };
        let binary = app_dir.join(&target).join("simple_api");
        let (got, _) = sha256_file(&binary).map_err(|e| format!("`{link}` binary: {e}"))?;
        if got != *sha {
            return Err(format!(
                "`{link}` -> {dir}: SHA-256 {got}, state.json says {sha}"
            ));
        }
        Ok(())
    };
    if idle {
        check_link("current", &named_releases(&state, &["current"]))?;
        if state["previous"].is_object() {
            check_link("previous", &named_releases(&state, &["previous"]))?;
        }
    } else {
        check_link(
            "current",
            &named_releases(&state, &["current", "previous", "target"]),
        )?;
    }
    let mut dirs = Vec::new();
    for e in std::fs::read_dir(app_dir.join("versions")).map_err(|e| e.to_string())? {
        let e = e.map_err(|e| e.to_string())?;
        let name = e.file_name().to_string_lossy().into_owned();
        if idle && !ferry_tests::board::is_complete_binary(&e.path().join("simple_api")) {
            return Err(format!("versions/{name} holds no complete binary"));
        }
        dirs.push(name);
    }
    Ok(dirs)
}

/// At least `min(keep, stored)` complete versions remain.
fn check_kept(app_dir: &Path, keep: usize, stored: usize) -> Result<(), String> {
    let complete = std::fs::read_dir(app_dir.join("versions"))
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .filter(|e| ferry_tests::board::is_complete_binary(&e.path().join("simple_api")))
        .count();
    if complete < keep.min(stored) {
        return Err(format!(
            "{complete} complete versions left; keep = {keep} and {stored} were stored"
        ));
    }
    Ok(())
}

/// The names in `agent/src/failpoint.rs`'s `ALL`, read from its source.
fn points_in_the_agent() -> Vec<String> {
    let src = std::fs::read_to_string(ferry_tests::workspace_root().join("agent/src/failpoint.rs"))
        .unwrap();
    let start = src.find("pub const ALL").expect("ALL in failpoint.rs");
    let end = start + src[start..].find("];").unwrap();
    src[start..end]
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The points to fire, in the order an update meets them: the agent's list,
/// with `before-download-chunk` at its 5th hit (the middle of a download).
fn points() -> Vec<String> {
    let all = points_in_the_agent();
    assert!(
        all.len() > 20 && ROLLBACK_PATH.iter().all(|p| all.iter().any(|a| a == p)),
        "agent/src/failpoint.rs's ALL no longer reads as expected: {all:?}"
    );
    all.into_iter()
        .map(|p| {
            if p == "before-download-chunk" {
                format!("{p}@5")
            } else {
                p
            }
        })
        .collect()
}

#[test]
fn every_crash_point_fires_once_and_the_device_recovers() {
    let releases = Releases::build();
    let mut c = Campaign::start("crashpoints", &releases);
    let mut next_good = 1;
    // `FERRY_CRASH_ONLY=a,b` runs only those points (to study one).
    let only = std::env::var("FERRY_CRASH_ONLY").ok();
    let points: Vec<String> = points()
        .into_iter()
        .filter(|p| {
            only.as_deref()
                .is_none_or(|o| o.split(',').any(|x| p.starts_with(x)))
        })
        .collect();
    for point in &points {
        let name = point.split('@').next().unwrap();
        if name == "after-persist:abandon" {
            // A tampered blob is refused and the attempt abandoned; once the
            // point has fired, the repository is repaired and the update ends.
            let (version, bin) = &releases.good[next_good];
            c.board
                .sandbox
                .systemctl(&["stop", "ferryd.service"])
                .unwrap();
            c.repo.publish(bin, &[]);
            let blob = tamper_blob(&c.repo);
            c.arm(point);
            c.board
                .sandbox
                .systemctl(&["start", "ferryd.service"])
                .unwrap();
            c.wait_fired(point);
            c.check_any_moment(point);
            std::fs::write(&blob.0, &blob.1).unwrap();
            c.finish_update(version, "committed", point);
            next_good = 1 - next_good;
            continue;
        }
        c.arm(point);
        if ROLLBACK_PATH.contains(&name) {
            c.repo.publish(&releases.bad.1, &[]);
            c.wait_fired(point);
            c.check_any_moment(point);
            c.finish_update(&releases.bad.0, "rolled_back", point);
        } else {
            let (version, bin) = &releases.good[next_good];
            c.repo.publish(bin, &[]);
            c.wait_fired(point);
            c.check_any_moment(point);
            c.finish_update(version, "committed", point);
            next_good = 1 - next_good;
        }
    }
    assert_eq!(c.kills, points.len());
    c.assert_clean();
}

/// Flips a byte of the newest manifest's artifact; returns its path and
/// the original bytes.
fn tamper_blob(repo: &Repo) -> (PathBuf, Vec<u8>) {
    let blob = common::forge::Forge::new(repo).artifact_path();
    let good = std::fs::read(&blob).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x40;
    std::fs::write(&blob, bad).unwrap();
    (blob, good)
}

/// A small deterministic generator (xorshift64*): the seed replays a run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

#[test]
fn random_kills_during_updates_never_break_an_install() {
    let wanted: usize = std::env::var("FERRY_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let seed: u64 = std::env::var("FERRY_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("crash campaign: {wanted} random kills, FERRY_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let releases = Releases::build();
    let mut c = Campaign::start("randomkills", &releases);
    let mut next_good = 1;
    let mut round = 0u64;
    while c.kills < wanted {
        round += 1;
        let bad = round.is_multiple_of(4);
        let (version, bin) = if bad {
            &releases.bad
        } else {
            &releases.good[next_good]
        };
        c.repo.publish(bin, &[]);
        // One to three kills spread over the update's few seconds.
        for _ in 0..=rng.below(3) {
            std::thread::sleep(Duration::from_millis(rng.below(3_000)));
            if c.kill() {
                c.check_any_moment(&format!("kill {} (round {round})", c.kills));
            }
            if c.kills >= wanted {
                break;
            }
        }
        let outcome = if bad { "rolled_back" } else { "committed" };
        c.finish_update(version, outcome, &format!("round {round}"));
        if !bad {
            next_good = 1 - next_good;
        }
        if round.is_multiple_of(25) {
            println!(
                "round {round}: {} kills, {} broken, {} lost",
                c.kills,
                c.broken.len(),
                c.lost.len()
            );
        }
    }
    c.assert_clean();
}
