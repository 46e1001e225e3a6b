//! Home Assistant over MQTT: with an `[mqtt]` section, ferryd announces an
//! `update` entity (and two diagnostic sensors) per app through Home
//! Assistant's MQTT discovery, keeps their retained state current as the
//! driver moves, marks the board unavailable through its last will, and
//! takes Home Assistant's Install button as a request to look at the channel
//! and install now (docs/home-assistant.md).
//!
//! The driver never waits for the broker: it tells [`Views`], and one task
//! of its own ([`link`]) sends what changed when it can.

mod entity;
mod link;
pub mod settings;
mod view;

use tokio::sync::mpsc;

use crate::api::Request;
use crate::state::AppState;

pub use settings::{MqttSettings, RawMqtt};
pub use view::Views;

/// Starts the link to the broker; `states` are the apps' persisted states
/// (the first announcement), `requests` the service's driver queue. Returns
/// the observer the driver tells. Needs a Tokio runtime.
pub fn start(
    settings: MqttSettings,
    states: Vec<(String, AppState)>,
    requests: mpsc::Sender<Request>,
) -> Views {
    let apps: Vec<String> = states.iter().map(|(a, _)| a.clone()).collect();
    let views = Views::new(states.iter().map(|(a, s)| (a.as_str(), s.clone())));
    let link = link::Link::new(settings, views.clone(), apps, requests);
    tokio::spawn(link.run());
    views
}
