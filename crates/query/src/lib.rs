//! Read-only SQL and full-text search over one committed state of a crossdex store.
//!
//! [`QueryEngine`] is what every front end (CLI, HTTP API, TUI) talks to: it never
//! hands out the store, only query results. It registers the tables of DESIGN.md
//! (`records`, `observations`, `sync_runs`) over the Parquet files of a
//! [`crossdex_store::Snapshot`], and the table function `search(query [, limit])`
//! over the same snapshot's full-text index, so full-text hits join with the tables
//! and both come from the same commit.
//!
//! An engine opened with a [`ReadScope`] reads only what the scope sees: its tables,
//! searcher, `search()` and `subject_of()` are restricted at the source (`scope.rs`).
//!
//! Only queries are accepted: `SELECT`, `WITH`, `EXPLAIN` (of a query), `SHOW` and
//! `DESCRIBE`. Anything that defines, modifies or reads files is refused before
//! planning, with an error that says so. This crate must not write to the store.

#![warn(missing_docs)]

mod error;
mod guard;
mod output;
mod saved;
mod scope;
mod search;
mod subject_of;
mod views;

use std::sync::Arc;

use arrow::array::StringArray;
use arrow::datatypes::DataType;

use datafusion::catalog::MemTable;

use datafusion::datasource::TableProvider;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext};

use crossdex_store::{
    OBSERVATIONS_SCHEMA, RECORDS_SCHEMA, SUBJECT_LINKS_SCHEMA, SYNC_RUNS_SCHEMA, Snapshot, Table,
};

pub use arrow::array::RecordBatch;
pub use arrow::datatypes::SchemaRef;
pub use crossdex_store::{Bucket, Facets, Hit, SearchOptions, SearchPage};
pub use datafusion::common::ScalarValue;
pub use error::QueryError;
pub use output::{OutputFormat, QueryOutput};
pub use saved::{Param, ParamKind, SavedQuery, SavedQueryError};
pub use scope::{ReadScope, Restriction, Sensitive};

/// `s` as a SQL string literal, quotes doubled. For text that must be spliced into a
/// view or a generated query; user values go in as parameters instead.
pub fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Whether `sql` is one read-only statement crossdex would run, checked on its syntax
/// tree alone (no data needed): the gate every query passes before planning.
pub fn check_read_only(sql: &str) -> Result<(), QueryError> {
    guard::parse_read_only(sql).map(|_| ())
}

/// What one query reads, for the audit log: the tables and views its text names
/// (`search` for the table function), and the stored columns its plan scans
/// (`table.column`, after the views are expanded and unused columns pruned).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadSet {
    /// Tables, views and table functions named, sorted.
    pub tables: Vec<String>,
    /// Stored columns scanned, sorted.
    pub columns: Vec<String>,
}

impl ReadSet {
    fn of(statement: &datafusion::sql::parser::Statement, plan: &LogicalPlan) -> ReadSet {
        use datafusion::common::tree_node::TreeNodeRecursion;
        let mut tables: Vec<String> =
            datafusion::sql::resolve::resolve_table_references(statement, true)
                .map(|(tables, _)| tables.iter().map(|t| t.table().to_owned()).collect())
                .unwrap_or_default();
        let mut columns = Vec::new();
        let _ = plan.apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                let name = scan.table_name.table();
                match name.strip_suffix("()") {
                    Some(function) => tables.push(function.to_owned()),
                    None => columns.extend(
                        scan.projected_schema
                            .fields()
                            .iter()
                            .map(|f| format!("{name}.{}", f.name())),
                    ),
                }
            }
            Ok(TreeNodeRecursion::Continue)
        });
        for list in [&mut tables, &mut columns] {
            list.sort();
            list.dedup();
        }
        ReadSet { tables, columns }
    }
}

/// Default number of hits of `search()` when no limit is given.
pub const DEFAULT_SEARCH_LIMIT: usize = 100;

/// SQL and search over one snapshot of the store. Cheap to create; create one per
/// request (or per screen refresh) to see the latest committed state.
pub struct QueryEngine {
    snapshot: Arc<Snapshot>,
    /// The snapshot's table files, open for as long as the engine lives: a sync that
    /// commits twice meanwhile removes their names, not what this engine reads.
    _files: Vec<std::fs::File>,
    ctx: SessionContext,
    views: tokio::sync::OnceCell<()>,
    /// What `subject_of()` may resolve for a reader of some projects.
    keys_in_scope: Option<subject_of::InScope>,
    settings: EngineSettings,
}

/// What an engine needs besides its data, fixed when it is opened.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineSettings {
    /// How the `visits` view ties sessions to visits.
    pub visits: VisitSettings,
    /// The observation variables that hold personal data.
    pub sensitive: Sensitive,
    /// The key of the keyed hash that joinable sensitive values become.
    pub hash_key: HashKey,
    /// What the engine's reader may see.
    pub scope: ReadScope,
}

/// A secret key; its bytes are never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HashKey(pub Vec<u8>);

impl std::fmt::Debug for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashKey(..)")
    }
}

/// What the engine's state holds of one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceCounts {
    /// The source's name.
    pub source: String,
    /// Its records.
    pub records: u64,
    /// Its observations.
    pub observations: u64,
}

/// How the `visits` view ties imaging sessions to clinical visits.
#[derive(Debug, Clone, PartialEq)]
pub struct VisitSettings {
    /// A session and a visit of the same subject at most this many days apart are tied.
    pub window_days: u32,
    /// Observation variables holding a clinical visit's date.
    pub date_variables: Vec<String>,
}

impl Default for VisitSettings {
    fn default() -> Self {
        VisitSettings {
            window_days: 90,
            date_variables: vec!["assessment_date".to_owned()],
        }
    }
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine")
            .field("snapshot", &self.snapshot)
            .finish()
    }
}

impl QueryEngine {
    /// Opens the current committed state of the data directory at `root`; a path
    /// without an index is an error that says so.
    pub fn open(root: impl AsRef<std::path::Path>) -> Result<QueryEngine, QueryError> {
        Self::open_with(root, EngineSettings::default())
    }

    /// Like [`QueryEngine::open`], with `settings`.
    pub fn open_with(
        root: impl AsRef<std::path::Path>,
        settings: EngineSettings,
    ) -> Result<QueryEngine, QueryError> {
        Self::new(Arc::new(Snapshot::open(root)?), settings)
    }

    /// Like [`QueryEngine::open`], but a data directory that holds no index yet reads
    /// as empty: for what a data directory looks like before its first sync (`status`).
    pub fn open_or_empty(
        root: impl AsRef<std::path::Path>,
        settings: EngineSettings,
    ) -> Result<QueryEngine, QueryError> {
        let root = root.as_ref();
        match Snapshot::open(root) {
            Err(crossdex_store::StoreError::NoIndex { .. }) => {
                Self::new(Arc::new(Snapshot::empty(root)?), settings)
            }
            other => Self::new(Arc::new(other?), settings),
        }
    }

    /// An engine over `snapshot`.
    fn new(snapshot: Arc<Snapshot>, settings: EngineSettings) -> Result<QueryEngine, QueryError> {
        let mut config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("crossdex", "public");
        // DataFusion 55 maps dynamic filters pushed below joins, aggregates and TopK
        // sorts to child columns by name: where two columns share one (`subject_id` of
        // `records` and of `observations`), a filter lands on the wrong one and rows
        // vanish without an error (apache/datafusion#25244, #25296; fixed upstream by
        // #25259). A slower right answer beats a fast wrong one: keep them off until
        // the DataFusion in use has the fix, and let tests/differential say so.
        let optimizer = &mut config.options_mut().optimizer;
        optimizer.enable_dynamic_filter_pushdown = false;
        optimizer.enable_join_dynamic_filter_pushdown = false;
        optimizer.enable_topk_dynamic_filter_pushdown = false;
        optimizer.enable_aggregate_dynamic_filter_pushdown = false;
        let ctx = SessionContext::new_with_config(config);
        // `records` and `observations` are views over these, with `subject_id` resolved
        // through `subject_links` (see views.rs).
        if let Some(catalog) = ctx.catalog("crossdex") {
            catalog.register_schema(
                "internal",
                Arc::new(datafusion::catalog::MemorySchemaProvider::new()),
            )?;
        }
        let mut files = Vec::new();
        let mut providers = Vec::new();
        for (table, schema) in [
            (Table::Records, &*RECORDS_SCHEMA),
            (Table::Observations, &*OBSERVATIONS_SCHEMA),
            (Table::SyncRuns, &*SYNC_RUNS_SCHEMA),
            (Table::SubjectLinks, &*SUBJECT_LINKS_SCHEMA),
        ] {
            let mut paths = Vec::new();
            for path in snapshot.files(table) {
                let (file, readable) = hold(&path)?;
                files.push(file);
                paths.push(readable);
            }
            providers.push(parquet_table(&paths, schema.clone())?);
        }
        let [records, observations, sync_runs, subject_links] =
            <[Arc<dyn TableProvider>; 4]>::try_from(providers)
                .map_err(|_| QueryError::Execution("four tables expected".into()))?;
        let scope = &settings.scope;
        if scope.is_full(&settings.sensitive) {
            ctx.register_table("internal.records", records)?;
            ctx.register_table("internal.observations", observations)?;
            ctx.register_table("sync_runs", sync_runs)?;
            ctx.register_table("subject_links", subject_links)?;
        } else {
            // The stored tables stay out of the catalog: only their scoped wrappers are
            // registered, under the same names.
            let key = &settings.hash_key.0;
            let rule = |kind| scope::Rule::new(kind, scope, &settings.sensitive, key).map(Arc::new);
            // Observations and subject links of a reader of some projects are those of
            // its records: they read the records table through its rule.
            let by_records = rule(scope::Kind::Records).map(|r| (records.clone(), r));
            let wrap = |inner: Arc<dyn TableProvider>, kind| -> Arc<dyn TableProvider> {
                match rule(kind) {
                    Some(rule) => {
                        Arc::new(scope::ScopedTable::new(inner, rule, by_records.clone()))
                    }
                    None => inner,
                }
            };
            ctx.register_table(
                "internal.observations",
                wrap(observations, scope::Kind::Observations),
            )?;
            ctx.register_table("sync_runs", wrap(sync_runs, scope::Kind::SyncRuns))?;
            ctx.register_table(
                "subject_links",
                wrap(subject_links, scope::Kind::SubjectLinks),
            )?;
            ctx.register_table("internal.records", wrap(records, scope::Kind::Records))?;
        }
        let keys_in_scope = scope
            .restriction
            .projects
            .is_some()
            .then(subject_of::InScope::default);
        ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(
            subject_of::SubjectOf::new(
                snapshot.subjects()?,
                scope.restriction.sources.clone(),
                keys_in_scope.clone(),
            ),
        ));
        ctx.register_udtf(
            "search",
            Arc::new(search::SearchFunction::new(
                snapshot.clone(),
                scope.restriction.clone(),
            )),
        );
        Ok(QueryEngine {
            snapshot,
            _files: files,
            ctx,
            views: tokio::sync::OnceCell::new(),
            keys_in_scope,
            settings,
        })
    }

    /// Registers the per-system views, once, before the first query.
    async fn views(&self) -> Result<(), QueryError> {
        self.views
            .get_or_try_init(|| async {
                if let Some(in_scope) = &self.keys_in_scope {
                    // The scoped `subject_links` holds the links of the reader's records.
                    let batches = self
                        .ctx
                        .sql("SELECT source, matched FROM subject_links")
                        .await
                        .map_err(QueryError::from_datafusion)?
                        .collect()
                        .await
                        .map_err(QueryError::from_datafusion)?;
                    let mut keys = std::collections::HashSet::new();
                    for b in &batches {
                        let text = |i: usize| -> datafusion::error::Result<StringArray> {
                            let a = arrow::compute::cast(b.column(i), &DataType::Utf8)?;
                            Ok(datafusion::common::cast::as_string_array(&a)?.clone())
                        };
                        let (sources, matched) = (text(0), text(1));
                        let (sources, matched) = (
                            sources.map_err(QueryError::from_datafusion)?,
                            matched.map_err(QueryError::from_datafusion)?,
                        );
                        keys.extend(
                            sources
                                .iter()
                                .zip(matched.iter())
                                .filter_map(|(s, m)| Some(scope::source_key(s?, m?))),
                        );
                    }
                    // Another caller may have raced here first: both computed the same set.
                    let _ = in_scope.set(keys);
                }
                let visits_view = [("visits", views::visits_view(&self.settings.visits))];
                let demographics: Vec<(&str, bool)> =
                    scope::demographics(&self.settings.scope, &self.settings.sensitive)
                        .into_iter()
                        .filter_map(|(column, seen)| seen.map(|hashed| (column, hashed)))
                        .collect();
                for (name, body) in views::core_views(&demographics)
                    .iter()
                    .map(|(n, b)| (*n, b.as_str()))
                    .chain(views::VIEWS.iter().copied())
                    .chain(visits_view.iter().map(|(n, b)| (*n, b.as_str())))
                {
                    let plan = self
                        .ctx
                        .state()
                        .create_logical_plan(body)
                        .await
                        .map_err(QueryError::from_datafusion)?;
                    let view = datafusion::datasource::ViewTable::new(plan, Some(body.to_owned()));
                    self.ctx.register_table(name, Arc::new(view))?;
                }
                Ok::<(), QueryError>(())
            })
            .await
            .map(|_| ())
    }

    /// The data directory this engine reads.
    pub fn root(&self) -> &std::path::Path {
        self.snapshot.root()
    }

    /// Documents in the full-text index of this state that the reader may see.
    pub fn num_docs(&self) -> u64 {
        let restriction = &self.settings.scope.restriction;
        if restriction.is_none() {
            return self.snapshot.num_docs();
        }
        let options = SearchOptions {
            restriction: restriction.clone(),
            ..SearchOptions::top(0)
        };
        self.snapshot
            .search_page("*", options)
            .map_or(0, |page| page.total as u64)
    }

    /// The reader's scope.
    pub fn scope(&self) -> &ReadScope {
        &self.settings.scope
    }

    /// What this state holds of each source the reader sees, by name: the manifest's
    /// counts when the scope keeps every row of the sources it sees, else counted in
    /// the scope's own tables (a reader of some projects, or without sensitive values,
    /// holds fewer rows than the manifest counted).
    pub async fn source_counts(&self) -> Result<Vec<SourceCounts>, QueryError> {
        let scope = &self.settings.scope;
        if scope.restriction.projects.is_some()
            || !(scope.sensitive || self.settings.sensitive.is_empty())
        {
            let out = self
                .sql(
                    "SELECT r.source, r.n, coalesce(o.n, 0) \
                     FROM (SELECT source, count(*) AS n FROM internal.records GROUP BY source) r \
                     LEFT JOIN (SELECT source, count(*) AS n FROM internal.observations GROUP BY source) o \
                       ON o.source = r.source ORDER BY r.source",
                    vec![],
                )
                .await?;
            let rows = out
                .rows_as_text()
                .map_err(|e| QueryError::Execution(e.to_string()))?;
            let number = |s: &str| s.parse::<u64>().unwrap_or(0);
            return Ok(rows
                .into_iter()
                .map(|r| SourceCounts {
                    source: r[0].clone(),
                    records: number(&r[1]),
                    observations: number(&r[2]),
                })
                .collect());
        }
        let sources = &scope.restriction.sources;
        Ok(self
            .snapshot
            .manifest()
            .sources
            .iter()
            .filter(|(name, _)| sources.as_ref().is_none_or(|s| s.contains(*name)))
            .map(|(name, s)| SourceCounts {
                source: name.clone(),
                records: s.n_records,
                observations: s.n_observations,
            })
            .collect())
    }

    /// Runs one read-only SQL statement. Named parameters (`$name`) are bound from
    /// `params` as literals in the parsed statement.
    pub async fn sql(
        &self,
        sql: &str,
        params: Vec<(String, ScalarValue)>,
    ) -> Result<QueryOutput, QueryError> {
        let df = self.plan(sql, params).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let batches: Vec<RecordBatch> = df.collect().await.map_err(QueryError::from_datafusion)?;
        Ok(QueryOutput::new(schema, batches))
    }

    /// Like [`QueryEngine::sql`], the rows as a stream of batches as they are computed:
    /// memory holds a few batches, not the answer. The stream keeps `self` (and so its
    /// files) alive; dropping it stops the query.
    pub async fn sql_stream(
        self: &Arc<Self>,
        sql: &str,
        params: Vec<(String, ScalarValue)>,
    ) -> Result<BatchStream, QueryError> {
        let (statement, df) = self.planned(sql, params).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let (state, plan) = df.into_parts();
        // Optimized once: what the audit reads of the plan is what runs.
        let plan = state.optimize(&plan).map_err(QueryError::from_datafusion)?;
        let read = ReadSet::of(&statement, &plan);
        let physical = state
            .query_planner()
            .create_physical_plan(&plan, &state)
            .await
            .map_err(QueryError::from_datafusion)?;
        let inner = datafusion::physical_plan::execute_stream(physical, state.task_ctx())
            .map_err(QueryError::from_datafusion)?;
        Ok(BatchStream {
            schema,
            read,
            inner,
            _engine: self.clone(),
        })
    }

    /// The checked, bound and planned statement, ready to run.
    async fn plan(
        &self,
        sql: &str,
        params: Vec<(String, ScalarValue)>,
    ) -> Result<datafusion::dataframe::DataFrame, QueryError> {
        Ok(self.planned(sql, params).await?.1)
    }

    /// [`QueryEngine::plan`], with the bound statement it was planned from.
    async fn planned(
        &self,
        sql: &str,
        params: Vec<(String, ScalarValue)>,
    ) -> Result<
        (
            datafusion::sql::parser::Statement,
            datafusion::dataframe::DataFrame,
        ),
        QueryError,
    > {
        let mut statement = guard::parse_read_only(sql)?;
        guard::bind(&mut statement, &params)?;
        self.views().await?;
        let state = self.ctx.state();
        let plan = state
            .statement_to_plan(statement.clone())
            .await
            .map_err(QueryError::from_datafusion)?;
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(QueryError::from_datafusion)?;
        let df = self
            .ctx
            .execute_logical_plan(plan)
            .await
            .map_err(QueryError::from_datafusion)?;
        Ok((statement, df))
    }

    /// Runs a saved query with its parameters, given as text and typed by its header.
    pub async fn saved(
        &self,
        query: &SavedQuery,
        values: &[(String, String)],
    ) -> Result<QueryOutput, QueryError> {
        let params = query.bind(values)?;
        self.sql(&query.sql, params).await
    }

    /// Full-text search, best hits first.
    pub fn search(&self, query: &str, limit: usize) -> Result<Vec<Hit>, QueryError> {
        Ok(self.search_page(query, SearchOptions::top(limit))?.hits)
    }

    /// Full-text search with the number of records matched in all.
    pub fn search_page(
        &self,
        query: &str,
        options: SearchOptions,
    ) -> Result<SearchPage, QueryError> {
        let options = SearchOptions {
            restriction: self.settings.scope.restriction.clone(),
            ..options
        };
        Ok(self.snapshot.search_page(query, options)?)
    }
}

/// The rows of a query as they are computed, batch by batch.
pub struct BatchStream {
    /// The rows' columns.
    pub schema: SchemaRef,
    /// What the query reads.
    pub read: ReadSet,
    inner: datafusion::physical_plan::SendableRecordBatchStream,
    _engine: Arc<QueryEngine>,
}

impl std::fmt::Debug for BatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchStream")
            .field("schema", &self.schema)
            .finish()
    }
}

impl futures::Stream for BatchStream {
    type Item = Result<RecordBatch, QueryError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.inner
            .as_mut()
            .poll_next(cx)
            .map(|b| b.map(|r| r.map_err(QueryError::from_datafusion)))
    }
}

/// Opens a table file of the snapshot and returns it with a path that reads that very
/// file for as long as it stays open, even once a later commit has removed its name
/// (`/proc/self/fd/N` on Linux; elsewhere the path itself). A file the manifest names
/// but the folder lacks is an error, never an empty table.
fn hold(path: &std::path::Path) -> Result<(std::fs::File, std::path::PathBuf), QueryError> {
    let file = std::fs::File::open(path).map_err(|e| {
        QueryError::Store(crossdex_store::StoreError::Corrupt {
            path: path.to_owned(),
            reason: format!(
                "a table file its manifest names cannot be read ({e}); restore the data directory from a backup, or run `crossdex sync --all --full`"
            ),
        })
    })?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let held = std::path::PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        if held.exists() {
            return Ok((file, held));
        }
    }
    Ok((file, path.to_owned()))
}

fn parquet_table(
    files: &[std::path::PathBuf],
    schema: SchemaRef,
) -> Result<Arc<dyn TableProvider>, QueryError> {
    if files.is_empty() {
        return Ok(Arc::new(MemTable::try_new(schema, vec![vec![]])?));
    }
    let urls = files
        .iter()
        .map(|f| ListingTableUrl::parse(f.to_string_lossy()))
        .collect::<Result<Vec<_>, _>>()?;
    // No extension filter: a held file's path (`/proc/self/fd/N`) has none.
    let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension("");
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(schema);
    Ok(Arc::new(ListingTable::try_new(config)?))
}

#[cfg(test)]
mod tests;
