//! The eLabFTW connector: experiments and items (resources: samples, animals, reagents)
//! of an eLabFTW instance, through its REST API v2.
//!
//! Lists are read newest change first (`order=lastchange`), with `limit`/`offset` until a
//! short page since no total is given; each new or changed entity is then read whole,
//! which brings its `metadata` (a JSON *string* holding `extra_fields`) and its links.
//! Extra fields become typed observations. Entries in state 3 (deleted) are removed
//! from the index.
//!
//! It must not reach the store or any other system; it speaks HTTP through
//! `crossdex-http-client` only.

use std::path::PathBuf;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use crossdex_http_client::{
    HttpClient, at_least_one, html_to_text, parse_url, secret, source_config,
};
use crossdex_model::{
    Capabilities, CheckReport, Checkpoint, Connector, ConnectorError, ConnectorFactory, Entity,
    Observation, Page, PageSink, Record, Rejection, SourceContext, SyncMode, SyncOutcome,
    SyncRequest, global_id,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `[sources.<name>]` of `type = "elabftw"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElabConfig {
    /// The instance's root URL, e.g. `https://elab.example.org`.
    pub url: String,
    /// An API key (read-only is enough). Prefer `api_key_file` or the environment.
    pub api_key: Option<String>,
    /// A file whose first line is the API key (relative to the config file).
    pub api_key_file: Option<PathBuf>,
    /// Entries per list request [default 100].
    #[serde(default = "default_page")]
    pub page_size: usize,
    /// Extra fields naming the subject an entry is about, first match wins.
    #[serde(default = "default_subject_fields")]
    pub subject_fields: Vec<String>,
    /// Seconds to wait for one answer [default 60].
    #[serde(default = "crossdex_http_client::default_timeout_s")]
    pub timeout_s: u64,
    /// Retries on 429, 5xx and lost connections [default 4].
    #[serde(default = "crossdex_http_client::default_retries")]
    pub retries: usize,
    /// Requests in flight at once [default 4].
    #[serde(default = "crossdex_http_client::default_max_concurrency")]
    pub max_concurrency: usize,
}

fn default_page() -> usize {
    100
}
fn default_subject_fields() -> Vec<String> {
    ["Subject ID", "Subject", "Participant", "Patient ID"]
        .map(String::from)
        .to_vec()
}

/// Builds `elabftw` connectors.
#[derive(Debug, Default)]
pub struct ElabFactory;

impl ConnectorFactory for ElabFactory {
    fn system(&self) -> &'static str {
        "elabftw"
    }

    fn example_config(&self) -> &'static str {
        r#"# An eLabFTW lab notebook: experiments and items (samples, reagents, ...).
[sources.notebook]
type = "elabftw"
url = "https://elab.example.org"
# A read-only API key: a file holding it, or CROSSDEX__SOURCES__NOTEBOOK__API_KEY.
api_key_file = "secrets/elabftw.key"
# Extra fields that name the subject an entry is about.
# subject_fields = ["Subject ID", "Subject", "Participant", "Patient ID"]
"#
    }

    fn build(&self, context: SourceContext) -> Result<Box<dyn Connector>, ConnectorError> {
        let config: ElabConfig = source_config(&context.config)?;
        let url = parse_url("url", config.url.trim_end_matches('/'))?;
        at_least_one("page_size", config.page_size)?;
        let key = secret(
            "api_key",
            config.api_key.as_deref(),
            config.api_key_file.as_deref(),
            &context.base_dir,
        )?;
        let http = HttpClient::for_source(
            &context.name,
            config.timeout_s,
            config.retries,
            config.max_concurrency,
        )?;
        Ok(Box::new(ElabConnector {
            name: context.name,
            base: url.as_str().trim_end_matches('/').to_owned(),
            key,
            config,
            http,
        }))
    }
}

pub struct ElabConnector {
    name: String,
    base: String,
    key: String,
    config: ElabConfig,
    http: HttpClient,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Experiment,
    Item,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::Experiment => "experiments",
            Kind::Item => "items",
        }
    }
    fn record_kind(self) -> &'static str {
        match self {
            Kind::Experiment => "experiment",
            Kind::Item => "item",
        }
    }
    fn page(self) -> &'static str {
        match self {
            Kind::Experiment => "experiments.php",
            Kind::Item => "database.php",
        }
    }
}

/// What an incremental sync resumes from: the newest `modified_at` seen per kind, and
/// the entries read at that very second. eLabFTW's timestamps have whole seconds: an
/// entry edited in the second the last sync read is listed again (`>=`), and skipped
/// only if it is one already read then.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    experiments_modified: Option<String>,
    items_modified: Option<String>,
    #[serde(default)]
    experiments_at_mark: Vec<i64>,
    #[serde(default)]
    items_at_mark: Vec<i64>,
}

const DELETED: i64 = 3;

fn s(m: &Map<String, Value>, k: &str) -> String {
    match m.get(k) {
        Some(Value::String(v)) => v.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn ts(v: &str) -> Option<DateTime<Utc>> {
    // eLabFTW's own timestamps, then `datetime-local` fields as browsers write them
    // (`2026-03-30T14:05`, seconds optional).
    [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(v.trim(), f).ok())
    .map(|t| Utc.from_utc_datetime(&t))
    .or_else(|| {
        NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| Utc.from_utc_datetime(&t))
    })
}

impl ElabConnector {
    async fn get(&self, path: &str) -> Result<Value, ConnectorError> {
        let url = format!("{}/api/v2/{path}", self.base);
        self.http
            .json::<Value>(|c| c.get(&url).header("Authorization", &self.key))
            .await
            .map_err(|e| match e.status() {
                Some(401 | 403) => ConnectorError::Auth(format!(
                    "eLabFTW at {} refused the API key ({})",
                    self.base,
                    e.status().unwrap_or_default()
                )),
                _ => e.into_connector(),
            })
    }

    /// Every entry of a kind, newest change first, down to `since` (exclusive) when
    /// given: `(id, modified_at, state)`.
    async fn list(
        &self,
        kind: Kind,
        since: Option<&str>,
        read_at_mark: &[i64],
    ) -> Result<Vec<(i64, String, i64)>, ConnectorError> {
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let page = self
                .get(&format!(
                    "{}?limit={}&offset={offset}&order=lastchange&sort=desc&state=1,2,3",
                    kind.path(),
                    self.config.page_size
                ))
                .await?;
            let rows = page.as_array().ok_or_else(|| {
                ConnectorError::Protocol(format!(
                    "{}/api/v2/{}: expected a JSON array",
                    self.base,
                    kind.path()
                ))
            })?;
            let mut any_new = false;
            for r in rows.iter().filter_map(Value::as_object) {
                let id = r.get("id").and_then(Value::as_i64).ok_or_else(|| {
                    ConnectorError::Protocol(format!(
                        "an {} without a numeric id",
                        kind.record_kind()
                    ))
                })?;
                let modified = s(r, "modified_at");
                let state = r.get("state").and_then(Value::as_i64).unwrap_or(1);
                let new = match since {
                    None => true,
                    Some(w) if modified.as_str() == w => !read_at_mark.contains(&id),
                    Some(w) => modified.as_str() > w,
                };
                if new {
                    any_new = true;
                    out.push((id, modified, state));
                }
            }
            // Newest first: a page with nothing new ends an incremental listing (pinned
            // entries come first whatever their date, hence "a page", not "an entry").
            if rows.len() < self.config.page_size || (since.is_some() && !any_new) {
                break;
            }
            offset += self.config.page_size;
        }
        Ok(out)
    }

    fn entity(&self, kind: Kind, e: &Map<String, Value>) -> Result<Entity, String> {
        let id = e.get("id").and_then(Value::as_i64).ok_or("no numeric id")?;
        let title = s(e, "title");
        let mut r = Record::new(
            &self.name,
            "elabftw",
            kind.record_kind(),
            &id.to_string(),
            &title,
        );
        // The rendered HTML where eLabFTW gives it (a Markdown body comes rendered in
        // `body_html`): what a reader sees, not Markdown's markup.
        let html = s(e, "body_html");
        let body = if !html.trim().is_empty() {
            html_to_text(&html)
        } else if e.get("content_type").and_then(Value::as_i64) == Some(2) {
            s(e, "body").trim().to_owned()
        } else {
            html_to_text(&s(e, "body"))
        };
        r.description = (!body.is_empty()).then_some(body);
        let category = s(e, "category_title");
        r.project = (!category.is_empty()).then_some(category.clone());
        r.url = Some(format!("{}/{}?mode=view&id={id}", self.base, kind.page()));
        r.created_at = ts(&s(e, "created_at"));
        r.modified_at = ts(&s(e, "modified_at"));
        for k in ["elabid", "status_title", "fullname", "tags", "team_name"] {
            let v = s(e, k);
            if !v.is_empty() {
                r.attributes.insert(k.into(), Value::from(v));
            }
        }
        let links = |k: &str, target: &str| -> Vec<Value> {
            e.get(k)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|l| l.get("entityid").and_then(Value::as_i64))
                .map(|i| Value::from(global_id(&self.name, target, &i.to_string())))
                .collect()
        };
        let mut linked = links("items_links", "item");
        linked.extend(links("experiments_links", "experiment"));
        if !linked.is_empty() {
            r.attributes.insert("links".into(), Value::from(linked));
        }
        let mut obs = Vec::new();
        for (k, var, label) in [
            ("status_title", "status", "Status"),
            ("category_title", "category", "Category"),
            ("fullname", "author", "Author"),
        ] {
            let v = s(e, k);
            if !v.is_empty() {
                obs.push(Observation::text(var, v).with_label(label));
            }
        }
        if let Some(d) = ts(&s(e, "date")) {
            obs.push(Observation::date("date", d, s(e, "date")).with_label("Date"));
        }
        for tag in s(e, "tags").split('|').filter(|t| !t.is_empty()) {
            obs.push(Observation::text("tag", tag).with_label("Tag"));
        }
        // `metadata` is a JSON string to parse a second time; older versions sent an object.
        let meta: Value = match e.get("metadata") {
            Some(Value::String(t)) if !t.trim().is_empty() => {
                serde_json::from_str(t).map_err(|err| format!("metadata is not JSON: {err}"))?
            }
            Some(Value::Object(m)) => Value::Object(m.clone()),
            _ => Value::Null,
        };
        if let Some(fields) = meta.get("extra_fields").and_then(Value::as_object) {
            for (label, f) in fields {
                let ftype = f.get("type").and_then(Value::as_str).unwrap_or("text");
                let unit = f
                    .get("unit")
                    .and_then(Value::as_str)
                    .filter(|u| !u.is_empty());
                let values: Vec<&Value> = match f.get("value") {
                    Some(Value::Array(a)) => a.iter().collect(),
                    Some(v) => vec![v],
                    None => Vec::new(),
                };
                for v in values {
                    let raw = match v {
                        Value::String(t) => t.clone(),
                        Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    if raw.is_empty() {
                        continue;
                    }
                    if self.config.subject_fields.iter().any(|sf| sf == label)
                        && r.subject_key.is_none()
                    {
                        r.subject_key = Some(raw.clone());
                    }
                    let mut o = match ftype {
                        "number" => match raw.trim().replace(',', ".").parse::<f64>() {
                            Ok(x) => Observation::number(label.clone(), x, raw.clone()),
                            Err(_) => Observation::text(label.clone(), raw.clone()),
                        },
                        "date" | "datetime-local" => {
                            match ts(&raw.replace('T', " ")).or_else(|| ts(&raw)) {
                                Some(d) => Observation::date(label.clone(), d, raw.clone()),
                                None => Observation::text(label.clone(), raw.clone()),
                            }
                        }
                        "items" | "experiments" | "users" => match raw.parse::<f64>() {
                            Ok(x) => Observation::number(label.clone(), x, raw.clone()),
                            Err(_) => Observation::text(label.clone(), raw.clone()),
                        },
                        _ => Observation::text(label.clone(), raw.clone()),
                    };
                    o.label = Some(label.clone());
                    o.unit = unit.map(str::to_owned);
                    obs.push(o);
                }
            }
        }
        Ok(Entity {
            record: r,
            observations: obs,
        })
    }
}

#[async_trait]
impl Connector for ElabConnector {
    fn source(&self) -> &str {
        &self.name
    }

    fn system(&self) -> &'static str {
        "elabftw"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { incremental: true }
    }

    async fn check(&self) -> Result<CheckReport, ConnectorError> {
        let e = self.get("experiments?limit=1").await?;
        let i = self.get("items?limit=1").await?;
        Ok(CheckReport {
            summary: format!(
                "eLabFTW at {}: the API key reads experiments ({}) and items ({})",
                self.base,
                if e.as_array().is_some_and(|a| !a.is_empty()) {
                    "some"
                } else {
                    "none yet"
                },
                if i.as_array().is_some_and(|a| !a.is_empty()) {
                    "some"
                } else {
                    "none yet"
                },
            ),
        })
    }

    async fn sync(
        &self,
        request: SyncRequest,
        sink: &mut dyn PageSink,
    ) -> Result<SyncOutcome, ConnectorError> {
        let previous: Option<State> = crossdex_http_client::resume(&request);
        let mode = if previous.is_some() {
            SyncMode::Incremental
        } else {
            SyncMode::Full
        };
        let prev = previous.unwrap_or_default();
        let mut state = prev.clone();
        for kind in [Kind::Item, Kind::Experiment] {
            let (since, at_mark) = match (mode, kind) {
                (SyncMode::Full, _) => (None, &[][..]),
                (_, Kind::Experiment) => (
                    prev.experiments_modified.clone(),
                    &prev.experiments_at_mark[..],
                ),
                (_, Kind::Item) => (prev.items_modified.clone(), &prev.items_at_mark[..]),
            };
            let listed = self.list(kind, since.as_deref(), at_mark).await?;
            let newest = listed.iter().map(|(_, m, _)| m.clone()).max();
            let (slot, mark) = match kind {
                Kind::Experiment => (
                    &mut state.experiments_modified,
                    &mut state.experiments_at_mark,
                ),
                Kind::Item => (&mut state.items_modified, &mut state.items_at_mark),
            };
            if newest.as_deref() > slot.as_deref() {
                *slot = newest;
                mark.clear();
            }
            if let Some(top) = slot.as_deref() {
                mark.extend(
                    listed
                        .iter()
                        .filter(|(_, m, _)| m == top)
                        .map(|(id, _, _)| *id),
                );
                mark.sort_unstable();
                mark.dedup();
            }
            let mut page = Page::default();
            let live: Vec<i64> = listed
                .iter()
                .filter(|(_, _, st)| *st != DELETED)
                .map(|(id, _, _)| *id)
                .collect();
            if mode == SyncMode::Incremental {
                page.deletions = listed
                    .iter()
                    .filter(|(_, _, st)| *st == DELETED)
                    .map(|(id, _, _)| global_id(&self.name, kind.record_kind(), &id.to_string()))
                    .collect();
            }
            let concurrency = self.http.settings().max_concurrency.max(1);
            for chunk in live.chunks(concurrency * 4) {
                let docs =
                    futures::future::join_all(chunk.iter().map(|id| self.get_one(kind, *id))).await;
                for (id, doc) in chunk.iter().zip(docs) {
                    let doc = doc?;
                    match doc
                        .as_object()
                        .ok_or_else(|| "not a JSON object".to_owned())
                        .and_then(|m| self.entity(kind, m))
                    {
                        Ok(e) => page.upserts.push(e),
                        Err(reason) => page.rejected.push(Rejection {
                            native_id: Some(id.to_string()),
                            reason: format!("{} {id}: {reason}", kind.record_kind()),
                        }),
                    }
                }
                if page.upserts.len() >= 200 {
                    sink.page(std::mem::take(&mut page)).await?;
                }
            }
            if !page.is_empty() {
                sink.page(page).await?;
            }
        }
        Ok(SyncOutcome {
            mode,
            checkpoint: Checkpoint::of(&state).ok(),
        })
    }
}

impl ElabConnector {
    async fn get_one(&self, kind: Kind, id: i64) -> Result<Value, ConnectorError> {
        self.get(&format!("{}/{id}", kind.path())).await
    }
}

/// The decoding of eLabFTW's answers without a server, for the fuzz targets of
/// `fuzz/`: whatever the bytes, it returns.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    fn connector() -> Option<&'static ElabConnector> {
        static CONNECTOR: std::sync::OnceLock<Option<ElabConnector>> = std::sync::OnceLock::new();
        CONNECTOR
            .get_or_init(|| {
                let config = serde_json::from_value::<ElabConfig>(
                    serde_json::json!({"url": "http://127.0.0.1:9"}),
                )
                .ok()?;
                Some(ElabConnector {
                    name: "elabftw".into(),
                    base: "http://127.0.0.1:9".into(),
                    key: "k".into(),
                    http: HttpClient::for_source("elabftw", 1, 0, 1).ok()?,
                    config,
                })
            })
            .as_ref()
    }

    /// Reads `data` as an experiment and as an item, as a sync does.
    pub fn decode(data: &[u8]) {
        let Ok(doc) = serde_json::from_slice::<Value>(data) else {
            return;
        };
        let Some(map) = doc.as_object() else {
            return;
        };
        let Some(elab) = connector() else {
            return;
        };
        let _ = elab.entity(Kind::Experiment, map);
        let _ = elab.entity(Kind::Item, map);
        let _ = ts(&String::from_utf8_lossy(data));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn connector() -> ElabConnector {
        let config: ElabConfig =
            serde_json::from_value(json!({"url": "http://x"})).expect("config");
        ElabConnector {
            name: "lab".into(),
            base: "http://x".into(),
            key: "k".into(),
            http: HttpClient::new("lab", crossdex_http_client::HttpSettings::default())
                .expect("client"),
            config,
        }
    }

    #[test]
    fn extra_fields_are_typed_and_the_subject_found() {
        let meta = json!({"extra_fields": {
            "Subject ID": {"type": "text", "value": "INT_0042"},
            "Volume": {"type": "number", "value": "0.5", "unit": "mL"},
            "Collected": {"type": "date", "value": "2024-02-01"},
            "Stains": {"type": "select", "value": ["DAPI", "GFP"], "allow_multi_values": true},
            "Empty": {"type": "text", "value": ""},
        }});
        let e = json!({"id": 7, "title": "Plasma", "body": "<p>Thawed &amp; aliquoted</p>",
                       "metadata": meta.to_string(), "tags": "plasma|biobank",
                       "items_links": [{"entityid": 3}], "modified_at": "2024-02-02 10:00:00"});
        let ent = connector()
            .entity(Kind::Item, e.as_object().expect("object"))
            .expect("entity");
        assert_eq!(ent.record.subject_key.as_deref(), Some("INT_0042"));
        assert_eq!(
            ent.record.description.as_deref(),
            Some("Thawed & aliquoted")
        );
        let get = |v: &str| {
            ent.observations
                .iter()
                .filter(|o| o.variable == v)
                .collect::<Vec<_>>()
        };
        assert_eq!(get("Volume")[0].value_num, Some(0.5));
        assert_eq!(get("Volume")[0].unit.as_deref(), Some("mL"));
        assert!(get("Collected")[0].value_date.is_some());
        assert_eq!(get("Stains").len(), 2, "multi-select: one value each");
        assert!(get("Empty").is_empty());
        assert_eq!(get("tag").len(), 2);
        assert_eq!(ent.record.attributes["links"], json!(["lab:item:3"]));
        // Browsers write `datetime-local` without seconds.
        let meta = json!({"extra_fields": {"Thawed": {"type": "datetime-local", "value": "2026-03-30T14:05"}}});
        let e = json!({"id": 9, "title": "x", "metadata": meta.to_string(), "content_type": 2,
                       "body": "| Batch | B7 |\n|---|---|\n**bold**",
                       "body_html": "<table><tr><td>Batch</td><td>B7</td></tr></table><p><strong>bold</strong></p>"});
        let ent = connector()
            .entity(Kind::Item, e.as_object().expect("object"))
            .expect("entity");
        let thawed = ent
            .observations
            .iter()
            .find(|o| o.variable == "Thawed")
            .expect("thawed");
        assert_eq!(
            thawed.value_date.map(|d| d.to_rfc3339()),
            Some("2026-03-30T14:05:00+00:00".to_owned())
        );
        let text = ent.record.description.unwrap_or_default();
        assert!(
            text.contains("Batch") && text.contains("B7") && !text.contains("BatchB7"),
            "{text}"
        );
        assert!(
            !text.contains("**") && !text.contains("|---"),
            "rendered, not Markdown: {text}"
        );
        let bad = json!({"id": 8, "title": "x", "metadata": "{not json"});
        assert!(
            connector()
                .entity(Kind::Item, bad.as_object().expect("object"))
                .is_err()
        );
    }
}
