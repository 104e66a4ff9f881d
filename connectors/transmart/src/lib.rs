//! The tranSMART connector: studies, their concept tree, patients and observations of a
//! tranSMART server, through its REST API v2.
//!
//! It takes a token from the configured OpenID Connect token endpoint (password or
//! client-credentials grant), sends it as a bearer on every call and fetches a new one
//! when it expires or is refused. The API has no paging, so observations are asked for
//! per study in batches of patients, each answered as one hypercube: cells are decoded
//! by index into the dimension elements, and grouped into one observation set per
//! patient. Each patient's records carry a content hash in the checkpoint: an
//! incremental sync hands over only patients whose records changed, and deletes those
//! the study no longer lists.
//!
//! It must not reach the store or any other system; it speaks HTTP through
//! `crossdex-http-client` only.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use crossdex_http_client::{HttpClient, HttpError, at_least_one, parse_url, secret, source_config};
use crossdex_model::{
    Capabilities, CheckReport, Checkpoint, Connector, ConnectorError, ConnectorFactory, Entity,
    Observation, Page, PageSink, Record, Rejection, SourceContext, SyncMode, SyncOutcome,
    SyncRequest, global_id,
};
use serde::de::DeserializeOwned;
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
    #[serde(default = "crossdex_http_client::default_retries")]
    pub retries: usize,
    #[serde(default = "default_concurrency")]
    pub max_concurrency: usize,
    /// Patients whose observations are asked for in one request [default 500]: what
    /// bounds memory, since the API hands a selection over as one hypercube.
    #[serde(default = "default_patients_per_request")]
    pub patients_per_request: usize,
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
fn default_patients_per_request() -> usize {
    500
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
        at_least_one("patients_per_request", config.patients_per_request)?;
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

/// What an incremental sync compares against, per study.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    studies: BTreeMap<String, StudyState>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StudyState {
    /// Content hash of the study and its concept tree.
    hash: String,
    /// Global ids of the study and concept records.
    ids: Vec<String>,
    /// Per subject key, the content hash of its patient and observation-set records.
    /// Required, so that a checkpoint of the older per-study shape is not read and the
    /// next sync is a full one.
    patients: BTreeMap<String, String>,
}

/// The part of a `/v2/patients` answer the connector needs.
#[derive(Debug, Deserialize)]
struct PatientList {
    patients: Vec<PatientRef>,
}

#[derive(Debug, Deserialize)]
struct PatientRef {
    id: i64,
}

/// One subject's records in a study: the patient, then its observation set.
struct Decoded {
    subject: String,
    entities: Vec<Entity>,
}

/// The global ids of a subject's two records in a study.
fn patient_ids(source: &str, sid: &str, subject: &str) -> [String; 2] {
    let key = format!("{sid}/{subject}");
    [
        global_id(source, "patient", &key),
        global_id(source, "observation set", &key),
    ]
}

fn content_hash(value: &impl Serialize) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes))
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
                    crossdex_http_client::redact_url(&self.token_url),
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

    async fn call<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, ConnectorError> {
        let url = format!("{}{path}", self.base);
        for attempt in 0..2 {
            let token = self.token(attempt > 0).await?;
            let r = self
                .http
                .json::<T>(|c| {
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

    /// The study's own record and one per concept, with the concepts' units.
    fn study_records(
        &self,
        study: &Value,
        tree: &[Value],
    ) -> (Vec<Entity>, BTreeMap<String, String>) {
        let sid = text(study, "studyId");
        let study_gid = global_id(&self.name, "study", &sid);
        let mut out = Vec::new();
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
        (out, units)
    }

    /// The patients of one hypercube and one observation set per patient.
    fn patient_records(
        &self,
        sid: &str,
        units: &BTreeMap<String, String>,
        cube: &Value,
    ) -> Result<(Vec<Decoded>, Vec<Rejection>), ConnectorError> {
        let study_gid = global_id(&self.name, "study", sid);
        let mut out = Vec::new();
        let mut rejected = Vec::new();
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
            pr.project = Some(sid.to_owned());
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
            let patient_entity = Entity {
                record: pr,
                observations: pobs,
            };
            let mut set = Record::new(
                &self.name,
                "transmart",
                "observation set",
                &key,
                &format!("{subject} in {sid}"),
            );
            set.parent_id = Some(global_id(&self.name, "patient", &key));
            set.project = Some(sid.to_owned());
            set.subject_key = Some(subject.clone());
            set.description = Some(format!("{} observations of {subject} in {sid}", obs.len()));
            out.push(Decoded {
                subject,
                entities: vec![
                    patient_entity,
                    Entity {
                        record: set,
                        observations: obs,
                    },
                ],
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
        let v: Value = self.call("/v2/studies", None).await?;
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
        let previous: Option<State> = crossdex_http_client::resume(&request);
        let mode = if previous.is_some() {
            SyncMode::Incremental
        } else {
            SyncMode::Full
        };
        let prev = previous.unwrap_or_default();
        let mut state = State::default();
        let studies: Value = self.call("/v2/studies", None).await?;
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
        // Units are metadata tags, which the server leaves out unless asked.
        let tree: Value = self.call("/v2/tree_nodes?tags=true", None).await?;
        let mut nodes = Vec::new();
        flatten(
            tree.get("tree_nodes")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[]),
            &mut nodes,
        );
        let batch = self.config.patients_per_request;
        for study in &list {
            let sid = text(study, "studyId");
            let old = prev.studies.get(&sid);
            let study_nodes: Vec<Value> = nodes
                .iter()
                .filter(|n| text(n, "studyId") == sid)
                .cloned()
                .collect();
            let (header, units) = self.study_records(study, &study_nodes);
            let mut st = StudyState {
                hash: content_hash(&(study, &study_nodes)),
                ids: header.iter().map(|e| e.record.id.clone()).collect(),
                patients: BTreeMap::new(),
            };
            let mut page = Page::default();
            match old {
                Some(old) if old.hash == st.hash => {}
                _ => {
                    if let Some(old) = old {
                        let now: HashSet<&String> = st.ids.iter().collect();
                        page.deletions
                            .extend(old.ids.iter().filter(|i| !now.contains(i)).cloned());
                    }
                    page.upserts = header;
                }
            }

            // The API has no paging: one request per batch of patients keeps each
            // hypercube, and so memory, bounded whatever the study's size.
            let study_constraint = json!({"type": "study_name", "studyId": sid});
            let patients: PatientList = self
                .call(
                    "/v2/patients",
                    Some(&json!({ "constraint": study_constraint })),
                )
                .await?;
            let mut ids: Vec<i64> = patients.patients.into_iter().map(|p| p.id).collect();
            ids.sort_unstable();
            ids.dedup();
            for chunk in ids.chunks(batch) {
                let constraint = json!({"type": "and", "args": [
                    study_constraint,
                    {"type": "patient_set", "patientIds": chunk},
                ]});
                let cube: Value = self
                    .call(
                        "/v2/observations",
                        Some(&json!({"type": "clinical", "constraint": constraint})),
                    )
                    .await?;
                let (decoded, rejected) = self.patient_records(&sid, &units, &cube)?;
                // Not held while the store takes the page.
                drop(cube);
                page.rejected.extend(rejected);
                for d in decoded {
                    let h = content_hash(&d.entities);
                    if old.and_then(|o| o.patients.get(&d.subject)) != Some(&h) {
                        page.upserts.extend(d.entities);
                    }
                    st.patients.insert(d.subject, h);
                }
                sink.page(std::mem::take(&mut page)).await?;
            }
            if let Some(old) = old {
                for subject in old.patients.keys() {
                    if !st.patients.contains_key(subject) {
                        page.deletions
                            .extend(patient_ids(&self.name, &sid, subject));
                    }
                }
            }
            if !page.is_empty() {
                sink.page(page).await?;
            }
            state.studies.insert(sid, st);
        }
        if mode == SyncMode::Incremental {
            let mut gone = Vec::new();
            for (sid, st) in &prev.studies {
                if !state.studies.contains_key(sid) {
                    gone.extend(st.ids.iter().cloned());
                    for subject in st.patients.keys() {
                        gone.extend(patient_ids(&self.name, sid, subject));
                    }
                }
            }
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
            checkpoint: Checkpoint::of(&state).ok(),
        })
    }
}

/// The decoding of tranSMART's answers without a server, for the fuzz targets of
/// `fuzz/`: whatever the bytes, it returns.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    fn connector() -> Option<&'static TransmartConnector> {
        static CONNECTOR: std::sync::OnceLock<Option<TransmartConnector>> =
            std::sync::OnceLock::new();
        CONNECTOR
            .get_or_init(|| {
                let config = serde_json::from_value::<TransmartConfig>(serde_json::json!({
                    "url": "http://127.0.0.1:9",
                    "token_url": "http://127.0.0.1:9/token",
                    "client_secret": "s"
                }))
                .ok()?;
                Some(TransmartConnector {
                    name: "transmart".into(),
                    base: "http://127.0.0.1:9".into(),
                    token_url: reqwest::Url::parse("http://127.0.0.1:9/token").ok()?,
                    password: None,
                    client_secret: Some("s".into()),
                    config,
                    http: HttpClient::for_source("transmart", 1, 0, 1).ok()?,
                    token: Mutex::new(None),
                })
            })
            .as_ref()
    }

    /// Reads `data` as a tree of nodes and as an observations hypercube, as a sync does.
    pub fn decode(data: &[u8]) {
        let Ok(doc) = serde_json::from_slice::<Value>(data) else {
            return;
        };
        let Some(tm) = connector() else {
            return;
        };
        let mut nodes = Vec::new();
        flatten(
            doc.get("tree_nodes")
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice),
            &mut nodes,
        );
        let (_, units) = tm.study_records(&doc, &nodes);
        let _ = tm.patient_records("S", &units, &doc);
        let _ = tm.subject(&doc);
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
