//! The `search(query [, limit])` table function: full-text hits as rows.

use std::sync::{Arc, LazyLock};

use arrow::array::{Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl};
use datafusion::common::{ScalarValue, plan_err};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

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
        Ok(Arc::new(SearchTable {
            snapshot: self.snapshot.clone(),
            restriction: self.restriction.clone(),
            query: query.clone(),
            limit,
        }))
    }
}

/// The hits of one `search()` call, searched when the plan is built, with snippets only
/// when the query reads the `snippet` column: a join on hit ids costs no fragment.
#[derive(Debug)]
struct SearchTable {
    snapshot: Arc<Snapshot>,
    restriction: crossdex_store::Restriction,
    query: String,
    limit: usize,
}

/// The `snippet` column's position in [`SEARCH_SCHEMA`].
const SNIPPET: usize = 7;

#[async_trait::async_trait]
impl TableProvider for SearchTable {
    fn schema(&self) -> SchemaRef {
        SEARCH_SCHEMA.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let options = crossdex_store::SearchOptions {
            restriction: self.restriction.clone(),
            snippets: projection.is_none_or(|p| p.contains(&SNIPPET)),
            ..crossdex_store::SearchOptions::top(self.limit)
        };
        let hits = match self.snapshot.search_page(&self.query, options) {
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
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            SEARCH_SCHEMA.clone(),
            projection.cloned(),
        )?)
    }
}
