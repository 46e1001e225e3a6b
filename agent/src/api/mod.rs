//! ferryd's D-Bus API on the system bus (`docs/dbus.md`), in the manner of
//! RAUC's `de.pengutronix.rauc.Installer` and systemd's
//! `org.freedesktop.sysupdate1`: the name `dev.ferry.Agent1`, a manager
//! object with the methods, and one object per app whose properties change
//! with every transition (`PropertiesChanged`).
//!
//! Every method other than `Status` is for root and members of the `ferry`
//! group: the caller's credentials come from the bus daemon, and others get
//! `org.freedesktop.DBus.Error.AccessDenied` saying so. The methods hand
//! their work to the service's one driver task ([`Request`]) and answer
//! when it is done, so a command never runs beside an update: it waits its
//! turn.

pub mod client;
mod manager;
mod objects;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::config::Settings;
use crate::driver::{Inhibitors, Intent, Observer, Outcome};
use manager::Manager;
pub use objects::app_path;

/// The well-known name.
pub const BUS_NAME: &str = "dev.ferry.Agent1";
/// The manager object.
pub const MANAGER_PATH: &str = "/dev/ferry/Agent1";
/// The manager's interface.
pub const MANAGER_INTERFACE: &str = "dev.ferry.Agent1";
/// Each app object's interface.
pub const APP_INTERFACE: &str = "dev.ferry.Agent1.App";
/// The group whose members may call the methods besides root.
pub const OPERATOR_GROUP: &str = "ferry";

/// Work for the driver task.
#[derive(Debug)]
pub enum Request {
    /// A pass over one app.
    Drive {
        /// The app.
        app: String,
        /// What for.
        intent: Intent,
        /// The outcome, or the error, as text.
        reply: oneshot::Sender<Result<Outcome, String>>,
    },
    /// Follow another channel.
    Switch {
        /// The app.
        app: String,
        /// The channel.
        channel: String,
        /// Done, or why not.
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// Serves the API on `connection` and returns the observer that keeps the
/// app objects' properties and the `Completed` signal up to date.
pub async fn serve(
    connection: &zbus::Connection,
    config: PathBuf,
    settings: Arc<Settings>,
    requests: mpsc::Sender<Request>,
    inhibitors: Inhibitors,
) -> anyhow::Result<Arc<dyn Observer>> {
    use anyhow::Context as _;
    let server = connection.object_server();
    server
        .at(
            MANAGER_PATH,
            Manager {
                settings: settings.clone(),
                config,
                requests,
                inhibitors,
            },
        )
        .await?;
    let observer = objects::publish(connection, &settings).await?;
    connection.request_name(BUS_NAME).await.with_context(|| {
        format!("cannot own `{BUS_NAME}` on the system bus\nhint: install its policy file (units/{BUS_NAME}.conf) in /usr/share/dbus-1/system.d/")
    })?;
    Ok(observer)
}
