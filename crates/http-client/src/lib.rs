//! The HTTP client every connector uses to reach its system.
//!
//! It owns what each connector would otherwise get subtly wrong: connect and request
//! timeouts; retries with exponential backoff and jitter on 429, 5xx, timeouts and
//! connection errors only, honouring `Retry-After`; a limit on requests in flight per
//! source; reading whole bodies and decoding JSON with errors that say where; and logs
//! where secrets never appear (query parameters such as `token` are masked, headers and
//! form bodies are never logged).
//!
//! It must not know any system's API: connectors build their requests (auth included)
//! and decode their pages; this crate sends them. No connector writes a retry loop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use crossdex_model::ConnectorError;
/// The connectors' config helpers, re-exported beside the client they configure.
pub use crossdex_model::config::{
    at_least_one, resume, secret, serde_field, serde_reason, source_config,
};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Client, RequestBuilder, StatusCode};
use tokio::sync::Semaphore;

/// Settings a source may tune (connectors read them from their own config keys).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSettings {
    /// Seconds to wait for a whole answer [default 60].
    pub timeout_s: u64,
    /// Seconds to wait for a connection [default 10].
    pub connect_timeout_s: u64,
    /// Retries after the first attempt, for 429, 5xx, timeouts and lost connections
    /// [default 4].
    pub retries: usize,
    /// Requests in flight at once against this source [default 4].
    pub max_concurrency: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            timeout_s: 60,
            connect_timeout_s: 10,
            retries: 4,
            max_concurrency: 4,
        }
    }
}

/// Why a request failed, with the (redacted) URL it was for.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot reach {url}: {message}")]
    Connect { url: String, message: String },
    #[error("no answer from {url} within {seconds} s")]
    Timeout { url: String, seconds: u64 },
    #[error("{url} answered {status}: {excerpt}")]
    Status {
        url: String,
        status: u16,
        excerpt: String,
        /// From `Retry-After`, when the server sent one.
        retry_after: Option<Duration>,
    },
    #[error("cannot read the answer of {url}: {message}")]
    Body { url: String, message: String },
    #[error("invalid JSON from {url}: {message}")]
    Json { url: String, message: String },
}

impl HttpError {
    fn retryable(&self) -> bool {
        match self {
            HttpError::Connect { .. } | HttpError::Timeout { .. } | HttpError::Body { .. } => true,
            HttpError::Status { status, .. } => *status == 429 || *status >= 500,
            HttpError::Json { .. } => false,
        }
    }

    /// The HTTP status, for a status error.
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// As a connector error: refused credentials become `Auth`, lost connections
    /// `Unreachable`, everything else `Protocol`.
    pub fn into_connector(self) -> ConnectorError {
        match &self {
            HttpError::Status {
                status: 401 | 403, ..
            } => ConnectorError::Auth(self.to_string()),
            HttpError::Connect { .. } | HttpError::Timeout { .. } => {
                ConnectorError::Unreachable(self.to_string())
            }
            _ => ConnectorError::Protocol(self.to_string()),
        }
    }
}

impl From<HttpError> for ConnectorError {
    fn from(e: HttpError) -> Self {
        e.into_connector()
    }
}

/// A successful answer, body read in full.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The redacted URL, for messages.
    pub url: String,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The shared client of one source.
#[derive(Clone)]
pub struct HttpClient {
    client: Client,
    settings: HttpSettings,
    permits: Arc<Semaphore>,
    source: String,
}

const SECRET_PARAMS: [&str; 8] = [
    "token",
    "password",
    "secret",
    "client_secret",
    "api_key",
    "apikey",
    "access_token",
    "key",
];

/// The URL with secret-looking query parameters masked.
pub fn redact_url(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_password(None);
    if u.query().is_some() {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let masked = SECRET_PARAMS.contains(&k.to_ascii_lowercase().as_str());
                (
                    k.into_owned(),
                    if masked {
                        "***".to_owned()
                    } else {
                        v.into_owned()
                    },
                )
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?;
    // Seconds; the HTTP-date form is rare from APIs and treated as "soon".
    Some(Duration::from_secs(v.trim().parse().unwrap_or(1)))
}

impl HttpClient {
    pub fn new(source: &str, settings: HttpSettings) -> Result<HttpClient, ConnectorError> {
        if settings.max_concurrency == 0 {
            return Err(ConnectorError::Config {
                key: "max_concurrency".into(),
                reason: "must be at least 1".into(),
            });
        }
        let client = Client::builder()
            .timeout(Duration::from_secs(settings.timeout_s.max(1)))
            .connect_timeout(Duration::from_secs(settings.connect_timeout_s.max(1)))
            .user_agent(concat!("crossdex/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConnectorError::Config {
                key: "url".into(),
                reason: format!("cannot build an HTTP client: {e}"),
            })?;
        Ok(HttpClient {
            client,
            permits: Arc::new(Semaphore::new(settings.max_concurrency)),
            settings,
            source: source.to_owned(),
        })
    }

    /// A client from a connector config's `timeout_s`, `retries` and `max_concurrency`.
    pub fn for_source(
        source: &str,
        timeout_s: u64,
        retries: usize,
        max_concurrency: usize,
    ) -> Result<HttpClient, ConnectorError> {
        HttpClient::new(
            source,
            HttpSettings {
                timeout_s,
                retries,
                max_concurrency,
                ..HttpSettings::default()
            },
        )
    }

    pub fn settings(&self) -> &HttpSettings {
        &self.settings
    }

    /// Sends the request `build` makes (called again for each retry), and reads the
    /// whole answer. Only 2xx answers are `Ok`.
    pub async fn send(
        &self,
        build: impl Fn(&Client) -> RequestBuilder,
    ) -> Result<Answer, HttpError> {
        self.send_with(build, Ok).await
    }

    /// `send`, then `decode` the answer, both inside the retry loop: a decode error
    /// that is a transport failure in disguise (a body cut off mid-JSON, see
    /// [`decode_json`]) is retried.
    pub async fn send_with<T>(
        &self,
        build: impl Fn(&Client) -> RequestBuilder,
        decode: impl Fn(Answer) -> Result<T, HttpError>,
    ) -> Result<T, HttpError> {
        let attempt = || async {
            let request = build(&self.client)
                .build()
                .map_err(|e| HttpError::Connect {
                    url: e.url().map(redact_url).unwrap_or_default(),
                    message: e.to_string(),
                })?;
            let url = redact_url(request.url());
            let method = request.method().clone();
            let _permit = self
                .permits
                .acquire()
                .await
                .map_err(|_| HttpError::Connect {
                    url: url.clone(),
                    message: "client closed".into(),
                })?;
            let started = Instant::now();
            let response = self
                .client
                .execute(request)
                .await
                .map_err(|e| self.transport_error(&url, e, false))?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response
                .bytes()
                .await
                .map_err(|e| self.transport_error(&url, e, true))?;
            tracing::debug!(
                source = %self.source,
                "{method} {url} -> {} in {} ms, {} bytes",
                status.as_u16(),
                started.elapsed().as_millis(),
                body.len()
            );
            if !status.is_success() {
                let text = String::from_utf8_lossy(&body);
                let excerpt: String = text.trim().chars().take(200).collect();
                return Err(HttpError::Status {
                    url,
                    status: status.as_u16(),
                    excerpt,
                    retry_after: retry_after(&headers),
                });
            }
            decode(Answer {
                status,
                headers,
                body,
                url,
            })
        };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(30))
            .with_max_times(self.settings.retries)
            .with_jitter();
        let source = self.source.clone();
        attempt
            .retry(backoff)
            .when(HttpError::retryable)
            .adjust(|e, planned| match e {
                HttpError::Status {
                    retry_after: Some(wait),
                    ..
                } => planned.map(|_| (*wait).min(Duration::from_secs(120))),
                _ => planned,
            })
            .notify(|e, wait| {
                tracing::warn!(source = %source, "{e}; retrying in {} ms", wait.as_millis());
            })
            .await
    }

    /// A failure below HTTP: a timeout, or a connection lost before (`Connect`) or while
    /// (`Body`) reading the answer. reqwest's message names the URL with its secrets; the
    /// redacted one is used instead.
    fn transport_error(&self, url: &str, e: reqwest::Error, reading: bool) -> HttpError {
        let url = url.to_owned();
        if e.is_timeout() {
            return HttpError::Timeout {
                url,
                seconds: self.settings.timeout_s,
            };
        }
        let message = root_cause(&e.without_url());
        if reading {
            HttpError::Body { url, message }
        } else {
            HttpError::Connect { url, message }
        }
    }

    /// `send`, then the body as JSON. A body that ends mid-JSON was cut off on its
    /// way (a proxy, a lost connection): it is retried like any lost answer.
    pub async fn json<T: serde::de::DeserializeOwned>(
        &self,
        build: impl Fn(&Client) -> RequestBuilder,
    ) -> Result<T, HttpError> {
        self.send_with(build, |a| decode_json(&a)).await
    }
}

/// An answer's body as JSON. A body that ends mid-JSON was cut off on its way (a proxy,
/// a lost connection): it is a lost answer ([`HttpError::Body`], retried), not a bad one.
pub fn decode_json<T: serde::de::DeserializeOwned>(a: &Answer) -> Result<T, HttpError> {
    serde_json::from_slice(&a.body).map_err(|e| {
        if e.is_eof() {
            HttpError::Body {
                url: a.url.clone(),
                message: format!("answer cut off after {} bytes", a.body.len()),
            }
        } else {
            HttpError::Json {
                url: a.url.clone(),
                message: format!("{e} (body of {} bytes)", a.body.len()),
            }
        }
    })
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let m = s.to_string();
        if !msg.contains(&m) {
            msg.push_str(": ");
            msg.push_str(&m);
        }
        cur = s.source();
    }
    msg
}

/// Defaults shared by the connectors' configs (`#[serde(default = "...")]`).
pub fn default_timeout_s() -> u64 {
    60
}
pub fn default_retries() -> usize {
    4
}
pub fn default_max_concurrency() -> usize {
    4
}

/// `value` as a URL, or a config error naming `key`.
pub fn parse_url(key: &str, value: &str) -> Result<reqwest::Url, ConnectorError> {
    // The text is not echoed: a URL may carry a token or a password.
    reqwest::Url::parse(value.trim()).map_err(|e| ConnectorError::Config {
        key: key.to_owned(),
        reason: format!("not a URL ({e}); write it as https://host[:port]/path"),
    })
}

/// Text of an HTML fragment for the full-text index: tags dropped, block ends as line
/// breaks, the common entities decoded, whitespace collapsed.
pub fn html_to_text(html: &str) -> String {
    const BLOCKS: &[&str] = &[
        "p",
        "br",
        "div",
        "li",
        "tr",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "ul",
        "ol",
        "table",
        "thead",
        "tbody",
        "tfoot",
        "caption",
        "blockquote",
        "pre",
        "hr",
        "section",
        "article",
        "header",
        "footer",
        "dt",
        "dd",
        "figcaption",
    ];
    let mut out = String::with_capacity(html.len());
    let mut tag = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match (in_tag, c) {
            (false, '<') => {
                in_tag = true;
                tag.clear();
            }
            (true, '>') => {
                in_tag = false;
                let name = tag
                    .trim_start_matches('/')
                    .split(|c: char| c.is_whitespace() || c == '/')
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                if BLOCKS.contains(&name.as_str()) {
                    out.push('\n');
                } else if matches!(name.as_str(), "td" | "th") {
                    // Cells of a row stay words of their own: `Batch B7`, not `BatchB7`.
                    out.push(' ');
                }
            }
            (true, c) => tag.push(c),
            (false, c) => out.push(c),
        }
    }
    let decoded = decode_entities(&out);
    decoded
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The named entities editors write most, and every numeric one (`&#233;`, `&#xE9;`).
fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let end = rest.find(';').filter(|&e| e <= 10);
        let decoded = end.and_then(|e| {
            let name = &rest[1..e];
            let c = match name {
                "nbsp" => Some(' '),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" | "#39" => Some('\''),
                "amp" => Some('&'),
                _ => name
                    .strip_prefix("#x")
                    .or_else(|| name.strip_prefix("#X"))
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| name.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, e))
        });
        match decoded {
            Some((c, e)) => {
                out.push(c);
                rest = &rest[e + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use crossdex_sim::{Faults, SimOptions, Simulators, System};

    use super::*;

    async fn sims() -> Simulators {
        let opts = SimOptions {
            subjects: 5,
            ..SimOptions::default()
        };
        Simulators::start(&opts, IpAddr::V4(Ipv4Addr::LOCALHOST), 0)
            .await
            .expect("start")
    }

    fn fast() -> HttpSettings {
        HttpSettings {
            timeout_s: 2,
            retries: 3,
            ..HttpSettings::default()
        }
    }

    #[test]
    fn secrets_never_reach_a_logged_url() {
        let u = reqwest::Url::parse("http://u:pw@h/api/?token=ABC&content=record&api_key=k")
            .expect("url");
        let r = redact_url(&u);
        assert!(
            !r.contains("ABC") && !r.contains("pw") && !r.contains("=k"),
            "{r}"
        );
        assert!(r.contains("content=record"), "{r}");
    }

    #[tokio::test]
    async fn server_errors_and_rate_limits_are_retried_then_succeed() {
        let s = sims().await;
        let c = HttpClient::new("t", fast()).expect("client");
        let items = format!("{}/api/v2/items", s.url(System::Elabftw));
        let key = s.credentials(System::Elabftw).token;
        s.set_faults(
            System::Elabftw,
            Faults {
                fail_next: 2,
                fail_status: 503,
                ..Faults::default()
            },
        );
        let a = c
            .send(|c| c.get(&items).header("Authorization", &key))
            .await
            .expect("third try succeeds");
        assert_eq!(a.status, 200);
        s.set_faults(
            System::Elabftw,
            Faults {
                fail_next: 1,
                fail_status: 429,
                retry_after_s: 1,
                ..Faults::default()
            },
        );
        let started = Instant::now();
        c.send(|c| c.get(&items).header("Authorization", &key))
            .await
            .expect("after Retry-After");
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "Retry-After honoured"
        );
        let statuses: Vec<u16> = s
            .requests(System::Elabftw)
            .iter()
            .map(|r| r.status)
            .collect();
        assert_eq!(statuses, [503, 503, 200, 429, 200]);
    }

    #[tokio::test]
    async fn client_errors_and_bad_json_are_not_retried() {
        let s = sims().await;
        let c = HttpClient::new("t", fast()).expect("client");
        let items = format!("{}/api/v2/items", s.url(System::Elabftw));
        let e = c
            .send(|c| c.get(&items).header("Authorization", "wrong"))
            .await
            .expect_err("401");
        assert_eq!(e.status(), Some(401));
        assert!(matches!(e.into_connector(), ConnectorError::Auth(_)));
        let key = s.credentials(System::Elabftw).token;
        s.set_faults(
            System::Elabftw,
            Faults {
                truncate_rate: 1.0,
                ..Faults::default()
            },
        );
        // A body cut off mid-JSON is a lost answer: retried, then named as such.
        let e = c
            .json::<serde_json::Value>(|c| c.get(&items).header("Authorization", &key))
            .await
            .expect_err("cut JSON");
        assert!(e.to_string().contains("answer cut off after"), "{e}");
        assert_eq!(
            s.requests(System::Elabftw).len(),
            1 + 1 + 3,
            "the 401 once, the cut answer with its retries"
        );
        // A whole answer that is not JSON is the server's word: not retried.
        let page = format!("{}/webclient/login/", s.url(System::Omero));
        let e = c
            .json::<serde_json::Value>(|c| c.get(&page))
            .await
            .expect_err("HTML");
        assert!(e.to_string().contains("invalid JSON from http://"), "{e}");
        assert_eq!(s.requests(System::Omero).len(), 1, "one attempt");
    }

    #[tokio::test]
    async fn an_unreachable_source_is_named() {
        let c = HttpClient::new(
            "t",
            HttpSettings {
                retries: 0,
                ..fast()
            },
        )
        .expect("client");
        let e = c
            .send(|c| c.get("http://127.0.0.1:9/x?token=SECRET"))
            .await
            .expect_err("refused");
        let msg = e.to_string();
        assert!(
            msg.contains("cannot reach http://127.0.0.1:9/x") && !msg.contains("SECRET"),
            "{msg}"
        );
        assert!(matches!(e.into_connector(), ConnectorError::Unreachable(_)));
    }

    #[test]
    fn html_becomes_searchable_text() {
        assert_eq!(
            html_to_text("<h1>NfL run</h1><p>12 samples &amp; 2 <b>controls</b></p>"),
            "NfL run\n12 samples & 2 controls"
        );
        assert_eq!(
            html_to_text(
                "<table><tr><th>Batch</th><td>B7</td></tr><tr><td>Vol</td><td>2&#160;mL</td></tr></table>Line<br/>next &eacute; &#xE9;"
            ),
            "Batch B7\nVol 2 mL\nLine\nnext &eacute; \u{e9}"
        );
    }
}
