//! ferryd and a real Mosquitto broker on a board: Home Assistant's
//! discovery and the state arrive retained and in its schema; an update
//! moves `latest_version`, then `in_progress`/`update_percentage`, then
//! `installed_version`; the broker going away does not stop updates and the
//! state catches up when it returns; the Install button (the command topic)
//! installs a release held outside the install window; a broken release
//! ends rolled back in the state; a stopped ferryd shows offline.

mod common;

use std::time::Duration;

use common::repo::{
    board_with, current_version, install_v1, variant, version_served, Repo, EXITS_AT_START, WAIT,
};
use common::text;
use ferry_tests::mosquitto::{Message, Mosquitto, Subscriber};

const DISCOVERY: &str = "homeassistant/update/ferry_board-7/simple_api/config";
const UPDATE: &str = "ferry/board-7/simple_api/update";
const STATE: &str = "ferry/board-7/simple_api/state";
const INSTALL: &str = "ferry/board-7/simple_api/install";
const AVAILABILITY: &str = "ferry/board-7/availability";
const REPORT: &str = "ferry/board-7/simple_api/report";
const MESSAGE_WAIT: Duration = Duration::from_secs(30);

fn everything(broker: &Mosquitto) -> Subscriber {
    broker.subscribe(&["ferry/#", "homeassistant/#"]).unwrap()
}

fn update_is(m: &Message, installed: &str, latest: &str, in_progress: bool) -> bool {
    let v = m.json();
    v["installed_version"] == installed
        && v["latest_version"] == latest
        && v["in_progress"] == in_progress
}

#[test]
fn home_assistant_sees_installs_and_rolls_back_through_mqtt() {
    let mut broker = Mosquitto::start().unwrap();
    let repo = Repo::new();
    let mqtt = format!(
        "[mqtt]\nurl = \"{}\"\nusername = \"{}\"\npassword-file = \"/etc/ferry/mqtt.password\"\ndevice-id = \"board-7\"\ndevice-name = \"Test board\"\nreports = true\n",
        broker.url(),
        ferry_tests::mosquitto::USER
    );
    let (board, port) = board_with(&repo, "mqtt", "", &mqtt);
    Mosquitto::write_password(&board.etc.join("mqtt.password")).unwrap();
    install_v1(&repo, &board, port);

    // A newcomer (as Home Assistant after a restart) gets everything retained.
    let config = broker
        .wait_retained(DISCOVERY, MESSAGE_WAIT, |_| true)
        .unwrap()
        .json();
    assert_eq!(
        config["unique_id"], "ferry_board-7_simple_api",
        "{config:#}"
    );
    assert_eq!(config["state_topic"], UPDATE);
    assert_eq!(config["command_topic"], INSTALL);
    assert_eq!(config["payload_install"], "install");
    assert_eq!(config["availability_topic"], AVAILABILITY);
    assert_eq!(config["device"]["identifiers"][0], "ferry_board-7");
    assert_eq!(config["device"]["name"], "Test board");
    for sensor in ["simple_api_phase", "simple_api_last_result"] {
        let topic = format!("homeassistant/sensor/ferry_board-7/{sensor}/config");
        let c = broker
            .wait_retained(&topic, MESSAGE_WAIT, |_| true)
            .unwrap()
            .json();
        assert_eq!(c["state_topic"], STATE, "{c:#}");
        assert_eq!(c["device"]["identifiers"][0], "ferry_board-7");
    }
    broker
        .wait_retained(UPDATE, MESSAGE_WAIT, |m| {
            update_is(m, "1.0.0", "1.0.0", false)
        })
        .unwrap();
    broker
        .wait_retained(AVAILABILITY, MESSAGE_WAIT, |m| m.payload == "online")
        .unwrap();

    // An update: offered, in progress with a percentage, installed.
    let live = everything(&broker);
    repo.publish(
        &variant("2.0.0", None),
        &[
            "--notes",
            "Answers faster.",
            "--release-url",
            "https://example.com/simple_api/2.0.0",
        ],
    );
    board
        .wait_for("v2 committed", WAIT, |s| {
            current_version(s) == "2.0.0" && s["phase"] == "idle"
        })
        .unwrap();
    let done = live
        .wait_for(UPDATE, MESSAGE_WAIT, |m| {
            update_is(m, "2.0.0", "2.0.0", false)
        })
        .unwrap();
    assert_eq!(done.json()["update_percentage"], serde_json::Value::Null);
    let updates = live.on(UPDATE);
    let first = |pred: &dyn Fn(&serde_json::Value) -> bool| {
        updates
            .iter()
            .position(|m| pred(&m.json()))
            .unwrap_or_else(|| panic!("no such update state in {updates:#?}"))
    };
    let offered = first(&|v| {
        v["installed_version"] == "1.0.0"
            && v["latest_version"] == "2.0.0"
            && v["release_summary"] == "Answers faster."
            && v["release_url"] == "https://example.com/simple_api/2.0.0"
    });
    let progressing = first(&|v| {
        v["in_progress"] == true
            && v["update_percentage"]
                .as_u64()
                .is_some_and(|p| p > 0 && p < 100)
    });
    let installed = first(&|v| v["installed_version"] == "2.0.0");
    assert!(
        offered <= progressing && progressing < installed,
        "out of order: {updates:#?}"
    );
    live.wait_for(REPORT, MESSAGE_WAIT, |m| {
        m.json()["outcome"] == "committed" && !m.retained
    })
    .unwrap();
    drop(live);

    // The broker goes away: the update still happens; when it is back
    // (with nothing retained), ferryd tells it everything again.
    broker.stop();
    repo.publish(&variant("2.1.0", None), &[]);
    board
        .wait_for("2.1.0 committed with the broker down", WAIT, |s| {
            current_version(s) == "2.1.0" && s["phase"] == "idle"
        })
        .unwrap();
    broker.restart().unwrap();
    let back = everything(&broker);
    back.wait_for(UPDATE, Duration::from_secs(120), |m| {
        update_is(m, "2.1.0", "2.1.0", false)
    })
    .unwrap();
    back.wait_for(DISCOVERY, MESSAGE_WAIT, |_| true).unwrap();
    back.wait_for(AVAILABILITY, MESSAGE_WAIT, |m| m.payload == "online")
        .unwrap();

    // A window that is closed now holds releases back from polls…
    let window = board.closed_window().unwrap();
    board
        .reconfigure(&format!("install-window = \"{window}\""))
        .unwrap();
    back.wait_for(AVAILABILITY, MESSAGE_WAIT, |m| m.payload == "offline")
        .unwrap();
    repo.publish(&variant("3.0.0", None), &[]);
    back.wait_for(UPDATE, WAIT, |m| update_is(m, "2.1.0", "3.0.0", false))
        .unwrap();
    back.wait_for(STATE, WAIT, |m| {
        m.json()["waiting"]
            .as_str()
            .is_some_and(|w| w.contains("install window"))
    })
    .unwrap();
    assert_eq!(version_served(port).as_deref(), Some("2.1.0"));
    // A restarted ferryd still offers the release that waits.
    board.restart_agent().unwrap();
    broker
        .wait_retained(AVAILABILITY, MESSAGE_WAIT, |m| m.payload == "online")
        .unwrap();
    broker
        .wait_retained(UPDATE, MESSAGE_WAIT, |m| {
            update_is(m, "2.1.0", "3.0.0", false)
        })
        .unwrap();

    // …and Home Assistant's Install button installs it.
    broker.publish(INSTALL, "install").unwrap();
    board
        .wait_for("3.0.0 installed by the command", WAIT, |s| {
            current_version(s) == "3.0.0" && s["phase"] == "idle"
        })
        .unwrap();
    back.wait_for(UPDATE, MESSAGE_WAIT, |m| {
        update_is(m, "3.0.0", "3.0.0", false)
    })
    .unwrap();

    // A broken release, installed by the button, is rolled back: the state
    // says so, and it is no longer offered.
    repo.publish(&variant("4.0.0", Some(EXITS_AT_START)), &[]);
    back.wait_for(UPDATE, WAIT, |m| update_is(m, "3.0.0", "4.0.0", false))
        .unwrap();
    let pressed = back.messages().len();
    broker.publish(INSTALL, "install").unwrap();
    back.wait_for(STATE, WAIT, |m| {
        let v = m.json();
        v["last_result"] == "rolled_back" && v["installed_version"] == "3.0.0"
    })
    .unwrap();
    broker
        .wait_retained(UPDATE, MESSAGE_WAIT, |m| {
            update_is(m, "3.0.0", "3.0.0", false)
        })
        .unwrap();
    let since: Vec<serde_json::Value> = back.messages()[pressed..]
        .iter()
        .filter(|m| m.topic == UPDATE)
        .map(|m| m.json())
        .collect();
    assert!(
        since.iter().any(|v| v["installed_version"] == "3.0.0"
            && v["latest_version"] == "4.0.0"
            && v["in_progress"] == true),
        "the attempt never showed in progress from 3.0.0 to 4.0.0: {since:#?}"
    );
    let last = since.last().unwrap();
    assert_eq!(
        last["latest_version"], "3.0.0",
        "4.0.0 still offered: {since:#?}"
    );
    assert_eq!(last["release_summary"], "", "{since:#?}");
    assert_eq!(version_served(port).as_deref(), Some("3.0.0"));

    // ferryd stops: its last will marks the board offline, retained.
    let out = board
        .sandbox
        .systemctl(&["stop", "ferryd.service"])
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    drop(back);
    broker
        .wait_retained(AVAILABILITY, MESSAGE_WAIT, |m| m.payload == "offline")
        .unwrap();
}

/// `mqtts://` to a broker whose certificate a private CA signed: without
/// `ca-file` ferryd refuses the certificate, says which key to set, and
/// updates go on; with the CA in `ca-file` it connects and publishes.
#[test]
fn mqtt_over_tls_trusts_the_configured_ca_and_nothing_else() {
    let certs = tempfile::tempdir().unwrap();
    let (tls, ca) = ferry_tests::tls::private_ca(certs.path()).unwrap();
    let broker = Mosquitto::start_tls(&tls).unwrap();
    let repo = Repo::new();
    let mqtt = format!(
        "[mqtt]\nurl = \"{}\"\nusername = \"{}\"\npassword-file = \"/etc/ferry/mqtt.password\"\ndevice-id = \"board-tls\"\n",
        broker.tls_url().unwrap(),
        ferry_tests::mosquitto::USER
    );
    let (board, port) = board_with(&repo, "mqtt-tls", "", &mqtt);
    Mosquitto::write_password(&board.etc.join("mqtt.password")).unwrap();
    let availability = "ferry/board-tls/availability";
    let live = broker.subscribe(&[availability]).unwrap();

    // Trusting only the public CAs, the broker's certificate is refused,
    // with the fix named; the update does not wait for MQTT.
    install_v1(&repo, &board, port);
    let deadline = std::time::Instant::now() + MESSAGE_WAIT;
    let refusal = loop {
        let out = board
            .sandbox
            .journal(&["-u", "ferryd.service", "-o", "cat"])
            .unwrap();
        let journal = text(&out);
        if let Some(line) = journal.lines().position(|l| l.contains("MQTT: broker")) {
            break journal
                .lines()
                .skip(line)
                .take(2)
                .collect::<Vec<_>>()
                .join("\n");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ferryd never told why MQTT is down:\n{journal}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(refusal.contains("certificate"), "{refusal}");
    assert!(refusal.contains("`mqtt.ca-file`"), "{refusal}");
    assert!(
        live.on(availability).is_empty(),
        "ferryd published over a TLS link it should have refused: {:#?}",
        live.on(availability)
    );

    // With the private CA as `ca-file`, the same broker is trusted.
    std::fs::copy(&ca, board.etc.join("mqtt-ca.pem")).unwrap();
    board
        .rewrite_config(|toml| {
            toml.replace("[mqtt]\n", "[mqtt]\nca-file = \"/etc/ferry/mqtt-ca.pem\"\n")
        })
        .unwrap();
    broker
        .wait_retained("ferry/board-tls/simple_api/update", MESSAGE_WAIT, |m| {
            update_is(m, "1.0.0", "1.0.0", false)
        })
        .unwrap();
    broker
        .wait_retained(availability, MESSAGE_WAIT, |m| m.payload == "online")
        .unwrap();
    assert!(
        broker.log().contains("board-tls"),
        "the broker's log does not show ferryd's client:\n{}",
        broker.log()
    );
}
