//! `ferry fleet status`: summarises the reports `ferry collect` stored, per
//! app: each device's latest report (by `at`, then file order) gives its
//! current version and state; rollbacks are counted per version tried.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::BufRead as _;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::cli::{FleetArgs, FleetCommand, FleetStatusArgs};
use crate::log;
use crate::reports::{parse_report, Outcome, Report};
use crate::terminal::printable;

/// Shown for a device whose version no report tells.
const UNKNOWN: &str = "unknown";

/// The summary of one app.
#[derive(Debug, Default, Serialize)]
pub struct AppSummary {
    /// Devices that reported.
    pub devices: usize,
    /// Current version → devices on it.
    pub versions: BTreeMap<String, usize>,
    /// Version tried → devices that rolled back from it (in any report).
    pub rolled_back: BTreeMap<String, usize>,
    /// Result of the latest report → devices.
    pub latest: BTreeMap<&'static str, usize>,
    /// Devices whose latest report is `hold`.
    pub hold: usize,
}

/// A device's current version by its latest report: `to` once it runs it,
/// `from` when the attempt left it where it was.
pub fn current_version(r: &Report) -> Option<&str> {
    match r.result {
        Outcome::Committed | Outcome::UpToDate => r.to.as_deref().or(r.from.as_deref()),
        _ => r.from.as_deref(),
    }
}

/// Summarises reports in file order, per app.
pub fn summarise(reports: &[Report]) -> BTreeMap<String, AppSummary> {
    let mut latest: HashMap<(&str, &str), &Report> = HashMap::new();
    let mut rolled: BTreeMap<(&str, &str), BTreeSet<&str>> = BTreeMap::new();
    for r in reports {
        let key = (r.app.as_str(), r.device_id.as_str());
        // Later in the file wins a tie.
        if latest.get(&key).is_none_or(|l| r.at >= l.at) {
            latest.insert(key, r);
        }
        if r.result == Outcome::RolledBack {
            rolled
                .entry((&r.app, r.to.as_deref().unwrap_or(UNKNOWN)))
                .or_default()
                .insert(&r.device_id);
        }
    }
    let mut out: BTreeMap<String, AppSummary> = BTreeMap::new();
    for ((app, _), r) in latest {
        let s = out.entry(app.to_owned()).or_default();
        s.devices += 1;
        *s.versions
            .entry(current_version(r).unwrap_or(UNKNOWN).to_owned())
            .or_default() += 1;
        *s.latest.entry(r.result.as_str()).or_default() += 1;
        if r.result == Outcome::Hold {
            s.hold += 1;
        }
    }
    for ((app, version), devices) in rolled {
        out.entry(app.to_owned())
            .or_default()
            .rolled_back
            .insert(version.to_owned(), devices.len());
    }
    out
}

fn status(args: FleetStatusArgs) -> Result<ExitCode> {
    let path = &args.reports;
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open `{}`", path.display()))?;
    let mut reports = Vec::new();
    for (n, line) in std::io::BufReader::new(file).split(b'\n').enumerate() {
        let line = line.with_context(|| format!("cannot read `{}`", path.display()))?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match parse_report(&line) {
            Ok((r, _)) => reports.push(r),
            Err(e) => log::warn(format!(
                "`{}` line {} is skipped: {e}",
                path.display(),
                n + 1
            )),
        }
    }
    let summary = summarise(&reports);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "apps": summary }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    if summary.is_empty() {
        println!("no reports");
    }
    for (app, s) in &summary {
        println!(
            "{}: {} devices, {} on hold",
            printable(app),
            s.devices,
            s.hold
        );
        let versions: BTreeSet<&String> = s.versions.keys().chain(s.rolled_back.keys()).collect();
        println!("  {:<24} {:>8} {:>12}", "VERSION", "DEVICES", "ROLLED BACK");
        for v in versions {
            println!(
                "  {:<24} {:>8} {:>12}",
                printable(v),
                s.versions.get(v).copied().unwrap_or(0),
                s.rolled_back.get(v).copied().unwrap_or(0)
            );
        }
        let latest: Vec<String> = s.latest.iter().map(|(k, n)| format!("{k} {n}")).collect();
        println!("  latest results: {}", latest.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `ferry fleet`.
pub fn run(args: FleetArgs) -> Result<ExitCode> {
    match args.command {
        FleetCommand::Status(a) => status(a),
    }
}
