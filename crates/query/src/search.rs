//! The `search(query [, limit])` table function: full-text hits as rows.

use std::sync::{Arc, LazyLock};

use arrow::array::{Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{MemTable, TableFunctionArgs, TableFunctionImpl};
use datafusion::common::{ScalarValue, plan_err};
use datafusion::datasource::TableProvider;
use datafusion::error::Result;
use datafusion::logical_expr::Expr;

use crossdex_store::Snapshot;

use crate::DEFAULT_SEARCH_LIMIT;

/// Schema of `search()` rows.
pub static SEARCH_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("score", DataType::Float64, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("system", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("subject_id", DataType::Utf8, true),
        Field::new("title", DataType::Utf8, false),
        Field::new("snippet", DataType::Utf8, false),
    ]))
});

#[derive(Debug)]
pub(crate) struct SearchFunction {
    snapshot: Arc<Snapshot>,
    /// The reader's scope: hits outside it are never found.
    restriction: crossdex_store::Restriction,
}

impl SearchFunction {
    pub(crate) fn new(snapshot: Arc<Snapshot>, restriction: crossdex_store::Restriction) -> Self {
        SearchFunction {
            snapshot,
            restriction,
        }
    }
}

fn literal(e: &Expr) -> Option<&ScalarValue> {
    match e {
        Expr::Literal(v, _) => Some(v),
        _ => None,
    }
}

impl TableFunctionImpl for SearchFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        let usage = "usage: search('words', limit), e.g. search('moca', 20)";
        let query = match exprs.first().and_then(literal) {
            Some(
                ScalarValue::Utf8(Some(q))
                | ScalarValue::LargeUtf8(Some(q))
                | ScalarValue::Utf8View(Some(q)),
            ) => q,
            _ => return plan_err!("search() takes a text literal as first argument; {usage}"),
        };
        let limit = match exprs.get(1).map(literal) {
            None => DEFAULT_SEARCH_LIMIT,
            Some(Some(v)) => match v.cast_to(&DataType::Int64) {
                Ok(ScalarValue::Int64(Some(n))) if n >= 0 => n as usize,
                _ => {
                    return plan_err!(
                        "search() limit must be a non-negative integer, got {v}; {usage}"
                    );
                }
            },
            Some(None) => return plan_err!("search() limit must be a literal integer; {usage}"),
        };
        if exprs.len() > 2 {
            return plan_err!(
                "search() takes at most 2 arguments, got {}; {usage}",
                exprs.len()
            );
        }
        let options = crossdex_store::SearchOptions {
            restriction: self.restriction.clone(),
            ..crossdex_store::SearchOptions::top(limit)
        };
        let hits = match self.snapshot.search_page(query, options) {
            Ok(page) => page.hits,
            Err(e) => return plan_err!("search(): {e}"),
        };
        let batch = RecordBatch::try_new(
            SEARCH_SCHEMA.clone(),
            vec![
                Arc::new(
                    hits.iter()
                        .map(|h| Some(h.id.as_str()))
                        .collect::<StringArray>(),
                ),
                Arc::new(
                    hits.iter()
                        .map(|h| Some(h.score as f64))
                        .collect::<Float64Array>(),
                ),
                Arc::new(
                    hits.iter()
                        .map(|h| Some(h.source.as_str()))
                        .collect::<StringArray>(),
                ),
                Arc::new(
                    hits.iter()
                        .map(|h| Some(h.system.as_str()))
                        .collect::<StringArray>(),
                ),
                Arc::new(
                    hits.iter()
                        .map(|h| Some(h.kind.as_str()))
                        .collect::<StringArray>(),
                ),
                Arc::new(
                    hits.iter()
                        .map(|h| h.subject_id.as_deref())
                        .collect::<StringArray>(),
                ),
                Arc::new(
                    hits.iter()
                        .map(|h| Some(h.title.as_str()))
                        .collect::<StringArray>(),
                ),
                Arc::new(
                    hits.iter()
                        .map(|h| Some(h.snippet.as_str()))
                        .collect::<StringArray>(),
                ),
            ],
        )?;
        Ok(Arc::new(MemTable::try_new(
            SEARCH_SCHEMA.clone(),
            vec![vec![batch]],
        )?))
    }
}
