//! The REDCap connector: one REDCap project per source, read through the REDCap API.
//!
//! It reads the data dictionary and types every value by it, exports records in
//! batches of record ids (large exports time out on real servers), and turns each
//! REDCap record into one `records` row with its observations, each carrying its event
//! and repeat instance. Incremental syncs ask for records changed since the last log
//! entry seen (`dateRangeBegin`, in the server's local time) and read deletions from the
//! logging API; a full sync deletes what the server no longer lists.
//!
//! It must not reach the store or any other system; it speaks HTTP through
//! `crossdex-http-client` only.

mod typing;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use async_trait::async_trait;
use crossdex_http_client::{HttpClient, HttpError, at_least_one, parse_url, secret, source_config};
use crossdex_model::{
    Capabilities, CheckReport, Checkpoint, Connector, ConnectorError, ConnectorFactory, Entity,
    Page, PageSink, Record, Rejection, SourceContext, SyncMode, SyncOutcome, SyncRequest,
    global_id,
};
use serde::Deserialize;
use serde_json::{Map, Value};

pub use typing::Dictionary;

/// `[sources.<name>]` of `type = "redcap"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedcapConfig {
    /// The API endpoint, e.g. `https://redcap.example.org/api/`.
    pub url: String,
    /// The project's API token. Prefer `token_file` or the environment.
    pub token: Option<String>,
    /// A file whose first line is the token (relative to the config file).
    pub token_file: Option<PathBuf>,
    /// Records per export request [default 200].
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Seconds to wait for one answer [default 120: record exports are slow].
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
    /// Retries on 429, 5xx and lost connections [default 4].
    #[serde(default = "crossdex_http_client::default_retries")]
    pub retries: usize,
    /// Requests in flight at once [default 2].
    #[serde(default = "default_concurrency")]
    pub max_concurrency: usize,
}

fn default_batch() -> usize {
    200
}
fn default_timeout() -> u64 {
    120
}
fn default_concurrency() -> usize {
    2
}

/// `14.5.10`: digits in two to four dot-separated parts.
fn looks_like_version(v: &str) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    (2..=4).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Builds `redcap` connectors.
#[derive(Debug, Default)]
pub struct RedcapFactory;

impl ConnectorFactory for RedcapFactory {
    fn system(&self) -> &'static str {
        "redcap"
    }

    fn example_config(&self) -> &'static str {
        r#"# A REDCap project, through its API. One source per project (one token each).
[sources.clinic]
type = "redcap"
url = "https://redcap.example.org/api/"
# The token: a file holding it, or CROSSDEX__SOURCES__CLINIC__TOKEN in the environment.
token_file = "secrets/redcap-clinic.token"
# Records per export request; lower it if the server times out.
# batch_size = 200
"#
    }

    fn build(&self, context: SourceContext) -> Result<Box<dyn Connector>, ConnectorError> {
        let config: RedcapConfig = source_config(&context.config)?;
        let url = parse_url("url", &config.url)?;
        at_least_one("batch_size", config.batch_size)?;
        let token = secret(
            "token",
            config.token.as_deref(),
            config.token_file.as_deref(),
            &context.base_dir,
        )?;
        let http = HttpClient::for_source(
            &context.name,
            config.timeout_s,
            config.retries,
            config.max_concurrency,
        )?;
        Ok(Box::new(RedcapConnector {
            name: context.name,
            url,
            token,
            config,
            http,
        }))
    }
}

pub struct RedcapConnector {
    name: String,
    url: reqwest::Url,
    token: String,
    config: RedcapConfig,
    http: HttpClient,
}

/// What an incremental sync resumes from.
#[derive(Debug, Clone, Default, serde::Serialize, Deserialize)]
struct State {
    /// Timestamp of the newest log entry seen, server local time (`YYYY-MM-DD HH:MM`).
    log_watermark: Option<String>,
}

const PAGE: usize = 200;

impl RedcapConnector {
    /// One API call, its answer as JSON (a body cut off mid-JSON is retried).
    async fn send(&self, params: &[(&str, &str)]) -> Result<Value, HttpError> {
        let mut form: Vec<(&str, &str)> = vec![
            ("token", self.token.as_str()),
            ("format", "json"),
            ("returnFormat", "json"),
        ];
        form.extend_from_slice(params);
        self.http
            .json(|c| c.post(self.url.clone()).form(&form))
            .await
    }

    async fn call(&self, params: &[(&str, &str)]) -> Result<Value, ConnectorError> {
        self.send(params).await.map_err(|e| match e.status() {
            Some(403) => ConnectorError::Auth(format!(
                "REDCap refused the token for {} (403: no API rights on this project, or a wrong token)",
                crossdex_http_client::redact_url(&self.url)
            )),
            _ => e.into_connector(),
        })
    }

    async fn rows(
        &self,
        params: &[(&str, &str)],
    ) -> Result<Vec<Map<String, Value>>, ConnectorError> {
        array_rows(self.call(params).await?, params)
    }

    /// The newest log timestamp and the records deleted since `since`. `None` when the
    /// token may not read the log.
    async fn log_since(
        &self,
        since: Option<&str>,
    ) -> Result<Option<(Option<String>, Vec<String>)>, ConnectorError> {
        let mut params = vec![("content", "log"), ("logtype", "record")];
        if let Some(s) = since {
            params.push(("beginTime", s));
        }
        // A token without logging rights gets 403, a server without the log API 400:
        // then deletions are found by full syncs. Anything else (a lost connection, a
        // cut-off answer) fails the sync like any other call.
        let answer = match self.send(&params).await {
            Ok(a) => a,
            Err(HttpError::Status {
                status: 400 | 403, ..
            }) => return Ok(None),
            Err(e) => return Err(e.into_connector()),
        };
        let rows = array_rows(answer, &params)?;
        let mut newest: Option<String> = None;
        let mut deleted = Vec::new();
        for r in &rows {
            if let Some(ts) = r.get("timestamp").and_then(Value::as_str)
                && newest.as_deref().is_none_or(|n| ts > n)
            {
                newest = Some(ts.to_owned());
            }
            let action = r.get("action").and_then(Value::as_str).unwrap_or("");
            if action.to_lowercase().starts_with("delete")
                && let Some(id) = deleted_record(action, r.get("details").and_then(Value::as_str))
            {
                deleted.push(id);
            }
        }
        Ok(Some((newest, deleted)))
    }
}

/// The record id of a deletion entry: `Deleted Record 42`, or `record_id = '42'`.
fn deleted_record(action: &str, details: Option<&str>) -> Option<String> {
    if let Some(d) = details
        && let Some(start) = d.find('\'')
        && let Some(len) = d[start + 1..].find('\'')
    {
        return Some(d[start + 1..start + 1 + len].to_owned());
    }
    action
        .rsplit_once(' ')
        .map(|(_, id)| id.trim().to_owned())
        .filter(|id| !id.is_empty())
}

/// The objects of a JSON array answer to `params`, or an error naming the `content`.
fn array_rows(
    v: Value,
    params: &[(&str, &str)],
) -> Result<Vec<Map<String, Value>>, ConnectorError> {
    match v {
        Value::Array(a) => Ok(a
            .into_iter()
            .filter_map(|v| match v {
                Value::Object(m) => Some(m),
                _ => None,
            })
            .collect()),
        other => Err(ConnectorError::Protocol(format!(
            "expected a JSON array from content={}, got {}",
            params
                .iter()
                .find(|(k, _)| *k == "content")
                .map_or("?", |(_, v)| v),
            excerpt(&other)
        ))),
    }
}

fn excerpt(v: &Value) -> String {
    let s = v.to_string();
    s.chars().take(200).collect()
}

#[async_trait]
impl Connector for RedcapConnector {
    fn source(&self) -> &str {
        &self.name
    }

    fn system(&self) -> &'static str {
        "redcap"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { incremental: true }
    }

    async fn check(&self) -> Result<CheckReport, ConnectorError> {
        let info = self.call(&[("content", "project")]).await?;
        let title = info
            .get("project_title")
            .and_then(Value::as_str)
            .unwrap_or("?");
        let dict = self.rows(&[("content", "metadata")]).await?;
        Ok(CheckReport {
            summary: format!(
                "REDCap project {title:?} (id {}), {} fields in the dictionary",
                info.get("project_id")
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
                dict.len()
            ),
        })
    }

    async fn sync(
        &self,
        request: SyncRequest,
        sink: &mut dyn PageSink,
    ) -> Result<SyncOutcome, ConnectorError> {
        let previous: State = crossdex_http_client::resume(&request).unwrap_or_default();
        let info = self.call(&[("content", "project")]).await?;
        let title = info
            .get("project_title")
            .and_then(Value::as_str)
            .unwrap_or("REDCap project")
            .to_owned();
        let pid = info.get("project_id").map(plain).unwrap_or_default();
        let version = match self
            .http
            .send(|c| {
                c.post(self.url.clone())
                    .form(&[("token", self.token.as_str()), ("content", "version")])
            })
            .await
        {
            // Pasted into record URLs: only what looks like a version (`14.5.10`), never
            // an error page or a proxy's answer.
            Ok(a) => Some(a.text().trim().to_owned())
                .filter(|v| looks_like_version(v))
                .unwrap_or_default(),
            Err(_) => String::new(),
        };
        let dict = Dictionary::new(&self.rows(&[("content", "metadata")]).await?)
            .map_err(ConnectorError::Protocol)?;
        let id_field = dict.record_id_field().to_owned();

        // Incremental needs a watermark and a readable log; otherwise this is a full sync.
        let since = match (request.mode, &previous.log_watermark) {
            (SyncMode::Incremental, Some(w)) => Some(w.clone()),
            _ => None,
        };
        let log = self.log_since(since.as_deref()).await?;
        let (mode, watermark, deleted) = match (&since, log) {
            (Some(s), Some((newest, deleted))) => (
                SyncMode::Incremental,
                newest.or_else(|| Some(s.clone())),
                deleted,
            ),
            (_, Some((newest, _))) => (SyncMode::Full, newest, Vec::new()),
            (_, None) => (SyncMode::Full, None, Vec::new()),
        };
        let range_begin = if mode == SyncMode::Incremental {
            since
                .as_deref()
                .map(|s| format!("{s}:00").chars().take(19).collect::<String>())
        } else {
            None
        };

        // Record ids first, then the records in batches.
        let mut id_params = vec![
            ("content", "record"),
            ("type", "flat"),
            ("fields", id_field.as_str()),
        ];
        if let Some(b) = &range_begin {
            id_params.push(("dateRangeBegin", b.as_str()));
        }
        // One row per event and repeat instance: each record id once, in first-seen order.
        let mut ids: Vec<String> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        for row in self.rows(&id_params).await? {
            if let Some(id) = row.get(&id_field).map(plain).filter(|s| !s.is_empty())
                && seen.insert(id.clone())
            {
                ids.push(id);
            }
        }
        let base = web_base(&self.url);
        let mut page = Page::default();
        if !pid.is_empty() {
            page.upserts
                .push(self.project_entity(&info, &title, &pid, &version, &base));
        }
        for batch in ids.chunks(self.config.batch_size) {
            let keys: Vec<String> = (0..batch.len()).map(|i| format!("records[{i}]")).collect();
            let mut params: Vec<(&str, &str)> = vec![
                ("content", "record"),
                ("type", "flat"),
                ("exportDataAccessGroups", "true"),
            ];
            for (k, id) in keys.iter().zip(batch) {
                params.push((k.as_str(), id.as_str()));
            }
            let rows = self.rows(&params).await?;
            let mut grouped: BTreeMap<usize, (String, Vec<Map<String, Value>>)> = BTreeMap::new();
            for row in rows {
                let Some(id) = row.get(&id_field).map(plain).filter(|s| !s.is_empty()) else {
                    page.rejected.push(Rejection {
                        native_id: None,
                        reason: format!("a row without `{id_field}`"),
                    });
                    continue;
                };
                let pos = batch.iter().position(|b| *b == id).unwrap_or(usize::MAX);
                grouped
                    .entry(pos)
                    .or_insert_with(|| (id, Vec::new()))
                    .1
                    .push(row);
            }
            for (_, (id, rows)) in grouped {
                match self.entity(&dict, &id, &rows, &title, &pid, &version, &base) {
                    Ok(e) => page.upserts.push(e),
                    Err(reason) => page.rejected.push(Rejection {
                        native_id: Some(id),
                        reason,
                    }),
                }
                if page.upserts.len() >= PAGE {
                    sink.page(std::mem::take(&mut page)).await?;
                }
            }
        }
        page.deletions = deleted
            .into_iter()
            .filter(|d| !ids.contains(d))
            .map(|d| global_id(&self.name, "record", &d))
            .collect();
        if !page.is_empty() {
            sink.page(page).await?;
        }
        let state = State {
            log_watermark: watermark,
        };
        Ok(SyncOutcome {
            mode,
            checkpoint: Checkpoint::of(&state).ok(),
        })
    }
}

impl RedcapConnector {
    /// The project as a record: the dataset-level entity the catalogue describes, from
    /// `content=project`.
    fn project_entity(
        &self,
        info: &Value,
        title: &str,
        pid: &str,
        version: &str,
        base: &str,
    ) -> Entity {
        let mut r = Record::new(&self.name, "redcap", "project", pid, title);
        r.project = Some(title.to_owned());
        r.description = info
            .get("project_notes")
            .map(plain)
            .filter(|s| !s.trim().is_empty());
        let prefix = if version.is_empty() {
            String::new()
        } else {
            format!("redcap_v{version}/")
        };
        r.url = Some(format!("{base}/{prefix}index.php?pid={pid}"));
        // REDCap writes its times in the server's zone, without one: read as UTC.
        // REDCap says when a project was created, not when it last changed: its records
        // say that, and the catalogue takes their latest change.
        r.created_at = info.get("creation_time").map(plain).and_then(|t| {
            chrono::NaiveDateTime::parse_from_str(t.trim(), "%Y-%m-%d %H:%M:%S")
                .ok()
                .map(|t| t.and_utc())
        });
        for key in [
            "is_longitudinal",
            "purpose",
            "project_irb_number",
            "project_pi_lastname",
        ] {
            if let Some(v) = info
                .get(key)
                .filter(|v| !v.is_null() && !plain(v).is_empty())
            {
                r.attributes.insert(key.into(), v.clone());
            }
        }
        Entity {
            record: r,
            observations: Vec::new(),
        }
    }
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The web root of a REDCap server from its API URL (`.../api/` → `.../`).
fn web_base(api: &reqwest::Url) -> String {
    let s = api.as_str().trim_end_matches('/');
    s.strip_suffix("/api").unwrap_or(s).to_owned()
}

impl RedcapConnector {
    #[allow(clippy::too_many_arguments)]
    fn entity(
        &self,
        dict: &Dictionary,
        id: &str,
        rows: &[Map<String, Value>],
        project: &str,
        pid: &str,
        version: &str,
        base: &str,
    ) -> Result<Entity, String> {
        let mut record = Record::new(
            &self.name,
            "redcap",
            "record",
            id,
            &format!("{project}: record {id}"),
        );
        record.project = Some(project.to_owned());
        record.subject_key = Some(id.to_owned());
        if !pid.is_empty() {
            let prefix = if version.is_empty() {
                String::new()
            } else {
                format!("redcap_v{version}/")
            };
            record.url = Some(format!(
                "{base}/{prefix}DataEntry/record_home.php?pid={pid}&id={id}"
            ));
        }
        let mut events: Vec<String> = Vec::new();
        let mut observations = Vec::new();
        let mut dags: Vec<String> = Vec::new();
        for row in rows {
            let event = row
                .get("redcap_event_name")
                .map(plain)
                .filter(|s| !s.is_empty());
            let instance = match row.get("redcap_repeat_instance") {
                None | Some(Value::Null) => None,
                Some(Value::Number(n)) => n.as_i64(),
                Some(Value::String(s)) if s.is_empty() => None,
                Some(Value::String(s)) => Some(
                    s.trim()
                        .parse::<i64>()
                        .map_err(|_| format!("redcap_repeat_instance {s:?} is not an integer"))?,
                ),
                Some(other) => {
                    return Err(format!("redcap_repeat_instance {other} is not an integer"));
                }
            };
            if let Some(e) = &event
                && !events.contains(e)
            {
                events.push(e.clone());
            }
            if let Some(d) = row
                .get("redcap_data_access_group")
                .map(plain)
                .filter(|s| !s.is_empty())
                && !dags.contains(&d)
            {
                dags.push(d);
            }
            for (col, value) in row {
                let raw = plain(value);
                if raw.is_empty() || col.starts_with("redcap_") || col == dict.record_id_field() {
                    continue;
                }
                if let Some(mut obs) = dict.observation(col, &raw) {
                    obs.event = event.clone();
                    obs.instance = instance;
                    observations.push(obs);
                }
            }
        }
        if !events.is_empty() {
            record.description = Some(format!("Events: {}", events.join(", ")));
            record
                .attributes
                .insert("events".into(), Value::from(events));
        }
        if !dags.is_empty() {
            record
                .attributes
                .insert("data_access_groups".into(), Value::from(dags));
        }
        record
            .attributes
            .insert("rows".into(), Value::from(rows.len()));
        Ok(Entity {
            record,
            observations,
        })
    }
}

/// The decoding of REDCap's answers without a server, for the fuzz targets of `fuzz/`:
/// whatever the bytes, it returns.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    fn connector() -> Option<&'static RedcapConnector> {
        static CONNECTOR: std::sync::OnceLock<Option<RedcapConnector>> = std::sync::OnceLock::new();
        CONNECTOR
            .get_or_init(|| {
                let config = serde_json::from_value::<RedcapConfig>(
                    serde_json::json!({"url": "http://127.0.0.1:9/api/"}),
                )
                .ok()?;
                Some(RedcapConnector {
                    name: "redcap".into(),
                    url: reqwest::Url::parse("http://127.0.0.1:9/api/").ok()?,
                    token: "T".into(),
                    config,
                    http: HttpClient::for_source("redcap", 1, 0, 1).ok()?,
                })
            })
            .as_ref()
    }

    /// Reads `data` as a data dictionary and as records typed by it, as a sync does.
    pub fn decode(data: &[u8]) {
        let Ok(doc) = serde_json::from_slice::<Value>(data) else {
            return;
        };
        let rows: Vec<Map<String, Value>> = doc
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_object().cloned())
            .collect();
        let Ok(dict) = Dictionary::new(&rows) else {
            return;
        };
        for row in &rows {
            for (col, v) in row {
                if let Some(raw) = v.as_str() {
                    let _ = dict.observation(col, raw);
                }
            }
        }
        let Some(redcap) = connector() else {
            return;
        };
        let _ = redcap.entity(
            &dict,
            "1",
            &rows,
            "P",
            "1",
            "14.5.10",
            "http://127.0.0.1:9/",
        );
        let _ = looks_like_version(&String::from_utf8_lossy(data));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connector() -> RedcapConnector {
        RedcapConnector {
            name: "clinic".into(),
            url: reqwest::Url::parse("http://127.0.0.1:9/api/").expect("url"),
            token: "T".into(),
            config: serde_json::from_value(serde_json::json!({"url": "http://127.0.0.1:9/api/"}))
                .expect("config"),
            http: HttpClient::new("clinic", crossdex_http_client::HttpSettings::default())
                .expect("client"),
        }
    }

    #[test]
    fn only_a_version_is_taken_for_record_urls() {
        for v in ["14.5.10", "9.1.3", "13.7"] {
            assert!(looks_like_version(v), "{v}");
        }
        for v in [
            "",
            "<html>error</html>",
            "14",
            "14.5.10/../../x",
            "1.2.3.4.5",
            "v14.5",
        ] {
            assert!(!looks_like_version(v), "{v}");
        }
    }

    #[test]
    fn a_record_that_cannot_be_read_is_rejected_with_its_reason() {
        let rows: Vec<Map<String, Value>> = [serde_json::json!({"record_id": "record_id", "field_name": "record_id", "field_type": "text"})]
            .into_iter()
            .map(|v| v.as_object().cloned().expect("object"))
            .collect();
        let dict = Dictionary::new(&rows).expect("dictionary");
        let row = serde_json::json!({"record_id": "7", "redcap_event_name": "baseline_arm_1",
                                      "redcap_repeat_instrument": "meds", "redcap_repeat_instance": "two"});
        let err = connector()
            .entity(
                &dict,
                "7",
                &[row.as_object().cloned().expect("object")],
                "P",
                "1",
                "",
                "http://x",
            )
            .expect_err("rejected");
        assert!(
            err.contains("redcap_repeat_instance") && err.contains("two"),
            "{err}"
        );
    }

    #[test]
    fn a_token_is_never_required_inline() {
        let e = RedcapFactory
            .build(SourceContext {
                name: "clinic".into(),
                config: serde_json::json!({"type": "redcap", "url": "http://127.0.0.1:9/api/"}),
                base_dir: PathBuf::from("."),
            })
            .err()
            .expect("no token");
        let msg = e.to_string();
        assert!(
            msg.contains("token_file") && msg.contains("CROSSDEX__SOURCES__"),
            "{msg}"
        );
    }

    #[test]
    fn deletions_are_read_from_details_or_action() {
        assert_eq!(
            deleted_record("Deleted Record 42", Some("record_id = '0042'")),
            Some("0042".into())
        );
        assert_eq!(deleted_record("Deleted Record 42", None), Some("42".into()));
        assert_eq!(
            web_base(&reqwest::Url::parse("https://r.org/redcap/api/").expect("url")),
            "https://r.org/redcap"
        );
    }
}
