//! Arrow schemas of the tables and the builders that turn entities into batches.

use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayRef, Float64Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};
use crossdex_model::Entity;

use crate::runs::SyncRun;

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// Schema of the `records` table.
pub static RECORDS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("system", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("native_id", DataType::Utf8, false),
        Field::new("parent_id", DataType::Utf8, true),
        Field::new("project", DataType::Utf8, true),
        Field::new("subject_key", DataType::Utf8, true),
        Field::new("subject_id", DataType::Utf8, true),
        Field::new("title", DataType::Utf8, false),
        Field::new("description", DataType::Utf8, true),
        Field::new("url", DataType::Utf8, true),
        Field::new("created_at", ts(), true),
        Field::new("modified_at", ts(), true),
        Field::new("attributes", DataType::Utf8, false),
        Field::new("synced_at", ts(), false),
    ]))
});

/// Schema of the `observations` table.
pub static OBSERVATIONS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("record_id", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("system", DataType::Utf8, false),
        Field::new("subject_id", DataType::Utf8, true),
        Field::new("subject_key", DataType::Utf8, true),
        Field::new("variable", DataType::Utf8, false),
        Field::new("label", DataType::Utf8, true),
        Field::new("value_text", DataType::Utf8, true),
        Field::new("value_num", DataType::Float64, true),
        Field::new("value_date", ts(), true),
        Field::new("unit", DataType::Utf8, true),
        Field::new("event", DataType::Utf8, true),
        Field::new("instance", DataType::Int64, true),
        Field::new("observed_at", ts(), true),
    ]))
});

/// Schema of the `sync_runs` table.
pub static SYNC_RUNS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("system", DataType::Utf8, false),
        Field::new("mode", DataType::Utf8, false),
        Field::new("started_at", ts(), false),
        Field::new("finished_at", ts(), false),
        Field::new("status", DataType::Utf8, false),
        Field::new("added", DataType::Int64, false),
        Field::new("updated", DataType::Int64, false),
        Field::new("unchanged", DataType::Int64, false),
        Field::new("deleted", DataType::Int64, false),
        Field::new("rejected", DataType::Int64, false),
        Field::new("error", DataType::Utf8, true),
        Field::new("rejections", DataType::Utf8, false),
    ]))
});

/// Schema of the `subject_links` table.
pub static SUBJECT_LINKS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("subject_id", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("subject_key", DataType::Utf8, false),
        Field::new("matched", DataType::Utf8, false),
        Field::new("rule", DataType::Utf8, false),
        Field::new("confidence", DataType::Float64, false),
        Field::new("sex", DataType::Utf8, true),
        Field::new("birth_year", DataType::Utf8, true),
    ]))
});

/// One row of `subject_links`: how a source's subject key is tied to a subject.
#[derive(Debug, Clone, PartialEq)]
pub struct SubjectLink {
    /// The resolved subject.
    pub subject_id: String,
    /// The source holding the key.
    pub source: String,
    /// The key as that source spells it.
    pub subject_key: String,
    /// What the source's records carry: the key, or the title it was read from.
    pub matched: String,
    /// The rule that made the link (`rule:<source>`, `crosswalk`).
    pub rule: String,
    /// How sure the rule is, from 0 to 1; 0 for a key kept apart by a conflict
    /// (`rule` = `conflict:<identifier>`).
    pub confidence: f64,
    /// The key's sex, where its source declares it as a hard identifier.
    pub sex: Option<String>,
    /// The key's year of birth, where its source declares it as a hard identifier.
    pub birth_year: Option<String>,
}

pub(crate) fn subject_links_batch(
    links: &[SubjectLink],
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let col = |f: &dyn Fn(&SubjectLink) -> &str| -> ArrayRef {
        Arc::new(
            links
                .iter()
                .map(|l| Some(f(l)))
                .collect::<arrow::array::StringArray>(),
        )
    };
    RecordBatch::try_new(
        SUBJECT_LINKS_SCHEMA.clone(),
        vec![
            col(&|l| l.subject_id.as_str()),
            col(&|l| l.source.as_str()),
            col(&|l| l.subject_key.as_str()),
            col(&|l| l.matched.as_str()),
            col(&|l| l.rule.as_str()),
            Arc::new(
                links
                    .iter()
                    .map(|l| Some(l.confidence))
                    .collect::<arrow::array::Float64Array>(),
            ),
            Arc::new(
                links
                    .iter()
                    .map(|l| l.sex.as_deref())
                    .collect::<arrow::array::StringArray>(),
            ),
            Arc::new(
                links
                    .iter()
                    .map(|l| l.birth_year.as_deref())
                    .collect::<arrow::array::StringArray>(),
            ),
        ],
    )
}

fn micros(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(|t| t.timestamp_micros())
}

fn ts_builder(capacity: usize) -> TimestampMicrosecondBuilder {
    TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone("UTC")
}

/// Accumulates `records` rows.
pub(crate) struct RecordsBuilder {
    cols: [StringBuilder; 12],
    created_at: TimestampMicrosecondBuilder,
    modified_at: TimestampMicrosecondBuilder,
    attributes: StringBuilder,
    synced_at: TimestampMicrosecondBuilder,
    len: usize,
}

impl RecordsBuilder {
    pub(crate) fn new() -> Self {
        RecordsBuilder {
            cols: std::array::from_fn(|_| StringBuilder::new()),
            created_at: ts_builder(0),
            modified_at: ts_builder(0),
            attributes: StringBuilder::new(),
            synced_at: ts_builder(0),
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn push(&mut self, e: &Entity, synced_at: DateTime<Utc>) {
        let r = &e.record;
        let [
            id,
            source,
            system,
            kind,
            native_id,
            parent_id,
            project,
            subject_key,
            subject_id,
            title,
            description,
            url,
        ] = &mut self.cols;
        id.append_value(&r.id);
        source.append_value(&r.source);
        system.append_value(&r.system);
        kind.append_value(&r.kind);
        native_id.append_value(&r.native_id);
        parent_id.append_option(r.parent_id.as_deref());
        project.append_option(r.project.as_deref());
        subject_key.append_option(r.subject_key.as_deref());
        subject_id.append_option(r.subject_id.as_deref());
        title.append_value(&r.title);
        description.append_option(r.description.as_deref());
        url.append_option(r.url.as_deref());
        self.created_at.append_option(micros(r.created_at));
        self.modified_at.append_option(micros(r.modified_at));
        // Serialising a Map cannot fail.
        self.attributes
            .append_value(serde_json::to_string(&r.attributes).unwrap_or_default());
        self.synced_at.append_value(synced_at.timestamp_micros());
        self.len += 1;
    }

    pub(crate) fn finish(&mut self) -> Result<RecordBatch, arrow::error::ArrowError> {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(16);
        for c in &mut self.cols {
            columns.push(Arc::new(c.finish()));
        }
        columns.push(Arc::new(self.created_at.finish()));
        columns.push(Arc::new(self.modified_at.finish()));
        columns.push(Arc::new(self.attributes.finish()));
        columns.push(Arc::new(self.synced_at.finish()));
        self.len = 0;
        RecordBatch::try_new(RECORDS_SCHEMA.clone(), columns)
    }
}

/// Accumulates `observations` rows.
pub(crate) struct ObservationsBuilder {
    record_id: StringBuilder,
    source: StringBuilder,
    system: StringBuilder,
    subject_id: StringBuilder,
    subject_key: StringBuilder,
    variable: StringBuilder,
    label: StringBuilder,
    value_text: StringBuilder,
    value_num: Float64Builder,
    value_date: TimestampMicrosecondBuilder,
    unit: StringBuilder,
    event: StringBuilder,
    instance: Int64Builder,
    observed_at: TimestampMicrosecondBuilder,
    len: usize,
}

impl ObservationsBuilder {
    pub(crate) fn new() -> Self {
        ObservationsBuilder {
            record_id: StringBuilder::new(),
            source: StringBuilder::new(),
            system: StringBuilder::new(),
            subject_id: StringBuilder::new(),
            subject_key: StringBuilder::new(),
            variable: StringBuilder::new(),
            label: StringBuilder::new(),
            value_text: StringBuilder::new(),
            value_num: Float64Builder::new(),
            value_date: ts_builder(0),
            unit: StringBuilder::new(),
            event: StringBuilder::new(),
            instance: Int64Builder::new(),
            observed_at: ts_builder(0),
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn push(&mut self, e: &Entity) {
        let r = &e.record;
        for o in &e.observations {
            self.record_id.append_value(&r.id);
            self.source.append_value(&r.source);
            self.system.append_value(&r.system);
            self.subject_id.append_option(r.subject_id.as_deref());
            self.subject_key.append_option(r.subject_key.as_deref());
            self.variable.append_value(&o.variable);
            self.label.append_option(o.label.as_deref());
            self.value_text.append_option(o.value_text.as_deref());
            self.value_num.append_option(o.value_num);
            self.value_date.append_option(micros(o.value_date));
            self.unit.append_option(o.unit.as_deref());
            self.event.append_option(o.event.as_deref());
            self.instance.append_option(o.instance);
            self.observed_at.append_option(micros(o.observed_at));
            self.len += 1;
        }
    }

    pub(crate) fn finish(&mut self) -> Result<RecordBatch, arrow::error::ArrowError> {
        self.len = 0;
        RecordBatch::try_new(
            OBSERVATIONS_SCHEMA.clone(),
            vec![
                Arc::new(self.record_id.finish()),
                Arc::new(self.source.finish()),
                Arc::new(self.system.finish()),
                Arc::new(self.subject_id.finish()),
                Arc::new(self.subject_key.finish()),
                Arc::new(self.variable.finish()),
                Arc::new(self.label.finish()),
                Arc::new(self.value_text.finish()),
                Arc::new(self.value_num.finish()),
                Arc::new(self.value_date.finish()),
                Arc::new(self.unit.finish()),
                Arc::new(self.event.finish()),
                Arc::new(self.instance.finish()),
                Arc::new(self.observed_at.finish()),
            ],
        )
    }
}

/// Builds a `sync_runs` batch.
pub(crate) fn sync_runs_batch(runs: &[SyncRun]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut s: [StringBuilder; 5] = std::array::from_fn(|_| StringBuilder::new());
    let mut started = ts_builder(runs.len());
    let mut finished = ts_builder(runs.len());
    let mut counts: [Int64Builder; 5] = std::array::from_fn(|_| Int64Builder::new());
    let mut error = StringBuilder::new();
    let mut rejections = StringBuilder::new();
    for r in runs {
        s[0].append_value(&r.run_id);
        s[1].append_value(&r.source);
        s[2].append_value(&r.system);
        s[3].append_value(r.mode.as_str());
        s[4].append_value(r.status.as_str());
        started.append_value(r.started_at.timestamp_micros());
        finished.append_value(r.finished_at.timestamp_micros());
        let c = &r.counts;
        for (b, v) in
            counts
                .iter_mut()
                .zip([c.added, c.updated, c.unchanged, c.deleted, c.rejected])
        {
            b.append_value(v as i64);
        }
        error.append_option(r.error.as_deref());
        rejections.append_value(serde_json::to_string(&r.rejections).unwrap_or_default());
    }
    let [run_id, source, system, mode, status] = s;
    let [added, updated, unchanged, deleted, rejected] = counts;
    let b = |mut x: StringBuilder| -> ArrayRef { Arc::new(x.finish()) };
    let n = |mut x: Int64Builder| -> ArrayRef { Arc::new(x.finish()) };
    RecordBatch::try_new(
        SYNC_RUNS_SCHEMA.clone(),
        vec![
            b(run_id),
            b(source),
            b(system),
            b(mode),
            Arc::new(started.finish()),
            Arc::new(finished.finish()),
            b(status),
            n(added),
            n(updated),
            n(unchanged),
            n(deleted),
            n(rejected),
            b(error),
            b(rejections),
        ],
    )
}
