//! What each sync asked for or scheduled is doing, for front ends that poll (`GET
//! /runs/{id}`): fed by the same events a terminal shows, kept for the last runs.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::status::RunSummary;
use crate::sync::SyncEvent;

/// Entries kept, newest first out last.
const KEPT: usize = 256;

/// Where a sync is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Asked for, not started.
    Queued,
    /// Fetching and writing.
    Running,
    /// Recorded in `sync_runs` (succeeded, partial or failed).
    Finished,
    /// Could not start (the data directory was busy, the source cannot be built).
    Refused,
}

/// One sync as it goes.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunProgress {
    /// Its id: given when it was asked for, or `<source>@<start>` for a scheduled one.
    pub id: String,
    /// The source.
    pub source: String,
    /// Where it is.
    pub state: RunState,
    /// When it was asked for or started.
    pub since: DateTime<Utc>,
    /// `full` or `incremental`, once started.
    pub mode: Option<String>,
    /// Pages fetched so far.
    pub pages: u64,
    /// Items fetched so far.
    pub items: u64,
    /// Entities added so far.
    pub added: u64,
    /// Entities updated so far.
    pub updated: u64,
    /// Entities unchanged so far.
    pub unchanged: u64,
    /// Items rejected so far.
    pub rejected: u64,
    /// The recorded run, once finished.
    pub run: Option<RunSummary>,
    /// Why it could not start.
    pub error: Option<String>,
}

impl RunProgress {
    fn new(id: String, source: &str, state: RunState) -> RunProgress {
        RunProgress {
            id,
            source: source.to_owned(),
            state,
            since: Utc::now(),
            mode: None,
            pages: 0,
            items: 0,
            added: 0,
            updated: 0,
            unchanged: 0,
            rejected: 0,
            run: None,
            error: None,
        }
    }
}

/// Every sync's progress, by id.
#[derive(Default)]
pub(crate) struct Board {
    inner: Mutex<BoardState>,
}

#[derive(Default)]
struct BoardState {
    runs: BTreeMap<String, RunProgress>,
    /// Ids in the order they were made, to forget the oldest.
    order: VecDeque<String>,
    /// Per source, the id of its run in progress or the next queued one.
    current: BTreeMap<String, VecDeque<String>>,
    next: u64,
}

impl BoardState {
    fn insert(&mut self, p: RunProgress) {
        self.order.push_back(p.id.clone());
        self.runs.insert(p.id.clone(), p);
        while self.order.len() > KEPT {
            if let Some(old) = self.order.pop_front() {
                self.runs.remove(&old);
            }
        }
    }

    /// The entry of `source`'s run now; a run nobody asked for gets one.
    fn running(&mut self, source: &str) -> Option<&mut RunProgress> {
        let id = match self.current.get(source).and_then(|q| q.front()) {
            Some(id) => id.clone(),
            None => {
                let id = format!("{source}@{}", Utc::now().format("%Y%m%dT%H%M%S%.3fZ"));
                self.current
                    .entry(source.to_owned())
                    .or_default()
                    .push_back(id.clone());
                self.insert(RunProgress::new(id.clone(), source, RunState::Running));
                id
            }
        };
        self.runs.get_mut(&id)
    }
}

impl Board {
    fn state(&self) -> std::sync::MutexGuard<'_, BoardState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A sync of `source` was asked for: its entry, queued.
    pub(crate) fn queue(&self, source: &str) -> RunProgress {
        let mut s = self.state();
        s.next += 1;
        let id = format!("{source}-req{}", s.next);
        let p = RunProgress::new(id.clone(), source, RunState::Queued);
        s.current
            .entry(source.to_owned())
            .or_default()
            .push_back(id);
        s.insert(p.clone());
        p
    }

    /// The queued sync `id` will not run.
    pub(crate) fn refuse(&self, id: &str, why: String) {
        let mut s = self.state();
        for q in s.current.values_mut() {
            q.retain(|x| x != id);
        }
        if let Some(p) = s.runs.get_mut(id) {
            p.state = RunState::Refused;
            p.error = Some(why);
        }
    }

    pub(crate) fn get(&self, id: &str) -> Option<RunProgress> {
        self.state().runs.get(id).cloned()
    }

    /// Follows one event.
    pub(crate) fn follow(&self, e: &SyncEvent) {
        let mut s = self.state();
        match e {
            SyncEvent::Started { source, mode } => {
                if let Some(p) = s.running(source) {
                    p.state = RunState::Running;
                    p.mode = Some(mode.clone());
                }
            }
            SyncEvent::Fetched {
                source,
                pages,
                items,
            } => {
                if let Some(p) = s.running(source) {
                    p.pages = *pages;
                    p.items = *items;
                }
            }
            SyncEvent::Written {
                source,
                added,
                updated,
                unchanged,
                rejected,
                ..
            } => {
                if let Some(p) = s.running(source) {
                    p.added = *added;
                    p.updated = *updated;
                    p.unchanged = *unchanged;
                    p.rejected = *rejected;
                }
            }
            SyncEvent::Finished { run } => {
                if let Some(p) = s.running(&run.source) {
                    p.state = RunState::Finished;
                    p.run = Some(run.clone());
                    p.added = run.added;
                    p.updated = run.updated;
                    p.unchanged = run.unchanged;
                    p.rejected = run.rejected;
                }
                if let Some(q) = s.current.get_mut(&run.source) {
                    q.pop_front();
                }
            }
            SyncEvent::Linked { .. } | SyncEvent::LinkFailed { .. } | SyncEvent::Note { .. } => {}
        }
    }
}
