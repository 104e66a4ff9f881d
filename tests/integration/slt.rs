//! The SQL surface tested as SQL: every `tests/slt/*.slt` file runs against the sample
//! exports. Set `CROSSDEX_SLT_COMPLETE=1` to rewrite the expected results after a
//! deliberate change (then review the diff).
//!
//! Besides SQL, a line `SAVED <name> [key=value ...]` runs a saved query of `queries/`.

use std::sync::Arc;

use async_trait::async_trait;
use crossdex_query::{QueryEngine, QueryError, SavedQuery};
use sqllogictest::{DBOutput, DefaultColumnType};

use crate::common::{Sandbox, repo};

struct Db {
    engine: Arc<QueryEngine>,
    saved: Arc<Vec<SavedQuery>>,
}

fn column_type(t: &arrow::datatypes::DataType) -> DefaultColumnType {
    use arrow::datatypes::DataType as D;
    match t {
        D::Int8 | D::Int16 | D::Int32 | D::Int64 | D::UInt8 | D::UInt16 | D::UInt32 | D::UInt64 => {
            DefaultColumnType::Integer
        }
        D::Float16 | D::Float32 | D::Float64 | D::Decimal128(..) => {
            DefaultColumnType::FloatingPoint
        }
        D::Utf8 | D::LargeUtf8 | D::Utf8View => DefaultColumnType::Text,
        _ => DefaultColumnType::Any,
    }
}

#[async_trait]
impl sqllogictest::AsyncDB for Db {
    type Error = QueryError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, QueryError> {
        let out = if let Some(rest) = sql.trim().strip_prefix("SAVED ") {
            let mut words = rest.split_whitespace();
            let name = words.next().unwrap_or_default();
            let params: Vec<(String, String)> = words
                .map(|w| {
                    w.split_once('=')
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .unwrap_or_default()
                })
                .collect();
            let query = SavedQuery::find(&self.saved, name)?;
            self.engine.saved(query, &params).await?
        } else {
            self.engine.sql(sql, vec![]).await?
        };
        let types = out
            .schema
            .fields()
            .iter()
            .map(|f| column_type(f.data_type()))
            .collect();
        let rows = out
            .rows_as_text()
            .map_err(|e| QueryError::Execution(e.to_string()))?;
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "crossdex"
    }
}

/// Runs every `.slt` file of `dir` against the index at `data`.
async fn run_suite(data: &std::path::Path, dir: &std::path::Path) {
    let engine = Arc::new(QueryEngine::open(data).unwrap());
    let saved = Arc::new(SavedQuery::load_dir(&repo().join("queries")).unwrap());
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let complete = std::env::var_os("CROSSDEX_SLT_COMPLETE").is_some();
    let mut failures = Vec::new();
    for file in &files {
        let (engine, saved) = (engine.clone(), saved.clone());
        let mut runner = sqllogictest::Runner::new(move || {
            let db = Db {
                engine: engine.clone(),
                saved: saved.clone(),
            };
            async move { Ok::<_, QueryError>(db) }
        });
        if complete {
            runner
                .update_test_file(
                    file,
                    " ",
                    sqllogictest::default_validator,
                    sqllogictest::default_normalizer,
                    sqllogictest::default_column_validator,
                )
                .await
                .unwrap();
        } else if let Err(e) = runner.run_file_async(file).await {
            failures.push(format!("{}:\n{e}", file.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// `tests/slt/*.slt`, on the bundled sample exports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_logic_tests() {
    let s = Sandbox::new();
    s.ok(&["sync", "--all"]);
    run_suite(&s.data_dir(), &repo().join("tests/slt")).await;
}

/// `tests/slt/cohort/*.slt`, on the demo cohort: the five simulators (seed 42, 100
/// people) synced and linked by `crossdex demo`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cohort_sql_logic_tests() {
    let s = Sandbox::new();
    let data = s.path().join("cohort");
    s.ok(&[
        "--data-dir",
        data.to_str().unwrap(),
        "demo",
        "--no-ui",
        "--subjects",
        "100",
    ]);
    run_suite(&data, &repo().join("tests/slt/cohort")).await;
}
