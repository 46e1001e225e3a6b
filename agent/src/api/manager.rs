//! The manager object `/dev/ferry/Agent1`: the methods, who may call
//! them, and the `Completed` signal.
// The interface macro adds undocumented helpers (signal emitters,
// property-change methods) to this module.
#![allow(missing_docs)]

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::OwnedFd;

use super::{Request, OPERATOR_GROUP};
use crate::config::Settings;
use crate::driver::{Inhibitors, Intent};

/// The manager object.
pub(super) struct Manager {
    pub(super) settings: Arc<Settings>,
    pub(super) config: PathBuf,
    pub(super) requests: mpsc::Sender<Request>,
    pub(super) inhibitors: Inhibitors,
}

fn failed(e: impl std::fmt::Display) -> zbus::fdo::Error {
    zbus::fdo::Error::Failed(e.to_string())
}

impl Manager {
    fn app(&self, name: &str) -> zbus::fdo::Result<()> {
        self.settings
            .app(name)
            .map(|_| ())
            .map_err(|e| zbus::fdo::Error::InvalidArgs(format!("{e:#}")))
    }

    async fn drive(&self, app: String, intent: Intent) -> zbus::fdo::Result<(String, String)> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Drive { app, intent, reply })
            .await
            .map_err(|_| failed("ferryd is stopping"))?;
        match answer.await.map_err(|_| failed("ferryd is stopping"))? {
            Ok(outcome) => Ok((outcome.name().to_owned(), outcome.message())),
            Err(e) => Err(failed(e)),
        }
    }
}

#[zbus::interface(name = "dev.ferry.Agent1")]
impl Manager {
    /// Polls the app's channel now and installs what it offers, as a poll
    /// would. Returns the outcome's name and a sentence.
    async fn check(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
        app: String,
    ) -> zbus::fdo::Result<(String, String)> {
        authorize(connection, &header, "check for updates").await?;
        self.app(&app)?;
        self.drive(app, Intent::Poll).await
    }

    /// Installs the signed ferry binary open at `file`, through the same
    /// checks as a download. `force` takes an older or denied version and
    /// ignores inhibitors. Returns the app, the outcome and a sentence.
    async fn install(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
        file: OwnedFd,
        force: bool,
    ) -> zbus::fdo::Result<(String, String, String)> {
        authorize(connection, &header, "install releases").await?;
        let fd: std::os::fd::OwnedFd = file.into();
        let settings = self.settings.clone();
        let (app, copy) = tokio::task::spawn_blocking(move || private_copy(&settings, fd))
            .await
            .map_err(failed)?
            .map_err(|e| zbus::fdo::Error::InvalidArgs(format!("{e:#}")))?;
        let (outcome, message) = self
            .drive(app.clone(), Intent::Install { copy, force })
            .await?;
        Ok((app, outcome, message))
    }

    /// Goes back to the app's previous version; the current one is denied.
    async fn rollback(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
        app: String,
    ) -> zbus::fdo::Result<(String, String)> {
        authorize(connection, &header, "roll back").await?;
        self.app(&app)?;
        self.drive(app, Intent::Rollback).await
    }

    /// Follows another channel from the next poll.
    async fn switch_channel(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
        app: String,
        channel: String,
    ) -> zbus::fdo::Result<()> {
        authorize(connection, &header, "switch channels").await?;
        self.app(&app)?;
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Switch {
                app,
                channel,
                reply,
            })
            .await
            .map_err(|_| failed("ferryd is stopping"))?;
        answer
            .await
            .map_err(|_| failed("ferryd is stopping"))?
            .map_err(zbus::fdo::Error::InvalidArgs)
    }

    /// Holds back the app's installs (the swap and restart; downloads go
    /// on) until every copy of the returned descriptor is closed.
    async fn inhibit(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
        app: String,
        who: String,
        why: String,
    ) -> zbus::fdo::Result<OwnedFd> {
        authorize(connection, &header, "inhibit updates").await?;
        self.app(&app)?;
        let fd = self.inhibitors.hold(&app, &who, &why).map_err(failed)?;
        Ok(fd.into())
    }

    /// The configuration file the service runs with.
    #[zbus(property)]
    fn config_path(&self) -> String {
        self.config.display().to_string()
    }

    /// What `ferryd status --json` prints.
    async fn status(&self) -> zbus::fdo::Result<String> {
        let status = crate::status::collect(&self.settings).map_err(failed)?;
        serde_json::to_string(&status).map_err(failed)
    }

    /// A pass over an app ended, however it was started.
    #[zbus(signal)]
    pub(super) async fn completed(
        emitter: &SignalEmitter<'_>,
        app: &str,
        outcome: &str,
        message: &str,
    ) -> zbus::Result<()>;
}

/// Reads which app the file is for and copies it into that app's state
/// directory (root-owned, 0600): everything after works on the copy, so the
/// caller changing the file meanwhile changes nothing.
fn private_copy(
    settings: &Settings,
    fd: std::os::fd::OwnedFd,
) -> anyhow::Result<(String, PathBuf)> {
    let mut src = std::fs::File::from(fd);
    let c = ferry_format::Container::read_from(&mut src)?;
    let app = settings.app(&c.metadata.name)?;
    let store = crate::store::Store::open(&settings.state_dir, &app.name)?;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let copy = store.incoming_path(&format!("install-{}-{n}", std::process::id()));
    crate::commands::copy_private(&mut src, &copy)?;
    Ok((app.name.clone(), copy))
}

/// Lets root and members of [`OPERATOR_GROUP`] through; says plainly to
/// anyone else what they may not do and who may.
async fn authorize(
    connection: &zbus::Connection,
    header: &Header<'_>,
    what: &str,
) -> zbus::fdo::Result<()> {
    let sender = header
        .sender()
        .ok_or_else(|| zbus::fdo::Error::AccessDenied("the call has no sender".into()))?;
    let dbus = zbus::fdo::DBusProxy::new(connection)
        .await
        .map_err(failed)?;
    let creds = dbus
        .get_connection_credentials(sender.clone().into())
        .await
        .map_err(failed)?;
    let group = nix::unistd::Group::from_name(OPERATOR_GROUP)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw());
    if may_operate(
        creds.unix_user_id(),
        creds.unix_group_ids().map(Vec::as_slice),
        group,
    ) {
        return Ok(());
    }
    Err(zbus::fdo::Error::AccessDenied(format!(
        "only root and members of the `{OPERATOR_GROUP}` group may {what} through ferryd (uid {} is neither)\nhint: `usermod -aG {OPERATOR_GROUP} USER`, or run the command as root",
        creds
            .unix_user_id()
            .map(|u| u.to_string())
            .unwrap_or_else(|| "unknown".into())
    )))
}

/// The access rule: root, or a member of the operator group (when it exists).
fn may_operate(uid: Option<u32>, groups: Option<&[u32]>, operator_gid: Option<u32>) -> bool {
    uid == Some(0)
        || operator_gid.is_some_and(|gid| groups.is_some_and(|groups| groups.contains(&gid)))
}

#[cfg(test)]
mod tests {
    use super::may_operate;

    #[test]
    fn root_and_members_of_the_group_may_operate_others_may_not() {
        assert!(may_operate(Some(0), None, None));
        assert!(may_operate(Some(1000), Some(&[100, 990]), Some(990)));
        assert!(!may_operate(Some(1000), Some(&[100]), Some(990)));
        assert!(!may_operate(Some(1000), Some(&[990]), None));
        assert!(!may_operate(Some(1000), None, Some(990)));
        assert!(!may_operate(None, Some(&[990]), Some(100)));
    }
}
