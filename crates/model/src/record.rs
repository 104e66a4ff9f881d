use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Builds the stable global id of an entity: `source:kind:native_id`.
///
/// The id never changes for the same entity of the same configured source, which is
/// what makes re-syncing idempotent.
pub fn global_id(source: &str, kind: &str, native_id: &str) -> String {
    format!("{source}:{kind}:{native_id}")
}

/// Whether `name` can name a configured source: ASCII letters, digits, `_` and `-`,
/// 1 to 64 characters. Source names appear in ids, file names and URLs.
pub fn is_valid_source_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// One entity of a source system: a project, subject, session, form record, image, ...
///
/// A row of the `records` table. `subject_id` is filled by subject linking, not by
/// connectors; `synced_at` is stamped by the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Stable global id, `source:kind:native_id` (see [`global_id`]).
    pub id: String,
    /// The configured source instance name, e.g. `xnat_main`.
    pub source: String,
    /// The system this source runs: `xnat`, `redcap`, `omero`, `transmart`, `elabftw`, `files`.
    pub system: String,
    /// Entity kind within the system: `project`, `subject`, `session`, `record`, `image`, ...
    pub kind: String,
    /// The id the source itself uses.
    pub native_id: String,
    /// Global id of the parent entity (a session's subject, an image's dataset).
    pub parent_id: Option<String>,
    /// Project or study the entity belongs to, as the source names it.
    pub project: Option<String>,
    /// The subject identifier as this source spells it.
    pub subject_key: Option<String>,
    /// The resolved global subject, when linking found one.
    pub subject_id: Option<String>,
    /// A short human title.
    pub title: String,
    /// Free text describing the entity; indexed for full-text search.
    pub description: Option<String>,
    /// A deep link back into the source's own user interface.
    pub url: Option<String>,
    /// When the entity was created at the source.
    pub created_at: Option<DateTime<Utc>>,
    /// When the entity was last modified at the source.
    pub modified_at: Option<DateTime<Utc>>,
    /// Source-specific attributes, kept as a JSON object.
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

impl Record {
    /// A record with its identity set and every optional field empty.
    pub fn new(source: &str, system: &str, kind: &str, native_id: &str, title: &str) -> Self {
        Record {
            id: global_id(source, kind, native_id),
            source: source.to_owned(),
            system: system.to_owned(),
            kind: kind.to_owned(),
            native_id: native_id.to_owned(),
            parent_id: None,
            project: None,
            subject_key: None,
            subject_id: None,
            title: title.to_owned(),
            description: None,
            url: None,
            created_at: None,
            modified_at: None,
            attributes: serde_json::Map::new(),
        }
    }
}

/// One typed value attached to a record, in long form: a row of `observations`.
///
/// `value_text` always holds the value as the source wrote it, so nothing is lost when
/// typing fails; `value_num` and `value_date` are filled when the value is a number or
/// a date.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// Machine name of the variable (REDCap field, tranSMART concept, OMERO key, ...).
    pub variable: String,
    /// Human label of the variable, when the source has one.
    pub label: Option<String>,
    /// The value as text.
    pub value_text: Option<String>,
    /// The value as a number, when it is one.
    pub value_num: Option<f64>,
    /// The value as a timestamp, when it is a date or a date-time.
    pub value_date: Option<DateTime<Utc>>,
    /// Unit of a numeric value.
    pub unit: Option<String>,
    /// Visit, event or session the value belongs to.
    pub event: Option<String>,
    /// Repeat instance number, for repeating forms.
    pub instance: Option<i64>,
    /// When the value was observed, if known.
    pub observed_at: Option<DateTime<Utc>>,
}

impl Observation {
    /// A text value.
    pub fn text(variable: impl Into<String>, value: impl Into<String>) -> Self {
        Observation {
            variable: variable.into(),
            label: None,
            value_text: Some(value.into()),
            value_num: None,
            value_date: None,
            unit: None,
            event: None,
            instance: None,
            observed_at: None,
        }
    }

    /// A numeric value; `raw` is the text the source sent.
    pub fn number(variable: impl Into<String>, value: f64, raw: impl Into<String>) -> Self {
        Observation {
            value_num: Some(value),
            ..Observation::text(variable, raw)
        }
    }

    /// A date or date-time value; `raw` is the text the source sent.
    pub fn date(variable: impl Into<String>, value: DateTime<Utc>, raw: impl Into<String>) -> Self {
        Observation {
            value_date: Some(value),
            ..Observation::text(variable, raw)
        }
    }

    /// Sets the label.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Sets the event (visit).
    pub fn with_event(mut self, event: impl Into<String>) -> Self {
        self.event = Some(event.into());
        self
    }
}

/// A record together with its observations: the unit connectors upsert.
///
/// Upserting an entity replaces the record and all of its observations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    /// The record.
    pub record: Record,
    /// Its observations; replaced as a whole on every upsert.
    pub observations: Vec<Observation>,
}
