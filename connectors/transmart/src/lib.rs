//! The tranSMART connector: studies, their concept tree, patients and observations of a
//! tranSMART server, through its REST API v2.
//!
//! It takes a token from the configured OpenID Connect token endpoint (password or
//! client-credentials grant), sends it as a bearer on every call and fetches a new one
//! when it expires or is refused. Observations come as one hypercube per study (the API
//! has no paging): cells are decoded by index into the dimension elements, and grouped
//! into one observation set per patient. A study whose hypercube has not changed since
//! the last sync (same content hash) is not decoded again; patients and sets that
//! disappear are deleted by comparing key sets.
//!
//! It must not reach the store or any other system; it speaks HTTP through
//! `crossdex-http` only.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use crossdex_http::{HttpClient, HttpError, parse_url, secret, source_config};
use crossdex_model::{
    Capabilities, CheckReport, Checkpoint, Connector, ConnectorError, ConnectorFactory, Entity,
    Observation, Page, PageSink, Record, Rejection, SourceContext, SyncMode, SyncOutcome,
    SyncRequest, global_id,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
/// `[sources.<name>]` of `type = "transmart"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransmartConfig {
    /// The API root, e.g. `https://transmart.example.org/transmart`.
    pub url: String,
    /// The OpenID Connect token endpoint (Keycloak: `.../realms/<realm>/protocol/openid-connect/token`).
    pub token_url: String,
    pub client_id: String,
    /// With `password`, the password grant; without, the client-credentials grant.
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    /// For the client-credentials grant (or a confidential client).
    pub client_secret: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    /// Studies to index [default: every study the account sees].
    pub studies: Option<Vec<String>>,
    /// The `subjectIds` key holding the subject code [default SUBJ_ID].
    #[serde(default = "default_subject_id")]
    pub subject_id_key: String,
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
    #[serde(default = "crossdex_http::default_retries")]
    pub retries: usize,
    #[serde(default = "default_concurrency")]
    pub max_concurrency: usize,
}

fn default_subject_id() -> String {
    "SUBJ_ID".into()
}
fn default_timeout() -> u64 {
    300
}
fn default_concurrency() -> usize {
    2
}

/// Builds `transmart` connectors.
#[derive(Debug, Default)]
pub struct TransmartFactory;

impl ConnectorFactory for TransmartFactory {
    fn system(&self) -> &'static str {
        "transmart"
    }

    fn example_config(&self) -> &'static str {
        r#"# A tranSMART server (API v2) behind an OpenID Connect token endpoint.
[sources.warehouse]
type = "transmart"
url = "https://transmart.example.org"
token_url = "https://keycloak.example.org/realms/transmart/protocol/openid-connect/token"
client_id = "transmart-client"
username = "crossdex"
# A file holding the password, or CROSSDEX__SOURCES__WAREHOUSE__PASSWORD.
password_file = "secrets/transmart.password"
# Only these studies [default: all the account sees].
# studies = ["NEURO_BIOMARKERS"]
"#
    }

    fn build(&self, context: SourceContext) -> Result<Box<dyn Connector>, ConnectorError> {
        let config: TransmartConfig = source_config(&context.config)?;
        let url = parse_url("url", config.url.trim_end_matches('/'))?;
        let token_url = parse_url("token_url", &config.token_url)?;
        let password = match (&config.password, &config.password_file) {
            (None, None) => None,
            (p, f) => Some(secret(
                "password",
                p.as_deref(),
                f.as_deref(),
                &context.base_dir,
            )?),
        };
        let client_secret = match (&config.client_secret, &config.client_secret_file) {
            (None, None) => None,
            (p, f) => Some(secret(
                "client_secret",
                p.as_deref(),
                f.as_deref(),
                &context.base_dir,
            )?),
        };
        match (&config.username, &password, &client_secret) {
            (Some(_), Some(_), _) | (None, None, Some(_)) => {}
            _ => {
                return Err(ConnectorError::Config {
                    key: "password".into(),
                    reason: "give `username` with `password` (or `password_file`) for the password grant, \
                             or `client_secret` alone for the client-credentials grant"
                        .into(),
                });
            }
        }
        let http = HttpClient::for_source(
            &context.name,
            config.timeout_s,
            config.retries,
            config.max_concurrency,
        )?;
        Ok(Box::new(TransmartConnector {
            name: context.name,
            base: url.as_str().trim_end_matches('/').to_owned(),
            token_url,
            password,
            client_secret,
            config,
            http,
            token: Mutex::new(None),
        }))
    }
}

pub struct TransmartConnector {
    name: String,
    base: String,
    token_url: reqwest::Url,
    password: Option<String>,
    client_secret: Option<String>,
    config: TransmartConfig,
    http: HttpClient,
    token: Mutex<Option<(String, Instant)>>,
}

/// Per study: the hypercube's content hash and the global ids it produced.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    studies: BTreeMap<String, StudyState>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StudyState {
    hash: String,
    ids: Vec<String>,
}

fn ts(v: &Value) -> Option<DateTime<Utc>> {
    let s = v.as_str()?;
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
                .ok()
                .map(|t| Utc.from_utc_datetime(&t))
        })
}

fn text(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

impl TransmartConnector {
    async fn token(&self, renew: bool) -> Result<String, ConnectorError> {
        if !renew
            && let Some((t, until)) = self.token.lock().unwrap_or_else(|e| e.into_inner()).clone()
            && Instant::now() < until
        {
            return Ok(t);
        }
        let mut form: Vec<(&str, &str)> = vec![("client_id", self.config.client_id.as_str())];
        match (&self.config.username, &self.password) {
            (Some(u), Some(p)) => {
                form.extend([
                    ("grant_type", "password"),
                    ("username", u.as_str()),
                    ("password", p.as_str()),
                ]);
            }
            _ => form.push(("grant_type", "client_credentials")),
        }
        if let Some(cs) = &self.client_secret {
            form.push(("client_secret", cs.as_str()));
        }
        let answer: Value = self
            .http
            .json(|c| c.post(self.token_url.clone()).form(&form))
            .await
            .map_err(|e| match e.status() {
                Some(400 | 401 | 403) => ConnectorError::Auth(format!(
                    "the token endpoint {} refused the credentials ({})",
                    crossdex_http::redact_url(&self.token_url),
                    e.status().unwrap_or_default()
                )),
                _ => e.into_connector(),
            })?;
        let token = answer
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| ConnectorError::Protocol("no access_token in the token answer".into()))?
            .to_owned();
        // Renew a little before the announced expiry.
        let life = answer
            .get("expires_in")
            .and_then(Value::as_u64)
            .unwrap_or(300);
        let until = Instant::now() + Duration::from_secs(life.saturating_sub(30).max(10));
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = Some((token.clone(), until));
        Ok(token)
    }

    async fn call(&self, path: &str, body: Option<&Value>) -> Result<Value, ConnectorError> {
        let url = format!("{}{path}", self.base);
        for attempt in 0..2 {
            let token = self.token(attempt > 0).await?;
            let r = self
                .http
                .json::<Value>(|c| {
                    let req = match body {
                        Some(b) => c.post(&url).json(b),
                        None => c.get(&url),
                    };
                    req.bearer_auth(&token)
                })
                .await;
            match r {
                Err(HttpError::Status { status: 401, .. }) if attempt == 0 => {}
                other => return other.map_err(HttpError::into_connector),
            }
        }
        Err(ConnectorError::Auth(format!(
            "{} keeps refusing fresh tokens",
            self.base
        )))
    }

    fn subject(&self, patient: &Value) -> Option<String> {
        patient
            .get("subjectIds")
            .and_then(|m| m.get(&self.config.subject_id_key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// Records of one study: the study, its concepts, its patients and one observation
    /// set per patient, decoded from the hypercube.
    fn study_entities(
        &self,
        study: &Value,
        tree: &[Value],
        cube: &Value,
    ) -> Result<(Vec<Entity>, Vec<Rejection>), ConnectorError> {
        let sid = text(study, "studyId");
        let study_gid = global_id(&self.name, "study", &sid);
        let mut out = Vec::new();
        let mut rejected = Vec::new();
        let mut sr = Record::new(&self.name, "transmart", "study", &sid, &sid);
        sr.project = Some(sid.clone());
        sr.url = Some(format!("{}/v2/studies/{}", self.base, text(study, "id")));
        let concepts: Vec<&Value> = tree
            .iter()
            .filter(|n| n.get("conceptCode").is_some())
            .collect();
        sr.description = Some(format!(
            "tranSMART study {sid}; concepts: {}",
            concepts
                .iter()
                .map(|c| text(c, "fullName"))
                .collect::<Vec<_>>()
                .join("; ")
        ));
        out.push(Entity {
            record: sr,
            observations: Vec::new(),
        });
        for c in &concepts {
            let code = text(c, "conceptCode");
            let mut cr = Record::new(
                &self.name,
                "transmart",
                "concept",
                &format!("{sid}/{code}"),
                &text(c, "name"),
            );
            cr.parent_id = Some(study_gid.clone());
            cr.project = Some(sid.clone());
            cr.description = Some(text(c, "fullName"));
            cr.attributes
                .insert("type".into(), c.get("type").cloned().unwrap_or(Value::Null));
            out.push(Entity {
                record: cr,
                observations: Vec::new(),
            });
        }
        let units: BTreeMap<String, String> = concepts
            .iter()
            .filter_map(|c| {
                Some((
                    text(c, "conceptCode"),
                    c.pointer("/metadata/unit")?.as_str()?.to_owned(),
                ))
            })
            .collect();

        // Decode: indexes point into dimensionElements, in declaration order of the
        // non-inline dimensions; inline ones sit in `inlineDimensions`.
        let decls = cube
            .get("dimensionDeclarations")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                ConnectorError::Protocol(format!(
                    "{}: a hypercube without dimensionDeclarations",
                    self.base
                ))
            })?;
        let indexed: Vec<String> = decls
            .iter()
            .filter(|d| !is_inline(d))
            .map(|d| text(d, "name"))
            .collect();
        let inline: Vec<String> = decls
            .iter()
            .filter(|d| is_inline(d))
            .map(|d| text(d, "name"))
            .collect();
        let elements = cube
            .get("dimensionElements")
            .cloned()
            .unwrap_or(Value::Null);
        let element = |dim: &str, idx: &Value| -> Option<Value> {
            let i = idx.as_u64()? as usize;
            elements.get(dim)?.get(i).cloned()
        };
        let mut sets: BTreeMap<String, (Value, Vec<Observation>)> = BTreeMap::new();
        for (n, cell) in cube
            .get("cells")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let idx = cell
                .get("dimensionIndexes")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let at = |dim: &str| -> Option<Value> {
                let pos = indexed.iter().position(|d| d == dim)?;
                element(dim, idx.get(pos)?)
            };
            let Some(patient) = at("patient") else {
                rejected.push(Rejection {
                    native_id: None,
                    reason: format!("{sid}: cell {n} has no patient"),
                });
                continue;
            };
            let Some(subject) = self.subject(&patient) else {
                rejected.push(Rejection {
                    native_id: None,
                    reason: format!(
                        "{sid}: patient {} has no subjectIds.{}",
                        text(&patient, "id"),
                        self.config.subject_id_key
                    ),
                });
                continue;
            };
            let Some(concept) = at("concept") else {
                rejected.push(Rejection {
                    native_id: Some(subject),
                    reason: format!("{sid}: cell {n} has no concept"),
                });
                continue;
            };
            let code = text(&concept, "conceptCode");
            let mut o = match (
                cell.get("numericValue").and_then(Value::as_f64),
                cell.get("stringValue").and_then(Value::as_str),
            ) {
                (Some(x), _) => Observation::number(code.clone(), x, x.to_string()),
                (None, Some(s)) => Observation::text(code.clone(), s),
                (None, None) => continue, // an empty observation
            };
            o.label = Some(text(&concept, "name"));
            o.unit = units.get(&code).cloned();
            let visit = at("visit");
            let trial_visit = at("trial visit");
            o.event = trial_visit
                .as_ref()
                .map(|t| text(t, "relTimeLabel"))
                .filter(|s| !s.is_empty())
                .or_else(|| {
                    visit
                        .as_ref()
                        .and_then(|v| v.pointer("/encounterIds/VISIT_ID"))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                });
            let inline_vals = cell
                .get("inlineDimensions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            o.observed_at = inline
                .iter()
                .position(|d| d == "start time")
                .and_then(|p| inline_vals.get(p))
                .and_then(ts)
                .or_else(|| visit.as_ref().and_then(|v| v.get("startDate")).and_then(ts));
            sets.entry(subject)
                .or_insert_with(|| (patient.clone(), Vec::new()))
                .1
                .push(o);
        }
        for (subject, (patient, obs)) in sets {
            let key = format!("{sid}/{subject}");
            let mut pr = Record::new(&self.name, "transmart", "patient", &key, &subject);
            pr.parent_id = Some(study_gid.clone());
            pr.project = Some(sid.clone());
            pr.subject_key = Some(subject.clone());
            let mut demo = Vec::new();
            for k in ["sex", "age", "race", "birthDate"] {
                let v = text(&patient, k);
                if !v.is_empty() {
                    demo.push(format!("{k}: {v}"));
                    pr.attributes
                        .insert(k.into(), patient.get(k).cloned().unwrap_or(Value::Null));
                }
            }
            pr.description = Some(format!("Patient {subject} of {sid}; {}", demo.join(", ")));
            let mut pobs = Vec::new();
            if let Some(sex) = patient.get("sex").and_then(Value::as_str) {
                pobs.push(Observation::text("sex", sex).with_label("Sex"));
            }
            if let Some(age) = patient.get("age").and_then(Value::as_f64) {
                pobs.push(Observation::number("age", age, age.to_string()).with_label("Age"));
            }
            out.push(Entity {
                record: pr,
                observations: pobs,
            });
            let mut set = Record::new(
                &self.name,
                "transmart",
                "observation set",
                &key,
                &format!("{subject} in {sid}"),
            );
            set.parent_id = Some(global_id(&self.name, "patient", &key));
            set.project = Some(sid.clone());
            set.subject_key = Some(subject.clone());
            set.description = Some(format!("{} observations of {subject} in {sid}", obs.len()));
            out.push(Entity {
                record: set,
                observations: obs,
            });
        }
        Ok((out, rejected))
    }
}

fn is_inline(d: &Value) -> bool {
    // `true` from the server, `"true"` in some mocks.
    matches!(d.get("inline"), Some(Value::Bool(true)))
        || d.get("inline").and_then(Value::as_str) == Some("true")
}

fn flatten(nodes: &[Value], out: &mut Vec<Value>) {
    for n in nodes {
        out.push(n.clone());
        if let Some(children) = n.get("children").and_then(Value::as_array) {
            flatten(children, out);
        }
    }
}

#[async_trait]
impl Connector for TransmartConnector {
    fn source(&self) -> &str {
        &self.name
    }

    fn system(&self) -> &'static str {
        "transmart"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { incremental: true }
    }

    async fn check(&self) -> Result<CheckReport, ConnectorError> {
        let v = self.call("/v2/studies", None).await?;
        let ids: Vec<String> = v
            .get("studies")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|s| text(s, "studyId"))
            .collect();
        Ok(CheckReport {
            summary: format!(
                "tranSMART at {}: token accepted; studies {}",
                self.base,
                ids.join(", ")
            ),
        })
    }

    async fn sync(
        &self,
        request: SyncRequest,
        sink: &mut dyn PageSink,
    ) -> Result<SyncOutcome, ConnectorError> {
        let previous: Option<State> = crossdex_http::resume(&request);
        let mode = if previous.is_some() {
            SyncMode::Incremental
        } else {
            SyncMode::Full
        };
        let prev = previous.unwrap_or_default();
        let mut state = State::default();
        let studies = self.call("/v2/studies", None).await?;
        let mut list: Vec<Value> = studies
            .get("studies")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(wanted) = &self.config.studies {
            let all: Vec<String> = list.iter().map(|s| text(s, "studyId")).collect();
            if let Some(missing) = wanted.iter().find(|w| !all.contains(w)) {
                return Err(ConnectorError::Config {
                    key: "studies".into(),
                    reason: format!(
                        "study {missing:?} is not on {}; visible: {}",
                        self.base,
                        all.join(", ")
                    ),
                });
            }
            list.retain(|s| wanted.contains(&text(s, "studyId")));
        }
        let tree = self.call("/v2/tree_nodes", None).await?;
        let mut nodes = Vec::new();
        flatten(
            tree.get("tree_nodes")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[]),
            &mut nodes,
        );
        for study in &list {
            let sid = text(study, "studyId");
            let constraint = json!({"type": "study_name", "studyId": sid});
            // One hypercube per study: the API has no paging, so memory is bounded by the
            // largest study, not by the warehouse.
            let cube = self
                .call(
                    "/v2/observations",
                    Some(&json!({"type": "clinical", "constraint": constraint})),
                )
                .await?;
            let study_nodes: Vec<Value> = nodes
                .iter()
                .filter(|n| text(n, "studyId") == sid)
                .cloned()
                .collect();
            let h = format!(
                "{:016x}",
                xxhash_rust::xxh3::xxh3_64(
                    format!(
                        "{study}\u{1}{}\u{1}{cube}",
                        Value::from(study_nodes.clone())
                    )
                    .as_bytes()
                )
            );
            if mode == SyncMode::Incremental
                && let Some(old) = prev.studies.get(&sid)
                && old.hash == h
            {
                state.studies.insert(sid, old.clone());
                continue;
            }
            let (entities, rejected) = self.study_entities(study, &study_nodes, &cube)?;
            // The decoded hypercube is no longer needed while the store takes the page.
            drop(cube);
            let ids: Vec<String> = entities.iter().map(|e| e.record.id.clone()).collect();
            let mut deletions = Vec::new();
            if let Some(old) = prev.studies.get(&sid) {
                let now: std::collections::HashSet<&String> = ids.iter().collect();
                deletions = old
                    .ids
                    .iter()
                    .filter(|i| !now.contains(i))
                    .cloned()
                    .collect();
            }
            state.studies.insert(sid, StudyState { hash: h, ids });
            sink.page(Page {
                upserts: entities,
                deletions,
                rejected,
            })
            .await?;
        }
        if mode == SyncMode::Incremental {
            let gone: Vec<String> = prev
                .studies
                .iter()
                .filter(|(s, _)| !state.studies.contains_key(*s))
                .flat_map(|(_, st)| st.ids.clone())
                .collect();
            if !gone.is_empty() {
                sink.page(Page {
                    deletions: gone,
                    ..Page::default()
                })
                .await?;
            }
        }
        Ok(SyncOutcome {
            mode,
            checkpoint: Some(Checkpoint(
                serde_json::to_value(&state).unwrap_or(Value::Null),
            )),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_is_read_as_a_boolean_or_a_string() {
        assert!(is_inline(&json!({"inline": true})));
        assert!(is_inline(&json!({"inline": "true"})));
        assert!(!is_inline(&json!({"name": "concept"})));
        assert!(ts(&json!("2016-03-29T09:00:00Z")).is_some());
    }
}
