//! The connection to the broker: one task that owns the MQTT client, sends
//! the views as they change, and turns Home Assistant's Install button into
//! a pass of the service's driver. It reconnects with back-off; while the
//! broker is away the views only pile up as "changed", and everything is
//! sent again once it is back (or Home Assistant announces a restart).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, QoS};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use super::entity::{self, Topics, OFFLINE, ONLINE, PAYLOAD_INSTALL};
use super::settings::{MqttSettings, Transport};
use super::view::Views;
use crate::api::Request;
use crate::driver::Intent;

/// Longest wait between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Requests queued in the client while it is busy; beyond this a change
/// waits for the next round (every view is sent again on reconnect).
const CLIENT_QUEUE: usize = 256;

/// The link's working set.
pub struct Link {
    settings: MqttSettings,
    topics: Topics,
    views: Views,
    apps: Vec<String>,
    requests: mpsc::Sender<Request>,
}

impl Link {
    /// A link for `apps`, fed by `views`, that asks the driver through
    /// `requests`.
    pub fn new(
        settings: MqttSettings,
        views: Views,
        apps: Vec<String>,
        requests: mpsc::Sender<Request>,
    ) -> Link {
        Link {
            topics: Topics::new(&settings),
            settings,
            views,
            apps,
            requests,
        }
    }

    fn options(&self) -> Result<MqttOptions> {
        let s = &self.settings;
        let mut o = MqttOptions::new(&s.client_id, &s.host, s.port);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_clean_session(true);
        o.set_last_will(LastWill::new(
            self.topics.availability(),
            OFFLINE,
            QoS::AtLeastOnce,
            true,
        ));
        if let Some((user, password)) = &s.credentials {
            o.set_credentials(user, password);
        }
        if let Transport::Tls { ca_file } = &s.transport {
            o.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(Arc::new(tls_config(ca_file.as_deref())?)),
            ));
        }
        Ok(o)
    }

    /// Runs until the process ends: connects, publishes, listens.
    pub async fn run(self) {
        let options = match self.options() {
            Ok(o) => o,
            Err(e) => {
                log::error!("MQTT is off: {e:#}");
                return;
            }
        };
        let (client, mut events) = AsyncClient::new(options, CLIENT_QUEUE);
        events.network_options.set_connection_timeout(10);
        let (tx, mut rx) = mpsc::channel(32);
        let broker = format!("{}:{}", self.settings.host, self.settings.port);
        tokio::spawn(pump(events, tx, broker));
        let mut connected = false;
        loop {
            tokio::select! {
                event = rx.recv() => match event {
                    Some(Some(event)) => {
                        if let Some(now) = self.handle(&client, event) {
                            connected = now;
                        }
                    }
                    Some(None) => connected = false,
                    None => return,
                },
                _ = self.views.changed(), if connected => self.send_changes(&client),
            }
        }
    }

    /// Acts on one event; `Some(connected)` when the connection changed.
    fn handle(&self, client: &AsyncClient, event: Event) -> Option<bool> {
        match event {
            Event::Incoming(Packet::ConnAck(_)) => {
                let subscriptions = [
                    self.topics.install_filter(),
                    self.topics.home_assistant_status(),
                ];
                for topic in subscriptions {
                    if let Err(e) = client.try_subscribe(topic, QoS::AtLeastOnce) {
                        log::warn!("MQTT: cannot subscribe: {e}");
                    }
                }
                self.announce(client);
                Some(true)
            }
            Event::Incoming(Packet::Publish(p)) => {
                let payload = String::from_utf8_lossy(&p.payload);
                if p.topic == self.topics.home_assistant_status() {
                    if payload == ONLINE {
                        self.announce(client);
                    }
                } else if let Some(app) = self.topics.app_of_install(&p.topic) {
                    if payload == PAYLOAD_INSTALL {
                        self.install(app);
                    } else {
                        log::warn!(
                            "MQTT: `{}` got `{payload}`, not `{PAYLOAD_INSTALL}`; ignored",
                            p.topic
                        );
                    }
                }
                None
            }
            Event::Incoming(Packet::Disconnect) => Some(false),
            _ => None,
        }
    }

    /// Availability, every discovery config, every view.
    fn announce(&self, client: &AsyncClient) {
        publish(client, &self.topics.availability(), ONLINE.into(), true);
        for app in &self.apps {
            for (topic, config) in entity::discovery(&self.settings, &self.topics, app) {
                publish(client, &topic, config.to_string(), true);
            }
        }
        self.views.mark_all();
        self.send_changes(client);
    }

    fn send_changes(&self, client: &AsyncClient) {
        let (views, reports) = self.views.take_changes();
        for view in views {
            let update = entity::update_state(&self.settings, &view);
            publish(
                client,
                &self.topics.update_state(&view.app),
                update.to_string(),
                true,
            );
            let state = entity::app_state(&view);
            publish(
                client,
                &self.topics.app_state(&view.app),
                state.to_string(),
                true,
            );
        }
        if self.settings.reports {
            for r in reports {
                let body = json!({
                    "device": self.settings.device_id,
                    "app": r.app,
                    "outcome": r.outcome,
                    "message": r.message,
                    "at": r.at,
                });
                publish(client, &self.topics.report(&r.app), body.to_string(), false);
            }
        }
    }

    /// Home Assistant's Install: a pass that looks at the channel now and
    /// installs what it offers, through the same verification as a poll,
    /// outside the install window but not past an inhibitor.
    fn install(&self, app: &str) {
        let Some(app) = self
            .apps
            .iter()
            .find(|a| super::settings::topic_id(a) == app)
        else {
            log::warn!("MQTT: install asked for `{app}`, which this board does not manage");
            return;
        };
        let (reply, answer) = oneshot::channel();
        let request = Request::Drive {
            app: app.clone(),
            intent: Intent::Update,
            reply,
        };
        if self.requests.try_send(request).is_err() {
            log::warn!("MQTT: install of `{app}` not queued: the agent is busy or stopping; press Install again later");
            return;
        }
        let app = app.clone();
        tokio::spawn(async move {
            match answer.await {
                Ok(Ok(outcome)) => log::info!("MQTT: install of `{app}`: {}", outcome.message()),
                Ok(Err(e)) => log::warn!("MQTT: install of `{app}` failed: {e}"),
                Err(_) => {}
            }
        });
    }
}

/// Polls the client's event loop (which connects and reconnects) in a task
/// of its own, so no poll is ever cancelled halfway; passes on what the link
/// acts on, and `None` when the connection is lost, then waits a back-off.
async fn pump(mut events: EventLoop, tx: mpsc::Sender<Option<Event>>, broker: String) {
    let mut failures: u32 = 0;
    loop {
        match events.poll().await {
            Ok(event) => {
                if failures > 0 {
                    log::info!("MQTT: connected to {broker} again");
                    failures = 0;
                }
                let relevant = matches!(
                    event,
                    Event::Incoming(Packet::ConnAck(_) | Packet::Publish(_) | Packet::Disconnect)
                );
                if relevant && tx.send(Some(event)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                if failures == 0 {
                    log::warn!(
                        "MQTT: broker {broker}: {e} (retrying with back-off; updates go on)"
                    );
                }
                failures = failures.saturating_add(1);
                if tx.send(None).await.is_err() {
                    return;
                }
                tokio::time::sleep(backoff(failures)).await;
            }
        }
    }
}

/// Queues a publish; a full queue drops it (the view is sent again later).
fn publish(client: &AsyncClient, topic: &str, payload: String, retain: bool) {
    if let Err(e) = client.try_publish(topic, QoS::AtLeastOnce, retain, payload) {
        log::debug!("MQTT: not queued for `{topic}`: {e}");
    }
}

fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1)
        .saturating_mul(1 << failures.min(6))
        .min(MAX_BACKOFF)
}

/// TLS checked against `ca_file`'s certificates, or the roots the
/// repository client trusts too.
fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path)
                .with_context(|| format!("cannot read `mqtt.ca-file` `{}`", path.display()))?
            {
                let cert = cert.with_context(|| {
                    format!(
                        "`mqtt.ca-file` `{}` is not PEM certificates",
                        path.display()
                    )
                })?;
                roots.add(cert).with_context(|| {
                    format!(
                        "`mqtt.ca-file` `{}`: a certificate is not usable",
                        path.display()
                    )
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS for MQTT")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
