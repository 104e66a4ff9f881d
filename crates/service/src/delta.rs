//! Publishing the tables as Delta Lake tables, so engines that cannot open a data
//! directory (Spark, Trino, Databricks, DuckDB, polars, pandas through `deltalake`)
//! read a consistent snapshot of the index.
//!
//! Each table is a Delta table of its own under the export folder (`records/`,
//! `observations/`, `subjects/`, `subject_links/`, `sync_runs/`): Parquet files, and a
//! `_delta_log` of JSON commits (protocol 1/2, no checkpoints, no features). `records`
//! and `observations` hold one file per source. A file's name carries the SHA-256 of
//! its bytes, and its rows are written in a fixed order in fixed batches, so the same
//! rows make the same file: a re-export commits only the files whose rows changed
//! (removing the ones they replace), and no commit at all when nothing did. A commit
//! is atomic: its JSON is written aside, then linked to its version's name, which
//! fails if another writer took it. Files a commit removes stay on disk for readers of
//! older versions, as Delta's time travel expects; crossdex deletes nothing there.
//!
//! It reads through the caller's engine, scopes applied; sensitive values are left
//! out unless asked for. It must not read the store's files directly.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use futures::StreamExt as _;
use serde::Serialize;
use serde_json::{Value, json};

use crate::{Action, ErrorCode, QueryControl, Result, Service, ServiceError};

/// Rows per batch handed to the Parquet writer: fixed, so equal rows make equal bytes.
const BATCH_ROWS: usize = 8192;

/// What an export did to one table.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DeltaTableReport {
    /// The table.
    pub table: String,
    /// Its Delta version after the export.
    pub version: u64,
    /// Whether the export committed a new version.
    pub committed: bool,
    /// Files added by that commit.
    pub added: usize,
    /// Files it removed.
    pub removed: usize,
    /// Files left as they were.
    pub unchanged: usize,
    /// Rows in the table.
    pub rows: u64,
}

/// What an export did.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DeltaReport {
    /// The export folder.
    pub path: String,
    /// Each table.
    pub tables: Vec<DeltaTableReport>,
}

/// One file of a table: a part's rows.
struct Part {
    name: String,
    sql: String,
}

/// A table's state as its log says: the version, the files and the schema.
#[derive(Default)]
struct LogState {
    version: Option<u64>,
    files: BTreeMap<String, (u64, u64)>,
    schema: Option<String>,
    id: Option<String>,
}

impl Service {
    /// Writes the tables under `out` as Delta Lake tables, or commits what changed
    /// since the last export there.
    pub async fn export_delta(
        &self,
        out: &Path,
        include_sensitive: bool,
        control: &QueryControl,
    ) -> Result<DeltaReport> {
        self.require(Action::Sql)?;
        if include_sensitive && !self.principal().scope.sensitive {
            return Err(ServiceError::new(
                ErrorCode::Forbidden,
                "this token may not see sensitive values, so it cannot export them",
            ));
        }
        let engine = self.sensitive_reader(include_sensitive).engine()?;
        std::fs::create_dir_all(out).map_err(|e| io_error(out, e))?;
        let sources: Vec<String> = crate::rows::<BTreeMap<String, String>>(
            &engine,
            "SELECT DISTINCT source FROM records UNION SELECT DISTINCT source FROM observations ORDER BY 1",
            &[],
        )
        .await?
        .into_iter()
        .filter_map(|mut r| r.remove("source"))
        .collect();
        let per_source = |table: &str, order: &str| -> Vec<Part> {
            sources
                .iter()
                .map(|s| Part {
                    name: s.clone(),
                    sql: format!(
                        "SELECT * FROM {table} WHERE source = {} ORDER BY {order}",
                        crossdex_query::sql_literal(s)
                    ),
                })
                .collect()
        };
        let whole = |table: &str, order: &str| {
            vec![Part {
                name: table.to_owned(),
                sql: format!("SELECT * FROM {table} ORDER BY {order}"),
            }]
        };
        let tables: Vec<(&str, Vec<Part>)> = vec![
            ("records", per_source("records", "id")),
            (
                "observations",
                per_source(
                    "observations",
                    "record_id, variable, event, instance, value_text, value_num, value_date, unit, label",
                ),
            ),
            ("subjects", whole("subjects", "subject_id")),
            (
                "subject_links",
                whole("subject_links", "subject_id, source, subject_key, matched"),
            ),
            (
                "sync_runs",
                whole("sync_runs", "started_at, run_id, source"),
            ),
        ];
        // Another program's table anywhere is refused before anything is written.
        for (table, _) in &tables {
            let log = out.join(table).join("_delta_log");
            if log.is_dir() {
                read_log(&log, table)?;
            }
        }
        let mut report = Vec::new();
        for (table, parts) in tables {
            let r = self
                .bounded(
                    control,
                    export_table(&engine, &out.join(table), table, &parts),
                )
                .await?;
            report.push(r);
        }
        Ok(DeltaReport {
            path: out.display().to_string(),
            tables: report,
        })
    }
}

fn io_error(path: &Path, e: std::io::Error) -> ServiceError {
    ServiceError::new(
        ErrorCode::InvalidParameter,
        format!("cannot write {}: {e}", path.display()),
    )
}

/// Writes one table's parts and commits what changed.
async fn export_table(
    engine: &std::sync::Arc<crossdex_query::QueryEngine>,
    dir: &Path,
    table: &str,
    parts: &[Part],
) -> Result<DeltaTableReport> {
    let log = dir.join("_delta_log");
    std::fs::create_dir_all(&log).map_err(|e| io_error(&log, e))?;
    let state = read_log(&log, table)?;
    let mut schema: Option<SchemaRef> = None;
    let mut files = BTreeMap::new();
    let mut rows_total = 0;
    for part in parts {
        let stream = engine.sql_stream(&part.sql, Vec::new()).await?;
        schema.get_or_insert_with(|| stream.schema.clone());
        let (name, size, rows) = write_part(dir, &part.name, stream).await?;
        rows_total += rows;
        files.insert(name, (size, rows));
    }
    let schema = match schema {
        Some(s) => s,
        None => {
            engine
                .sql_stream(&format!("SELECT * FROM {table} LIMIT 0"), Vec::new())
                .await?
                .schema
        }
    };
    let schema_string = delta_schema(&schema)?.to_string();
    let added: Vec<&String> = files
        .keys()
        .filter(|f| !state.files.contains_key(*f))
        .collect();
    let removed: Vec<&String> = state
        .files
        .keys()
        .filter(|f| !files.contains_key(*f))
        .collect();
    let unchanged = files.len() - added.len();
    let new_schema = state.schema.as_deref() != Some(schema_string.as_str());
    if added.is_empty() && removed.is_empty() && !new_schema {
        return Ok(DeltaTableReport {
            table: table.to_owned(),
            version: state.version.unwrap_or(0),
            committed: false,
            added: 0,
            removed: 0,
            unchanged,
            rows: rows_total,
        });
    }
    let now = chrono::Utc::now().timestamp_millis();
    let version = state.version.map_or(0, |v| v + 1);
    let mut actions: Vec<Value> = Vec::new();
    actions.push(json!({"commitInfo": {
        "timestamp": now,
        "operation": if version == 0 { "CREATE TABLE" } else { "WRITE" },
        "operationParameters": {"mode": "Overwrite"},
        "engineInfo": concat!("crossdex/", env!("CARGO_PKG_VERSION")),
    }}));
    if version == 0 {
        actions.push(json!({"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}}));
    }
    if version == 0 || new_schema {
        let id = state.id.clone().unwrap_or_else(|| table_id(dir, now));
        actions.push(json!({"metaData": {
            "id": id,
            "name": table,
            "format": {"provider": "parquet", "options": {}},
            "schemaString": schema_string,
            "partitionColumns": [],
            "configuration": {"crossdex.table": table},
            "createdTime": now,
        }}));
    }
    for f in &removed {
        let (size, _) = state.files[*f];
        actions.push(json!({"remove": {
            "path": f, "deletionTimestamp": now, "dataChange": true,
            "extendedFileMetadata": true, "partitionValues": {}, "size": size,
        }}));
    }
    for f in &added {
        let (size, rows) = files[*f];
        actions.push(json!({"add": {
            "path": f, "partitionValues": {}, "size": size, "modificationTime": now,
            "dataChange": true, "stats": json!({"numRecords": rows}).to_string(),
        }}));
    }
    let text: String = actions.iter().map(|a| format!("{a}\n")).collect();
    commit(&log, version, text.as_bytes())?;
    Ok(DeltaTableReport {
        table: table.to_owned(),
        version,
        committed: true,
        added: added.len(),
        removed: removed.len(),
        unchanged,
        rows: rows_total,
    })
}

/// A table id, stable for the folder: Delta wants a UUID.
fn table_id(dir: &Path, now: i64) -> String {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        format!("{}\n{now}", dir.display()).as_bytes(),
    );
    let h = hex::encode(&digest.as_ref()[..16]);
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// Writes version `version` of the log: aside first, then linked to its name, which
/// fails when the version exists (another export committed it).
fn commit(log: &Path, version: u64, content: &[u8]) -> Result<()> {
    let name = log.join(format!("{version:020}.json"));
    let aside = log.join(format!(".{version:020}.json.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&aside)?;
        f.write_all(content)?;
        f.sync_all()
    };
    write().map_err(|e| io_error(&aside, e))?;
    let linked = std::fs::hard_link(&aside, &name);
    let _ = std::fs::remove_file(&aside);
    linked.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            ServiceError::new(
                ErrorCode::ExportConflict,
                format!(
                    "{} was committed by another writer meanwhile; export again",
                    name.display()
                ),
            )
        } else {
            io_error(&name, e)
        }
    })
}

/// Replays a table's log: its version, live files and schema. A log that another
/// program wrote (no `crossdex.table` of this name) is refused.
fn read_log(log: &Path, table: &str) -> Result<LogState> {
    let mut versions: Vec<(u64, PathBuf)> = std::fs::read_dir(log)
        .map_err(|e| io_error(log, e))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let v = name.strip_suffix(".json")?.parse::<u64>().ok()?;
            Some((v, e.path()))
        })
        .collect();
    versions.sort();
    let mut state = LogState::default();
    for (v, path) in versions {
        let text = std::fs::read_to_string(&path).map_err(|e| io_error(&path, e))?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let action: Value = serde_json::from_str(line).map_err(|e| {
                ServiceError::new(
                    ErrorCode::InvalidParameter,
                    format!("{} is not a Delta log entry: {e}", path.display()),
                )
            })?;
            if let Some(m) = action.get("metaData") {
                if m["configuration"]["crossdex.table"].as_str() != Some(table) {
                    return Err(ServiceError::new(
                        ErrorCode::InvalidParameter,
                        format!(
                            "{} holds a Delta table crossdex did not export; export into another folder",
                            log.parent().unwrap_or(log).display()
                        ),
                    ));
                }
                state.schema = m["schemaString"].as_str().map(str::to_owned);
                state.id = m["id"].as_str().map(str::to_owned);
            }
            if let Some(a) = action.get("add")
                && let Some(p) = a["path"].as_str()
            {
                let rows = a["stats"]
                    .as_str()
                    .and_then(|s| serde_json::from_str::<Value>(s).ok())
                    .and_then(|s| s["numRecords"].as_u64())
                    .unwrap_or(0);
                state
                    .files
                    .insert(p.to_owned(), (a["size"].as_u64().unwrap_or(0), rows));
            }
            if let Some(p) = action.get("remove").and_then(|r| r["path"].as_str()) {
                state.files.remove(p);
            }
        }
        state.version = Some(v);
    }
    Ok(state)
}

/// Writes a part's rows as a Parquet file named by its content's hash (kept if it
/// exists: the same rows); its name, size and rows.
async fn write_part(
    dir: &Path,
    part: &str,
    mut stream: crossdex_query::BatchStream,
) -> Result<(String, u64, u64)> {
    let schema = stream.schema.clone();
    let safe: String = part
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let aside = dir.join(format!(".{safe}.{}.tmp", std::process::id()));
    let file = std::fs::File::create(&aside).map_err(|e| io_error(&aside, e))?;
    let hashing = Hashing {
        inner: std::io::BufWriter::new(file),
        digest: aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256),
        size: 0,
    };
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .set_created_by("crossdex".to_owned())
        .build();
    let mut writer = parquet::arrow::ArrowWriter::try_new(hashing, schema.clone(), Some(props))
        .map_err(|e| ServiceError::internal("starting a Parquet file", e))?;
    let mut rows = 0u64;
    let mut pending: Vec<RecordBatch> = Vec::new();
    let mut pending_rows = 0;
    let written = async {
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            pending_rows += batch.num_rows();
            pending.push(batch);
            while pending_rows >= BATCH_ROWS {
                let all = arrow::compute::concat_batches(&schema, &pending)
                    .map_err(|e| ServiceError::internal("batching rows", e))?;
                let head = all.slice(0, BATCH_ROWS);
                writer
                    .write(&head)
                    .map_err(|e| ServiceError::internal("writing Parquet", e))?;
                rows += BATCH_ROWS as u64;
                let rest = all.slice(BATCH_ROWS, all.num_rows() - BATCH_ROWS);
                pending_rows = rest.num_rows();
                pending = vec![rest];
            }
        }
        if pending_rows > 0 {
            let all = arrow::compute::concat_batches(&schema, &pending)
                .map_err(|e| ServiceError::internal("batching rows", e))?;
            writer
                .write(&all)
                .map_err(|e| ServiceError::internal("writing Parquet", e))?;
            rows += all.num_rows() as u64;
        }
        Ok::<(), ServiceError>(())
    }
    .await;
    if let Err(e) = written {
        let _ = std::fs::remove_file(&aside);
        return Err(e);
    }
    let hashing = match writer.into_inner() {
        Ok(h) => h,
        Err(e) => {
            let _ = std::fs::remove_file(&aside);
            return Err(ServiceError::internal("finishing a Parquet file", e));
        }
    };
    let Hashing {
        mut inner,
        digest,
        size,
    } = hashing;
    let flushed = inner.flush().and_then(|()| inner.get_ref().sync_all());
    drop(inner);
    if let Err(e) = flushed {
        let _ = std::fs::remove_file(&aside);
        return Err(io_error(&aside, e));
    }
    let hash = hex::encode(digest.finish().as_ref());
    let name = format!("part-{safe}-{}.parquet", &hash[..32]);
    let path = dir.join(&name);
    if path.exists() {
        // The same rows as a file already there.
        let _ = std::fs::remove_file(&aside);
    } else {
        std::fs::rename(&aside, &path).map_err(|e| io_error(&path, e))?;
    }
    Ok((name, size, rows))
}

/// A writer that hashes and counts what goes through it.
struct Hashing<W> {
    inner: W,
    digest: aws_lc_rs::digest::Context,
    size: u64,
}

impl<W: std::io::Write> std::io::Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digest.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// An Arrow schema as Delta's schema string.
fn delta_schema(schema: &SchemaRef) -> Result<Value> {
    fn kind(t: &DataType) -> Result<Value> {
        Ok(match t {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => json!("string"),
            DataType::Int64 => json!("long"),
            DataType::Int32 => json!("integer"),
            DataType::Int16 => json!("short"),
            DataType::Int8 => json!("byte"),
            DataType::Float64 => json!("double"),
            DataType::Float32 => json!("float"),
            DataType::Boolean => json!("boolean"),
            DataType::Date32 => json!("date"),
            DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => json!("timestamp"),
            DataType::List(f) | DataType::LargeList(f) => json!({
                "type": "array",
                "elementType": kind(f.data_type())?,
                "containsNull": f.is_nullable(),
            }),
            other => {
                return Err(ServiceError::internal(
                    "describing a table for Delta",
                    format!("no Delta type for {other}"),
                ));
            }
        })
    }
    let fields = schema
        .fields()
        .iter()
        .map(|f| {
            Ok(json!({
                "name": f.name(),
                "type": kind(f.data_type())?,
                "nullable": f.is_nullable(),
                "metadata": {},
            }))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(json!({"type": "struct", "fields": fields}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_ids_look_like_uuids() {
        let id = table_id(Path::new("/x"), 1);
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
        assert_eq!(&id[14..15], "4");
    }

    #[test]
    fn the_hashing_writer_counts_and_hashes_what_it_writes() {
        let mut h = Hashing {
            inner: Vec::new(),
            digest: aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256),
            size: 0,
        };
        h.write_all(b"abc").unwrap();
        assert_eq!(h.size, 3);
        assert_eq!(
            hex::encode(h.digest.finish().as_ref()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
