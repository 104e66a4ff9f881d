//! Who is asking: bearer tokens, per-token limits, and one audit line per request.
//!
//! Once any token exists for the data directory, every route but the probes and the
//! API's own documentation needs one; before, the server listens on loopback only and
//! a request without a token acts as the local user. Handlers get a [`Scoped`] state
//! whose service already answers within the caller's scope: nothing here filters
//! answers, the service reads only what the scope allows.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use crossdex_service::{AuditEntry, ErrorCode, Principal, ServiceError};

use crate::{ApiError, AppState};

/// Routes anyone may call: probes and the API's description.
fn is_public(path: &str) -> bool {
    let rest = path.strip_prefix(crate::PREFIX).unwrap_or(path);
    matches!(rest, "/health" | "/ready" | "/openapi.json" | "/" | "")
}

/// The caller of a request, once its token checked out.
#[derive(Clone)]
pub(crate) struct Caller(pub Arc<Principal>);

/// What a handler tells the audit log about its answer.
#[derive(Clone, Default)]
pub(crate) struct AuditInfo {
    /// Rows or hits answered.
    pub rows: Option<u64>,
    /// Rows of a streamed answer, counted as they are sent: the audit line is written
    /// once the body ends.
    pub sent: Option<Arc<AtomicU64>>,
    /// Tables read.
    pub tables: Vec<String>,
    /// Stored columns read (`table.column`).
    pub columns: Vec<String>,
    /// The query text, and whether it is SQL; logged as a hash.
    pub query: Option<(String, bool)>,
}

impl AuditInfo {
    /// Puts the info on `response`.
    pub(crate) fn attach(self, mut response: Response) -> Response {
        response.extensions_mut().insert(self);
        response
    }
}

/// The server's state with the service acting for the request's caller.
pub(crate) struct Scoped(pub AppState);

impl FromRequestParts<AppState> for Scoped {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(Caller(principal)) = parts.extensions.get::<Caller>().cloned() else {
            return Err(unauthorized());
        };
        Ok(Scoped(AppState {
            service: state.service.acting_as((*principal).clone()),
            ..state.clone()
        }))
    }
}

fn unauthorized() -> ApiError {
    ApiError(ServiceError::new(
        ErrorCode::Unauthorized,
        "a valid API token is needed: send `Authorization: Bearer <token>`; the token may be unknown, expired or revoked",
    ))
}

/// A token's request budget: a token bucket refilled at the token's rate.
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Per-token rate and concurrency.
#[derive(Default)]
pub(crate) struct Limiter {
    buckets: Mutex<HashMap<String, Bucket>>,
    running: Mutex<HashMap<String, u32>>,
}

/// Holds one of a token's concurrent slots until dropped.
struct Slot {
    limiter: Arc<Limiter>,
    name: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut running = self
            .limiter
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = running.get_mut(&self.name) {
            *n = n.saturating_sub(1);
        }
    }
}

impl Limiter {
    /// Seconds to wait before the next request is allowed, or `None`: go.
    fn take(&self, name: &str, per_s: u32) -> Option<u64> {
        let per_s = f64::from(per_s.max(1));
        let burst = per_s * 2.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let b = buckets.entry(name.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * per_s).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            None
        } else {
            Some(((1.0 - b.tokens) / per_s).ceil().max(1.0) as u64)
        }
    }

    fn enter(self: &Arc<Self>, name: &str, max: u32) -> Option<Slot> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let n = running.entry(name.to_owned()).or_insert(0);
        if *n >= max.max(1) {
            return None;
        }
        *n += 1;
        Some(Slot {
            limiter: self.clone(),
            name: name.to_owned(),
        })
    }
}

/// The API token of `request`, if it sends one: `Bearer <token>`, or as Elasticsearch
/// clients send credentials, `ApiKey <base64 of id:token>` or `Basic <base64 of
/// user:token>` (the part after the colon is the token).
fn bearer(request: &Request) -> Option<String> {
    use base64::Engine as _;
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(token.to_owned());
    }
    if scheme.eq_ignore_ascii_case("apikey") || scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(token)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        return Some(match text.split_once(':') {
            Some((_, secret)) => secret.to_owned(),
            None => text,
        });
    }
    None
}

/// Authenticates, limits and audits every request.
pub(crate) async fn guard(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let at = Utc::now();
    let route = format!(
        "{} {}",
        request.method(),
        request
            .extensions()
            .get::<MatchedPath>()
            .map_or("unmatched", |p| p.as_str())
    );
    let path = request.uri().path().to_owned();
    // The OAI-PMH catalogue is public when the configuration says so.
    let public = is_public(&path)
        || (path == "/oai"
            && state
                .service
                .config()
                .is_some_and(|c| c.catalogue.oai_public));
    let principal: Result<Option<Principal>, ServiceError> = match bearer(&request) {
        Some(secret) => state.service.authenticate(&secret).map(Some),
        None if request.headers().contains_key(header::AUTHORIZATION) => Err(ServiceError::new(
            ErrorCode::Unauthorized,
            "the Authorization header must be `Bearer <token>` (or, for Elasticsearch clients, `ApiKey` or `Basic` with the token after the colon)",
        )),
        None => match state.service.has_tokens() {
            // Tokens exist: every request but the public ones needs one.
            Ok(true) => Ok(None),
            // None exist: the server is on loopback; a request acts as the local user.
            Ok(false) => Ok(Some(Principal {
                name: "anonymous".to_owned(),
                ..Principal::local()
            })),
            Err(e) => Err(e),
        },
    };
    let mut slot = None;
    let response = match principal {
        Err(e) if !public => with_challenge(ApiError(e).into_response()),
        Ok(None) if !public => with_challenge(unauthorized().into_response()),
        Err(_) | Ok(None) => next.run(request).await,
        Ok(Some(p)) => {
            let limited = p.limits.map(|l| {
                if let Some(wait) = state.limiter.take(&p.name, l.requests_per_s) {
                    return Err(wait);
                }
                state.limiter.enter(&p.name, l.concurrent).ok_or(1)
            });
            let name = p.name.clone();
            match limited {
                Some(Err(wait)) => {
                    let mut r = ApiError(ServiceError::new(
                        ErrorCode::RateLimited,
                        format!(
                            "token `{name}` is over its request rate or its queries at once; retry after {wait} s"
                        ),
                    ))
                    .into_response();
                    r.headers_mut().insert(
                        header::RETRY_AFTER,
                        HeaderValue::from_str(&wait.to_string())
                            .unwrap_or(HeaderValue::from_static("1")),
                    );
                    return audited(&state, &name, at, &route, r, started, None);
                }
                Some(Ok(s)) => slot = Some(s),
                None => {}
            }
            request.extensions_mut().insert(Caller(Arc::new(p)));
            let r = next.run(request).await;
            return audited(&state, &name, at, &route, r, started, slot);
        }
    };
    let token = if public {
        "anonymous"
    } else {
        "unauthenticated"
    };
    audited(&state, token, at, &route, response, started, None)
}

/// The audit line of a request not yet written: written once, when the answer's body
/// has been sent or dropped. It holds the token's query slot until then, so that a
/// streamed answer counts against the token's concurrent queries while it runs.
struct Pending {
    state: AppState,
    entry: Option<AuditEntry>,
    started: Instant,
    info: AuditInfo,
    _slot: Option<Slot>,
}

impl Pending {
    fn finish(&mut self) {
        let Some(mut entry) = self.entry.take() else {
            return;
        };
        entry.duration_ms = self.started.elapsed().as_millis() as u64;
        entry.rows = self
            .info
            .rows
            .or_else(|| self.info.sent.as_ref().map(|n| n.load(Ordering::Relaxed)));
        if let Err(e) = self.state.service.audit(&entry) {
            tracing::error!(error = %e, detail = e.detail.as_deref().unwrap_or(""), "audit log");
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.finish();
    }
}

/// `r`, audited: at once, or for a streamed answer at the end of its body.
fn audited(
    state: &AppState,
    token: &str,
    at: chrono::DateTime<Utc>,
    route: &str,
    r: Response,
    started: Instant,
    slot: Option<Slot>,
) -> Response {
    let info = r
        .extensions()
        .get::<AuditInfo>()
        .cloned()
        .unwrap_or_default();
    let mut entry = AuditEntry {
        at,
        token: token.to_owned(),
        route: route.to_owned(),
        status: r.status().as_u16(),
        duration_ms: 0,
        rows: None,
        tables: info.tables.clone(),
        columns: info.columns.clone(),
        query_sha256: None,
        query_shape: None,
    };
    if let Some((query, is_sql)) = &info.query {
        entry = entry.with_query(query, *is_sql);
    }
    let streamed = info.sent.is_some();
    let mut pending = Pending {
        state: state.clone(),
        entry: Some(entry),
        started,
        info,
        _slot: slot,
    };
    if !streamed {
        pending.finish();
        return r;
    }
    use futures::StreamExt;
    let (parts, body) = r.into_parts();
    let mut pending = Some(pending);
    // Polled after the last chunk, before the body's end is sent: the line is written
    // by the time the caller has the whole answer. A caller that leaves early drops
    // the body, and `Pending` with it.
    let end = futures::stream::poll_fn(move |_| {
        if let Some(mut p) = pending.take() {
            p.finish();
        }
        std::task::Poll::Ready(None)
    });
    Response::from_parts(
        parts,
        axum::body::Body::from_stream(body.into_data_stream().chain(end)),
    )
}

fn with_challenge(mut r: Response) -> Response {
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"crossdex\""),
    );
    r
}
