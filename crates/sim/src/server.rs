//! What every simulator shares: the world, credentials, the request log, fault
//! injection and the `/_sim` admin endpoints.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::cohort::System;
use crate::rng::Rng;
use crate::world::World;

/// What a client needs to log in to one simulator.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Credentials {
    /// Username (XNAT, OMERO, tranSMART); empty where the system uses a token only.
    pub username: String,
    /// Password (XNAT, OMERO, tranSMART).
    pub password: String,
    /// API token (REDCap) or API key (eLabFTW).
    pub token: String,
}

impl Credentials {
    pub(crate) fn for_system(seed: u64, system: System) -> Credentials {
        let mut r = Rng::new(seed, &format!("credentials-{}", system.name()));
        match system {
            System::Redcap => Credentials {
                username: String::new(),
                password: String::new(),
                token: r.hex(16).to_uppercase(),
            },
            System::Elabftw => Credentials {
                username: String::new(),
                password: String::new(),
                token: format!("2-{}", r.hex(42)),
            },
            _ => Credentials {
                username: "crossdex".to_owned(),
                password: format!("{}-{}", system.name(), r.hex(6)),
                token: String::new(),
            },
        }
    }
}

/// Faults a simulator injects into the requests it serves (admin paths excepted).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added to every response, in milliseconds.
    pub latency_ms: u64,
    /// Share of requests answered 500, 502 or 503 (0 to 1).
    pub error_rate: f64,
    /// Share of requests answered 429 with `Retry-After`.
    pub rate_limit_rate: f64,
    /// Seconds announced in `Retry-After` [default 1].
    pub retry_after_s: u64,
    /// Share of responses whose body is cut off halfway.
    pub truncate_rate: f64,
    /// Share of requests that stall for `hang_ms` before answering.
    pub hang_rate: f64,
    /// How long a hanging request stalls [default 120000].
    pub hang_ms: u64,
    /// The next N requests fail with `fail_status`, whatever the rates say.
    pub fail_next: u32,
    /// Status for `fail_next` [default 500]; 429 comes with `Retry-After`.
    pub fail_status: u16,
}

impl Faults {
    /// Sets one fault by name, as given on the command line (`error_rate=0.1`).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let rate = |v: &str| -> Result<f64, String> {
            let x: f64 = v
                .parse()
                .map_err(|_| format!("{key}: expected a number from 0 to 1, got {v:?}"))?;
            if (0.0..=1.0).contains(&x) {
                Ok(x)
            } else {
                Err(format!("{key}: expected a number from 0 to 1, got {v}"))
            }
        };
        let int = |v: &str| -> Result<u64, String> {
            v.parse()
                .map_err(|_| format!("{key}: expected a whole number, got {v:?}"))
        };
        match key {
            "latency_ms" => self.latency_ms = int(value)?,
            "error_rate" => self.error_rate = rate(value)?,
            "rate_limit_rate" => self.rate_limit_rate = rate(value)?,
            "retry_after_s" => self.retry_after_s = int(value)?,
            "truncate_rate" => self.truncate_rate = rate(value)?,
            "hang_rate" => self.hang_rate = rate(value)?,
            "hang_ms" => self.hang_ms = int(value)?,
            "fail_next" => {
                self.fail_next = u32::try_from(int(value)?).map_err(|e| format!("{key}: {e}"))?
            }
            "fail_status" => {
                let s = int(value)?;
                if !(400..=599).contains(&s) {
                    return Err(format!("{key}: expected an HTTP error status, got {s}"));
                }
                self.fail_status = s as u16;
            }
            _ => {
                return Err(format!(
                    "unknown fault {key:?}; known: latency_ms, error_rate, rate_limit_rate, \
                     retry_after_s, truncate_rate, hang_rate, hang_ms, fail_next, fail_status"
                ));
            }
        }
        Ok(())
    }
}

/// One request a simulator served, for tests to read.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RequestRecord {
    pub seq: u64,
    pub method: String,
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// A form body's parameters (secrets masked).
    pub form: Vec<(String, String)>,
    /// The status sent; 0 while the request is still being answered.
    pub status: u16,
    /// The fault injected, if any: `error`, `rate_limit`, `truncated`, `hang`.
    pub fault: Option<&'static str>,
}

impl RequestRecord {
    /// The value of a query or form parameter.
    pub fn param(&self, name: &str) -> Option<String> {
        if let Some((_, v)) = self.form.iter().find(|(k, _)| k == name) {
            return Some(v.clone());
        }
        self.query.as_deref().and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        })
    }
}

pub(crate) struct FaultState {
    pub faults: Faults,
    rng: Rng,
}

/// The state behind one simulator.
pub struct SimState {
    pub system: System,
    pub credentials: Credentials,
    world: Arc<RwLock<World>>,
    log: Mutex<Vec<RequestRecord>>,
    faults: Mutex<FaultState>,
    /// Session ids and tokens handed out, with what they stand for.
    pub(crate) sessions: Mutex<Sessions>,
}

#[derive(Default)]
pub(crate) struct Sessions {
    pub issued: u64,
    pub live: BTreeMap<String, String>,
}

impl Sessions {
    /// A new deterministic secret, remembered with `meaning`.
    pub fn issue(&mut self, seed: u64, system: System, meaning: &str) -> String {
        self.issued += 1;
        let mut r = Rng::new(
            seed,
            &format!("session-{}-{}-{meaning}", system.name(), self.issued),
        );
        let id = r.hex(16).to_uppercase();
        self.live.insert(id.clone(), meaning.to_owned());
        id
    }

    pub fn get(&self, id: &str) -> Option<&str> {
        self.live.get(id).map(String::as_str)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking handler must not take the simulator down with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SimState {
    pub(crate) fn new(system: System, world: Arc<RwLock<World>>, faults: Faults) -> SimState {
        let seed = world.read().unwrap_or_else(|e| e.into_inner()).seed;
        SimState {
            system,
            credentials: Credentials::for_system(seed, system),
            world,
            log: Mutex::new(Vec::new()),
            faults: Mutex::new(FaultState {
                faults,
                rng: Rng::new(seed, &format!("faults-{}", system.name())),
            }),
            sessions: Mutex::new(Sessions::default()),
        }
    }

    pub fn world(&self) -> RwLockReadGuard<'_, World> {
        self.world.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn world_mut(&self) -> RwLockWriteGuard<'_, World> {
        self.world.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn seed(&self) -> u64 {
        self.world().seed
    }

    pub(crate) fn sessions(&self) -> MutexGuard<'_, Sessions> {
        lock(&self.sessions)
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.log).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.log).clear();
    }

    /// Forgets every session and token handed out, as a server restart or a session
    /// timeout would.
    pub fn expire_sessions(&self) {
        self.sessions().live.clear();
    }

    pub fn faults(&self) -> Faults {
        lock(&self.faults).faults.clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        lock(&self.faults).faults = faults;
    }

    fn decide(&self) -> (u64, Decision) {
        let mut st = lock(&self.faults);
        let f = st.faults.clone();
        let latency = f.latency_ms;
        if f.fail_next > 0 {
            st.faults.fail_next -= 1;
            let status = if f.fail_status == 0 {
                500
            } else {
                f.fail_status
            };
            return (latency, Decision::Fail(status));
        }
        let x = st.rng.unit();
        let mut edge = f.error_rate;
        if x < edge {
            let status = [500, 502, 503][st.rng.below(3)];
            return (latency, Decision::Fail(status));
        }
        edge += f.rate_limit_rate;
        if x < edge {
            return (latency, Decision::Fail(429));
        }
        edge += f.truncate_rate;
        if x < edge {
            return (latency, Decision::Truncate);
        }
        edge += f.hang_rate;
        if x < edge {
            let ms = if f.hang_ms == 0 { 120_000 } else { f.hang_ms };
            return (latency, Decision::Hang(ms));
        }
        (latency, Decision::Pass)
    }

    fn retry_after(&self) -> u64 {
        match lock(&self.faults).faults.retry_after_s {
            0 => 1,
            s => s,
        }
    }
}

enum Decision {
    Pass,
    Fail(u16),
    Truncate,
    Hang(u64),
}

const SECRET_PARAMS: [&str; 4] = ["token", "password", "client_secret", "csrfmiddlewaretoken"];

/// Logs each request and injects the configured faults.
async fn observe(State(st): State<Arc<SimState>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if path.starts_with("/_sim") {
        return next.run(req).await;
    }
    let method = req.method().to_string();
    let query = req.uri().query().map(str::to_owned);
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let (req, form) = if is_form {
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, 4 << 20)
            .await
            .unwrap_or_default();
        let form = form_urlencoded::parse(&bytes)
            .map(|(k, v)| {
                let v = if SECRET_PARAMS.contains(&k.as_ref()) {
                    "***".to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        (Request::from_parts(parts, Body::from(bytes)), form)
    } else {
        (req, Vec::new())
    };
    let index = {
        let mut log = lock(&st.log);
        let seq = log.len() as u64 + 1;
        log.push(RequestRecord {
            seq,
            method,
            path,
            query,
            form,
            status: 0,
            fault: None,
        });
        log.len() - 1
    };
    let (latency, decision) = st.decide();
    // Noted now: a hanging request may be dropped by its client before it completes.
    let fault = match decision {
        Decision::Pass => None,
        Decision::Fail(429) => Some("rate_limit"),
        Decision::Fail(_) => Some("error"),
        Decision::Truncate => Some("truncated"),
        Decision::Hang(_) => Some("hang"),
    };
    if let Some(rec) = lock(&st.log).get_mut(index) {
        rec.fault = fault;
    }
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let resp = match decision {
        Decision::Pass => next.run(req).await,
        Decision::Fail(429) => {
            let mut r = (
                StatusCode::TOO_MANY_REQUESTS,
                "Too Many Requests: rate limit exceeded\n",
            )
                .into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(st.retry_after()));
            r
        }
        Decision::Fail(status) => {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = format!(
                "<html><head><title>{code}</title></head><body><h1>{code}</h1></body></html>\n"
            );
            let mut r = (code, body).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html;charset=utf-8"),
            );
            r
        }
        Decision::Truncate => {
            let r = next.run(req).await;
            let is_json = r
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("json"));
            if is_json {
                let (mut parts, body) = r.into_parts();
                let bytes = axum::body::to_bytes(body, usize::MAX)
                    .await
                    .unwrap_or_default();
                let cut: Bytes = bytes.slice(..bytes.len() / 2);
                parts.headers.remove(header::CONTENT_LENGTH);
                Response::from_parts(parts, Body::from(cut))
            } else {
                // Only JSON bodies are cut; a plain-text session id stays whole.
                if let Some(rec) = lock(&st.log).get_mut(index) {
                    rec.fault = None;
                }
                r
            }
        }
        Decision::Hang(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            next.run(req).await
        }
    };
    if let Some(rec) = lock(&st.log).get_mut(index) {
        rec.status = resp.status().as_u16();
    }
    resp
}

#[derive(Deserialize)]
struct AdvanceParams {
    days: Option<u32>,
}

async fn admin_advance(
    State(st): State<Arc<SimState>>,
    Query(p): Query<AdvanceParams>,
) -> Response {
    let days = p.days.unwrap_or(1);
    if days == 0 || days > 3650 {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "days must be from 1 to 3650"})),
        )
            .into_response();
    }
    let mut w = st.world_mut();
    for _ in 0..days {
        w.advance();
    }
    Json(json!({"day": w.day, "now": w.now().to_string()})).into_response()
}

async fn admin_state(State(st): State<Arc<SimState>>) -> Response {
    let w = st.world();
    let sessions = st.sessions().issued;
    Json(json!({
        "system": st.system.name(),
        "seed": w.seed,
        "subjects": w.subjects,
        "persons": w.persons.len(),
        "day": w.day,
        "now": w.now().to_string(),
        "sessions_issued": sessions,
    }))
    .into_response()
}

async fn admin_requests(State(st): State<Arc<SimState>>) -> Response {
    Json(st.requests()).into_response()
}

async fn admin_clear_requests(State(st): State<Arc<SimState>>) -> StatusCode {
    st.clear_requests();
    StatusCode::NO_CONTENT
}

async fn admin_expire_sessions(State(st): State<Arc<SimState>>) -> StatusCode {
    st.expire_sessions();
    StatusCode::NO_CONTENT
}

async fn admin_faults(State(st): State<Arc<SimState>>) -> Response {
    Json(st.faults()).into_response()
}

async fn admin_set_faults(State(st): State<Arc<SimState>>, body: Bytes) -> Response {
    match serde_json::from_slice::<Faults>(&body) {
        Ok(f) => {
            st.set_faults(f.clone());
            Json(f).into_response()
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": format!("invalid faults: {e}")})),
        )
            .into_response(),
    }
}

async fn admin_truth(State(st): State<Arc<SimState>>) -> Response {
    let csv = st.world().truth_csv();
    ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv).into_response()
}

/// Adds the `/_sim` admin routes, the request log and fault injection to a system's
/// router.
pub(crate) fn finish(router: Router<Arc<SimState>>, st: Arc<SimState>) -> Router {
    let admin = Router::new()
        .route("/_sim/advance", post(admin_advance))
        .route("/_sim/state", get(admin_state))
        .route(
            "/_sim/requests",
            get(admin_requests).delete(admin_clear_requests),
        )
        .route("/_sim/faults", get(admin_faults).put(admin_set_faults))
        .route("/_sim/truth", get(admin_truth))
        .route("/_sim/expire-sessions", post(admin_expire_sessions));
    router
        .merge(admin)
        .layer(middleware::from_fn_with_state(st.clone(), observe))
        .with_state(st)
}

/// A JSON response with an explicit content type, as the real servers send it.
pub(crate) fn json_response(
    status: StatusCode,
    content_type: &'static str,
    body: &serde_json::Value,
) -> Response {
    let text = serde_json::to_string(body).unwrap_or_default();
    let mut r = (status, text).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// The base URL the client used, for the absolute links OMERO writes.
pub(crate) fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// A cookie's value from the `Cookie` headers.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Query parameters in order, repeated names kept.
pub(crate) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}
