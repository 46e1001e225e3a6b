//! Devices' status reports as the collector stores them and `ferry fleet`
//! reads them back: one JSON object per line (`docs/reports.md`).

pub use ferry_format::report::{Outcome, Report};
use serde::Deserialize as _;

/// How far after the collector's clock a report may be dated.
pub const MAX_REPORT_AHEAD: u64 = 86_400;

/// Parses one report, as posted or as a stored line; one dated more than
/// [`MAX_REPORT_AHEAD`] after now is refused.
pub fn parse_report(bytes: &[u8]) -> Result<(Report, serde_json::Value), String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let report = Report::deserialize(&value).map_err(|e| e.to_string())?;
    if report.id.is_empty() {
        return Err("`id` is empty".into());
    }
    let now = ferry_format::clock::unix_now();
    if report.at > now.saturating_add(MAX_REPORT_AHEAD) {
        return Err(format!(
            "`at` is {}, more than a day after now ({now}): a device clock far off, or a forged report that would pin the device's state",
            report.at
        ));
    }
    Ok((report, value))
}
