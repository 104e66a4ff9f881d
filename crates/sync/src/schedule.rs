//! When sources sync on their own: a cron expression per source read in a time zone,
//! an optional jitter, and a policy for the runs missed while no scheduler ran.
//!
//! Time comes from a [`Clock`], so tests drive a day, a DST change or a stuck run
//! without sleeping. The scheduler only decides *when*; the runner
//! ([`crate::run`]) decides *how*, and never runs one source twice at once: a source
//! due while its previous run goes on runs once more right after it (fires coalesce).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Local, TimeDelta, TimeZone, Utc};
use tokio::sync::watch;

/// A schedule that cannot be used. The message names the expression or zone.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// The cron expression does not parse.
    #[error("invalid cron expression {expr:?}: {reason}")]
    Cron {
        /// The expression.
        expr: String,
        /// Why.
        reason: String,
    },
    /// The time zone is not an IANA name.
    #[error("unknown time zone {0:?}; use an IANA name such as \"Europe/Paris\" or \"UTC\"")]
    Zone(String),
    /// The expression never fires (30 February).
    #[error("cron expression {0:?} never fires")]
    Never(String),
}

/// The zone a cron expression is read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// The machine's zone (`TZ`, else `/etc/localtime`).
    Local,
    /// A named IANA zone.
    Named(chrono_tz::Tz),
}

impl Zone {
    /// Parses an IANA zone name; `None` or `"local"` is the machine's zone.
    pub fn parse(name: Option<&str>) -> Result<Zone, ScheduleError> {
        match name {
            None => Ok(Zone::Local),
            Some(n) if n.eq_ignore_ascii_case("local") => Ok(Zone::Local),
            Some(n) => chrono_tz::Tz::from_str(n)
                .map(Zone::Named)
                .map_err(|_| ScheduleError::Zone(n.to_owned())),
        }
    }
}

impl std::fmt::Display for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Zone::Local => f.write_str("local"),
            Zone::Named(tz) => f.write_str(tz.name()),
        }
    }
}

/// What to do at start-up about fires missed while no scheduler ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Missed {
    /// Run once at start-up, however many fires were missed (like a systemd timer's
    /// `Persistent=true`). A source never synced counts as missed.
    #[default]
    CatchUp,
    /// Wait for the next fire.
    Skip,
}

impl FromStr for Missed {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "catch-up" => Ok(Missed::CatchUp),
            "skip" => Ok(Missed::Skip),
            other => Err(format!(
                "unknown missed-runs policy {other:?}; one of \"catch-up\", \"skip\""
            )),
        }
    }
}

/// When one source syncs.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: croner::Cron,
    expr: String,
    zone: Zone,
    jitter: TimeDelta,
}

impl Schedule {
    /// A five-field cron expression (minute hour day-of-month month day-of-week, or
    /// `@daily` and the like) read in `zone`, each fire delayed by up to
    /// `jitter_s` seconds. A sixth, leading field gives seconds.
    pub fn new(expr: &str, zone: Zone, jitter_s: u32) -> Result<Schedule, ScheduleError> {
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build()
            .parse(expr)
            .map_err(|e| ScheduleError::Cron {
                expr: expr.to_owned(),
                reason: e.to_string(),
            })?;
        let s = Schedule {
            cron,
            expr: expr.to_owned(),
            zone,
            jitter: TimeDelta::seconds(i64::from(jitter_s)),
        };
        if s.next_fire(Utc::now()).is_none() {
            return Err(ScheduleError::Never(expr.to_owned()));
        }
        Ok(s)
    }

    /// The expression as written.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The zone it is read in.
    pub fn zone(&self) -> Zone {
        self.zone
    }

    /// The first fire strictly after `after`, before jitter.
    pub fn next_fire(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        fn next<Tz: TimeZone>(
            cron: &croner::Cron,
            tz: &Tz,
            after: DateTime<Utc>,
        ) -> Option<DateTime<Utc>> {
            cron.find_next_occurrence(&after.with_timezone(tz), false)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        }
        match self.zone {
            Zone::Local => next(&self.cron, &Local, after),
            Zone::Named(tz) => next(&self.cron, &tz, after),
        }
    }

    /// When the fire at `fire` actually starts for `source`: up to the jitter later,
    /// by an amount derived from both, so sources due together spread out and a
    /// restart does not move them.
    pub fn jittered(&self, source: &str, fire: DateTime<Utc>) -> DateTime<Utc> {
        let span = self.jitter.num_seconds();
        if span <= 0 {
            return fire;
        }
        let seed = format!("{source}@{}", fire.timestamp());
        let offset = xxhash_rust::xxh3::xxh3_64(seed.as_bytes()) % (span as u64 + 1);
        fire + TimeDelta::seconds(offset as i64)
    }
}

/// The time, and a way to wait for it. Tests use [`ManualClock`].
#[async_trait]
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
    /// Returns at `at` or later.
    async fn sleep_until(&self, at: DateTime<Utc>);
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
    async fn sleep_until(&self, at: DateTime<Utc>) {
        // Sleep in slices: a suspended laptop or a clock step would otherwise
        // oversleep a whole interval.
        loop {
            let left = at - Utc::now();
            if left <= TimeDelta::zero() {
                return;
            }
            let slice = left
                .min(TimeDelta::seconds(30))
                .to_std()
                .unwrap_or_default();
            tokio::time::sleep(slice).await;
        }
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock {
    now: watch::Sender<DateTime<Utc>>,
    sleeps: AtomicU64,
}

impl ManualClock {
    /// A clock stopped at `at`.
    pub fn new(at: DateTime<Utc>) -> ManualClock {
        ManualClock {
            now: watch::channel(at).0,
            sleeps: AtomicU64::new(0),
        }
    }

    /// Moves the clock to `at`, waking whoever sleeps until then.
    pub fn set(&self, at: DateTime<Utc>) {
        self.now.send_replace(at);
    }

    /// How many `sleep_until` calls have started so far: tests wait for the
    /// scheduler to go back to sleep before moving time on.
    pub fn sleeps(&self) -> u64 {
        self.sleeps.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }
    async fn sleep_until(&self, at: DateTime<Utc>) {
        let mut rx = self.now.subscribe();
        self.sleeps.fetch_add(1, Ordering::SeqCst);
        // The sender lives as long as the clock, which outlives this borrow.
        let _ = rx.wait_for(|now| *now >= at).await;
    }
}

struct Entry {
    schedule: Schedule,
    /// The coming fire, if the schedule has one.
    next: Option<Next>,
}

#[derive(Clone, Copy)]
struct Next {
    /// The fire being waited for.
    fire: DateTime<Utc>,
    /// When it starts, once jittered.
    start: DateTime<Utc>,
}

impl Next {
    /// The first fire of `schedule` after `after`, jittered for `source`.
    fn after(schedule: &Schedule, source: &str, after: DateTime<Utc>) -> Option<Next> {
        schedule.next_fire(after).map(|fire| Next {
            fire,
            start: schedule.jittered(source, fire),
        })
    }
}

/// The next run of every scheduled source.
pub struct Scheduler {
    entries: BTreeMap<String, Entry>,
}

impl Scheduler {
    /// Plans the first run of each source from `now`. `last_started` holds when each
    /// source's last recorded run started; under [`Missed::CatchUp`], a source with a
    /// fire between then and now (or with no run at all) is due at once.
    pub fn new(
        schedules: BTreeMap<String, Schedule>,
        last_started: &BTreeMap<String, DateTime<Utc>>,
        missed: Missed,
        now: DateTime<Utc>,
    ) -> Scheduler {
        let mut entries = BTreeMap::new();
        for (source, schedule) in schedules {
            let overdue = match last_started.get(&source) {
                None => true,
                Some(last) => schedule.next_fire(*last).is_some_and(|f| f <= now),
            };
            let next = if missed == Missed::CatchUp && overdue {
                Some(Next {
                    fire: now,
                    start: now,
                })
            } else {
                Next::after(&schedule, &source, now)
            };
            entries.insert(source, Entry { schedule, next });
        }
        Scheduler { entries }
    }

    /// The sources due at `now`, each once however late it is; their next runs are
    /// planned from `now`.
    pub fn due(&mut self, now: DateTime<Utc>) -> Vec<String> {
        let mut due = Vec::new();
        for (source, e) in &mut self.entries {
            let Some(next) = e.next.filter(|n| n.start <= now) else {
                continue;
            };
            due.push(source.clone());
            e.next = Next::after(&e.schedule, source, next.fire.max(now));
        }
        due
    }

    /// When the next source is due.
    pub fn next_wakeup(&self) -> Option<DateTime<Utc>> {
        self.entries
            .values()
            .filter_map(|e| e.next.map(|n| n.start))
            .min()
    }

    /// When `source` runs next.
    pub fn next_run(&self, source: &str) -> Option<DateTime<Utc>> {
        self.entries.get(source)?.next.map(|n| n.start)
    }

    /// Each scheduled source with its schedule and next run, by name.
    pub fn plan(&self) -> impl Iterator<Item = (&str, &Schedule, Option<DateTime<Utc>>)> {
        self.entries
            .iter()
            .map(|(source, e)| (source.as_str(), &e.schedule, e.next.map(|n| n.start)))
    }
}

/// Sends each source's job to `jobs` when due, until `stop` turns away from
/// [`crate::Stop::Run`] or the runner goes away. `job` builds a source's job.
pub async fn drive<F>(
    mut scheduler: Scheduler,
    clock: &dyn Clock,
    job: F,
    jobs: tokio::sync::mpsc::Sender<crate::Job>,
    mut stop: watch::Receiver<crate::Stop>,
) where
    F: Fn(&str) -> Option<crate::Job>,
{
    loop {
        if *stop.borrow() != crate::Stop::Run {
            return;
        }
        for source in scheduler.due(clock.now()) {
            let Some(j) = job(&source) else { continue };
            tracing::info!(source = %source, "scheduled run due");
            if jobs.send(j).await.is_err() {
                return;
            }
        }
        let Some(wake) = scheduler.next_wakeup() else {
            let _ = stop.changed().await;
            return;
        };
        tokio::select! {
            () = clock.sleep_until(wake) => {}
            changed = stop.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests;
