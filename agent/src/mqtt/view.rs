//! What the broker is told about each app, kept up to date by the driver
//! through the [`Observer`] hooks. The hooks only record and wake the link
//! task: they never wait for the broker, so a broker that is down never
//! slows an update, and after an outage only the latest view is sent.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::driver::{Observer, Offered, Outcome};
use crate::state::{AppState, Phase};

/// Reports kept while the broker is away (the oldest are dropped first).
const MAX_PENDING_REPORTS: usize = 64;

/// One app as the broker sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppView {
    /// The app's name.
    pub app: String,
    /// The version that runs and was committed: during an attempt, the one
    /// from before it (`current` is swapped before the restart decides).
    pub installed: Option<String>,
    /// The version `previous` names.
    pub previous: Option<String>,
    /// The phase's name (`idle`, `downloading`, …).
    pub phase: String,
    /// The version the phase is about.
    pub target: Option<String>,
    /// Why a verified release waits, when it does.
    pub waiting: Option<String>,
    /// Why the app is on hold, when it is.
    pub hold_reason: Option<String>,
    /// Progress of the attempt, 0–100, while one runs.
    pub progress: Option<u8>,
    /// The last attempt's outcome name and sentence.
    pub last_result: Option<(String, String)>,
    /// What the channel offered at the last look, if this device may take it.
    pub offered: Option<Offered>,
}

impl AppView {
    /// The newest version this device may install: the channel's release
    /// when the device takes it, else what it runs (so a rolled-back,
    /// denied or not-yet-rolled-out release is not offered as an update).
    /// Before any poll told (a restarted agent), a release under way or
    /// waiting at the gate is the one on offer.
    pub fn latest(&self) -> Option<&str> {
        match &self.offered {
            Some(o) if o.takes => Some(&o.version),
            Some(_) => self.installed.as_deref(),
            None => self.target.as_deref().or(self.installed.as_deref()),
        }
    }

    /// Whether an attempt is under way (a release waiting at the gate is not).
    pub fn in_progress(&self) -> bool {
        match self.phase.as_str() {
            "downloading" | "installed" | "restarting" | "probation" | "rolling_back" => true,
            "verified" => self.waiting.is_none(),
            _ => false,
        }
    }

    fn apply(&mut self, state: &AppState) {
        self.phase = state.phase.name().to_owned();
        self.target = state.phase_target().map(|r| r.version.clone());
        self.waiting = match state.phase {
            Phase::Verified { .. } => state.waiting.clone(),
            _ => None,
        };
        self.hold_reason = match &state.phase {
            Phase::Hold { reason } => Some(reason.clone()),
            _ => None,
        };
        let current = state.current.as_ref().map(|r| r.version.clone());
        self.previous = state.previous.as_ref().map(|r| r.version.clone());
        // Until an attempt ends, what is installed is what ran before it:
        // the swap comes before the restart and probation that decide.
        self.installed = if self.in_progress() && current.is_some() && current == self.target {
            self.previous.clone()
        } else {
            current
        };
        if !self.in_progress() {
            self.progress = None;
        }
        self.last_result = state.last_result.as_ref().map(|r| {
            (
                serde_json::to_value(r.outcome)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                r.message.clone(),
            )
        });
        // A release denied here (it was rolled back) is no longer on offer.
        if let Some(o) = &mut self.offered {
            if state.is_denied(&o.sha256, o.serial) {
                o.takes = false;
            }
        }
    }
}

/// A completed attempt, for the report topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    /// The app.
    pub app: String,
    /// The outcome's name.
    pub outcome: String,
    /// Its sentence.
    pub message: String,
    /// Unix seconds.
    pub at: u64,
}

#[derive(Default)]
struct Inner {
    views: BTreeMap<String, AppView>,
    dirty: BTreeSet<String>,
    reports: VecDeque<Completed>,
}

/// The views of every app, shared by the driver's hooks and the link task.
#[derive(Clone, Default)]
pub struct Views {
    inner: Arc<Mutex<Inner>>,
    changed: Arc<Notify>,
}

impl Views {
    /// Views of `apps` from their persisted states.
    pub fn new<'a>(apps: impl IntoIterator<Item = (&'a str, AppState)>) -> Views {
        let views = Views::default();
        {
            let mut inner = views.lock();
            for (app, state) in apps {
                let mut view = AppView {
                    app: app.to_owned(),
                    ..AppView::default()
                };
                view.apply(&state);
                inner.views.insert(app.to_owned(), view);
                inner.dirty.insert(app.to_owned());
            }
        }
        views
    }

    /// Every view, as it stands.
    pub fn all(&self) -> Vec<AppView> {
        self.lock().views.values().cloned().collect()
    }

    /// The views changed since the last call, and the reports waiting.
    pub fn take_changes(&self) -> (Vec<AppView>, Vec<Completed>) {
        let mut inner = self.lock();
        let dirty = std::mem::take(&mut inner.dirty);
        let views = dirty
            .iter()
            .filter_map(|a| inner.views.get(a).cloned())
            .collect();
        (views, inner.reports.drain(..).collect())
    }

    /// Marks `app`'s view to be sent again (its publish was not queued).
    pub fn mark(&self, app: &str) {
        self.lock().dirty.insert(app.to_owned());
    }

    /// Keeps a report that could not be queued, for the next round.
    pub fn keep_report(&self, report: Completed) {
        let mut inner = self.lock();
        if inner.reports.len() < MAX_PENDING_REPORTS {
            inner.reports.push_front(report);
        }
    }

    /// Marks every view to be sent again (after a reconnect).
    pub fn mark_all(&self) {
        let mut inner = self.lock();
        let apps: Vec<String> = inner.views.keys().cloned().collect();
        inner.dirty.extend(apps);
        drop(inner);
        self.changed.notify_one();
    }

    /// Resolves when something changed since the last [`Views::take_changes`].
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    fn update(&self, app: &str, f: impl FnOnce(&mut AppView)) {
        let mut inner = self.lock();
        let view = inner
            .views
            .entry(app.to_owned())
            .or_insert_with(|| AppView {
                app: app.to_owned(),
                ..AppView::default()
            });
        let before = view.clone();
        f(view);
        if *view != before {
            inner.dirty.insert(app.to_owned());
            drop(inner);
            self.changed.notify_one();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Observer for Views {
    fn state_changed(&self, app: &str, state: &AppState) {
        self.update(app, |v| v.apply(state));
    }

    fn progress(&self, app: &str, percent: u8) {
        self.update(app, |v| {
            if v.in_progress() {
                v.progress = Some(percent.min(100));
            }
        });
    }

    fn offered(&self, app: &str, offered: &Offered) {
        self.update(app, |v| v.offered = Some(offered.clone()));
    }

    fn completed(&self, app: &str, outcome: &Outcome) {
        let mut inner = self.lock();
        if inner.reports.len() == MAX_PENDING_REPORTS {
            inner.reports.pop_front();
        }
        inner.reports.push_back(Completed {
            app: app.to_owned(),
            outcome: outcome.name().to_owned(),
            message: outcome.message(),
            at: ferry_format::clock::unix_now(),
        });
        drop(inner);
        self.changed.notify_one();
    }
}
