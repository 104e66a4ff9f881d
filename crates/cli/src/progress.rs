//! Sync events on the terminal: one bar per source when stderr is a terminal, plain
//! lines (a start, an end, one every few seconds in between) when it is a log; and
//! `serve`'s scheduler wired to SIGINT and SIGTERM.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use chrono::Utc;
use crossdex_service::{RunSummary, Service, Stop, SyncEvent};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use std::net::SocketAddr;

use crate::CliError;
use crate::args::ServeArgs;

/// How progress reaches the user.
enum Ui {
    /// One bar per source, redrawn in place: stderr is a terminal.
    Bars {
        multi: MultiProgress,
        bars: HashMap<String, ProgressBar>,
    },
    /// Lines, at most one per source every few seconds: stderr goes to a log.
    Lines { last: HashMap<String, Instant> },
}

/// Shows the events of one sync (or of `serve`'s whole life) on stderr.
pub struct Follow {
    ui: Ui,
    /// Under `serve` each line starts with a timestamp: its output is a log.
    serving: bool,
}

impl Follow {
    pub fn new(serving: bool) -> Follow {
        let ui = if std::io::stderr().is_terminal() {
            Ui::Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                bars: HashMap::new(),
            }
        } else {
            Ui::Lines {
                last: HashMap::new(),
            }
        };
        Follow { ui, serving }
    }

    /// Reads events until the sender goes away, showing each.
    pub fn spawn(mut self, mut rx: mpsc::UnboundedReceiver<SyncEvent>) -> JoinHandle<()> {
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                self.show(&e);
            }
        })
    }

    fn say(&self, line: &str) {
        let line = if self.serving {
            format!("{} {line}", Utc::now().format("%Y-%m-%dT%H:%M:%SZ"))
        } else {
            line.to_owned()
        };
        match &self.ui {
            Ui::Bars { multi, .. } if multi.println(&line).is_ok() => {}
            _ => eprintln!("{line}"),
        }
    }

    /// Whether a periodic line for `source` is due.
    fn line_due(&mut self, source: &str) -> bool {
        let Ui::Lines { last } = &mut self.ui else {
            return false;
        };
        let now = Instant::now();
        match last.get(source) {
            Some(t) if now.duration_since(*t) < Duration::from_secs(5) => false,
            _ => {
                last.insert(source.to_owned(), now);
                true
            }
        }
    }

    fn bar(&self, source: &str) -> Option<&ProgressBar> {
        match &self.ui {
            Ui::Bars { bars, .. } => bars.get(source),
            Ui::Lines { .. } => None,
        }
    }

    fn show(&mut self, e: &SyncEvent) {
        match e {
            SyncEvent::Started { source, mode } => match &mut self.ui {
                Ui::Bars { multi, bars } => {
                    let bar = multi.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} {prefix:<12} {elapsed:>4} {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.set_prefix(source.clone());
                    bar.set_message(format!("{mode} sync: connecting"));
                    bar.enable_steady_tick(Duration::from_millis(120));
                    bars.insert(source.clone(), bar);
                }
                Ui::Lines { .. } => self.say(&format!("{source}: {mode} sync started")),
            },
            SyncEvent::Fetched {
                source,
                pages,
                items,
            } => {
                if let Some(bar) = self.bar(source) {
                    bar.set_message(format!("fetched {items} items in {pages} pages"));
                } else if self.line_due(source) {
                    self.say(&format!(
                        "{source}: fetched {items} items in {pages} pages so far"
                    ));
                }
            }
            SyncEvent::Written {
                source,
                pages,
                added,
                updated,
                unchanged,
                rejected,
            } => {
                let written = format!(
                    "written: {added} added, {updated} updated, {unchanged} unchanged, {rejected} rejected"
                );
                if let Some(bar) = self.bar(source) {
                    bar.set_message(written);
                } else if self.line_due(source) {
                    self.say(&format!("{source}: {pages} pages {written} so far"));
                }
            }
            SyncEvent::Finished { run } => {
                if let Some(bar) = self.bar(&run.source) {
                    bar.finish_and_clear();
                }
                self.say(&run_line(run));
            }
            SyncEvent::Linked { summary: l } => self.say(&format!(
                "linking: {} of {} keys linked into {} subjects; {} conflicts, {} ambiguous, {} unlinked (crossdex link report)",
                l.linked, l.keys, l.subjects, l.conflicts, l.ambiguous, l.unlinked
            )),
            SyncEvent::LinkFailed { error } => {
                self.say(&format!("linking failed: {}", error.operator_text()))
            }
            SyncEvent::Note { message } => self.say(message),
        }
    }
}

/// A run's outcome in one line, with its error and first rejections below it.
fn run_line(run: &RunSummary) -> String {
    let mut line = format!(
        "{}: {} {} sync in {:.2}s: {} added, {} updated, {} unchanged, {} deleted, {} rejected",
        run.source,
        run.status,
        run.mode,
        (run.finished_at - run.started_at)
            .to_std()
            .unwrap_or_default()
            .as_secs_f64(),
        run.added,
        run.updated,
        run.unchanged,
        run.deleted,
        run.rejected
    );
    if let Some(e) = &run.error {
        line.push_str(&format!("\n  error: {e}"));
    }
    for r in &run.rejections {
        line.push_str(&format!("\n  rejected: {r}"));
    }
    let shown = run.rejections.len() as u64;
    if run.rejected > shown && shown > 0 {
        line.push_str(&format!(
            "\n  ... {} more rejections in sync_runs.rejections",
            run.rejected - shown
        ));
    }
    line
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

/// The address `serve` listens on when neither `--listen` nor `[server] listen` says.
const DEFAULT_LISTEN: &str = "127.0.0.1:8742";

fn server_options(service: &Service) -> crossdex_server::ServerOptions {
    let d = crossdex_server::ServerOptions::default();
    let Some(c) = service.config().map(|c| &c.server) else {
        return d;
    };
    crossdex_server::ServerOptions {
        max_body_bytes: c.max_body_bytes.unwrap_or(d.max_body_bytes),
        request_timeout: c
            .request_timeout_s
            .map_or(d.request_timeout, Duration::from_secs),
        query_timeout: c
            .query_timeout_s
            .map_or(d.query_timeout, Duration::from_secs),
        max_concurrent_queries: c.max_concurrent_queries.unwrap_or(d.max_concurrent_queries),
        cors_origins: c.cors_origins.clone(),
    }
}

/// `crossdex serve`: the HTTP API, and the service's scheduler unless `--no-schedule`
/// or no source has a schedule, until SIGINT or SIGTERM. The first signal stops new
/// syncs and new connections, lets running syncs (for the grace period) and requests
/// finish; a second signal abandons the syncs.
pub async fn serve(
    service: &Service,
    args: &ServeArgs,
) -> Result<std::process::ExitCode, CliError> {
    let configured = service.config().and_then(|c| c.server.listen.clone());
    let listen: SocketAddr = match (args.listen, &configured) {
        (Some(a), _) => a,
        (None, Some(text)) => text.parse().map_err(|_| {
            CliError::usage(format!(
                "[server] listen = {text:?} is not an address and port such as 127.0.0.1:8742"
            ))
        })?,
        (None, None) => DEFAULT_LISTEN
            .parse()
            .map_err(|_| CliError::usage("bad default"))?,
    };
    if !crossdex_server::is_loopback(&listen) && !service.has_tokens()? {
        return Err(CliError::usage(format!(
            "refusing to serve on {listen}: the index holds clinical data, and an address other than loopback needs API tokens. \
             Create one with `crossdex token create NAME --scope search --expires 30d`, or listen on 127.0.0.1 (the default)"
        )));
    }
    let scheduling = !args.no_schedule && service.config().is_some_and(|c| !c.schedules.is_empty());
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| CliError::Runtime(anyhow::anyhow!("cannot listen on {listen}: {e}")))?;
    let bound = listener.local_addr().unwrap_or(listen);
    let grace = Duration::from_secs(
        service
            .config()
            .and_then(|c| c.sync.shutdown_grace_s)
            .unwrap_or(30),
    );
    let (events, rx) = mpsc::unbounded_channel();
    let (stop, stop_rx) = watch::channel(Stop::Run);
    let stop = std::sync::Arc::new(stop);
    let shown = Follow::new(true).spawn(rx);
    let _ = events.send(SyncEvent::Note {
        message: format!(
            "serving the HTTP API on http://{bound}{}/ ({})",
            crossdex_server::PREFIX,
            if scheduling {
                "and syncing each source on its schedule"
            } else if args.no_schedule {
                "no scheduled syncs: --no-schedule"
            } else {
                "no source has a `schedule`: no scheduled syncs"
            }
        ),
    });
    let signals = {
        let events = events.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            signal().await;
            let _ = events.send(SyncEvent::Note {
                message: format!(
                    "stopping: no new runs or connections; running syncs get {}s to finish (signal again to abandon them)",
                    grace.as_secs()
                ),
            });
            let _ = stop.send(Stop::Drain);
            tokio::select! {
                () = tokio::time::sleep(grace) => {}
                () = signal() => {}
            }
            let _ = events.send(SyncEvent::Note {
                message: "abandoning running syncs; the previous state of their sources stays"
                    .into(),
            });
            let _ = stop.send(Stop::Abandon);
        })
    };
    let app = crossdex_server::app(service.clone(), server_options(service));
    let http = {
        let mut stop_rx = stop_rx.clone();
        tokio::spawn(crossdex_server::serve(listener, app, async move {
            let _ = stop_rx.wait_for(|s| *s != Stop::Run).await;
        }))
    };
    let schedule = if scheduling {
        let result = service.run_schedule(events.clone(), stop_rx.clone()).await;
        if result.is_err() {
            // The scheduler could not run (the data directory is busy): nothing is
            // served half-way.
            let _ = stop.send(Stop::Abandon);
        }
        Some(result)
    } else {
        None
    };
    let served = http.await;
    signals.abort();
    if let Some(Ok(runs)) = &schedule {
        let failed = runs.iter().filter(|r| r.status == "failed").count();
        let _ = events.send(SyncEvent::Note {
            message: format!("stopped after {} runs ({failed} failed)", runs.len()),
        });
    } else {
        let _ = events.send(SyncEvent::Note {
            message: "stopped".into(),
        });
    }
    drop(events);
    drain(shown).await;
    if let Some(result) = schedule {
        result?;
    }
    match served {
        Ok(Ok(())) => Ok(std::process::ExitCode::SUCCESS),
        Ok(Err(e)) => Err(CliError::Runtime(anyhow::anyhow!(
            "the HTTP API stopped: {e}"
        ))),
        Err(e) => Err(CliError::Runtime(anyhow::anyhow!(
            "the HTTP API stopped: {e}"
        ))),
    }
}

/// Waits for the events still queued to be shown; a sender kept alive by a task being
/// torn down does not hold the process.
pub async fn drain(shown: JoinHandle<()>) {
    let _ = tokio::time::timeout(Duration::from_secs(2), shown).await;
}
