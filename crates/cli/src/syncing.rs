//! `sync` and `serve`: the sync runner wired to the configuration, the terminal and
//! subject linking, and the scheduler of `serve` wired to signals.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crossdex_model::SyncMode;
use crossdex_store::{RunStatus, StoreError, SyncRun, Writer};
use crossdex_sync::schedule::{Scheduler, SystemClock};
use crossdex_sync::{Job, Limits, Observer, Progress, Stop, SyncOptions};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::{mpsc, watch};

use crate::CliError;
use crate::config::Config;
use crate::link::Linking;

type Result<T, E = CliError> = std::result::Result<T, E>;

/// How progress reaches the user.
enum Ui {
    /// One bar per source, redrawn in place: stderr is a terminal.
    Bars {
        multi: MultiProgress,
        bars: Mutex<HashMap<String, ProgressBar>>,
    },
    /// A line when a source starts and ends, and one every few seconds in between:
    /// stderr goes to a log.
    Lines {
        last: Mutex<HashMap<String, Instant>>,
    },
}

impl Ui {
    fn new() -> Ui {
        if std::io::stderr().is_terminal() {
            Ui::Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                bars: Mutex::new(HashMap::new()),
            }
        } else {
            Ui::Lines {
                last: Mutex::new(HashMap::new()),
            }
        }
    }

    fn bar(&self, source: &str) -> Option<ProgressBar> {
        match self {
            Ui::Bars { bars, .. } => bars.lock().ok()?.get(source).cloned(),
            Ui::Lines { .. } => None,
        }
    }

    /// Whether a periodic line for `source` is due.
    fn line_due(&self, source: &str) -> bool {
        let Ui::Lines { last } = self else {
            return false;
        };
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match last.get(source) {
            Some(t) if now.duration_since(*t) < Duration::from_secs(5) => false,
            _ => {
                last.insert(source.to_owned(), now);
                true
            }
        }
    }

    /// Prints a line without tearing the bars.
    fn println(&self, line: &str) {
        match self {
            Ui::Bars { multi, .. } => {
                if multi.println(line).is_err() {
                    eprintln!("{line}");
                }
            }
            Ui::Lines { .. } => eprintln!("{line}"),
        }
    }
}

/// What `sync` and `serve` show while sources sync, and the linking that follows.
struct Follow {
    config: Arc<Config>,
    ui: Ui,
    /// The last linking, for `sync` to report at the end.
    linking: Mutex<Option<Result<Linking>>>,
    /// Under `serve`: each line starts with a timestamp, its output being a log, and
    /// linkings are not kept (nothing reads them, and they hold every subject key).
    serving: bool,
}

impl Follow {
    fn new(config: Arc<Config>, serving: bool) -> Follow {
        Follow {
            config,
            ui: Ui::new(),
            linking: Mutex::new(None),
            serving,
        }
    }

    fn say(&self, line: &str) {
        if self.serving {
            let now = Utc::now().format("%Y-%m-%dT%H:%M:%SZ");
            self.ui.println(&format!("{now} {line}"));
        } else {
            self.ui.println(line);
        }
    }

    fn take_linking(&self) -> Option<Result<Linking>> {
        self.linking.lock().ok()?.take()
    }
}

#[async_trait]
impl Observer for Follow {
    fn started(&self, source: &str, mode: SyncMode) {
        match &self.ui {
            Ui::Bars { multi, bars } => {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {prefix:<12} {elapsed:>4} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_prefix(source.to_owned());
                bar.set_message(format!("{} sync: connecting", mode.as_str()));
                bar.enable_steady_tick(Duration::from_millis(120));
                if let Ok(mut b) = bars.lock() {
                    b.insert(source.to_owned(), bar);
                }
            }
            Ui::Lines { .. } => self.say(&format!("{source}: {} sync started", mode.as_str())),
        }
    }

    fn fetched(&self, source: &str, pages: u64, items: u64) {
        if let Some(bar) = self.ui.bar(source) {
            bar.set_message(format!("fetched {items} items in {pages} pages"));
        } else if self.ui.line_due(source) {
            self.say(&format!(
                "{source}: fetched {items} items in {pages} pages so far"
            ));
        }
    }

    fn progress(&self, p: &Progress<'_>) {
        let c = p.counts;
        let written = format!(
            "written: {} added, {} updated, {} unchanged, {} rejected",
            c.added, c.updated, c.unchanged, c.rejected
        );
        if let Some(bar) = self.ui.bar(p.source) {
            bar.set_message(written);
        } else if self.ui.line_due(p.source) {
            self.say(&format!("{}: {} pages {written} so far", p.source, p.pages));
        }
    }

    fn finished(&self, run: &SyncRun) {
        if let Some(bar) = self.ui.bar(&run.source) {
            bar.finish_and_clear();
        }
        self.say(&run_line(run));
    }

    async fn settled(&self, writer: &mut Writer) {
        let result = crate::link::update(&self.config, writer).await;
        match &result {
            Ok(l) => self.say(&crate::link::summary(l)),
            Err(e) => self.say(&format!("linking failed: {}", crate::error_text(e))),
        }
        if !self.serving
            && let Ok(mut slot) = self.linking.lock()
        {
            *slot = Some(result);
        }
    }
}

/// A run's outcome in one line, with its error and first rejections below it.
fn run_line(run: &SyncRun) -> String {
    let c = run.counts;
    let elapsed = (run.finished_at - run.started_at)
        .to_std()
        .unwrap_or_default();
    let mut line = format!(
        "{}: {} {} sync in {:.2}s: {} added, {} updated, {} unchanged, {} deleted, {} rejected",
        run.source,
        run.status.as_str(),
        run.mode.as_str(),
        elapsed.as_secs_f64(),
        c.added,
        c.updated,
        c.unchanged,
        c.deleted,
        c.rejected
    );
    if let Some(e) = &run.error {
        line.push_str(&format!("\n  error: {e}"));
    }
    for r in run.rejections.iter().take(5) {
        line.push_str(&format!("\n  rejected: {}", r.reason));
    }
    if run.counts.rejected > 5 {
        line.push_str(&format!(
            "\n  ... {} more rejections in sync_runs.rejections",
            run.counts.rejected - 5
        ));
    }
    line
}

fn limits(config: &Config, jobs: Option<usize>) -> Limits {
    Limits {
        sources: jobs
            .or(config.sync.parallel_sources)
            .unwrap_or(Limits::default().sources),
    }
}

/// Below this many MiB free, no sync can work: refused before it starts, rather than
/// failing halfway. `CROSSDEX_MIN_FREE_MIB` changes it (0 turns the check off).
const MIN_FREE_MIB: u64 = 64;
/// A sync's peak, in times the data directory's final size (docs/operations.md).
const PEAK_FACTOR: u64 = 5;

/// Refuses to start a sync on a nearly full disk, and warns when the room left is
/// below what a sync of everything needs at its peak.
fn check_space(writer: &Writer) -> Result<()> {
    let Ok((free, size)) = writer.space() else {
        return Ok(());
    };
    let mib = |b: u64| b >> 20;
    let min_free_mib = std::env::var("CROSSDEX_MIN_FREE_MIB")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(MIN_FREE_MIB);
    if free < min_free_mib << 20 {
        return Err(CliError::Runtime(anyhow::anyhow!(
            "only {} MiB free for {}: a sync needs at least {} MiB and up to {PEAK_FACTOR} times the data directory's size ({} MiB now); free some space or move the data directory (docs/operations.md, \"Disk space\")",
            mib(free),
            writer.root().display(),
            min_free_mib,
            mib(size)
        )));
    }
    if free < size.saturating_mul(PEAK_FACTOR) {
        tracing::warn!(
            "{} MiB free for {} ({} MiB now): a full sync of every source may need up to {} MiB at its peak",
            mib(free),
            writer.root().display(),
            mib(size),
            mib(size * PEAK_FACTOR)
        );
    }
    Ok(())
}

pub(crate) fn open_writer(dir: &Path) -> Result<Writer> {
    Writer::open(dir).map_err(|e| match e {
        StoreError::Locked { .. } => CliError::Runtime(anyhow::anyhow!(
            "{e}; is `crossdex serve` or another sync running? Its runs show in `crossdex status`"
        )),
        other => other.into(),
    })
}

fn job(config: &Config, name: &str, full: bool) -> Result<Job> {
    Ok(Job {
        connector: Arc::from(config.connector(name)?),
        options: SyncOptions { full },
    })
}

/// Syncs `names`, fetching several at once, then links subjects. A failing source
/// does not stop the others; its run is recorded as failed.
pub(crate) async fn sync_all(
    config: Arc<Config>,
    dir: &Path,
    names: &[String],
    full: bool,
    jobs_limit: Option<usize>,
) -> Result<(Vec<SyncRun>, Option<Linking>)> {
    let mut writer = open_writer(dir)?;
    check_space(&writer)?;
    let jobs = names
        .iter()
        .map(|name| job(&config, name, full))
        .collect::<Result<Vec<_>>>()?;
    let follow = Arc::new(Follow::new(config.clone(), false));
    let runs = crossdex_sync::run_jobs(
        &mut writer,
        jobs,
        limits(&config, jobs_limit),
        follow.clone(),
    )
    .await
    .map_err(|e| CliError::Runtime(e.into()))?;
    let linking = follow.take_linking().transpose()?;
    Ok((runs, linking))
}

/// The plan `serve` follows if started now: each scheduled source's next run, from
/// the configuration and the start of each source's last run in `sync_runs`.
pub(crate) async fn plan(
    config: &Config,
    engine: &crossdex_query::QueryEngine,
) -> Result<Scheduler> {
    let out = engine
        .sql(
            "SELECT source, CAST(to_unixtime(max(started_at)) AS BIGINT) AS t FROM sync_runs GROUP BY source",
            vec![],
        )
        .await?;
    let rows = out.rows_as_text().map_err(anyhow::Error::from)?;
    let last_started: BTreeMap<String, DateTime<Utc>> = rows
        .iter()
        .filter_map(|r| {
            let t = DateTime::from_timestamp(r.get(1)?.parse().ok()?, 0)?;
            Some((r.first()?.clone(), t))
        })
        .collect();
    Ok(Scheduler::new(
        config.schedules.clone(),
        &last_started,
        config.missed_runs,
        Utc::now(),
    ))
}

/// Waits for SIGINT or SIGTERM.
async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `crossdex serve`: syncs each scheduled source when due until SIGINT or SIGTERM.
pub(crate) async fn serve(config: Arc<Config>, dir: &Path) -> Result<std::process::ExitCode> {
    if config.schedules.is_empty() {
        return Err(CliError::usage(format!(
            "no source in {} has a `schedule`; add one to a [sources.<name>] table, e.g. schedule = \"0 2 * * *\"",
            config.path.display()
        )));
    }
    let mut writer = open_writer(dir)?;
    check_space(&writer)?;
    let scheduler = plan(&config, &crossdex_query::QueryEngine::open(dir)?).await?;
    let follow = Arc::new(Follow::new(config.clone(), true));
    for (name, s, next) in scheduler.plan() {
        let next = next
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(|| "never".into());
        follow.say(&format!(
            "{name}: schedule \"{}\" ({}), next run {next}",
            s.expr(),
            s.zone()
        ));
    }
    let grace = Duration::from_secs(config.sync.shutdown_grace_s.unwrap_or(30));
    let (stop, stop_rx) = watch::channel(Stop::Run);
    let signals = {
        let follow = follow.clone();
        tokio::spawn(async move {
            signal().await;
            follow.say(&format!(
                "stopping: no new runs; running syncs get {}s to finish (signal again to abandon them)",
                grace.as_secs()
            ));
            let _ = stop.send(Stop::Drain);
            tokio::select! {
                () = tokio::time::sleep(grace) => {}
                () = signal() => {}
            }
            follow.say("abandoning running syncs; the previous state of their sources stays");
            let _ = stop.send(Stop::Abandon);
        })
    };
    let (tx, rx) = mpsc::channel(16);
    let driver = {
        let config = config.clone();
        let follow = follow.clone();
        let stop_rx = stop_rx.clone();
        tokio::spawn(async move {
            let job_of = |name: &str| match job(&config, name, false) {
                Ok(j) => Some(j),
                Err(e) => {
                    follow.say(&format!("{name}: cannot start: {}", crate::error_text(&e)));
                    None
                }
            };
            crossdex_sync::schedule::drive(scheduler, &SystemClock, job_of, tx, stop_rx).await;
        })
    };
    let result = crossdex_sync::run(
        &mut writer,
        rx,
        limits(&config, None),
        follow.clone(),
        stop_rx,
    )
    .await;
    signals.abort();
    driver.abort();
    let runs = result.map_err(|e| CliError::Runtime(e.into()))?;
    let failed = runs
        .iter()
        .filter(|r| r.status == RunStatus::Failed)
        .count();
    follow.say(&format!(
        "stopped after {} runs ({failed} failed)",
        runs.len()
    ));
    Ok(std::process::ExitCode::SUCCESS)
}
