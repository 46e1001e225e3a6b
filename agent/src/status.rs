//! `ferryd status`: what is on disk and in each app's state, for people or as
//! JSON. Read-only; it takes no locks.

use anyhow::Result;
use serde_json::json;

use crate::config::Settings;
use crate::state::AppState;
use crate::store::Store;

/// The status of every configured app as JSON.
pub fn collect(settings: &Settings) -> Result<serde_json::Value> {
    let mut apps = Vec::new();
    for app in &settings.apps {
        let store = Store::open(&settings.state_dir, &app.name)?;
        let state = AppState::load(&store.state_path(), &app.name)?;
        let reason = match &state.phase {
            crate::state::Phase::Hold { reason } => Some(reason.clone()),
            _ => None,
        };
        apps.push(json!({
            "app": app.name,
            "channel": state.channel.clone().unwrap_or_else(|| app.channel.clone()),
            "unit": app.unit,
            "phase": state.phase.name(),
            "hold_reason": reason,
            "current": state.current,
            "previous": state.previous,
            "current_link": store.link_target("current"),
            "previous_link": store.link_target("previous"),
            "versions_on_disk": store.versions()?,
            "last_serial": state.last_serial,
            "denied": state.denied,
            "attempts": state.attempts,
            "last_result": state.last_result,
        }));
    }
    Ok(json!({ "device_id": settings.device_id, "repository": settings.repository, "apps": apps }))
}

/// Prints the status for people.
pub fn print_human(v: &serde_json::Value) {
    println!(
        "device {}  repository {}",
        v["device_id"].as_str().unwrap_or(""),
        v["repository"].as_str().unwrap_or("")
    );
    for a in v["apps"].as_array().into_iter().flatten() {
        let ver = |k: &str| {
            a[k]["version"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| "-".into())
        };
        println!(
            "{} ({} on `{}`, unit {})",
            a["app"].as_str().unwrap_or(""),
            a["phase"].as_str().unwrap_or(""),
            a["channel"].as_str().unwrap_or(""),
            a["unit"].as_str().unwrap_or("")
        );
        println!("  current:  {}", ver("current"));
        println!("  previous: {}", ver("previous"));
        if let Some(r) = a["hold_reason"].as_str() {
            println!("  HOLD: {r}");
            println!("  hint: fix the cause, then `ferryd install FILE` or `ferryd rollback APP`");
        }
        for d in a["denied"].as_array().into_iter().flatten() {
            println!(
                "  denied:   {} (serial {}): {}",
                d["version"].as_str().unwrap_or(""),
                d["serial"],
                d["reason"].as_str().unwrap_or("")
            );
        }
        if let Some(r) = a["last_result"].as_object() {
            println!(
                "  last:     {} {} — {}",
                r.get("outcome").and_then(|v| v.as_str()).unwrap_or(""),
                r.get("version").and_then(|v| v.as_str()).unwrap_or(""),
                r.get("message").and_then(|v| v.as_str()).unwrap_or("")
            );
        }
    }
}
