//! The `files` connector: indexes a folder of tabular exports — CSV, TSV and JSON
//! Lines — for systems that cannot be reached live (a REDCap CSV export, a BIDS
//! `participants.tsv`, a LIMS dump).
//!
//! Each row becomes a `records` row (kind `row` by default) and each non-empty cell an
//! observation, typed as a number, a date or text. The row id comes from the first
//! of `id_columns` the file has (else its first column), the subject key from the
//! first of `subject_columns`. REDCap exports are recognised by their
//! `redcap_event_name` / `redcap_repeat_instrument` / `redcap_repeat_instance`
//! columns: those become part of the row id and the observations' event and instance.
//!
//! Every sync is a full sync: the folder is re-read and what disappeared from it is
//! deleted. Files are streamed, so memory does not grow with their size. A row that
//! cannot be read is rejected with its file and line; the rest goes on.

#![warn(missing_docs)]

mod typing;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use crossdex_model::{
    Capabilities, CheckReport, Connector, ConnectorError, ConnectorFactory, Entity, Page, PageSink,
    Record, Rejection, SourceContext, SyncMode, SyncOutcome, SyncRequest,
};
use serde::Deserialize;

pub use typing::type_value;

/// Rows pushed per page.
const PAGE_ROWS: usize = 1000;

const REDCAP_EVENT: &str = "redcap_event_name";
const REDCAP_INSTRUMENT: &str = "redcap_repeat_instrument";
const REDCAP_INSTANCE: &str = "redcap_repeat_instance";

/// Configuration of a `files` source.
///
/// ```toml
/// [sources.exports]
/// type = "files"
/// path = "exports"          # folder, relative to the config file
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    /// Folder holding the exports, or one export file; relative paths start at the
    /// config file's folder.
    pub path: PathBuf,
    /// Candidate names of the row id column, first match wins; else the first column.
    #[serde(default = "default_id_columns")]
    pub id_columns: Vec<String>,
    /// Candidate names of the subject column, first match wins; none means no subject.
    #[serde(default = "default_subject_columns")]
    pub subject_columns: Vec<String>,
    /// Kind given to the rows in `records`.
    #[serde(default = "default_kind")]
    pub kind: String,
    /// Project given to the rows in `records` (the study the exports belong to), so
    /// search facets and API tokens limited to projects take them in; none by default.
    #[serde(default)]
    pub project: Option<String>,
    /// Cell values read as missing (compared case-insensitively).
    #[serde(default = "default_missing")]
    pub missing_values: Vec<String>,
    /// Whether sub-folders are read too.
    #[serde(default = "default_true")]
    pub recursive: bool,
}

fn default_id_columns() -> Vec<String> {
    ["record_id", "participant_id", "subject_id", "id"]
        .map(String::from)
        .to_vec()
}
fn default_subject_columns() -> Vec<String> {
    ["participant_id", "subject_id", "record_id", "subject"]
        .map(String::from)
        .to_vec()
}
fn default_kind() -> String {
    "row".into()
}
fn default_missing() -> Vec<String> {
    ["", "n/a", "na", "nan", "null", "none"]
        .map(String::from)
        .to_vec()
}
fn default_true() -> bool {
    true
}

/// Builds `files` connectors.
#[derive(Debug, Default)]
pub struct FilesFactory;

impl ConnectorFactory for FilesFactory {
    fn system(&self) -> &'static str {
        "files"
    }

    fn example_config(&self) -> &'static str {
        r#"# A folder of CSV, TSV and JSON Lines exports.
[sources.exports]
type = "files"
# Folder to index; relative paths start at this file's folder.
path = "exports"
# Column holding each row's id, first match wins (default below; else the first column).
# id_columns = ["record_id", "participant_id", "subject_id", "id"]
# Column holding the subject identifier, first match wins.
# subject_columns = ["participant_id", "subject_id", "record_id", "subject"]
# Project of the rows (facets, tokens limited to projects); none by default.
# project = "MEMCLIN"
# Cell values read as missing.
# missing_values = ["", "n/a", "NA", "NaN", "null", "none"]
"#
    }

    fn build(&self, context: SourceContext) -> Result<Box<dyn Connector>, ConnectorError> {
        let mut config: FilesConfig = crossdex_model::config::source_config(&context.config)?;
        if config.path.is_relative() {
            config.path = context.base_dir.join(&config.path);
        }
        for s in &mut config.missing_values {
            *s = s.to_lowercase();
        }
        Ok(Box::new(FilesConnector {
            name: context.name,
            config,
        }))
    }
}

/// A connector over one folder of exports.
#[derive(Debug)]
pub struct FilesConnector {
    name: String,
    config: FilesConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Format {
    Csv,
    Tsv,
    JsonLines,
}

fn format_of(path: &Path) -> Option<Format> {
    match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
        "csv" => Some(Format::Csv),
        "tsv" | "tab" => Some(Format::Tsv),
        "jsonl" | "ndjson" => Some(Format::JsonLines),
        _ => None,
    }
}

impl FilesConnector {
    fn io(&self, path: &Path, source: std::io::Error) -> ConnectorError {
        ConnectorError::Io {
            path: path.to_owned(),
            source,
        }
    }

    /// The export files under the folder, sorted, with their format.
    fn files(&self) -> Result<Vec<(PathBuf, Format)>, ConnectorError> {
        let root = &self.config.path;
        if root.is_file() {
            let format = format_of(root).ok_or_else(|| ConnectorError::Config {
                key: "path".into(),
                reason: format!(
                    "{} is not a .csv, .tsv, .jsonl or .ndjson file",
                    root.display()
                ),
            })?;
            return Ok(vec![(root.clone(), format)]);
        }
        let mut out = Vec::new();
        let mut stack = vec![self.config.path.clone()];
        while let Some(dir) = stack.pop() {
            let entries = std::fs::read_dir(&dir).map_err(|e| self.io(&dir, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| self.io(&dir, e))?;
                let path = entry.path();
                let file_type = entry.file_type().map_err(|e| self.io(&path, e))?;
                if file_type.is_dir() {
                    if self.config.recursive {
                        stack.push(path);
                    }
                } else if let Some(f) = format_of(&path) {
                    out.push((path, f));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn relative(&self, path: &Path) -> String {
        let base = if self.config.path.is_file() {
            self.config.path.parent().unwrap_or(Path::new(""))
        } else {
            &self.config.path
        };
        path.strip_prefix(base)
            .unwrap_or(path)
            .to_string_lossy()
            .replace('\\', "/")
    }

    fn is_missing(&self, v: &str) -> bool {
        let v = v.trim();
        self.config
            .missing_values
            .iter()
            .any(|m| m.eq_ignore_ascii_case(v))
    }

    fn pick(candidates: &[String], header: &[String]) -> Option<usize> {
        candidates
            .iter()
            .find_map(|c| header.iter().position(|h| h.eq_ignore_ascii_case(c)))
    }

    /// Turns one row, as (column, value) pairs, into an entity.
    fn entity(
        &self,
        file: &str,
        line: u64,
        layout: &Layout,
        cells: Vec<(String, String)>,
    ) -> Result<Entity, Rejection> {
        let value = |i: Option<usize>| {
            i.and_then(|i| cells.get(i))
                .map(|(_, v)| v.trim())
                .filter(|v| !self.is_missing(v))
                .map(str::to_owned)
        };
        let reject = |reason: String| Rejection {
            native_id: None,
            reason: format!("{file}: line {line}: {reason}"),
        };
        let id = value(Some(layout.id))
            .ok_or_else(|| reject(format!("empty id column `{}`", layout.id_name)))?;
        let subject = value(layout.subject);
        let event = value(layout.event);
        let instrument = value(layout.instrument);
        let instance = match value(layout.instance) {
            None => None,
            Some(v) => Some(
                v.parse::<i64>()
                    .map_err(|_| reject(format!("{REDCAP_INSTANCE} {v:?} is not an integer")))?,
            ),
        };
        let mut native_id = format!("{file}#{id}");
        for part in [&event, &instrument].into_iter().flatten() {
            native_id.push('/');
            native_id.push_str(part);
        }
        if let Some(n) = instance {
            native_id.push_str(&format!("/{n}"));
        }
        let title = match (&subject, &event) {
            (Some(s), Some(e)) => format!("{s} {e} ({file})"),
            (Some(s), None) => format!("{s} ({file})"),
            (None, _) => format!("{id} ({file})"),
        };
        let mut record = Record::new(&self.name, "files", &self.config.kind, &native_id, &title);
        record.subject_key = subject;
        record.project = self.config.project.clone();
        record.attributes.insert("file".into(), file.into());
        let skip = [
            Some(layout.id),
            layout.subject,
            layout.event,
            layout.instrument,
            layout.instance,
        ];
        let mut observations = Vec::with_capacity(cells.len());
        for (i, (column, raw)) in cells.into_iter().enumerate() {
            if skip.contains(&Some(i)) || self.is_missing(&raw) {
                continue;
            }
            let mut o = type_value(&column, raw.trim());
            o.event = event.clone();
            o.instance = instance;
            observations.push(o);
        }
        Ok(Entity {
            record,
            observations,
        })
    }

    async fn read_delimited(
        &self,
        path: &Path,
        delimiter: u8,
        sink: &mut dyn PageSink,
    ) -> Result<(), ConnectorError> {
        let file = self.relative(path);
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .flexible(false)
            .from_path(path)
            .map_err(|e| csv_io(path, e))?;
        let header: Vec<String> = reader
            .headers()
            .map_err(|e| csv_io(path, e))?
            .iter()
            .map(|h| h.trim().trim_start_matches('\u{feff}').to_owned())
            .collect();
        if header.iter().all(String::is_empty) {
            return Ok(());
        }
        let layout = Layout::new(&self.config, &header);
        let mut pager = Pager::new(sink);
        let mut record = csv::StringRecord::new();
        loop {
            let line = reader.position().line();
            let row = match reader.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {
                    let cells = header
                        .iter()
                        .cloned()
                        .zip(record.iter().map(str::to_owned))
                        .collect();
                    self.entity(&file, line, &layout, cells)
                }
                Err(e) if e.is_io_error() => return Err(csv_io(path, e)),
                Err(e) => Err(Rejection {
                    native_id: None,
                    reason: format!("{file}: line {line}: {}", csv_reason(&e)),
                }),
            };
            pager.push(row).await?;
        }
        pager.finish().await
    }

    async fn read_json_lines(
        &self,
        path: &Path,
        sink: &mut dyn PageSink,
    ) -> Result<(), ConnectorError> {
        use std::io::BufRead;
        let file = self.relative(path);
        let reader =
            std::io::BufReader::new(std::fs::File::open(path).map_err(|e| self.io(path, e))?);
        let mut pager = Pager::new(sink);
        for (n, line) in reader.lines().enumerate() {
            let line_no = n as u64 + 1;
            let line = line.map_err(|e| self.io(path, e))?;
            if line.trim().is_empty() {
                continue;
            }
            let parsed = serde_json::from_str::<serde_json::Value>(&line)
                .map_err(|e| format!("invalid JSON at column {}: {e}", e.column()))
                .and_then(|v| match v {
                    serde_json::Value::Object(map) => Ok(map),
                    other => Err(format!(
                        "expected a JSON object, found {}",
                        json_kind(&other)
                    )),
                });
            let row = match parsed {
                Err(reason) => Err(Rejection {
                    native_id: None,
                    reason: format!("{file}: line {line_no}: {reason}"),
                }),
                Ok(map) => {
                    let mut cells = Vec::new();
                    flatten("", &serde_json::Value::Object(map), &mut cells);
                    let header: Vec<String> = cells.iter().map(|(k, _)| k.clone()).collect();
                    let layout = Layout::new(&self.config, &header);
                    self.entity(&file, line_no, &layout, cells)
                }
            };
            pager.push(row).await?;
        }
        pager.finish().await
    }
}

/// Gathers rows into pages of [`PAGE_ROWS`] and hands each full page to the sink, so
/// a file is never held in memory whole.
struct Pager<'s> {
    sink: &'s mut dyn PageSink,
    page: Page,
}

impl<'s> Pager<'s> {
    fn new(sink: &'s mut dyn PageSink) -> Self {
        Pager {
            sink,
            page: Page::default(),
        }
    }

    async fn push(&mut self, row: Result<Entity, Rejection>) -> Result<(), ConnectorError> {
        match row {
            Ok(e) => self.page.upserts.push(e),
            Err(r) => self.page.rejected.push(r),
        }
        if self.page.upserts.len() + self.page.rejected.len() >= PAGE_ROWS {
            self.sink.page(std::mem::take(&mut self.page)).await?;
        }
        Ok(())
    }

    async fn finish(self) -> Result<(), ConnectorError> {
        if !self.page.is_empty() {
            self.sink.page(self.page).await?;
        }
        Ok(())
    }
}

/// Where the special columns of a file are.
struct Layout {
    id: usize,
    id_name: String,
    subject: Option<usize>,
    event: Option<usize>,
    instrument: Option<usize>,
    instance: Option<usize>,
}

impl Layout {
    fn new(config: &FilesConfig, header: &[String]) -> Layout {
        let id = FilesConnector::pick(&config.id_columns, header).unwrap_or(0);
        let find = |name: &str| header.iter().position(|h| h == name);
        Layout {
            id,
            id_name: header.get(id).cloned().unwrap_or_default(),
            subject: FilesConnector::pick(&config.subject_columns, header),
            event: find(REDCAP_EVENT),
            instrument: find(REDCAP_INSTRUMENT),
            instance: find(REDCAP_INSTANCE),
        }
    }
}

/// Flattens nested objects into `a.b` columns; arrays of scalars repeat the column.
fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    use serde_json::Value as J;
    match v {
        J::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        J::Array(items) => items.iter().for_each(|i| flatten(prefix, i, out)),
        J::Null => {}
        J::String(s) => out.push((prefix.to_owned(), s.clone())),
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::Bool(_) => "a boolean",
        _ => "null",
    }
}

fn csv_io(path: &Path, e: csv::Error) -> ConnectorError {
    let path = path.to_owned();
    match e.into_kind() {
        csv::ErrorKind::Io(source) => ConnectorError::Io { path, source },
        other => ConnectorError::Protocol(format!("{}: {other:?}", path.display())),
    }
}

fn csv_reason(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("expected {expected_len} fields as in the header, found {len}")
        }
        csv::ErrorKind::Utf8 { err, .. } => format!("invalid UTF-8 in field {}", err.field() + 1),
        _ => e.to_string(),
    }
}

#[async_trait]
impl Connector for FilesConnector {
    fn source(&self) -> &str {
        &self.name
    }

    fn system(&self) -> &'static str {
        "files"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { incremental: false }
    }

    async fn check(&self) -> Result<CheckReport, ConnectorError> {
        let files = self.files()?;
        let count = |f: Format| files.iter().filter(|(_, x)| *x == f).count();
        Ok(CheckReport {
            summary: format!(
                "{} export files in {} ({} CSV, {} TSV, {} JSON Lines)",
                files.len(),
                self.config.path.display(),
                count(Format::Csv),
                count(Format::Tsv),
                count(Format::JsonLines)
            ),
        })
    }

    async fn sync(
        &self,
        _request: SyncRequest,
        sink: &mut dyn PageSink,
    ) -> Result<SyncOutcome, ConnectorError> {
        for (path, format) in self.files()? {
            match format {
                Format::Csv => self.read_delimited(&path, b',', sink).await?,
                Format::Tsv => self.read_delimited(&path, b'\t', sink).await?,
                Format::JsonLines => self.read_json_lines(&path, sink).await?,
            }
        }
        Ok(SyncOutcome {
            mode: SyncMode::Full,
            checkpoint: None,
        })
    }
}

#[cfg(test)]
mod tests;
