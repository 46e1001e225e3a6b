//! The topics and payloads ferryd publishes for Home Assistant's MQTT
//! integration (its `update` platform and two diagnostic sensors per app);
//! docs/home-assistant.md shows them. Pure functions of the settings and an
//! app's view, so every payload is tested without a broker.

use serde_json::{json, Value};

use super::settings::{topic_id, MqttSettings};
use super::view::AppView;

/// The payload of the command topic that installs the offered release.
pub const PAYLOAD_INSTALL: &str = "install";
/// Availability payloads.
pub const ONLINE: &str = "online";
/// See [`ONLINE`]; also the last will.
pub const OFFLINE: &str = "offline";
/// Home Assistant's release summary is cut at this many characters.
const SUMMARY_LIMIT: usize = 255;
/// Free text in ferry's own state (an inhibitor's reason, an error) is cut
/// at this many characters, so a state always fits a broker's packet limit.
const TEXT_LIMIT: usize = 1000;

/// `text` cut to `limit` characters, the cut marked with `…`.
fn cut(text: &str, limit: usize) -> String {
    if text.chars().count() > limit {
        let kept: String = text.chars().take(limit - 1).collect();
        format!("{kept}…")
    } else {
        text.to_owned()
    }
}

/// The topics of one board.
#[derive(Debug, Clone)]
pub struct Topics {
    discovery_prefix: String,
    base: String,
    device: String,
}

impl Topics {
    /// The topics of the board `settings` describes.
    pub fn new(settings: &MqttSettings) -> Topics {
        Topics {
            discovery_prefix: settings.discovery_prefix.clone(),
            base: format!("{}/{}", settings.topic_prefix, settings.device_id),
            device: settings.device_id.clone(),
        }
    }

    /// `online`/`offline` for the whole board (the last will).
    pub fn availability(&self) -> String {
        format!("{}/availability", self.base)
    }

    /// The update entity's JSON state.
    pub fn update_state(&self, app: &str) -> String {
        format!("{}/{}/update", self.base, topic_id(app))
    }

    /// ferry's own JSON state of the app (the sensors read it).
    pub fn app_state(&self, app: &str) -> String {
        format!("{}/{}/state", self.base, topic_id(app))
    }

    /// Where Home Assistant's Install button publishes.
    pub fn install(&self, app: &str) -> String {
        format!("{}/{}/install", self.base, topic_id(app))
    }

    /// The subscription that covers every app's install topic.
    pub fn install_filter(&self) -> String {
        format!("{}/+/install", self.base)
    }

    /// The app whose install topic `topic` is, if it is one.
    pub fn app_of_install<'a>(&self, topic: &'a str) -> Option<&'a str> {
        topic
            .strip_prefix(&self.base)?
            .strip_prefix('/')?
            .strip_suffix("/install")
            .filter(|a| !a.contains('/'))
    }

    /// Completed attempts, when `reports` is on.
    pub fn report(&self, app: &str) -> String {
        format!("{}/{}/report", self.base, topic_id(app))
    }

    /// Home Assistant's birth and will topic: on `online` it has
    /// (re)started and discovery is sent again.
    pub fn home_assistant_status(&self) -> String {
        format!("{}/status", self.discovery_prefix)
    }

    /// The discovery topic of the app's entity of `component` (`update`,
    /// `sensor`), `suffix` telling an app's sensors apart.
    pub fn discovery(&self, component: &str, app: &str, suffix: &str) -> String {
        format!(
            "{}/{component}/ferry_{}/{}{suffix}/config",
            self.discovery_prefix,
            self.device,
            topic_id(app)
        )
    }
}

/// The `device` block that groups a board's entities under one device.
fn device(settings: &MqttSettings) -> Value {
    json!({
        "identifiers": [format!("ferry_{}", settings.device_id)],
        "name": settings.device_name,
        "manufacturer": "ferry",
        "model": "ferryd",
        "sw_version": env!("CARGO_PKG_VERSION"),
    })
}

fn origin() -> Value {
    json!({ "name": "ferryd", "sw_version": env!("CARGO_PKG_VERSION") })
}

/// Every discovery message of `app`: (topic, retained JSON config).
pub fn discovery(settings: &MqttSettings, topics: &Topics, app: &str) -> Vec<(String, Value)> {
    let id = format!("ferry_{}_{}", settings.device_id, topic_id(app));
    let common = |v: &mut Value| {
        v["device"] = device(settings);
        v["origin"] = origin();
        v["availability_topic"] = json!(topics.availability());
        v["payload_available"] = json!(ONLINE);
        v["payload_not_available"] = json!(OFFLINE);
    };
    let mut update = json!({
        "name": app,
        "unique_id": id,
        "state_topic": topics.update_state(app),
        "command_topic": topics.install(app),
        "payload_install": PAYLOAD_INSTALL,
        "title": app,
        "qos": 1,
    });
    if let Some(picture) = &settings.entity_picture {
        update["entity_picture"] = json!(picture);
    }
    common(&mut update);
    let sensor = |suffix: &str, label: &str, template: &str, icon: &str| {
        let mut v = json!({
            "name": format!("{app} {label}"),
            "unique_id": format!("{id}{suffix}"),
            "state_topic": topics.app_state(app),
            "value_template": template,
            "json_attributes_topic": topics.app_state(app),
            "entity_category": "diagnostic",
            "icon": icon,
        });
        common(&mut v);
        (topics.discovery("sensor", app, suffix), v)
    };
    vec![
        (topics.discovery("update", app, ""), update),
        sensor(
            "_phase",
            "update phase",
            "{{ value_json.phase }}",
            "mdi:progress-clock",
        ),
        sensor(
            "_last_result",
            "last update",
            "{{ value_json.last_result | default('none', true) }}",
            "mdi:clipboard-check-outline",
        ),
    ]
}

/// The update entity's state. Home Assistant's MQTT `update` platform
/// drops a whole message with a key it does not know, or a `null` where it
/// wants text, so only its keys are sent and text keys are left out, never
/// null. The whole state goes every time, retained: a partial one would
/// replace it.
pub fn update_state(settings: &MqttSettings, view: &AppView) -> Value {
    let in_progress = view.in_progress();
    let offered = view.offered.as_ref().filter(|o| o.takes);
    let mut v = json!({
        "title": view.app,
        // Empty, not absent, so the notes of a release no longer offered go.
        "release_summary": offered
            .and_then(|o| o.notes.as_deref())
            .map(|n| cut(n, SUMMARY_LIMIT))
            .unwrap_or_default(),
        "in_progress": in_progress,
        "update_percentage": if in_progress { view.progress.map(Value::from) } else { None },
    });
    if let Some(installed) = &view.installed {
        v["installed_version"] = json!(installed);
    }
    if let Some(latest) = view.latest() {
        v["latest_version"] = json!(latest);
    }
    if let Some(url) = offered.and_then(|o| o.url.as_deref()) {
        v["release_url"] = json!(url);
    }
    if let Some(picture) = &settings.entity_picture {
        v["entity_picture"] = json!(picture);
    }
    v
}

/// ferry's own state of the app: what the sensors show and their attributes.
pub fn app_state(view: &AppView) -> Value {
    json!({
        "app": view.app,
        "phase": view.phase,
        "installed_version": view.installed,
        "previous_version": view.previous,
        "target_version": view.target,
        "progress": view.progress,
        "waiting": view.waiting.as_deref().map(|t| cut(t, TEXT_LIMIT)),
        "hold_reason": view.hold_reason.as_deref().map(|t| cut(t, TEXT_LIMIT)),
        "last_result": view.last_result.as_ref().map(|r| &r.0),
        "last_message": view.last_result.as_ref().map(|r| cut(&r.1, TEXT_LIMIT)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::Offered;
    use crate::mqtt::settings::RawMqtt;

    fn settings() -> MqttSettings {
        let raw: RawMqtt =
            toml::from_str("url = \"mqtt://b\"\ndevice-name = \"Kitchen board\"").unwrap();
        MqttSettings::from_raw(raw, "Board-7").unwrap()
    }

    fn view(phase: &str) -> AppView {
        AppView {
            app: "simple_api".into(),
            installed: Some("1.0.0".into()),
            phase: phase.into(),
            offered: Some(Offered {
                version: "2.0.0".into(),
                notes: Some("Faster start.".into()),
                url: None,
                sha256: "ab".repeat(32),
                serial: 2,
                takes: true,
            }),
            ..AppView::default()
        }
    }

    #[test]
    fn discovery_groups_an_apps_entities_under_the_board() {
        let s = settings();
        let t = Topics::new(&s);
        let messages = discovery(&s, &t, "simple_api");
        let topics: Vec<&str> = messages.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            topics,
            [
                "homeassistant/update/ferry_board-7/simple_api/config",
                "homeassistant/sensor/ferry_board-7/simple_api_phase/config",
                "homeassistant/sensor/ferry_board-7/simple_api_last_result/config",
            ]
        );
        let update = &messages[0].1;
        assert_eq!(update["unique_id"], "ferry_board-7_simple_api");
        assert_eq!(update["state_topic"], "ferry/board-7/simple_api/update");
        assert_eq!(update["command_topic"], "ferry/board-7/simple_api/install");
        assert_eq!(update["payload_install"], PAYLOAD_INSTALL);
        assert_eq!(update["availability_topic"], "ferry/board-7/availability");
        for (_, m) in &messages {
            assert_eq!(m["device"]["identifiers"][0], "ferry_board-7");
            assert_eq!(m["device"]["name"], "Kitchen board");
        }
        assert_eq!(
            t.app_of_install("ferry/board-7/simple_api/install"),
            Some("simple_api")
        );
        assert_eq!(t.app_of_install("ferry/board-7/a/b/install"), None);
        assert_eq!(t.app_of_install("ferry/other/simple_api/install"), None);
    }

    #[test]
    fn the_state_moves_from_offered_to_in_progress_to_installed() {
        let s = settings();
        let idle = update_state(&s, &view("idle"));
        assert_eq!(idle["installed_version"], "1.0.0");
        assert_eq!(idle["latest_version"], "2.0.0");
        assert_eq!(idle["release_summary"], "Faster start.");
        assert_eq!(idle["in_progress"], false);
        assert!(idle["update_percentage"].is_null());

        let mut downloading = view("downloading");
        downloading.progress = Some(35);
        let v = update_state(&s, &downloading);
        assert_eq!(v["in_progress"], true);
        assert_eq!(v["update_percentage"], 35);

        let mut waiting = view("verified");
        waiting.waiting = Some("outside the install window".into());
        assert_eq!(update_state(&s, &waiting)["in_progress"], false);
    }

    #[test]
    fn a_release_the_board_does_not_take_is_not_offered() {
        let s = settings();
        let mut v = view("idle");
        v.offered.as_mut().unwrap().takes = false;
        let state = update_state(&s, &v);
        assert_eq!(state["latest_version"], "1.0.0");
        assert_eq!(state["release_summary"], "");
    }

    /// The keys Home Assistant 2025.4's MQTT `update` platform reads
    /// (`homeassistant/components/mqtt/update.py`).
    const UPDATE_STATE_KEYS: [&str; 8] = [
        "installed_version",
        "latest_version",
        "title",
        "release_summary",
        "release_url",
        "entity_picture",
        "in_progress",
        "update_percentage",
    ];

    /// What Home Assistant accepts: its keys only, and text never null.
    fn assert_home_assistant_takes(state: &Value) {
        let object = state.as_object().expect("an object");
        for (key, value) in object {
            assert!(
                UPDATE_STATE_KEYS.contains(&key.as_str()),
                "unknown key {key}"
            );
            if key != "update_percentage" {
                assert!(!value.is_null(), "{key} is null in {state}");
            }
        }
    }

    #[test]
    fn every_state_is_one_home_assistant_takes() {
        let s = settings();
        let fresh = AppView {
            app: "simple_api".into(),
            phase: "idle".into(),
            ..AppView::default()
        };
        let mut no_notes = view("downloading");
        no_notes.offered.as_mut().unwrap().notes = None;
        let mut with_url = view("probation");
        with_url.offered.as_mut().unwrap().url = Some("https://example.com/r".into());
        with_url.progress = Some(95);
        for v in [fresh, no_notes, with_url, view("idle"), view("hold")] {
            assert_home_assistant_takes(&update_state(&s, &v));
        }
    }

    #[test]
    fn a_restarted_agent_offers_the_release_under_way_or_waiting() {
        let mut v = view("verified");
        v.offered = None;
        v.target = Some("2.0.0".into());
        v.waiting = Some("outside the install window".into());
        assert_eq!(v.latest(), Some("2.0.0"));
        v.target = None;
        v.phase = "idle".into();
        assert_eq!(v.latest(), Some("1.0.0"));
    }

    #[test]
    fn long_notes_are_cut_to_home_assistants_limit() {
        let s = settings();
        let mut v = view("idle");
        v.offered.as_mut().unwrap().notes = Some("é".repeat(400));
        let summary = update_state(&s, &v)["release_summary"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(summary.chars().count(), SUMMARY_LIMIT);
    }
}
