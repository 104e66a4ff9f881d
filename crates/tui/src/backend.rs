//! Where the UI's answers come from: the service on the local data directory (full
//! access, as the CLI), or a crossdex server's HTTP API with a token (remote mode: the
//! token's scope, enforced by the server where it reads).

use std::collections::BTreeMap;
use std::time::Duration;

use crossdex_service::{
    LinkReport, QueryControl, RecordView, SavedQueryInfo, SearchFilters, SearchRequest,
    SearchResult, Service, Status, SubjectView,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::app::{Failure, Grid};

/// Rows of a SQL answer the grid keeps; more are counted as truncated.
pub const MAX_GRID_ROWS: usize = 10_000;

/// A crossdex server and the token to reach it with.
#[derive(Clone)]
pub struct Remote {
    http: reqwest::Client,
    /// `https://host/api/v1`, no trailing slash.
    base: String,
    token: String,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("Remote").field("base", &self.base).finish()
    }
}

impl Remote {
    /// A client of the server at `url` (its root or its `/api/v1`), with `token`.
    pub fn new(url: &str, token: &str) -> Result<Remote, String> {
        let url = url.trim_end_matches('/');
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "--server {url}: give an http:// or https:// address"
            ));
        }
        let base = if url.ends_with("/api/v1") {
            url.to_owned()
        } else {
            format!("{url}/api/v1")
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("an HTTP client: {e}"))?;
        Ok(Remote {
            http,
            base,
            token: token.trim().to_owned(),
        })
    }

    /// Where it points, for the tab bar.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, Failure> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| failure("unreachable", format!("{}: {e}", self.base)))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| {
            failure(
                "unreachable",
                format!("{}: the answer was cut: {e}", self.base),
            )
        })?;
        if !status.is_success() {
            // The server's error shape: message, code, position.
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            return Err(Failure {
                code: v["code"].as_str().unwrap_or("http_error").to_owned(),
                message: v["message"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("the server answered {status}")),
                position: v["position"].as_u64().map(|p| p as usize),
            });
        }
        serde_json::from_slice(&body).map_err(|e| {
            failure(
                "bad_answer",
                format!("{}: an answer crossdex cannot read: {e}", self.base),
            )
        })
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.base))
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{path}", self.base))
    }
}

fn failure(code: &str, message: String) -> Failure {
    Failure {
        code: code.to_owned(),
        message,
        position: None,
    }
}

/// One path segment, percent-encoded.
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The source of the UI's answers.
#[derive(Clone)]
pub enum Backend {
    /// The local data directory.
    Local(Service),
    /// A crossdex server.
    Remote(Remote),
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Local(s) => write!(f, "Local({})", s.data_dir().display()),
            Backend::Remote(r) => write!(f, "{r:?}"),
        }
    }
}

impl Backend {
    pub async fn search(&self, request: SearchRequest) -> Result<SearchResult, Failure> {
        match self {
            Backend::Local(s) => Ok(s.search(&request, &QueryControl::default()).await?),
            Backend::Remote(r) => {
                let SearchFilters {
                    source,
                    system,
                    kind,
                    project,
                    subject,
                    ..
                } = request.filters;
                let body = serde_json::json!({
                    "q": request.query, "limit": request.limit,
                    "facets": request.facets.unwrap_or(0),
                    "source": source, "system": system, "kind": kind, "project": project,
                    "subject": subject,
                });
                r.send(r.post("/search").json(&body)).await
            }
        }
    }

    pub async fn record(&self, id: &str) -> Result<RecordView, Failure> {
        match self {
            Backend::Local(s) => Ok(s.record(id, &QueryControl::default()).await?),
            Backend::Remote(r) => r.send(r.get(&format!("/records/{}", segment(id)))).await,
        }
    }

    pub async fn subject(&self, id: &str) -> Result<SubjectView, Failure> {
        match self {
            Backend::Local(s) => Ok(s.subject(id, &QueryControl::default()).await?),
            Backend::Remote(r) => r.send(r.get(&format!("/subjects/{}", segment(id)))).await,
        }
    }

    pub async fn status(&self) -> Result<Status, Failure> {
        match self {
            Backend::Local(s) => Ok(s.status(&QueryControl::default()).await?),
            Backend::Remote(r) => r.send(r.get("/sources")).await,
        }
    }

    pub async fn datasets(&self) -> Result<Vec<crossdex_service::Dataset>, Failure> {
        match self {
            Backend::Local(s) => Ok(s.datasets(&QueryControl::default()).await?),
            Backend::Remote(r) => r.send(r.get("/datasets")).await,
        }
    }

    pub async fn links(&self) -> Result<LinkReport, Failure> {
        match self {
            Backend::Local(s) => Ok(s.link_report(&QueryControl::default()).await?),
            Backend::Remote(r) => r.send(r.get("/link-report")).await,
        }
    }

    /// A statement's rows as the grid shows them, and for local answers the answer
    /// itself (exports write it typed).
    pub async fn sql(
        &self,
        sql: &str,
        control: &QueryControl,
    ) -> Result<(Grid, Option<crossdex_service::QueryOutput>), Failure> {
        match self {
            Backend::Local(s) => local_grid(s.sql(sql, Vec::new(), control).await),
            Backend::Remote(r) => {
                let body = serde_json::json!({"sql": sql, "max_rows": MAX_GRID_ROWS});
                let rows: Value = r
                    .send(
                        r.post("/sql")
                            .header("Accept", "application/json")
                            .json(&body),
                    )
                    .await?;
                Ok((remote_grid(&rows), None))
            }
        }
    }

    /// Saved query `name` with its parameters as text.
    pub async fn saved(
        &self,
        name: &str,
        values: &[(String, String)],
        control: &QueryControl,
    ) -> Result<(Grid, Option<crossdex_service::QueryOutput>), Failure> {
        match self {
            Backend::Local(s) => local_grid(s.run_saved(name, values, control).await),
            Backend::Remote(r) => {
                let params: BTreeMap<&str, &str> = values
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let body = serde_json::json!({"params": params, "max_rows": MAX_GRID_ROWS});
                let rows: Value = r
                    .send(
                        r.post(&format!("/queries/{}", segment(name)))
                            .header("Accept", "application/json")
                            .json(&body),
                    )
                    .await?;
                Ok((remote_grid(&rows), None))
            }
        }
    }

    /// The saved queries, where they can be listed with their parameters (locally).
    pub fn saved_queries(&self) -> Vec<SavedQueryInfo> {
        match self {
            Backend::Local(s) => s.saved_queries(),
            Backend::Remote(_) => Vec::new(),
        }
    }
}

fn local_grid(
    out: crossdex_service::Result<crossdex_service::QueryOutput>,
) -> Result<(Grid, Option<crossdex_service::QueryOutput>), Failure> {
    let out = out?;
    let rows = out
        .text_rows()
        .map_err(|e| failure("internal", format!("the answer could not be shown: {e}")))?;
    let truncated = rows.len() > MAX_GRID_ROWS;
    let grid = Grid {
        columns: out
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect(),
        types: out
            .schema
            .fields()
            .iter()
            .map(|f| f.data_type().to_string())
            .collect(),
        rows: rows
            .into_iter()
            .take(MAX_GRID_ROWS)
            .map(|r| {
                r.into_iter()
                    .map(|c| c.unwrap_or_else(|| "NULL".into()))
                    .collect()
            })
            .collect(),
        truncated,
    };
    Ok((grid, Some(out)))
}

/// The HTTP API's `{columns, rows, truncated}` as a grid.
fn remote_grid(v: &Value) -> Grid {
    let cell = |c: &Value| match c {
        Value::Null => "NULL".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let columns = v["columns"].as_array().cloned().unwrap_or_default();
    Grid {
        columns: columns
            .iter()
            .map(|c| c["name"].as_str().unwrap_or("").to_owned())
            .collect(),
        types: columns
            .iter()
            .map(|c| c["data_type"].as_str().unwrap_or("").to_owned())
            .collect(),
        rows: v["rows"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|r| {
                        r.as_array()
                            .map(|r| r.iter().map(cell).collect())
                            .unwrap_or_default()
                    })
                    .collect()
            })
            .unwrap_or_default(),
        truncated: v["truncated"].as_bool().unwrap_or(false),
    }
}
