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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_logic_tests() {
    let s = Sandbox::new();
    s.ok(&["sync", "--all"]);
    let engine = Arc::new(QueryEngine::open(s.data_dir()).unwrap());
    let saved = Arc::new(SavedQuery::load_dir(&repo().join("queries")).unwrap());
    let mut files: Vec<_> = std::fs::read_dir(repo().join("tests/slt"))
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
