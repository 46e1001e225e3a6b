//! The client side of the D-Bus API: what `ferryd check|install|rollback|
//! switch` use while the service runs.

use std::os::fd::AsFd as _;

use anyhow::{Context as _, Result};

use super::BUS_NAME;

#[zbus::proxy(
    interface = "dev.ferry.Agent1",
    default_service = "dev.ferry.Agent1",
    default_path = "/dev/ferry/Agent1",
    gen_blocking = false
)]
trait Manager {
    fn check(&self, app: &str) -> zbus::Result<(String, String)>;
    fn install(
        &self,
        file: zbus::zvariant::Fd<'_>,
        force: bool,
    ) -> zbus::Result<(String, String, String)>;
    fn rollback(&self, app: &str) -> zbus::Result<(String, String)>;
    fn switch_channel(&self, app: &str, channel: &str) -> zbus::Result<()>;
    fn inhibit(&self, app: &str, who: &str, why: &str) -> zbus::Result<zbus::zvariant::OwnedFd>;
    fn status(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn config_path(&self) -> zbus::Result<String>;
}

/// The running service, reached over the system bus.
pub struct Service {
    proxy: ManagerProxy<'static>,
}

/// An outcome as the API names it, and its sentence.
pub type Answer = (String, String);

impl Service {
    /// The service, if it owns its name on the system bus; `None` when it
    /// does not run (or there is no bus to ask).
    pub async fn find() -> Option<Service> {
        let connection = zbus::Connection::system().await.ok()?;
        let dbus = zbus::fdo::DBusProxy::new(&connection).await.ok()?;
        let name = zbus::names::BusName::try_from(BUS_NAME).ok()?;
        if !dbus.name_has_owner(name).await.ok()? {
            return None;
        }
        let proxy = ManagerProxy::new(&connection).await.ok()?;
        Some(Service { proxy })
    }

    /// Whether the service runs with the configuration file `config`: a
    /// command given another one must not act through it.
    pub async fn serves(&self, config: &std::path::Path) -> bool {
        let Ok(theirs) = self.proxy.config_path().await else {
            return false;
        };
        let canonical = |p: &std::path::Path| std::fs::canonicalize(p).ok();
        canonical(config).is_some() && canonical(config) == canonical(std::path::Path::new(&theirs))
    }

    /// `Check(app)`.
    pub async fn check(&self, app: &str) -> Result<Answer> {
        self.proxy.check(app).await.map_err(plain)
    }

    /// `Install(fd, force)`: the file is opened here, once, and the service
    /// reads it through the descriptor.
    pub async fn install(&self, file: &std::path::Path, force: bool) -> Result<(String, Answer)> {
        let f = std::fs::File::open(file)
            .with_context(|| format!("cannot open `{}`", file.display()))?;
        let (app, outcome, message) = self
            .proxy
            .install(f.as_fd().into(), force)
            .await
            .map_err(plain)?;
        Ok((app, (outcome, message)))
    }

    /// `Rollback(app)`.
    pub async fn rollback(&self, app: &str) -> Result<Answer> {
        self.proxy.rollback(app).await.map_err(plain)
    }

    /// `SwitchChannel(app, channel)`.
    pub async fn switch_channel(&self, app: &str, channel: &str) -> Result<()> {
        self.proxy.switch_channel(app, channel).await.map_err(plain)
    }
}

/// A D-Bus error as the sentence the service wrote, without its error name.
fn plain(e: zbus::Error) -> anyhow::Error {
    match e {
        zbus::Error::MethodError(_, Some(text), _) => anyhow::anyhow!(text),
        zbus::Error::FDO(fdo) => match *fdo {
            zbus::fdo::Error::AccessDenied(t)
            | zbus::fdo::Error::Failed(t)
            | zbus::fdo::Error::InvalidArgs(t) => anyhow::anyhow!(t),
            other => anyhow::anyhow!(other),
        },
        other => anyhow::anyhow!(other),
    }
}
