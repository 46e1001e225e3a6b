//! The connection to the broker: one task that owns the MQTT client, sends
//! the views as they change, and turns Home Assistant's Install button into
//! a pass of the service's driver. A second task polls the client's event
//! loop, which connects and reconnects with back-off; while the broker is
//! away the views only pile up as "changed", and everything is sent again
//! once it is back (or Home Assistant announces a restart).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, LastWill, MqttOptions,
    Packet, QoS,
};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use super::entity::{self, Topics, OFFLINE, ONLINE, PAYLOAD_INSTALL};
use super::settings::{read_password, topic_id, MqttSettings, Transport};
use super::view::Views;
use crate::api::Request;
use crate::driver::Intent;

/// Longest wait between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Requests queued in the client while it is busy.
const CLIENT_QUEUE: usize = 256;
/// After a publish or subscribe found the queue full, everything is sent
/// again this much later.
const RETRY: Duration = Duration::from_secs(2);
/// A connection that lasted this long resets the back-off; one dropped
/// sooner (a broker that kicks the client) keeps backing off.
const STABLE: Duration = Duration::from_secs(60);
/// Largest packet sent or taken (a state is a few hundred bytes).
const MAX_PACKET: usize = 256 * 1024;

/// What the pump passes to the link.
enum LinkEvent {
    /// An event of the connection the link acts on.
    Packet(Event),
    /// The connection is gone (the pump reconnects after a back-off).
    Lost,
}

/// What the link does after an event.
enum Then {
    /// Nothing more.
    Nothing,
    /// A new connection: subscribe, then announce.
    Connected,
    /// Send availability, discovery and every view again (Home Assistant
    /// restarted).
    Announce,
    /// The connection is gone.
    Disconnected,
}

/// What the current connection has yet to be sent.
#[derive(Default)]
struct Owed {
    /// The install and birth subscriptions.
    subscriptions: bool,
    /// Availability, discovery and every view.
    announcement: bool,
}

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

    /// Client options: the last will, the login, TLS.
    fn options(&self) -> Result<MqttOptions> {
        let s = &self.settings;
        let mut o = MqttOptions::new(&s.client_id, &s.host, s.port);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_clean_session(true);
        o.set_max_packet_size(MAX_PACKET, MAX_PACKET);
        o.set_last_will(LastWill::new(
            self.topics.availability(),
            OFFLINE,
            QoS::AtLeastOnce,
            true,
        ));
        if let Some((user, file)) = &s.credentials {
            let password = file.as_deref().map(read_password).transpose()?;
            o.set_credentials(user, password.unwrap_or_default());
        }
        if let Transport::Tls { ca } = &s.transport {
            o.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(Arc::new(tls_config(ca.as_deref())?)),
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
        let mut owed = Owed::default();
        // Set when the client's queue was full: nothing is tried before it.
        let mut retry_at: Option<tokio::time::Instant> = None;
        loop {
            let retry = async move {
                match retry_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = rx.recv() => match event {
                    Some(LinkEvent::Packet(event)) => match self.handle(event) {
                        Then::Nothing => {}
                        Then::Connected => {
                            connected = true;
                            owed = Owed { subscriptions: true, announcement: true };
                            retry_at = None;
                        }
                        Then::Announce => owed.announcement = true,
                        Then::Disconnected => connected = false,
                    },
                    Some(LinkEvent::Lost) => connected = false,
                    None => return,
                },
                _ = self.views.changed(), if connected => {}
                _ = retry, if connected => retry_at = None,
            }
            if connected && retry_at.is_none() && !self.flush(&client, &mut owed) {
                retry_at = Some(tokio::time::Instant::now() + RETRY);
            }
        }
    }

    /// Sends what this connection is owed, then every changed view; `false`
    /// when the client's queue filled up (what is left waits for the retry).
    fn flush(&self, client: &AsyncClient, owed: &mut Owed) -> bool {
        if owed.subscriptions {
            if !self.subscribe(client) {
                return false;
            }
            owed.subscriptions = false;
        }
        if owed.announcement {
            if !self.announce(client) {
                return false;
            }
            owed.announcement = false;
        }
        self.send_changes(client)
    }

    /// Acts on one event.
    fn handle(&self, event: Event) -> Then {
        match event {
            Event::Incoming(Packet::ConnAck(_)) => Then::Connected,
            Event::Incoming(Packet::SubAck(ack)) => {
                if ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                {
                    log::error!("MQTT: the broker refused a subscription (its ACL?): Home Assistant's Install will not reach this board");
                }
                Then::Nothing
            }
            Event::Incoming(Packet::Publish(p)) => {
                let payload = String::from_utf8_lossy(&p.payload);
                if p.topic == self.topics.home_assistant_status() {
                    // Only a birth as it happens is a restart: a retained
                    // `online` comes back on every subscription.
                    if payload == ONLINE && !p.retain {
                        return Then::Announce;
                    }
                } else if let Some(app) = self.topics.app_of_install(&p.topic) {
                    if p.retain {
                        // A retained command would install again at every
                        // connection: only a press, as it happens, counts.
                        log::warn!("MQTT: `{}` holds a retained message; ignored (clear it with an empty retained publish)", p.topic);
                    } else if payload == PAYLOAD_INSTALL {
                        self.queue_install(app);
                    } else {
                        let shown: String = payload.chars().take(64).collect();
                        log::warn!(
                            "MQTT: `{}` got `{shown}`, not `{PAYLOAD_INSTALL}`; ignored",
                            p.topic
                        );
                    }
                }
                Then::Nothing
            }
            Event::Incoming(Packet::Disconnect) => Then::Disconnected,
            _ => Then::Nothing,
        }
    }

    /// The Install buttons and Home Assistant's birth, once per connection
    /// (a subscription brings back what is retained there). `false` when
    /// the client's queue was full.
    fn subscribe(&self, client: &AsyncClient) -> bool {
        [
            self.topics.install_filter(),
            self.topics.home_assistant_status(),
        ]
        .into_iter()
        .all(|topic| client.try_subscribe(topic, QoS::AtLeastOnce).is_ok())
    }

    /// Availability, every discovery config, every view: what a broker needs
    /// after a (re)connection, and Home Assistant after its restart. `false`
    /// when the client's queue was full.
    fn announce(&self, client: &AsyncClient) -> bool {
        let mut ok = publish(client, &self.topics.availability(), ONLINE.into(), true);
        for app in &self.apps {
            for (topic, config) in entity::discovery(&self.settings, &self.topics, app) {
                ok &= publish(client, &topic, config.to_string(), true);
            }
        }
        self.views.mark_all();
        self.send_changes(client) && ok
    }

    /// Publishes every changed view and the waiting reports; what could not
    /// be queued is kept for the retry. `false` when something was.
    fn send_changes(&self, client: &AsyncClient) -> bool {
        let (views, reports) = self.views.take_changes();
        let mut ok = true;
        for view in views {
            let update = entity::update_state(&self.settings, &view).to_string();
            let state = entity::app_state(&view).to_string();
            let sent = publish(client, &self.topics.update_state(&view.app), update, true)
                && publish(client, &self.topics.app_state(&view.app), state, true);
            if !sent {
                self.views.mark(&view.app);
                ok = false;
            }
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
                if !publish(client, &self.topics.report(&r.app), body.to_string(), false) {
                    self.views.keep_report(r);
                    ok = false;
                }
            }
        }
        ok
    }

    /// Home Assistant's Install: queues a pass that looks at the channel
    /// now and installs what it offers, through the same verification as a
    /// poll, outside the install window but not past an inhibitor.
    fn queue_install(&self, app: &str) {
        let Some(app) = self.apps.iter().find(|a| topic_id(a) == app) else {
            log::warn!("MQTT: install asked for `{app}`, which this board does not manage");
            return;
        };
        let (reply, answer) = oneshot::channel();
        let request = Request::Drive {
            app: app.clone(),
            intent: Intent::InstallNow,
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
/// acts on, and [`LinkEvent::Lost`] when the connection drops, then waits a
/// back-off that only a connection lasting [`STABLE`] resets.
async fn pump(mut events: EventLoop, tx: mpsc::Sender<LinkEvent>, broker: String) {
    let mut failures: u32 = 0;
    let mut connected_at: Option<Instant> = None;
    loop {
        match events.poll().await {
            Ok(event) => {
                if matches!(event, Event::Incoming(Packet::ConnAck(_))) {
                    if failures > 0 {
                        log::info!("MQTT: connected to {broker} again");
                    }
                    connected_at = Some(Instant::now());
                }
                let relevant = matches!(
                    event,
                    Event::Incoming(
                        Packet::ConnAck(_)
                            | Packet::SubAck(_)
                            | Packet::Publish(_)
                            | Packet::Disconnect
                    )
                );
                if relevant && tx.send(LinkEvent::Packet(event)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                if connected_at.take().is_some_and(|at| at.elapsed() >= STABLE) {
                    failures = 0;
                }
                if failures == 0 {
                    log::warn!(
                        "MQTT: broker {broker}: {e}{} (retrying with back-off; updates go on)",
                        hint(&e)
                    );
                }
                failures = failures.saturating_add(1);
                if tx.send(LinkEvent::Lost).await.is_err() {
                    return;
                }
                tokio::time::sleep(backoff(failures)).await;
            }
        }
    }
}

/// What to change when a connection fails for a reason the config can fix.
fn hint(e: &ConnectionError) -> &'static str {
    match e {
        ConnectionError::Tls(_) => {
            "\nhint: the broker's certificate must chain to a certificate in `mqtt.ca-file` (or to a public CA when it is unset) and name the host in `mqtt.url`"
        }
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized,
        ) => "\nhint: check `mqtt.username` and the password in `mqtt.password-file`",
        _ => "",
    }
}

/// Queues a publish (QoS 1); `false` when the client's queue is full.
fn publish(client: &AsyncClient, topic: &str, payload: String, retain: bool) -> bool {
    match client.try_publish(topic, QoS::AtLeastOnce, retain, payload) {
        Ok(()) => true,
        Err(e) => {
            log::debug!("MQTT: not queued for `{topic}`: {e}");
            false
        }
    }
}

/// The wait after `failures` failed attempts in a row: 1 s, doubling, at
/// most [`MAX_BACKOFF`].
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1)
        .saturating_mul(1 << failures.saturating_sub(1).min(6))
        .min(MAX_BACKOFF)
}

/// TLS checked against `ca`'s certificates, or the web's roots the
/// repository client trusts too.
fn tls_config(
    ca: Option<&[rustls::pki_types::CertificateDer<'static>]>,
) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(certs) => {
            for cert in certs {
                roots
                    .add(cert.clone())
                    .context("`mqtt.ca-file`: a certificate is not usable as a root")?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_starts_at_a_second_and_stops_at_a_minute() {
        let waits: Vec<u64> = (1..=9).map(|f| backoff(f).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    fn link() -> (Link, mpsc::Receiver<Request>) {
        let raw: super::super::settings::RawMqtt = toml::from_str("url = \"mqtt://b\"").unwrap();
        let settings = MqttSettings::from_raw(raw, "board").unwrap();
        let (tx, rx) = mpsc::channel(4);
        let link = Link::new(settings, Views::default(), vec!["app".into()], tx);
        (link, rx)
    }

    fn message(topic: &str, payload: &str, retain: bool) -> Event {
        let mut p = rumqttc::Publish::new(topic, QoS::AtLeastOnce, payload.as_bytes().to_vec());
        p.retain = retain;
        Event::Incoming(Packet::Publish(p))
    }

    #[test]
    fn only_a_birth_as_it_happens_asks_for_a_new_announcement() {
        let (link, _requests) = link();
        let status = link.topics.home_assistant_status();
        assert!(matches!(
            link.handle(message(&status, "online", false)),
            Then::Announce
        ));
        // A retained birth comes back on every subscription: announcing on
        // it would subscribe, receive it and announce again without end.
        assert!(matches!(
            link.handle(message(&status, "online", true)),
            Then::Nothing
        ));
        assert!(matches!(
            link.handle(message(&status, "offline", false)),
            Then::Nothing
        ));
    }

    #[test]
    fn a_retained_install_command_installs_nothing() {
        let (link, mut requests) = link();
        let install = link.topics.install("app");
        assert_eq!(link.topics.app_of_install(&install), Some("app"));
        assert!(matches!(
            link.handle(message(&install, "install", true)),
            Then::Nothing
        ));
        assert!(matches!(
            link.handle(message(&install, "something else", false)),
            Then::Nothing
        ));
        assert!(requests.try_recv().is_err());
    }

    #[test]
    fn failures_the_config_can_fix_name_the_key_to_change() {
        let tls = ConnectionError::Tls(rumqttc::TlsError::NoValidCertInChain);
        assert!(hint(&tls).contains("`mqtt.ca-file`"));
        let login = ConnectionError::ConnectionRefused(ConnectReturnCode::BadUserNamePassword);
        assert!(hint(&login).contains("`mqtt.password-file`"));
        assert_eq!(hint(&ConnectionError::NetworkTimeout), "");
    }
}
