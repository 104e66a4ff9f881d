//! Runs the app's [`Command`]s on background tasks against the service, and sends their
//! answers back as [`Msg`]s: the screen never waits for the data.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossdex_service::{
    OutputFormat, QueryControl, QueryOutput, SearchFilters, SearchRequest, ServiceError,
    SyncRequest,
};
use tokio::sync::mpsc::UnboundedSender;

use crate::app::{Catalog, Command, ExportFormat, Failure, Msg};
use crate::backend::Backend;

impl From<ServiceError> for Failure {
    fn from(e: ServiceError) -> Self {
        Failure {
            code: e.code.as_str().to_owned(),
            message: e.message,
            position: e.position,
        }
    }
}

/// The background side of the UI.
pub struct Worker {
    backend: Backend,
    tx: UnboundedSender<Msg>,
    /// Stops the running SQL statement: its control (local) and its task (remote, where
    /// dropping the request makes the server drop the query).
    sql_cancel: Option<(QueryControl, tokio::task::AbortHandle)>,
    /// The last SQL answer, whole, for exports.
    last_output: Arc<Mutex<Option<QueryOutput>>>,
    /// Where exports go.
    export_dir: std::path::PathBuf,
    /// The runtime the work runs on.
    work: tokio::runtime::Handle,
    /// The SQL history file, when there is one.
    history: Option<std::path::PathBuf>,
    /// The newest search asked for: an older one skips its facets.
    latest_search: Arc<AtomicU64>,
}

impl Worker {
    pub fn new(
        backend: Backend,
        tx: UnboundedSender<Msg>,
        export_dir: std::path::PathBuf,
        work: tokio::runtime::Handle,
    ) -> Worker {
        Worker {
            backend,
            tx,
            sql_cancel: None,
            last_output: Arc::default(),
            export_dir,
            work,
            history: None,
            latest_search: Arc::default(),
        }
    }

    /// Keeps the SQL history in `path` (one JSON string per line).
    pub fn with_history(mut self, path: std::path::PathBuf) -> Worker {
        self.history = Some(path);
        self
    }

    /// Starts `command`; its answer comes on the channel.
    pub fn run(&mut self, command: Command) {
        let backend = self.backend.clone();
        let tx = self.tx.clone();
        match command {
            Command::Search {
                generation,
                query,
                filters,
            } => {
                self.latest_search.store(generation, Ordering::Relaxed);
                let latest = self.latest_search.clone();
                self.work.spawn(async move {
                    let mut f = SearchFilters::default();
                    let mut text = query;
                    for filter in filters {
                        if !filter.include {
                            text = format!("{text} -{}:{}", filter.field, quote(&filter.value));
                            continue;
                        }
                        let slot = match filter.field {
                            "system" => &mut f.system,
                            "source" => &mut f.source,
                            "kind" => &mut f.kind,
                            "project" => &mut f.project,
                            _ => &mut f.subject,
                        };
                        *slot = Some(filter.value);
                    }
                    // Hits first, alone: they are what a key changes at once. The facets,
                    // counted over every hit, follow unless a newer search came.
                    let mut request = SearchRequest::new(text, crate::app::PAGE);
                    request.facets = None;
                    request.filters = f;
                    let result = backend.search(request.clone()).await;
                    let found = result.is_ok();
                    let _ = tx.send(Msg::Searched {
                        generation,
                        result: result.map(Box::new),
                    });
                    let facets = if found && latest.load(Ordering::Relaxed) == generation {
                        request.limit = 0;
                        request.facets = Some(crate::app::FACET_SIZE);
                        Some(
                            backend
                                .search(request)
                                .await
                                .map(|r| Box::new(r.facets.unwrap_or_default())),
                        )
                    } else {
                        None
                    };
                    let _ = tx.send(Msg::Faceted { generation, facets });
                });
            }
            Command::Record { generation, id } => {
                self.work.spawn(async move {
                    let result = backend.record(&id).await.map(Box::new);
                    let _ = tx.send(Msg::Record { generation, result });
                });
            }
            Command::Subject { generation, id } => {
                self.work.spawn(async move {
                    let result = backend.subject(&id).await.map(Box::new);
                    let _ = tx.send(Msg::Subject { generation, result });
                });
            }
            Command::Sql { generation, sql } => {
                let control = QueryControl::default();
                let c = control.clone();
                let last = self.last_output.clone();
                let task = self.work.spawn(async move {
                    let started = Instant::now();
                    let out = backend.sql(&sql, &c).await;
                    let _ = tx.send(Msg::SqlDone {
                        generation,
                        result: keep(out, &last),
                        elapsed: started.elapsed(),
                    });
                });
                self.sql_cancel = Some((control, task.abort_handle()));
            }
            Command::Saved {
                generation,
                name,
                values,
            } => {
                let control = QueryControl::default();
                let c = control.clone();
                let last = self.last_output.clone();
                let task = self.work.spawn(async move {
                    let started = Instant::now();
                    let out = backend.saved(&name, &values, &c).await;
                    let _ = tx.send(Msg::SqlDone {
                        generation,
                        result: keep(out, &last),
                        elapsed: started.elapsed(),
                    });
                });
                self.sql_cancel = Some((control, task.abort_handle()));
            }
            Command::CancelSql => {
                if let Some((control, task)) = self.sql_cancel.take() {
                    control.cancel.cancel();
                    if matches!(self.backend, Backend::Remote(_)) {
                        task.abort();
                    }
                }
            }
            Command::Status => {
                self.work.spawn(async move {
                    let r = backend.status().await.map(Box::new);
                    let _ = tx.send(Msg::Status(r));
                });
            }
            Command::Datasets => {
                self.work.spawn(async move {
                    let r = backend.datasets().await;
                    let _ = tx.send(Msg::Datasets(r));
                });
            }
            Command::Links => {
                self.work.spawn(async move {
                    let r = backend.links().await.map(Box::new);
                    let _ = tx.send(Msg::Links(r));
                });
            }
            Command::Sync { sources } => {
                let Backend::Local(service) = backend else {
                    let _ = tx.send(Msg::SyncDone(Err(Failure {
                        code: "remote".into(),
                        message: "syncs start on the server: its scheduler, or POST /api/v1/sources/{name}/sync with an admin token".into(),
                        position: None,
                    })));
                    return;
                };
                self.work.spawn(async move {
                    let (events, mut rx) = tokio::sync::mpsc::unbounded_channel();
                    let forward = {
                        let tx = tx.clone();
                        tokio::spawn(async move {
                            while let Some(e) = rx.recv().await {
                                let _ = tx.send(Msg::Sync(Box::new(e)));
                            }
                        })
                    };
                    let request = SyncRequest {
                        all: sources.is_empty(),
                        sources,
                        ..SyncRequest::default()
                    };
                    let r = service.sync(&request, events).await;
                    let _ = forward.await;
                    let r = r.map_err(Failure::from).map(|o| {
                        format!(
                            "done: {} run(s), {} failed{}",
                            o.runs.len(),
                            o.failed,
                            match (&o.linking, &o.link_error) {
                                (_, Some(e)) => format!("; linking failed: {}", e.message),
                                (Some(_), None) => "; subjects linked again".to_owned(),
                                (None, None) => String::new(),
                            }
                        )
                    });
                    let _ = tx.send(Msg::SyncDone(r));
                });
            }
            Command::Catalog => {
                self.work.spawn(async move {
                    let _ = tx.send(Msg::Catalog(catalog(&backend).await));
                });
            }
            Command::Copy(text) => {
                // OSC 52: the terminal puts it on the clipboard, over SSH too.
                use base64::Engine;
                let encoded = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
                let mut out = std::io::stdout();
                let ok = write!(out, "\x1b]52;c;{encoded}\x07").and_then(|()| out.flush());
                let _ = tx.send(Msg::Note(match ok {
                    Ok(()) => format!("copied {} characters", text.chars().count()),
                    Err(e) => format!("could not copy: {e}"),
                }));
            }
            Command::Open(url) => {
                let opener = if cfg!(target_os = "macos") {
                    "open"
                } else {
                    "xdg-open"
                };
                let r = std::process::Command::new(opener)
                    .arg(&url)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn();
                let _ = tx.send(Msg::Note(match r {
                    Ok(_) => format!("opening {url}"),
                    Err(e) => format!("no browser to open {url} ({opener}: {e}); y copies it"),
                }));
            }
            Command::Remember(sql) => {
                if let Some(path) = &self.history
                    && let Err(e) = remember(path, &sql)
                {
                    let _ = tx.send(Msg::Note(format!(
                        "the SQL history could not be kept in {}: {e}",
                        path.display()
                    )));
                }
            }
            Command::Export(format) => {
                let note = export(&self.last_output, &self.export_dir, format);
                let _ = tx.send(Msg::Note(note));
            }
        }
    }
}

/// The grid of an answer; the answer itself kept for exports.
fn keep(
    out: Result<(crate::app::Grid, Option<QueryOutput>), Failure>,
    last: &Mutex<Option<QueryOutput>>,
) -> Result<crate::app::Grid, Failure> {
    let (grid, output) = out?;
    *last.lock().unwrap_or_else(|e| e.into_inner()) = output;
    Ok(grid)
}

/// A value of the search syntax, quoted when it holds more than a word.
fn quote(v: &str) -> String {
    if v.chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
    {
        v.to_owned()
    } else {
        format!("\"{}\"", v.replace('"', ""))
    }
}

async fn catalog(backend: &Backend) -> Catalog {
    let control = QueryControl::default();
    // A token without the `sql` action gets no catalog: completion and the palette
    // then offer views and functions only.
    let rows = |out: Result<(crate::app::Grid, Option<QueryOutput>), Failure>| {
        out.map(|(g, _)| g.rows).unwrap_or_default()
    };
    let columns = rows(
        backend
            .sql(
                "SELECT table_name, column_name FROM information_schema.columns \
                 WHERE table_schema = 'public' ORDER BY table_name, ordinal_position",
                &control,
            )
            .await,
    )
    .into_iter()
    .filter_map(|r| Some((r.first()?.clone(), r.get(1)?.clone())))
    .collect();
    let subjects = rows(
        backend
            .sql(
                "SELECT DISTINCT subject_id FROM subject_links ORDER BY 1 LIMIT 5000",
                &control,
            )
            .await,
    )
    .into_iter()
    .filter_map(|r| r.into_iter().next())
    .collect();
    Catalog {
        columns,
        saved: backend.saved_queries(),
        subjects,
    }
}

fn export(
    last: &Mutex<Option<QueryOutput>>,
    dir: &std::path::Path,
    format: ExportFormat,
) -> String {
    let guard = last.lock().unwrap_or_else(|e| e.into_inner());
    let Some(out) = guard.as_ref() else {
        return "nothing to export: run a query first (in remote mode, ask the server's POST /api/v1/sql for CSV)".to_owned();
    };
    let ext = match format {
        ExportFormat::Csv => "csv",
        ExportFormat::Json => "json",
        ExportFormat::Parquet => "parquet",
    };
    let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
    let path = dir.join(format!("crossdex-{stamp}.{ext}"));
    // A new file only: an export never replaces a file that exists.
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .and_then(|mut file| match format {
            ExportFormat::Parquet => {
                let mut w = parquet::arrow::ArrowWriter::try_new(file, out.schema.clone(), None)
                    .map_err(std::io::Error::other)?;
                for b in &out.batches {
                    w.write(b).map_err(std::io::Error::other)?;
                }
                w.close().map(|_| ()).map_err(std::io::Error::other)
            }
            ExportFormat::Csv | ExportFormat::Json => {
                let f = if format == ExportFormat::Csv {
                    OutputFormat::Csv
                } else {
                    OutputFormat::Json
                };
                let text = out.render(f).map_err(std::io::Error::other)?;
                file.write_all(text.as_bytes())
            }
        });
    match written {
        Ok(()) => format!("exported {} rows to {}", out.num_rows(), path.display()),
        Err(e) => format!("could not export to {}: {e}", path.display()),
    }
}

/// Appends `sql` to the history file, created readable by its owner only: statements
/// can hold personal data in their literals.
fn remember(path: &std::path::Path, sql: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    let line = serde_json::to_string(sql).map_err(std::io::Error::other)?;
    writeln!(file, "{line}")
}

/// The statements of the history file, oldest first, the last `keep` of them.
pub fn recall(path: &std::path::Path, keep: usize) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let all: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<String>(l).ok())
        .collect();
    let skip = all.len().saturating_sub(keep);
    all.into_iter().skip(skip).collect()
}
