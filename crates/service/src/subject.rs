//! Everything the index holds on one subject, and on one record.

use serde::{Deserialize, Serialize};

use crate::{ErrorCode, QueryControl, Result, Service, ServiceError, rows};

/// A source's key of a subject and the rule that linked it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SubjectKey {
    /// The source.
    pub source: String,
    /// The key as the source spells it.
    pub subject_key: String,
    /// The rule that linked it (`conflict:...` for a key kept apart).
    pub rule: String,
    /// How sure the link is; 0 for a key kept apart.
    pub confidence: f64,
}

/// The subject's records of one kind in one source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SubjectRecords {
    /// The source.
    pub source: String,
    /// The kind of record.
    pub kind: String,
    /// How many.
    pub n: u64,
    /// The first title, as an example.
    pub example: Option<String>,
}

/// A dated event of the subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TimelineEntry {
    /// When.
    pub at: String,
    /// Which source says so.
    pub source: String,
    /// What happened.
    pub what: String,
}

/// One subject across every source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SubjectView {
    /// The subject's id.
    pub subject_id: String,
    /// Each source's key of it.
    pub keys: Vec<SubjectKey>,
    /// Its records, counted by source and kind.
    pub records: Vec<SubjectRecords>,
    /// Its dated events, oldest first.
    pub timeline: Vec<TimelineEntry>,
}

/// One record's row of `records`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecordSummary {
    /// Global id.
    pub id: String,
    /// The source.
    pub source: String,
    /// Its system.
    pub system: String,
    /// Its kind.
    pub kind: String,
    /// The id in the source.
    pub native_id: String,
    /// The parent record's id.
    pub parent_id: Option<String>,
    /// Project or study.
    pub project: Option<String>,
    /// The subject as the source spells it.
    pub subject_key: Option<String>,
    /// The subject, where linked.
    pub subject_id: Option<String>,
    /// Title.
    pub title: String,
    /// Free text.
    pub description: Option<String>,
    /// Creation, as the source reports it.
    pub created_at: Option<String>,
    /// Last change, as the source reports it.
    pub modified_at: Option<String>,
    /// Source-specific attributes.
    #[serde(deserialize_with = "json_text")]
    pub attributes: serde_json::Value,
}

/// A column of JSON text as the JSON it holds (text that is not JSON stays text).
fn json_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<serde_json::Value, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    Ok(match text {
        None => serde_json::Value::Null,
        Some(t) => serde_json::from_str(&t).unwrap_or(serde_json::Value::String(t)),
    })
}

/// One observation of a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecordObservation {
    /// Field, concept or key.
    pub variable: String,
    /// Its label.
    pub label: Option<String>,
    /// The value as written.
    pub value_text: Option<String>,
    /// The value as a number.
    pub value_num: Option<f64>,
    /// The value as a date.
    pub value_date: Option<String>,
    /// Unit.
    pub unit: Option<String>,
    /// Visit or event.
    pub event: Option<String>,
    /// Repeat instance.
    pub instance: Option<i64>,
}

/// A record related to another: its parent, a child, or the same subject elsewhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecordLink {
    /// `parent`, `child` or `same_subject`.
    pub relation: String,
    /// The related record.
    pub id: String,
    /// Its source.
    pub source: String,
    /// Its kind.
    pub kind: String,
    /// Its title.
    pub title: String,
}

/// One record, what it observes, and what it is linked to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecordView {
    /// The record.
    pub record: RecordSummary,
    /// Its observations.
    pub observations: Vec<RecordObservation>,
    /// Its parent, children and the subject's records in other sources (at most 50).
    pub links: Vec<RecordLink>,
    /// Where to open it in the source's own interface.
    pub deep_link: Option<String>,
}

/// Related records listed at most.
pub(crate) const MAX_LINKS: usize = 50;

impl Service {
    /// The subject `id` names: a subject id (`subj:...`), its label, or any source's
    /// spelling of its key.
    pub async fn resolve_subject(&self, id: &str, control: &QueryControl) -> Result<String> {
        self.require(crate::Action::Subjects)?;
        #[derive(Deserialize)]
        struct Row {
            subject_id: String,
        }
        let engine = self.engine()?;
        let ids: Vec<Row> = self
            .bounded(
                control,
                rows(
                    &engine,
                    "SELECT DISTINCT subject_id FROM subject_links \
                     WHERE subject_id = $id OR subject_id = concat('subj:', upper($id)) OR subject_key = $id \
                     ORDER BY subject_id",
                    &[("id", id)],
                ),
            )
            .await?;
        match ids.as_slice() {
            [one] => Ok(one.subject_id.clone()),
            [] => Err(ServiceError::new(
                ErrorCode::SubjectNotFound,
                format!(
                    "no subject {id:?}: give a subject id (subj:...), its label, or a source's key; \
                     `crossdex link report` lists what is linked"
                ),
            )),
            many => Err(ServiceError::new(
                ErrorCode::AmbiguousSubject,
                format!(
                    "{id:?} names {} subjects ({}): give the subject id",
                    many.len(),
                    many.iter()
                        .map(|r| r.subject_id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }

    /// Everything on one subject: its keys, records per source and a timeline.
    pub async fn subject(&self, id: &str, control: &QueryControl) -> Result<SubjectView> {
        self.require(crate::Action::Subjects)?;
        let subject_id = self.resolve_subject(id, control).await?;
        let engine = self.engine()?;
        let p = [("id", subject_id.as_str())];
        let (keys, records, timeline) = self
            .bounded(control, async {
                let keys = rows(
                    &engine,
                    "SELECT source, subject_key, rule, confidence FROM subject_links \
                     WHERE subject_id = $id ORDER BY source, subject_key",
                    &p,
                )
                .await?;
                let records = rows(
                    &engine,
                    "SELECT source, kind, count(*) AS n, min(title) AS example FROM records \
                     WHERE subject_id = $id GROUP BY source, kind ORDER BY source, kind",
                    &p,
                )
                .await?;
                let timeline = rows(
                    &engine,
                    "SELECT CAST(at AS VARCHAR) AS at, source, what FROM ( \
                       SELECT coalesce(created_at, modified_at) AS at, source, concat(kind, ': ', title) AS what \
                       FROM records WHERE subject_id = $id AND kind <> 'scan' \
                       UNION ALL \
                       SELECT value_date AS at, source, concat(coalesce(event, ''), ' ', coalesce(label, variable)) AS what \
                       FROM observations WHERE subject_id = $id AND value_date IS NOT NULL \
                     ) WHERE at IS NOT NULL ORDER BY at, source, what",
                    &p,
                )
                .await?;
                Ok((keys, records, timeline))
            })
            .await?;
        Ok(SubjectView {
            subject_id,
            keys,
            records,
            timeline,
        })
    }

    /// One record by its id, with its observations, related records and deep link.
    pub async fn record(&self, id: &str, control: &QueryControl) -> Result<RecordView> {
        self.require(crate::Action::Subjects)?;
        #[derive(Deserialize)]
        struct Row {
            #[serde(flatten)]
            record: RecordSummary,
            url: Option<String>,
        }
        let engine = self.engine()?;
        let p = [("id", id)];
        self.bounded(control, async {
            let found: Vec<Row> = rows(
                &engine,
                "SELECT id, source, system, kind, native_id, parent_id, project, subject_key, subject_id, \
                        title, description, CAST(created_at AS VARCHAR) AS created_at, \
                        CAST(modified_at AS VARCHAR) AS modified_at, attributes, url \
                 FROM records WHERE id = $id",
                &p,
            )
            .await?;
            let Some(row) = found.into_iter().next() else {
                return Err(ServiceError::new(
                    ErrorCode::RecordNotFound,
                    format!("no record {id:?}: ids look like source:kind:native_id, as search hits show them"),
                ));
            };
            let observations = rows(
                &engine,
                "SELECT variable, label, value_text, value_num, CAST(value_date AS VARCHAR) AS value_date, \
                        unit, event, instance \
                 FROM observations WHERE record_id = $id ORDER BY event, variable, instance",
                &p,
            )
            .await?;
            let links = rows(
                &engine,
                &format!(
                    "SELECT relation, id, source, kind, title FROM ( \
                       SELECT 'parent' AS relation, r.id, r.source, r.kind, r.title, 0 AS o FROM records r \
                         WHERE r.id = (SELECT parent_id FROM records WHERE id = $id) \
                       UNION ALL \
                       SELECT 'child', r.id, r.source, r.kind, r.title, 1 FROM records r WHERE r.parent_id = $id \
                       UNION ALL \
                       SELECT 'same_subject', r.id, r.source, r.kind, r.title, 2 FROM records r \
                         WHERE r.subject_id = (SELECT subject_id FROM records WHERE id = $id) \
                           AND r.source <> (SELECT source FROM records WHERE id = $id) \
                     ) ORDER BY o, source, kind, id LIMIT {MAX_LINKS}"
                ),
                &p,
            )
            .await?;
            Ok(RecordView {
                deep_link: row.url,
                record: row.record,
                observations,
                links,
            })
        })
        .await
    }
}

/// One subject in a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SubjectSummary {
    /// The subject's id.
    pub subject_id: String,
    /// Its label.
    pub label: Option<String>,
    /// The sources that know it.
    pub sources: Vec<String>,
    /// How many.
    pub n_sources: u64,
    /// Its records, all sources.
    pub n_records: u64,
    /// Sex, as the linked keys hold it.
    pub sex: Option<String>,
    /// Year of birth, as the linked keys hold it.
    pub birth_year: Option<String>,
    /// Whether a key of this subject was kept apart.
    pub conflicts: bool,
}

/// Which subjects a list shows.
#[derive(Debug, Clone, Default)]
pub struct SubjectFilter {
    /// Only subjects a source of this name knows.
    pub source: Option<String>,
    /// Only subjects with (true) or without (false) a conflict.
    pub conflicts: Option<bool>,
    /// Only subjects whose id or label contains this text (case folded).
    pub contains: Option<String>,
    /// At most this many.
    pub limit: usize,
    /// Skipped first.
    pub offset: usize,
}

/// A page of subjects and how many match.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SubjectList {
    /// Subjects matching the filter, all pages.
    pub total: u64,
    /// This page, by subject id.
    pub subjects: Vec<SubjectSummary>,
}

impl Service {
    /// Subjects, filtered and paged, by id.
    pub async fn subjects(
        &self,
        filter: &SubjectFilter,
        control: &QueryControl,
    ) -> Result<SubjectList> {
        self.require(crate::Action::Subjects)?;
        #[derive(Deserialize)]
        struct Total {
            n: u64,
        }
        let engine = self.engine()?;
        let conflicts = filter.conflicts.map(|c| c.to_string());
        let p = [
            ("source", filter.source.as_deref().unwrap_or("")),
            ("conflicts", conflicts.as_deref().unwrap_or("")),
            ("contains", filter.contains.as_deref().unwrap_or("")),
        ];
        let filtered = "FROM subjects WHERE ($source = '' OR array_has(sources, $source)) \
                        AND ($conflicts = '' OR conflicts = ($conflicts = 'true')) \
                        AND ($contains = '' OR strpos(lower(concat(subject_id, ' ', coalesce(label, ''))), lower($contains)) > 0)";
        self.bounded(control, async {
            let total: Vec<Total> =
                rows(&engine, &format!("SELECT count(*) AS n {filtered}"), &p).await?;
            let subjects = rows(
                &engine,
                &format!(
                    "SELECT subject_id, label, sources, n_sources, n_records, sex, \
                            CAST(birth_year AS VARCHAR) AS birth_year, conflicts \
                     {filtered} ORDER BY subject_id LIMIT {} OFFSET {}",
                    filter.limit, filter.offset
                ),
                &p,
            )
            .await?;
            Ok(SubjectList {
                total: total.first().map_or(0, |t| t.n),
                subjects,
            })
        })
        .await
    }
}
