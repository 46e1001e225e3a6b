//! A SIGKILL never loses written data, so the crash campaign cannot see a
//! missing `fsync`; a power cut would. This test records ferryd's file
//! syscalls with `strace` (ferryd and the launcher it runs to pre-extract,
//! on a real systemd board) across an install, an update and a rollback, and
//! checks the order that makes each rename durable:
//!
//! - the renamed (or hard-linked) file was flushed (`fsync`/`fdatasync`) before the rename —
//!   a symlink needs no flush (its target is in the directory entry), a
//!   directory tree is flushed by `syncfs`;
//! - the directory that received it is flushed after the rename, before the
//!   same process renames anything else.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use common::repo::{board_with, current_version, install_v1, variant, Repo, EXITS_AT_START, WAIT};
use common::text;

/// One syscall of interest, in trace order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    /// `fsync`/`fdatasync` of the file or directory at this path.
    Flush(PathBuf),
    /// `syncfs` through a descriptor of this path: its whole filesystem.
    SyncFs(PathBuf),
    /// A symlink created at this path.
    Symlink(PathBuf),
    /// A successful rename, or a hard link (how a file is published
    /// without replacing an existing one).
    Rename { from: PathBuf, to: PathBuf },
}

/// An argument of a strace line that names something.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Arg {
    /// A quoted string (a path, or a symlink's target).
    Quoted(String),
    /// A descriptor's path, as `strace -y` shows it: `5</dir>`.
    Fd(String),
}

/// The quoted strings and descriptor paths of a line's arguments, in order.
fn arguments(args: &str) -> Vec<Arg> {
    let mut out = Vec::new();
    let mut chars = args.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                let mut s = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => s.extend(chars.next()),
                        '"' => break,
                        c => s.push(c),
                    }
                }
                out.push(Arg::Quoted(s));
            }
            '<' => out.push(Arg::Fd(chars.by_ref().take_while(|c| *c != '>').collect())),
            _ => {}
        }
    }
    out
}

/// The paths among `args`, relative ones joined to the descriptor before them.
fn paths(args: &[Arg]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dir: Option<&str> = None;
    for a in args {
        match a {
            Arg::Fd(d) => dir = Some(d),
            Arg::Quoted(q) => {
                let p = Path::new(q);
                match dir.take() {
                    Some(d) if p.is_relative() => out.push(Path::new(d).join(p)),
                    _ => out.push(p.to_path_buf()),
                }
            }
        }
    }
    out
}

/// Parses `strace -f -y` output into (pid, call) pairs.
fn parse_trace(trace: &str) -> Vec<(u32, Call)> {
    let mut calls = Vec::new();
    for line in trace.lines() {
        let Some((pid, rest)) = line.trim_start().split_once(char::is_whitespace) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        let rest = rest.trim_start();
        let Some((name, args)) = rest.split_once('(') else {
            continue;
        };
        if rest.contains(") = -1") {
            continue;
        }
        let a = arguments(args);
        let call = match name {
            "fsync" | "fdatasync" => match a.first() {
                Some(Arg::Fd(p)) => Some(Call::Flush(p.into())),
                _ => None,
            },
            "syncfs" => match a.first() {
                Some(Arg::Fd(p)) => Some(Call::SyncFs(p.into())),
                _ => None,
            },
            "symlink" | "symlinkat" => paths(&a).last().cloned().map(Call::Symlink),
            "rename" | "renameat" | "renameat2" | "link" | "linkat" => match paths(&a).as_slice() {
                [from, to] => Some(Call::Rename {
                    from: from.clone(),
                    to: to.clone(),
                }),
                _ => None,
            },
            _ => None,
        };
        if let Some(call) = call {
            calls.push((pid, call));
        }
    }
    calls
}

/// What the rules find wrong, one line per rename.
fn violations(calls: &[(u32, Call)], watched: &[&Path]) -> (usize, Vec<String>) {
    let mut flushed: HashSet<PathBuf> = HashSet::new();
    let mut synced_trees: HashSet<PathBuf> = HashSet::new();
    let mut symlinks: HashSet<PathBuf> = HashSet::new();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (i, (pid, call)) in calls.iter().enumerate() {
        match call {
            Call::Flush(p) => {
                flushed.insert(p.clone());
            }
            Call::SyncFs(p) => {
                synced_trees.insert(p.clone());
            }
            Call::Symlink(p) => {
                symlinks.insert(p.clone());
            }
            Call::Rename { from, to } => {
                if !watched.iter().any(|w| to.starts_with(w)) {
                    continue;
                }
                checked += 1;
                let synced = flushed.contains(from) || synced_trees.contains(from);
                if !symlinks.contains(from) && !synced {
                    wrong.push(format!(
                        "{} renamed to {} without being flushed first",
                        from.display(),
                        to.display()
                    ));
                }
                let dir = to.parent().unwrap_or(Path::new("/"));
                let dir_flushed = calls[i + 1..]
                    .iter()
                    .filter(|(p, _)| p == pid)
                    .take_while(|(_, c)| !matches!(c, Call::Rename { .. }))
                    .any(|(_, c)| *c == Call::Flush(dir.to_path_buf()));
                if !dir_flushed {
                    wrong.push(format!(
                        "{} renamed into {} whose directory is not flushed before the next rename",
                        to.display(),
                        dir.display()
                    ));
                }
            }
        }
    }
    (checked, wrong)
}

#[test]
fn the_rules_catch_a_missing_flush() {
    let trace = r#"
10  symlinkat("versions/a", AT_FDCWD, "/s/app/.current.tmp") = 0
10  rename("/s/app/.current.tmp", "/s/app/current") = 0
10  fsync(3</s/app>) = 0
10  fsync(4</s/app/.state.json.tmp>) = 0
10  rename("/s/app/.state.json.tmp", "/s/app/state.json") = 0
10  fsync(5</s/app>) = 0
10  renameat2(AT_FDCWD, "/s/app/.x.tmp", AT_FDCWD, "/s/app/x", RENAME_NOREPLACE) = 0
10  rename("/s/app/.y.tmp", "/s/app/y") = 0
10  fsync(5</s/app>) = 0
"#;
    let calls = parse_trace(trace);
    let (checked, wrong) = violations(&calls, &[Path::new("/s")]);
    assert_eq!(checked, 4);
    assert_eq!(wrong.len(), 3, "{wrong:#?}");
    assert!(wrong[0].contains("/s/app/.x.tmp renamed to /s/app/x without being flushed"));
    assert!(wrong[1].contains("/s/app/x renamed into /s/app whose directory is not flushed"));
    assert!(wrong[2].contains("/s/app/.y.tmp renamed to /s/app/y without being flushed"));
}

#[test]
fn every_rename_of_the_agent_is_flushed_before_and_its_directory_after() {
    let repo = Repo::new();
    let (board, port) = board_with(
        &repo,
        "fsync",
        "probation = \"1s\"",
        "report-url = \"http://127.0.0.1:9/reports\"",
    );
    board
        .agent_drop_in(
            "strace",
            "[Service]\nNotifyAccess=all\nSystemCallFilter=\nExecStart=\nExecStart=/usr/bin/strace -f -qq -y -e trace=fsync,fdatasync,syncfs,rename,renameat,renameat2,link,linkat,symlink,symlinkat -o /var/lib/ferry/strace.log /usr/local/sbin/ferryd run --config /etc/ferry/agent.toml\n",
        )
        .unwrap();
    install_v1(&repo, &board, port);
    repo.publish(&variant("3.0.0", None), &[]);
    board
        .wait_for("3.0.0 committed", WAIT, |s| {
            current_version(s) == "3.0.0" && s["phase"] == "idle"
        })
        .unwrap();
    repo.publish(&variant("2.0.0", Some(EXITS_AT_START)), &[]);
    board
        .wait_for("2.0.0 rolled back", WAIT, |s| {
            s["phase"] == "idle" && s["last_result"]["outcome"] == "rolled_back"
        })
        .unwrap();
    let out = board
        .sandbox
        .systemctl(&["stop", "ferryd.service"])
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    let trace = std::fs::read_to_string(board.state.join("strace.log")).unwrap();
    let calls = parse_trace(&trace);
    let (checked, wrong) = violations(
        &calls,
        &[Path::new("/var/lib/ferry"), Path::new("/var/cache")],
    );
    println!(
        "{checked} renames checked, {} without the flushes",
        wrong.len()
    );
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for (_, c) in &calls {
        if let Call::Rename { to, .. } = c {
            // Digits vary (sequence numbers, hashes): group by the rest.
            let shown = to
                .display()
                .to_string()
                .replace(|c: char| c.is_ascii_digit(), "#");
            *kinds.entry(shown).or_default() += 1;
        }
    }
    for (kind, n) in kinds {
        println!("  {n:3} x {kind}");
    }
    // An install, an update and a rollback rename state, links, binaries,
    // reports and the extracted trees dozens of times.
    assert!(checked >= 20, "only {checked} renames traced:\n{trace}");
    assert!(wrong.is_empty(), "{wrong:#?}");
}
