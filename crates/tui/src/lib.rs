//! crossdex's terminal UI: a Discover-like search with facets and highlights, every
//! source of a subject side by side, a SQL console, sources and links.
//!
//! It owns the screen and the keys, nothing else: every answer comes from
//! `crossdex-service` (never the store or the query engine), on background tasks, so
//! the screen never waits for data. [`app`] is the state machine (keys and answers in,
//! commands out, testable without a terminal), [`ui`] draws it, [`worker`] runs the
//! commands. It must not print outside the alternate screen while it runs, and it
//! restores the terminal on every way out, panics included.

pub mod app;
pub mod backend;
pub mod edit;
pub mod fuzzy;
pub mod keys;
pub mod ui;
pub mod worker;

#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyEventKind};

pub use app::{App, Command, Msg};
pub use backend::{Backend, Remote};
/// Keys, as [`Headless`] takes them.
pub use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
pub use ui::Theme;

/// What went wrong with the terminal itself.
#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    /// The terminal could not be set up, read or drawn on.
    #[error("the terminal: {0}")]
    Terminal(#[from] std::io::Error),
}

/// How often the screen redraws while something runs (elapsed times, debounce).
const TICK: Duration = Duration::from_millis(50);

/// Runs the UI on the terminal until the user quits; `location` names where the data
/// is, for the tab bar.
///
/// The screen and the keys live on a thread of their own, with a runtime of their own:
/// a query that keeps every worker of the caller's runtime busy (a cross join between
/// two yields) cannot stop the screen from answering. The work runs on the caller's
/// runtime.
pub async fn run(backend: Backend, location: String) -> Result<(), TuiError> {
    let work = tokio::runtime::Handle::current();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("crossdex-tui".into())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(TuiError::from)
                .and_then(|rt| {
                    let mut terminal = ratatui::try_init()?;
                    let result = rt.block_on(event_loop(&mut terminal, backend, location, work));
                    ratatui::restore();
                    result
                });
            let _ = done_tx.send(result);
        })?;
    // A panic on the UI thread drops the sender; ratatui's hook restored the terminal.
    done_rx.await.unwrap_or_else(|_| {
        Err(TuiError::Terminal(std::io::Error::other(
            "the terminal UI stopped unexpectedly",
        )))
    })
}

async fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    backend: Backend,
    location: String,
    work: tokio::runtime::Handle,
) -> Result<(), TuiError> {
    let theme = Theme::from_env();
    let (msg_tx, mut msgs) = tokio::sync::mpsc::unbounded_channel();
    let export_dir = std::env::current_dir().unwrap_or_else(|_| std::path::PathBuf::from("."));
    let history = history_file();
    let mut worker = worker::Worker::new(backend, msg_tx, export_dir, work);
    let (mut app, commands) = App::new(location);
    if let Some(path) = history {
        app.sql.history = worker::recall(&path, 1000);
        worker = worker.with_history(path);
    }
    for c in commands {
        worker.run(c);
    }
    // Keys are read on a thread of their own: the terminal's read blocks.
    let (key_tx, mut keys) = tokio::sync::mpsc::unbounded_channel();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || -> std::io::Result<()> {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if event::poll(Duration::from_millis(100))? && key_tx.send(event::read()?).is_err()
                {
                    break;
                }
            }
            Ok(())
        })
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut dirty = true;
    let outcome = loop {
        if dirty {
            let now = Instant::now();
            if let Err(e) = terminal.draw(|f| ui::draw(f, &app, theme, now)) {
                break Err(e.into());
            }
            dirty = false;
        }
        let commands = tokio::select! {
            e = keys.recv() => match e {
                Some(Event::Key(k)) if k.kind != KeyEventKind::Release => {
                    dirty = true;
                    app.on_key(k, Instant::now())
                }
                Some(Event::Resize(..)) => {
                    dirty = true;
                    Vec::new()
                }
                Some(_) => Vec::new(),
                // The reader stopped: the terminal is gone or failed.
                None => break reader_error(reader),
            },
            Some(m) = msgs.recv() => {
                dirty = true;
                app.on_msg(m, Instant::now());
                Vec::new()
            }
            _ = tick.tick() => {
                let had_note = app.note.is_some();
                let c = app.tick(Instant::now());
                dirty |= app.busy() || !c.is_empty() || had_note != app.note.is_some();
                c
            }
        };
        for c in commands {
            worker.run(c);
        }
        if app.quit {
            break Ok(());
        }
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    outcome
}

/// Where the SQL history is kept across sessions: `$XDG_STATE_HOME/crossdex/sql_history`,
/// else `~/.local/state/crossdex/sql_history`; none without a home.
fn history_file() -> Option<std::path::PathBuf> {
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| std::path::PathBuf::from(h).join(".local/state"))
        })?;
    Some(state.join("crossdex/sql_history"))
}

/// The UI without a terminal: keys in, screens out as text. For tests, benchmarks and
/// the documentation's captures; it runs the same app and worker as the terminal does.
pub struct Headless {
    /// The state, for tests to look at.
    pub app: App,
    worker: worker::Worker,
    msgs: tokio::sync::mpsc::UnboundedReceiver<Msg>,
    /// Requests sent and not answered yet.
    pending: usize,
}

impl Headless {
    /// A UI over `service`, its first requests sent (call [`Headless::settle`]).
    pub fn new(backend: Backend, location: &str) -> Headless {
        let (tx, msgs) = tokio::sync::mpsc::unbounded_channel();
        let dir = std::env::temp_dir();
        let worker = worker::Worker::new(backend, tx, dir, tokio::runtime::Handle::current());
        let (app, commands) = App::new(location);
        let mut h = Headless {
            app,
            worker,
            msgs,
            pending: 0,
        };
        h.run(commands);
        h
    }

    fn run(&mut self, commands: Vec<Command>) {
        for c in commands {
            self.pending += match c {
                Command::CancelSql | Command::Remember(_) => 0,
                // Hits, then facets.
                Command::Search { .. } => 2,
                _ => 1,
            };
            self.worker.run(c);
        }
    }

    /// One key.
    pub fn key(&mut self, k: event::KeyEvent) {
        let c = self.app.on_key(k, Instant::now());
        self.run(c);
    }

    /// Keys of `text`, one by one.
    pub fn type_text(&mut self, text: &str) {
        let c = self.app.type_text(text, Instant::now());
        self.run(c);
    }

    /// Takes answers until `done` holds of the state (a debounced search is sent at
    /// once); an error if that takes more than `limit`.
    pub async fn until(
        &mut self,
        done: impl Fn(&App) -> bool,
        limit: Duration,
    ) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let c = self.app.tick(Instant::now() + app::DEBOUNCE);
            self.run(c);
            if done(&self.app) {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, self.msgs.recv()).await {
                Ok(Some(m)) => {
                    if !matches!(m, Msg::Sync(_)) {
                        self.pending = self.pending.saturating_sub(1);
                    }
                    self.app.on_msg(m, Instant::now());
                }
                Ok(None) => return Err("the worker stopped".into()),
                Err(_) => return Err(format!("not done after {limit:?}")),
            }
        }
    }

    /// Waits until every request sent has its answer (a debounced search is sent at
    /// once); an error if that takes more than `limit`.
    pub async fn settle(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let c = self.app.tick(Instant::now() + app::DEBOUNCE);
            self.run(c);
            if self.pending == 0 {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, self.msgs.recv()).await {
                Ok(Some(m)) => {
                    if !matches!(m, Msg::Sync(_)) {
                        self.pending -= 1;
                    }
                    self.app.on_msg(m, Instant::now());
                }
                Ok(None) => return Err("the worker stopped".into()),
                Err(_) => return Err(format!("{} answers missing after {limit:?}", self.pending)),
            }
        }
    }

    /// The screen at `width`×`height`, as text: one line per row, no colours.
    pub fn screen(&self, width: u16, height: u16) -> String {
        ui::screen(&self.app, width, height)
    }
}

fn reader_error(reader: std::thread::JoinHandle<std::io::Result<()>>) -> Result<(), TuiError> {
    match reader.join() {
        Ok(Err(e)) => Err(e.into()),
        _ => Ok(()),
    }
}
