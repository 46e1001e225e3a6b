//! A real Home Assistant Core (from PyPI, in a venv the harness makes once
//! per machine) with its MQTT integration on the same Mosquitto as a board's
//! ferryd: it shows an `update` entity for the app with the board's versions,
//! its Install service updates the board, and a screenshot of the entity in
//! its web UI is taken with headless Chromium.

mod common;

use std::time::Duration;

use common::repo::{board_with, current_version, install_v1, variant, version_served, Repo, WAIT};
use ferry_tests::home_assistant::HomeAssistant;
use ferry_tests::mosquitto::{Mosquitto, PASSWORD, USER};
use serde_json::{json, Value};

const SEEN: Duration = Duration::from_secs(120);

fn is_simple_api(e: &Value) -> bool {
    e["entity_id"]
        .as_str()
        .is_some_and(|i| i.starts_with("update."))
        && e["attributes"]["title"] == "simple_api"
}

#[test]
fn home_assistant_shows_the_app_and_its_install_updates_the_board() {
    let broker = Mosquitto::start().unwrap();
    let repo = Repo::new();
    let mqtt = format!(
        "[mqtt]\nurl = \"{}\"\nusername = \"{USER}\"\npassword-file = \"/etc/ferry/mqtt.password\"\ndevice-id = \"greenhouse\"\ndevice-name = \"Greenhouse board\"\n",
        broker.url()
    );
    let (board, port) = board_with(&repo, "hass", "", &mqtt);
    Mosquitto::write_password(&board.etc.join("mqtt.password")).unwrap();
    install_v1(&repo, &board, port);

    // Releases wait for a window that is closed now: only Home Assistant's
    // Install will take the next one.
    let window = board.closed_window().unwrap();
    board
        .reconfigure(&format!("install-window = \"{window}\""))
        .unwrap();
    repo.publish(
        &variant("2.0.0", None),
        &["--notes", "Answers faster and logs less."],
    );
    board
        .wait_for("v2 waiting for the window", WAIT, |s| {
            s["phase"] == "verified" && s["waiting"].is_string()
        })
        .unwrap();

    let ha = HomeAssistant::start(broker.port(), USER, PASSWORD).unwrap();
    let entity = ha
        .wait_for_entity("simple_api with 2.0.0 on offer", SEEN, |e| {
            is_simple_api(e)
                && e["attributes"]["installed_version"] == "1.0.0"
                && e["attributes"]["latest_version"] == "2.0.0"
        })
        .unwrap();
    assert_eq!(entity["state"], "on", "{entity:#}");
    assert_eq!(
        entity["attributes"]["release_summary"], "Answers faster and logs less.",
        "{entity:#}"
    );
    let entity_id = entity["entity_id"].as_str().unwrap().to_owned();

    // The picture for the docs: the entity's dialog over the board's device page.
    let shot = ferry_tests::workspace_root().join("target/home-assistant-update.png");
    ha.screenshot("/config/devices/dashboard", Some(&entity_id), &shot)
        .unwrap();
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );

    // Install, pressed in Home Assistant.
    ha.call("update", "install", &json!({ "entity_id": entity_id }))
        .unwrap();
    board
        .wait_for("v2 committed by Home Assistant's Install", WAIT, |s| {
            current_version(s) == "2.0.0" && s["phase"] == "idle"
        })
        .unwrap();
    assert_eq!(version_served(port).as_deref(), Some("2.0.0"));
    let entity = ha
        .wait_for_entity("simple_api at 2.0.0", SEEN, |e| {
            is_simple_api(e) && e["attributes"]["installed_version"] == "2.0.0"
        })
        .unwrap();
    assert_eq!(entity["state"], "off", "{entity:#}");
    assert_eq!(entity["attributes"]["in_progress"], false, "{entity:#}");

    // A release without notes, waiting for the window, is offered too.
    repo.publish(&variant("2.1.0", None), &[]);
    let entity = ha
        .wait_for_entity("2.1.0 on offer without notes", SEEN, |e| {
            is_simple_api(e)
                && e["attributes"]["installed_version"] == "2.0.0"
                && e["attributes"]["latest_version"] == "2.1.0"
        })
        .unwrap();
    assert_eq!(entity["state"], "on", "{entity:#}");
    assert_ne!(
        entity["attributes"]["release_summary"], "Answers faster and logs less.",
        "{entity:#}"
    );
    // Home Assistant took every state ferryd sent.
    let log = ha.log();
    assert!(!log.contains("Schema violation"), "{log}");
}
