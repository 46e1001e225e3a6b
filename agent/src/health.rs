//! Health of an app after a restart: the unit must stay active, with the same
//! main process and no automatic restarts, for the whole probation time; then
//! the optional HTTP check (2xx within a timeout) and command check (exit 0)
//! must pass within their retries. The first failure is the verdict.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::config::HealthSettings;
use crate::systemd::{UnitManager, UnitStatus};

/// How often the unit is looked at during probation.
const POLL: Duration = Duration::from_millis(250);

/// Watches `unit` from `started` (its status right after the restart job).
/// Returns why it is unhealthy, if it is.
pub async fn probation<U: UnitManager>(
    units: &U,
    unit: &str,
    started: &UnitStatus,
    health: &HealthSettings,
) -> Result<(), String> {
    let deadline = Instant::now() + health.probation;
    loop {
        // Each answer from systemd is a sign of life; a look that hangs is
        // cut at its deadline and starves the watchdog meanwhile.
        crate::notify::watchdog();
        let s = tokio::time::timeout(crate::driver::CALL_DEADLINE, units.status(unit))
            .await
            .map_err(|_| {
                format!(
                    "systemd did not answer for the unit's state within {:?}",
                    crate::driver::CALL_DEADLINE
                )
            })?
            .map_err(|e| format!("cannot read the unit's state: {e}"))?;
        if s.active_state != "active" {
            return Err(format!(
                "unit `{unit}` is {}/{} (main process exit status {})",
                s.active_state, s.sub_state, s.exec_main_status
            ));
        }
        if s.n_restarts > started.n_restarts {
            return Err(format!(
                "unit `{unit}` restarted {} time(s) during probation (last exit status {})",
                s.n_restarts - started.n_restarts,
                s.exec_main_status
            ));
        }
        if started.main_pid != 0 && s.main_pid != started.main_pid {
            return Err(format!(
                "unit `{unit}`'s main process changed during probation (crashed and restarted)"
            ));
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
    if let Some(url) = &health.url {
        retry(health, || http_check(url, health.timeout)).await?;
    }
    if let Some(cmd) = &health.command {
        let owner = match &health.user {
            Some(u) => Some(crate::users::lookup(u).map_err(|e| format!("{e:#}"))?),
            None => None,
        };
        retry(health, || command_check(cmd, owner, health.timeout)).await?;
    }
    Ok(())
}

async fn retry<F, Fut>(health: &HealthSettings, mut check: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut last = String::new();
    for attempt in 0..health.retries {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        match check().await {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(format!("{last} (after {} attempts)", health.retries))
}

async fn http_check(url: &str, timeout: Duration) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("health check client: {e}"))?;
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("health check `{url}` failed: {e}"))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("health check `{url}` answered {}", resp.status()))
    }
}

/// Runs the health command, as the app's user when one is set: a check
/// needs no more rights than the app it checks.
async fn command_check(
    cmd: &[String],
    owner: Option<(u32, u32)>,
    timeout: Duration,
) -> Result<(), String> {
    let mut command = tokio::process::Command::new(&cmd[0]);
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
    }
    let mut child = command
        .args(&cmd[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("health command `{}` cannot start: {e}", cmd[0]))?;
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!(
            "health command `{}` exited with {status}",
            cmd.join(" ")
        )),
        Ok(Err(e)) => Err(format!("health command `{}`: {e}", cmd[0])),
        Err(_) => Err(format!(
            "health command `{}` took longer than {timeout:?}",
            cmd.join(" ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The command runs as the app's user: `nobody` here (the tests run as
    /// root, which may switch to it).
    #[tokio::test]
    async fn the_health_command_runs_as_the_apps_user() {
        let cmd: Vec<String> = ["sh", "-c", "test \"$(id -u)\" = 65534"]
            .map(String::from)
            .to_vec();
        let t = Duration::from_secs(5);
        if !nix::unistd::geteuid().is_root() {
            // Only root can run a command as another user.
            assert!(command_check(&cmd, Some((65534, 65534)), t).await.is_err());
            return;
        }
        command_check(&cmd, Some((65534, 65534)), t).await.unwrap();
        assert!(command_check(&cmd, None, t).await.is_err());
    }
}
