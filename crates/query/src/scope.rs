//! A reader's scope, enforced where the engine reads: the tables an engine registers
//! are already restricted to it (rows of other sources and projects filtered out,
//! sensitive values absent or keyed hashes), so no statement can reach past it, in a
//! predicate, a sort, a join, an aggregate, a schema listing or an error message.
//!
//! The unrestricted tables are never registered in a scoped engine's catalog: each is
//! wrapped in a [`ScopedTable`] registered under its name.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::common::cast::as_string_array;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::TableProvider;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties,
    ReplaceChildrenOptions,
};
use futures::StreamExt;

pub use crossdex_store::{Restriction, Sensitive};

/// What one reader may see. The default sees everything: the CLI and the TUI on the
/// local data directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReadScope {
    /// Sources and projects whose rows it sees.
    pub restriction: Restriction,
    /// Whether it sees sensitive values in clear; without, they are absent or, where
    /// the configuration says so, keyed hashes.
    pub sensitive: bool,
}

impl Default for ReadScope {
    fn default() -> Self {
        ReadScope {
            restriction: Restriction::default(),
            sensitive: true,
        }
    }
}

impl ReadScope {
    /// Everything.
    pub fn full() -> ReadScope {
        ReadScope::default()
    }

    /// Whether it sees everything that `sensitive` declares.
    pub fn is_full(&self, sensitive: &Sensitive) -> bool {
        self.restriction.is_none() && (self.sensitive || sensitive.is_empty())
    }
}

/// What a scoped table lets through, and how it hides sensitive values.
pub(crate) struct Rule {
    /// Rows of these sources only (column `source`).
    sources: Option<HashSet<String>>,
    /// Rows of these projects only (column `project`, or for observations, their
    /// record's).
    projects: Option<HashSet<String>>,
    /// Observations: which variables are sensitive, and which of those are hashed.
    sensitive_rows: Option<Sensitive>,
    /// Columns absent from the table.
    hidden_columns: Vec<String>,
    /// Columns whose every value is a keyed hash.
    hashed_columns: Vec<String>,
    /// No row at all: a table that cannot be cut to the scope (per-source counts of
    /// `sync_runs` for a reader of some projects).
    nothing: bool,
    /// What the in-scope records decide, for tables without a project of their own.
    by_records: Option<ByRecords>,
    key: aws_lc_rs::hmac::Key,
}

/// How a table's rows are tied to the records in scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ByRecords {
    /// Observations: by `record_id`.
    RecordId,
    /// Subject links: by `source` and `matched` (what the record carries: its key,
    /// else its title).
    SourceKey,
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule")
            .field("sources", &self.sources)
            .field("projects", &self.projects)
            .field("hidden_columns", &self.hidden_columns)
            .field("hashed_columns", &self.hashed_columns)
            .finish_non_exhaustive()
    }
}

/// `None`: not sensitive; `Some(true)`: hashed; `Some(false)`: hidden.
fn sensitivity(sensitive: &Sensitive, source: &str, variable: &str) -> Option<bool> {
    sensitive
        .is_sensitive(source, variable)
        .then(|| sensitive.is_hashed(variable))
}

/// How a reader sees each demographic column of `subject_links` (the sex and year of
/// birth linking keeps per key): `None` absent, `Some(true)` a keyed hash,
/// `Some(false)` in clear. The scoped table and the `subjects` view both follow it.
pub(crate) fn demographics(
    scope: &ReadScope,
    sensitive: &Sensitive,
) -> Vec<(&'static str, Option<bool>)> {
    let hides = !scope.sensitive && !sensitive.is_empty();
    DEMOGRAPHICS
        .iter()
        .map(|c| {
            let seen = if hides && sensitive.is_sensitive_column(c) {
                sensitive.is_hashed(c).then_some(true)
            } else {
                Some(false)
            };
            (*c, seen)
        })
        .collect()
}

/// Which table a rule is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Records,
    Observations,
    SyncRuns,
    SubjectLinks,
}

impl Rule {
    /// The rule of `kind` for `scope`; `None` when the scope sees the whole table.
    pub(crate) fn new(
        kind: Kind,
        scope: &ReadScope,
        sensitive: &Sensitive,
        key: &[u8],
    ) -> Option<Rule> {
        let set = |s: &Option<BTreeSet<String>>| {
            s.as_ref()
                .map(|s| s.iter().cloned().collect::<HashSet<_>>())
        };
        let hides = !scope.sensitive && !sensitive.is_empty();
        let mut rule = Rule {
            sources: set(&scope.restriction.sources),
            projects: match kind {
                Kind::Records | Kind::Observations => set(&scope.restriction.projects),
                _ => None,
            },
            sensitive_rows: None,
            hidden_columns: Vec::new(),
            hashed_columns: Vec::new(),
            nothing: kind == Kind::SyncRuns && scope.restriction.projects.is_some(),
            by_records: match kind {
                _ if scope.restriction.projects.is_none() => None,
                Kind::Observations => Some(ByRecords::RecordId),
                Kind::SubjectLinks => Some(ByRecords::SourceKey),
                _ => None,
            },
            key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key),
        };
        match kind {
            Kind::Observations if hides => rule.sensitive_rows = Some(sensitive.clone()),
            Kind::SubjectLinks => {
                for (column, seen) in demographics(scope, sensitive) {
                    match seen {
                        None => rule.hidden_columns.push(column.to_owned()),
                        Some(true) => rule.hashed_columns.push(column.to_owned()),
                        Some(false) => {}
                    }
                }
            }
            _ => {}
        }
        let sees_all = rule.sources.is_none()
            && rule.projects.is_none()
            && !rule.nothing
            && rule.by_records.is_none()
            && rule.sensitive_rows.is_none()
            && rule.hidden_columns.is_empty()
            && rule.hashed_columns.is_empty();
        (!sees_all).then_some(rule)
    }

    fn hash(&self, text: &str) -> String {
        hex::encode(aws_lc_rs::hmac::sign(&self.key, text.as_bytes()))
    }

    /// `batch` with the rows and values the scope does not see removed.
    fn apply(
        &self,
        batch: &RecordBatch,
        ids: Option<&HashSet<String>>,
        out: &SchemaRef,
        projection: Option<&[usize]>,
    ) -> datafusion::error::Result<RecordBatch> {
        let n = batch.num_rows();
        let schema = batch.schema();
        let text = |name: &str| -> datafusion::error::Result<Option<StringArray>> {
            let Ok(i) = schema.index_of(name) else {
                return Ok(None);
            };
            let a = arrow::compute::cast(batch.column(i), &DataType::Utf8)?;
            Ok(Some(as_string_array(&a)?.clone()))
        };
        let mut keep = vec![true; n];
        let within =
            |keep: &mut Vec<bool>, values: Option<StringArray>, allowed: &dyn Fn(&str) -> bool| {
                if let Some(a) = values {
                    for (i, k) in keep.iter_mut().enumerate() {
                        *k &= !a.is_null(i) && allowed(a.value(i));
                    }
                }
            };
        if let Some(s) = &self.sources {
            within(&mut keep, text("source")?, &|v| s.contains(v));
        }
        if let Some(p) = &self.projects
            && schema.index_of("project").is_ok()
        {
            within(&mut keep, text("project")?, &|v| p.contains(v));
        }
        if self.nothing {
            keep.fill(false);
        }
        match (ids, self.by_records) {
            (Some(ids), Some(ByRecords::RecordId)) => {
                within(&mut keep, text("record_id")?, &|v| ids.contains(v));
            }
            (Some(ids), Some(ByRecords::SourceKey)) => {
                if let (Some(sources), Some(keys)) = (text("source")?, text("matched")?) {
                    for (i, k) in keep.iter_mut().enumerate() {
                        *k &= !sources.is_null(i)
                            && !keys.is_null(i)
                            && ids.contains(&source_key(sources.value(i), keys.value(i)));
                    }
                }
            }
            _ => {}
        }
        let mut hashed = vec![false; n];
        if let Some(rows) = &self.sensitive_rows
            && let (Some(sources), Some(variables)) = (text("source")?, text("variable")?)
        {
            let mut seen: HashMap<(&str, &str), Option<bool>> = HashMap::new();
            for i in 0..n {
                if !keep[i] || variables.is_null(i) {
                    continue;
                }
                let key = (sources.value(i), variables.value(i));
                match *seen
                    .entry(key)
                    .or_insert_with(|| sensitivity(rows, key.0, key.1))
                {
                    None => {}
                    Some(true) => hashed[i] = true,
                    Some(false) => keep[i] = false,
                }
            }
        }
        let any_hashed = hashed.iter().any(|h| *h);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        for (i, field) in schema.fields().iter().enumerate() {
            let name = field.name().as_str();
            if self.hidden_columns.iter().any(|c| c == name) {
                continue;
            }
            let column = batch.column(i);
            let column = if self.hashed_columns.iter().any(|c| c == name) {
                let values = text(name)?.unwrap_or_else(|| StringArray::new_null(n));
                let h: StringArray = values.iter().map(|v| v.map(|v| self.hash(v))).collect();
                arrow::compute::cast(&(Arc::new(h) as ArrayRef), field.data_type())?
            } else if any_hashed && name == "value_text" {
                let clear = text("value_text")?.unwrap_or_else(|| StringArray::new_null(n));
                let num = text("value_num")?.unwrap_or_else(|| StringArray::new_null(n));
                let date = text("value_date")?.unwrap_or_else(|| StringArray::new_null(n));
                let h: StringArray = (0..n)
                    .map(|r| {
                        if !hashed[r] {
                            return (!clear.is_null(r)).then(|| clear.value(r).to_owned());
                        }
                        [&clear, &num, &date]
                            .into_iter()
                            .find(|a| !a.is_null(r))
                            .map(|a| self.hash(a.value(r)))
                    })
                    .collect();
                arrow::compute::cast(&(Arc::new(h) as ArrayRef), field.data_type())?
            } else if any_hashed && (name == "value_num" || name == "value_date") {
                arrow::compute::nullif(column, &BooleanArray::from(hashed.clone()))?
            } else {
                column.clone()
            };
            columns.push(column);
        }
        let full = RecordBatch::try_new(self.output_schema(&schema), columns)?;
        let kept = arrow::compute::filter_record_batch(&full, &BooleanArray::from(keep))?;
        match projection {
            Some(p) => Ok(kept.project(p)?.with_schema(out.clone())?),
            None => Ok(kept.with_schema(out.clone())?),
        }
    }

    fn output_schema(&self, input: &Schema) -> SchemaRef {
        Arc::new(Schema::new(
            input
                .fields()
                .iter()
                .filter(|f| !self.hidden_columns.iter().any(|c| c == f.name()))
                .cloned()
                .collect::<Vec<_>>(),
        ))
    }
}

/// One source's key, as the set of keys in scope holds it.
pub(crate) fn source_key(source: &str, key: &str) -> String {
    format!("{source}\u{1}{key}")
}

/// Columns of `subject_links` that linking copies from sources' observations.
const DEMOGRAPHICS: &[&str] = &["sex", "birth_year"];

/// A stored table as one scope sees it. Filters of a query are never pushed into it:
/// they run on what it lets through, so a predicate that fails on a value (a cast, a
/// division) cannot reveal in its error a row the scope does not see.
pub(crate) struct ScopedTable {
    inner: Arc<dyn TableProvider>,
    /// For observations limited to projects: the records table, whose ids in scope
    /// decide.
    records: Option<(Arc<dyn TableProvider>, Arc<Rule>)>,
    rule: Arc<Rule>,
    schema: SchemaRef,
    ids: tokio::sync::OnceCell<Arc<HashSet<String>>>,
}

impl std::fmt::Debug for ScopedTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopedTable")
            .field("rule", &self.rule)
            .finish()
    }
}

impl ScopedTable {
    pub(crate) fn new(
        inner: Arc<dyn TableProvider>,
        rule: Arc<Rule>,
        records: Option<(Arc<dyn TableProvider>, Arc<Rule>)>,
    ) -> ScopedTable {
        let schema = rule.output_schema(&inner.schema());
        ScopedTable {
            inner,
            records: records.filter(|_| rule.by_records.is_some()),
            rule,
            schema,
            ids: tokio::sync::OnceCell::new(),
        }
    }

    /// Ids of the records in scope, read once.
    async fn ids(
        &self,
        state: &dyn datafusion::catalog::Session,
    ) -> datafusion::error::Result<Option<Arc<HashSet<String>>>> {
        let Some((records, rule)) = &self.records else {
            return Ok(None);
        };
        let ids = self
            .ids
            .get_or_try_init(|| async {
                let plan = records.scan(state, None, &[], None).await?;
                let out = rule.output_schema(&records.schema());
                let batches = datafusion::physical_plan::collect(plan, state.task_ctx()).await?;
                let mut ids = HashSet::new();
                let column =
                    |b: &RecordBatch, name: &str| -> datafusion::error::Result<StringArray> {
                        let i = b.schema().index_of(name)?;
                        let a = arrow::compute::cast(b.column(i), &DataType::Utf8)?;
                        Ok(as_string_array(&a)?.clone())
                    };
                for b in batches {
                    let b = rule.apply(&b, None, &out, None)?;
                    match self.rule.by_records {
                        Some(ByRecords::SourceKey) => {
                            let (sources, keys, titles) = (
                                column(&b, "source")?,
                                column(&b, "subject_key")?,
                                column(&b, "title")?,
                            );
                            for i in 0..b.num_rows() {
                                let key = if keys.is_null(i) {
                                    titles.value(i)
                                } else {
                                    keys.value(i)
                                };
                                ids.insert(source_key(sources.value(i), key));
                            }
                        }
                        _ => ids.extend(column(&b, "id")?.iter().flatten().map(str::to_owned)),
                    }
                }
                Ok::<_, datafusion::error::DataFusionError>(Arc::new(ids))
            })
            .await?;
        Ok(Some(ids.clone()))
    }
}

#[async_trait::async_trait]
impl TableProvider for ScopedTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> datafusion::datasource::TableType {
        datafusion::datasource::TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let ids = self.ids(state).await?;
        let input = self.inner.scan(state, None, &[], None).await?;
        let out = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        Ok(Arc::new(ScopeExec::new(
            input,
            self.rule.clone(),
            ids,
            out,
            projection.cloned(),
        )))
    }
}

/// Applies a [`Rule`] to every batch of its input. Opaque to filter pushdown (the
/// trait's default): no parent filter runs below it.
#[derive(Debug)]
struct ScopeExec {
    input: Arc<dyn ExecutionPlan>,
    rule: Arc<Rule>,
    ids: Option<Arc<HashSet<String>>>,
    schema: SchemaRef,
    projection: Option<Vec<usize>>,
    properties: Arc<PlanProperties>,
}

impl ScopeExec {
    fn new(
        input: Arc<dyn ExecutionPlan>,
        rule: Arc<Rule>,
        ids: Option<Arc<HashSet<String>>>,
        schema: SchemaRef,
        projection: Option<Vec<usize>>,
    ) -> ScopeExec {
        let p = input.properties();
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            p.output_partitioning().clone(),
            p.emission_type,
            p.boundedness,
        ));
        ScopeExec {
            input,
            rule,
            ids,
            schema,
            projection,
            properties,
        }
    }
}

impl DisplayAs for ScopeExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "ScopeExec")
    }
}

impl ExecutionPlan for ScopeExec {
    fn name(&self) -> &'static str {
        "ScopeExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> datafusion::error::Result<TreeNodeRecursion>,
    ) -> datafusion::error::Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(ScopeExec::new(
            children.swap_remove(0),
            self.rule.clone(),
            self.ids.clone(),
            self.schema.clone(),
            self.projection.clone(),
        )))
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> datafusion::error::Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let (rule, ids, schema, projection) = (
            self.rule.clone(),
            self.ids.clone(),
            self.schema.clone(),
            self.projection.clone(),
        );
        let out = schema.clone();
        let stream = input.map(move |batch| {
            batch.and_then(|b| rule.apply(&b, ids.as_deref(), &out, projection.as_deref()))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}
