//! A point-to-point link between the host and a board that has a network
//! namespace of its own: a veth pair with a /30 on each end. The board reaches
//! servers the test runs on the host's end address (nginx, a report
//! collector), and nothing else. Deleting the host end (on drop, or when the
//! board's namespace dies) removes the pair.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context as _, Result};

use crate::tools;

/// One host–board link.
#[derive(Debug)]
pub struct Link {
    /// The host's address on the link.
    pub host: Ipv4Addr,
    /// The board's address on the link.
    pub board: Ipv4Addr,
    host_if: String,
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Links the board whose systemd has host pid `pid` (its network namespace)
/// to the host, in a subnet of 10.213.0.0/16 chosen from this process's pid
/// and a counter, so parallel test processes rarely collide.
pub fn link(pid: u32) -> Result<Link> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let ip = tools::find("ip", "iproute2")?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let me = std::process::id();
    let subnet = (me % 250 + 1) as u8;
    let slot = ((n % 63) * 4) as u8;
    let host = Ipv4Addr::new(10, 213, subnet, slot + 1);
    let board = Ipv4Addr::new(10, 213, subnet, slot + 2);
    let host_if = format!("fh{:x}n{n}", me & 0xffff);
    let board_if = format!("fb{:x}n{n}", me & 0xffff);
    run(Command::new(&ip).args([
        "link", "add", &host_if, "type", "veth", "peer", "name", &board_if,
    ]))?;
    let link = Link {
        host,
        board,
        host_if: host_if.clone(),
    };
    run(Command::new(&ip).args(["link", "set", &board_if, "netns", &pid.to_string()]))?;
    run(Command::new(&ip).args(["addr", "add", &format!("{host}/30"), "dev", &host_if]))?;
    run(Command::new(&ip).args(["link", "set", &host_if, "up"]))?;
    let nsenter = tools::find("nsenter", "util-linux")?;
    let inside = |args: &[&str]| -> Result<()> {
        run(Command::new(&nsenter)
            .args(["-t", &pid.to_string(), "-n", "--"])
            .arg(&ip)
            .args(args))
    };
    inside(&["addr", "add", &format!("{board}/30"), "dev", &board_if])?;
    inside(&["link", "set", &board_if, "up"])?;
    inside(&["link", "set", "lo", "up"])?;
    Ok(link)
}

impl Drop for Link {
    fn drop(&mut self) {
        // Best effort: the pair also goes when the board's namespace dies.
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}
