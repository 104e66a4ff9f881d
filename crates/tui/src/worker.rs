//! Runs the app's [`Command`]s on background tasks against the service, and sends their
//! answers back as [`Msg`]s: the screen never waits for the data.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossdex_service::{
    OutputFormat, QueryControl, QueryOutput, SearchFilters, SearchRequest, Service, ServiceError,
    SyncRequest,
};
use tokio::sync::mpsc::UnboundedSender;

use crate::app::{Catalog, Command, ExportFormat, Failure, Grid, Msg};

/// Rows of a SQL answer the grid keeps; more are counted as truncated.
pub const MAX_GRID_ROWS: usize = 10_000;

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
    service: Service,
    tx: UnboundedSender<Msg>,
    /// Cancels the running SQL statement.
    sql_cancel: Option<QueryControl>,
    /// The last SQL answer, whole, for exports.
    last_output: Arc<Mutex<Option<QueryOutput>>>,
    /// Where exports go.
    export_dir: std::path::PathBuf,
    /// The runtime the work runs on.
    work: tokio::runtime::Handle,
}

impl Worker {
    pub fn new(
        service: Service,
        tx: UnboundedSender<Msg>,
        export_dir: std::path::PathBuf,
        work: tokio::runtime::Handle,
    ) -> Worker {
        Worker {
            service,
            tx,
            sql_cancel: None,
            last_output: Arc::default(),
            export_dir,
            work,
        }
    }

    /// Starts `command`; its answer comes on the channel.
    pub fn run(&mut self, command: Command) {
        let service = self.service.clone();
        let tx = self.tx.clone();
        match command {
            Command::Search {
                generation,
                query,
                filters,
            } => {
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
                    let mut request = SearchRequest::new(text, crate::app::PAGE);
                    request.facets = Some(crate::app::FACET_SIZE);
                    request.filters = f;
                    let result = service
                        .search(&request, &QueryControl::default())
                        .await
                        .map(Box::new)
                        .map_err(Failure::from);
                    let _ = tx.send(Msg::Searched { generation, result });
                });
            }
            Command::Record { generation, id } => {
                self.work.spawn(async move {
                    let result = service
                        .record(&id, &QueryControl::default())
                        .await
                        .map(Box::new)
                        .map_err(Failure::from);
                    let _ = tx.send(Msg::Record { generation, result });
                });
            }
            Command::Subject { generation, id } => {
                self.work.spawn(async move {
                    let result = service
                        .subject(&id, &QueryControl::default())
                        .await
                        .map(Box::new)
                        .map_err(Failure::from);
                    let _ = tx.send(Msg::Subject { generation, result });
                });
            }
            Command::Sql { generation, sql } => {
                let control = QueryControl::default();
                self.sql_cancel = Some(control.clone());
                let last = self.last_output.clone();
                self.work.spawn(async move {
                    let started = Instant::now();
                    let out = service.sql(&sql, Vec::new(), &control).await;
                    let result = grid(out, &last);
                    let _ = tx.send(Msg::SqlDone {
                        generation,
                        result,
                        elapsed: started.elapsed(),
                    });
                });
            }
            Command::Saved {
                generation,
                name,
                values,
            } => {
                let control = QueryControl::default();
                self.sql_cancel = Some(control.clone());
                let last = self.last_output.clone();
                self.work.spawn(async move {
                    let started = Instant::now();
                    let out = service.run_saved(&name, &values, &control).await;
                    let result = grid(out, &last);
                    let _ = tx.send(Msg::SqlDone {
                        generation,
                        result,
                        elapsed: started.elapsed(),
                    });
                });
            }
            Command::CancelSql => {
                if let Some(c) = self.sql_cancel.take() {
                    c.cancel.cancel();
                }
            }
            Command::Status => {
                self.work.spawn(async move {
                    let r = service.status(&QueryControl::default()).await;
                    let _ = tx.send(Msg::Status(r.map(Box::new).map_err(Failure::from)));
                });
            }
            Command::Links => {
                self.work.spawn(async move {
                    let r = service.link_report(&QueryControl::default()).await;
                    let _ = tx.send(Msg::Links(r.map(Box::new).map_err(Failure::from)));
                });
            }
            Command::Sync { sources } => {
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
                    let _ = tx.send(Msg::Catalog(catalog(&service).await));
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
            Command::Export(format) => {
                let note = export(&self.last_output, &self.export_dir, format);
                let _ = tx.send(Msg::Note(note));
            }
        }
    }
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

fn grid(
    out: crossdex_service::Result<QueryOutput>,
    last: &Mutex<Option<QueryOutput>>,
) -> Result<Grid, Failure> {
    let out = out.map_err(Failure::from)?;
    let rows = out.text_rows().map_err(|e| Failure {
        code: "internal".into(),
        message: format!("the answer could not be shown: {e}"),
        position: None,
    })?;
    let truncated = rows.len() > MAX_GRID_ROWS;
    let grid = Grid {
        columns: out
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect(),
        types: out
            .schema
            .fields()
            .iter()
            .map(|f| f.data_type().to_string())
            .collect(),
        rows: rows
            .into_iter()
            .take(MAX_GRID_ROWS)
            .map(|r| {
                r.into_iter()
                    .map(|c| c.unwrap_or_else(|| "NULL".into()))
                    .collect()
            })
            .collect(),
        truncated,
    };
    *last.lock().unwrap_or_else(|e| e.into_inner()) = Some(out);
    Ok(grid)
}

async fn catalog(service: &Service) -> Catalog {
    let control = QueryControl::default();
    let text = |out: crossdex_service::Result<QueryOutput>| -> Vec<Vec<String>> {
        out.ok()
            .and_then(|o| o.rows_as_text().ok())
            .unwrap_or_default()
    };
    let columns = text(
        service
            .sql(
                "SELECT table_name, column_name FROM information_schema.columns \
                 WHERE table_schema = 'public' ORDER BY table_name, ordinal_position",
                Vec::new(),
                &control,
            )
            .await,
    )
    .into_iter()
    .filter_map(|r| Some((r.first()?.clone(), r.get(1)?.clone())))
    .collect();
    let subjects = text(
        service
            .sql(
                "SELECT DISTINCT subject_id FROM subject_links ORDER BY 1 LIMIT 5000",
                Vec::new(),
                &control,
            )
            .await,
    )
    .into_iter()
    .filter_map(|r| r.into_iter().next())
    .collect();
    Catalog {
        columns,
        saved: service.saved_queries(),
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
        return "nothing to export: run a query first".to_owned();
    };
    let (ext, f) = match format {
        ExportFormat::Csv => ("csv", OutputFormat::Csv),
        ExportFormat::Json => ("json", OutputFormat::Json),
    };
    let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
    let path = dir.join(format!("crossdex-{stamp}.{ext}"));
    let text = match out.render(f) {
        Ok(t) => t,
        Err(e) => return format!("could not write {ext}: {e}"),
    };
    // A new file only: an export never replaces a file that exists.
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .and_then(|mut file| file.write_all(text.as_bytes()));
    match written {
        Ok(()) => format!("exported {} rows to {}", out.num_rows(), path.display()),
        Err(e) => format!("could not export to {}: {e}", path.display()),
    }
}
