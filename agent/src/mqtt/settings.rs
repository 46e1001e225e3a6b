//! The optional `[mqtt]` section of `agent.toml`: where the broker is, how
//! to log in, and the names Home Assistant sees.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use serde::Deserialize;

/// `[mqtt]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawMqtt {
    url: String,
    ca_file: Option<PathBuf>,
    username: Option<String>,
    password_file: Option<PathBuf>,
    discovery_prefix: Option<String>,
    topic_prefix: Option<String>,
    client_id: Option<String>,
    device_id: Option<String>,
    device_name: Option<String>,
    entity_picture: Option<String>,
    #[serde(default)]
    reports: bool,
}

/// How the broker is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// `mqtt://`: plain TCP (a broker on the board or the home network).
    Tcp,
    /// `mqtts://`: TLS, checked against `ca-file`'s certificates, or without
    /// one against the web's roots built into ferryd (as the repository is).
    Tls {
        /// The certificates of `ca-file`, read when the config is.
        ca: Option<Vec<CertificateDer<'static>>>,
    },
}

/// The validated `[mqtt]` section.
#[derive(Debug, Clone)]
pub struct MqttSettings {
    /// Broker host name or address.
    pub host: String,
    /// Broker port (1883 for `mqtt://`, 8883 for `mqtts://` unless given).
    pub port: u16,
    /// TCP or TLS.
    pub transport: Transport,
    /// User name, and the file holding the password (read when the link
    /// starts, so commands run by others can still read the config).
    pub credentials: Option<(String, Option<PathBuf>)>,
    /// Home Assistant's discovery prefix (default `homeassistant`).
    pub discovery_prefix: String,
    /// Root of ferry's own topics (default `ferry`).
    pub topic_prefix: String,
    /// MQTT client id (default `ferryd-<device id>`).
    pub client_id: String,
    /// The board's id in topics and unique ids (default: the agent's
    /// device id), reduced to what topics and entity ids allow.
    pub device_id: String,
    /// The board's name in Home Assistant (default: its host name).
    pub device_name: String,
    /// Picture shown with every app's update entity.
    pub entity_picture: Option<String>,
    /// Whether each completed attempt is also published to
    /// `<topic-prefix>/<device>/<app>/report`.
    pub reports: bool,
}

/// The certificates of a PEM file; a file with none is an error, not a TLS
/// link that trusts nobody.
fn load_ca(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read `mqtt.ca-file` `{}`", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| {
            format!(
                "`mqtt.ca-file` `{}` is not PEM certificates",
                path.display()
            )
        })?;
    if certs.is_empty() {
        bail!(
            "`mqtt.ca-file` `{}` holds no certificate (PEM `BEGIN CERTIFICATE` blocks)",
            path.display()
        );
    }
    Ok(certs)
}

/// The password in `file`, without its line end.
pub fn read_password(file: &Path) -> Result<String> {
    let password = std::fs::read_to_string(file).with_context(|| {
        format!(
            "cannot read `mqtt.password-file` `{}`\nhint: write the broker password there, readable by root only",
            file.display()
        )
    })?;
    Ok(password.trim_end_matches(['\r', '\n']).to_owned())
}

/// `text` reduced to `[a-z0-9_-]`: what Home Assistant accepts in a
/// discovery topic's ids and what is safe in a topic level.
pub fn topic_id(text: &str) -> String {
    text.chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_' | '-') => c,
            _ => '_',
        })
        .collect()
}

fn valid_topic_prefix(key: &str, value: &str) -> Result<()> {
    if value.is_empty()
        || value.starts_with('/')
        || value.ends_with('/')
        || value.contains(['+', '#', '\0'])
    {
        bail!("`mqtt.{key}` = \"{value}\" is not a topic prefix (no wildcards, no leading or trailing `/`)");
    }
    Ok(())
}

impl MqttSettings {
    /// Validates `[mqtt]`; `agent_device_id` is the agent's own device id.
    pub fn from_raw(raw: RawMqtt, agent_device_id: &str) -> Result<MqttSettings> {
        let bad_url = |why: &str| {
            anyhow::anyhow!(
                "`mqtt.url` = \"{}\" {why}\nhint: mqtt://HOST[:PORT] or mqtts://HOST[:PORT]; credentials go in `username` and `password-file`",
                raw.url
            )
        };
        let url = url::Url::parse(&raw.url).map_err(|e| bad_url(&format!("is not a URL ({e})")))?;
        let (transport, default_port) = match url.scheme() {
            "mqtt" => (Transport::Tcp, 1883),
            "mqtts" => (
                Transport::Tls {
                    ca: raw.ca_file.as_deref().map(load_ca).transpose()?,
                },
                8883,
            ),
            _ => return Err(bad_url("must start with mqtt:// or mqtts://")),
        };
        if raw.ca_file.is_some() && transport == Transport::Tcp {
            bail!("`mqtt.ca-file` is set but `mqtt.url` is not mqtts://: the certificate would not be used");
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad_url("holds credentials"));
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(bad_url("has a path, query or fragment"));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_owned(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            _ => return Err(bad_url("names no host")),
        };
        let port = url.port().unwrap_or(default_port);
        if port == 0 {
            return Err(bad_url("has port 0"));
        }
        let credentials = match (raw.username, raw.password_file) {
            (None, None) => None,
            (Some(user), file) => {
                if let Some(file) = &file {
                    if !file.is_file() {
                        bail!(
                            "`mqtt.password-file` `{}` is not a file\nhint: write the broker password there, readable by root only",
                            file.display()
                        );
                    }
                }
                Some((user, file))
            }
            (None, Some(_)) => bail!("`mqtt.password-file` is set without `mqtt.username`"),
        };
        if let Some(picture) = &raw.entity_picture {
            if !(picture.starts_with("https://") || picture.starts_with("http://")) {
                bail!("`mqtt.entity-picture` = \"{picture}\" must be an http(s):// address");
            }
        }
        let discovery_prefix = raw
            .discovery_prefix
            .unwrap_or_else(|| "homeassistant".into());
        valid_topic_prefix("discovery-prefix", &discovery_prefix)?;
        let topic_prefix = raw.topic_prefix.unwrap_or_else(|| "ferry".into());
        valid_topic_prefix("topic-prefix", &topic_prefix)?;
        let device_id = topic_id(raw.device_id.as_deref().unwrap_or(agent_device_id));
        if device_id.is_empty() {
            bail!("`mqtt.device-id` is empty");
        }
        let client_id = raw
            .client_id
            .unwrap_or_else(|| format!("ferryd-{device_id}"));
        let device_name = raw.device_name.unwrap_or_else(|| {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| device_id.clone())
        });
        Ok(MqttSettings {
            host,
            port,
            transport,
            credentials,
            discovery_prefix,
            topic_prefix,
            client_id,
            device_id,
            device_name,
            entity_picture: raw.entity_picture,
            reports: raw.reports,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<MqttSettings> {
        let raw: RawMqtt = toml::from_str(toml_text)?;
        MqttSettings::from_raw(raw, "0123ABCD")
    }

    #[test]
    fn urls_ports_and_defaults() {
        let s = parse("url = \"mqtt://broker.lan\"").unwrap();
        assert_eq!((s.host.as_str(), s.port), ("broker.lan", 1883));
        assert_eq!(s.transport, Transport::Tcp);
        assert_eq!(s.discovery_prefix, "homeassistant");
        assert_eq!(s.device_id, "0123abcd");
        assert_eq!(s.client_id, "ferryd-0123abcd");
        let s = parse("url = \"mqtts://10.0.0.2:8884\"").unwrap();
        assert_eq!((s.host.as_str(), s.port), ("10.0.0.2", 8884));
        assert_eq!(s.transport, Transport::Tls { ca: None });
        let s = parse("url = \"mqtts://[::1]:9883\"").unwrap();
        assert_eq!((s.host.as_str(), s.port), ("::1", 9883));
        let s = parse("url = \"mqtt://[::1]\"").unwrap();
        assert_eq!((s.host.as_str(), s.port), ("::1", 1883));
    }

    #[test]
    fn bad_sections_name_the_key() {
        for (text, key) in [
            ("url = \"http://broker\"", "mqtt.url"),
            ("url = \"mqtt://user:pw@broker\"", "mqtt.url"),
            ("url = \"mqtt://broker:99999\"", "mqtt.url"),
            ("url = \"mqtt://:1883\"", "mqtt.url"),
            ("url = \"mqtt://broker/path\"", "mqtt.url"),
            (
                "url = \"mqtts://b\"\nca-file = \"/nonexistent.pem\"",
                "mqtt.ca-file",
            ),
            (
                "url = \"mqtt://b\"\nentity-picture = \"icon.png\"",
                "mqtt.entity-picture",
            ),
            ("url = \"mqtt://b\"\nca-file = \"x\"", "mqtt.ca-file"),
            (
                "url = \"mqtt://b\"\npassword-file = \"x\"",
                "mqtt.password-file",
            ),
            (
                "url = \"mqtt://b\"\nusername = \"u\"\npassword-file = \"/nonexistent\"",
                "mqtt.password-file",
            ),
            (
                "url = \"mqtt://b\"\ndiscovery-prefix = \"ha/#\"",
                "mqtt.discovery-prefix",
            ),
        ] {
            let e = format!("{:#}", parse(text).unwrap_err());
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn the_password_comes_from_its_file_without_the_newline() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        let s = parse(&format!(
            "url = \"mqtt://b\"\nusername = \"ferry\"\npassword-file = \"{}\"",
            file.display()
        ))
        .unwrap();
        assert_eq!(s.credentials, Some(("ferry".into(), Some(file.clone()))));
        assert_eq!(read_password(&file).unwrap(), "s3cret");
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, "not a certificate\n").unwrap();
        let e = parse(&format!(
            "url = \"mqtts://b\"\nca-file = \"{}\"",
            file.display()
        ))
        .unwrap_err();
        assert!(format!("{e:#}").contains("no certificate"), "{e:#}");
    }
}
