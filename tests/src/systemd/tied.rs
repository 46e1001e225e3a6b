//! Child processes that die with the test process, however it ends.
//!
//! The kernel's `PR_SET_PDEATHSIG` sends a signal to a child when its parent
//! *thread* exits, not its parent process. `cargo test` runs each test on a
//! thread of its own, so a child spawned straight from a test with a death
//! signal would be killed when that test's thread ends, while a child without
//! one outlives a SIGKILLed test binary. [`spawn`] therefore hands the spawning
//! to one thread that lives as long as the process: its children get SIGKILL
//! exactly when the test process dies (a normal exit included), and not before.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::mpsc::{self, Sender};
use std::sync::{Mutex, OnceLock};

use anyhow::{anyhow, Context, Result};

type Job = Box<dyn FnOnce() + Send>;

/// The queue of the spawning thread, started on first use.
fn spawner() -> Sender<Job> {
    static SPAWNER: OnceLock<Mutex<Sender<Job>>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        // The thread owns the receiver and the static keeps a sender, so it
        // never runs out of work to wait for: it lives as long as the process.
        // If it cannot start, `rx` is dropped and every send below fails.
        let spawned = std::thread::Builder::new()
            .name("ferry-tests-spawner".into())
            .spawn(move || {
                for job in rx {
                    job();
                }
            });
        if let Err(err) = spawned {
            eprintln!("ferry-tests: cannot start the spawner thread: {err}");
        }
        Mutex::new(tx)
    });
    lock(tx).clone()
}

fn lock(tx: &Mutex<Sender<Job>>) -> std::sync::MutexGuard<'_, Sender<Job>> {
    // A Sender cannot be left half-updated: a poisoned lock is still usable.
    tx.lock().unwrap_or_else(|e| e.into_inner())
}

/// Spawns `cmd` so that the kernel SIGKILLs it when this test process dies.
pub(crate) fn spawn(mut cmd: Command) -> Result<Child> {
    let shown = format!("{cmd:?}");
    let parent = std::process::id();
    // SAFETY: prctl and getppid are async-signal-safe, and the closure
    // allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before the death signal was armed.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner()
        .send(Box::new(move || {
            let _ = reply_tx.send(cmd.spawn());
        }))
        .map_err(|_| anyhow!("the spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| anyhow!("the spawner thread is gone"))?
        .with_context(|| format!("cannot start {shown}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn outlives_the_thread_that_asked() {
        let child = std::thread::spawn(|| {
            let mut cmd = Command::new("/bin/sleep");
            cmd.arg("30");
            spawn(cmd).unwrap()
        })
        .join()
        .unwrap();
        // The asking thread has ended; the child must still run.
        std::thread::sleep(Duration::from_millis(200));
        let mut child = child;
        assert!(child.try_wait().unwrap().is_none());
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
