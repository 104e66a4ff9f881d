//! crossdex's application layer: the one door to the engine for every front end (the
//! CLI, the HTTP API, the terminal UI).
//!
//! It owns what a user can ask of crossdex: loading and validating the configuration
//! and the connector registry, the saved-query catalog, opening the query engine with
//! its settings, sync orchestration (the runner, then subject linking once sources
//! settle, with progress as events on a channel), and typed answers (status, search
//! with facets, subject and record views, the link report) that serialize with stable
//! field names: `--format json` of the CLI and the HTTP API show the same shapes.
//! Errors are [`ServiceError`]s with a stable code, a kind and an HTTP status.
//!
//! A [`Service`] opened once sees every commit made after it (by a sync in the same
//! process or another) without being reopened; a query in progress keeps the state it
//! started on. Every query and search takes a [`QueryControl`]: a time limit and a
//! cancellation handle; dropping its future stops the work.
//!
//! Every answer is read for a [`Principal`]: the local user (everything) unless a front
//! end calls [`Service::acting_as`] with an API token's, whose actions each method
//! checks and whose scope (sources, projects, sensitive access) the query engine
//! enforces where it reads. API tokens, the keyed-hash key and the audit log live in
//! the data directory (`access/`, `audit/`).
//!
//! It must not print, parse command lines or speak HTTP: front ends do. Front ends
//! must not reach past it to the store, the writer or a snapshot.

#![warn(missing_docs)]

mod access;
mod archive;
mod audit;
mod catalogue;
pub mod config;
mod delta;
pub mod documents;
mod error;
mod linking;
mod progress;
pub mod registry;
mod saved;
mod search;
mod status;
mod subject;
mod sync;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossdex_query::{EngineSettings, QueryEngine};
use crossdex_store::CommitMark;

pub use crate::access::{
    Action, CreatedToken, Limits, NewToken, Principal, Scope, TokenInfo, parse_duration,
};
pub use crate::archive::{ArchiveOptions, ArchivePart, ArchiveReport};
pub use crate::audit::{AuditEntry, AuditFilter};
pub use crate::catalogue::{
    CatalogueSettings, Creator, DATACITE_NS, DATACITE_SCHEMA, Dataset, DatasetCounts, Funding,
    HarvestEntry, Identifier, MissingProperty, Related, Stewarded, datacite_element, datacite_json,
    datacite_xml, dublin_core_element, dublin_core_xml, parse_size, system_name, utc_seconds,
};
pub use crate::config::{Config, ConfigError, default_data_dir};
pub use crate::delta::{DeltaReport, DeltaTableReport};
pub use crate::error::{ErrorCode, ErrorKind, ServiceError};
pub use crate::linking::{
    AmbiguousKey, Conflict, KeyRef, LinkReport, LinkSummary, SingleSystemSubject, SourceLinks,
};
pub use crate::progress::{RunProgress, RunState};
pub use crate::search::{
    Bucket, Facets, MAX_LIMIT as MAX_SEARCH_LIMIT, SearchFilters, SearchHit, SearchRequest,
    SearchResult,
};
pub use crate::status::{RunSummary, SourceStatus, Status};
pub use crate::subject::{
    RecordLink, RecordObservation, RecordSummary, RecordView, SubjectFilter, SubjectKey,
    SubjectList, SubjectRecords, SubjectSummary, SubjectView, TimelineEntry,
};
pub use crate::sync::{
    DoctorCheck, DoctorReport, EventSender, Forgotten, PlannedRun, Stop, SyncEvent, SyncOutcome,
    SyncRequest,
};
pub use crossdex_query::ReadSet;
pub use crossdex_query::{
    BatchStream, OutputFormat, ParamKind, QueryOutput, RecordBatch, ScalarValue, SchemaRef,
    VisitSettings,
};
pub use tokio_util::sync::CancellationToken;

/// Result of the service.
pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// The configuration file read when none is named.
pub const DEFAULT_CONFIG: &str = "crossdex.toml";

/// How to open a [`Service`].
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// The configuration file; `None`: [`DEFAULT_CONFIG`] in the working directory.
    pub config: Option<PathBuf>,
    /// Whether a missing configuration file is an error. Without one, commands that
    /// only read the data directory still work, with the built-in saved queries.
    pub config_required: bool,
    /// The data directory, overriding the configuration's `data_dir`.
    pub data_dir: Option<PathBuf>,
    /// The time limit of every query and search without one of its own.
    pub query_timeout: Option<Duration>,
}

/// Limits of one query or search.
#[derive(Debug, Clone, Default)]
pub struct QueryControl {
    /// Stop after this long with [`ErrorCode::QueryTimeout`]; `None`: the service's
    /// default.
    pub timeout: Option<Duration>,
    /// Cancelling it stops the query with [`ErrorCode::Cancelled`].
    pub cancel: CancellationToken,
}

impl QueryControl {
    /// A control with a time limit.
    pub fn with_timeout(timeout: Duration) -> QueryControl {
        QueryControl {
            timeout: Some(timeout),
            ..QueryControl::default()
        }
    }
}

/// The application: cheap to clone, shared by every request of a front end.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
    /// Who asks: every answer is read within its scope.
    principal: Arc<access::Principal>,
}

struct Inner {
    config: Option<Arc<Config>>,
    data_dir: PathBuf,
    saved: Vec<crossdex_query::SavedQuery>,
    settings: EngineSettings,
    query_timeout: Option<Duration>,
    /// The engine over the latest commit seen, with the mark of that commit, for each
    /// scope that asked lately.
    current: Mutex<Engines>,
    /// The API tokens of the data directory.
    tokens: access::Tokens,
    /// The audit log of API requests.
    audit: audit::AuditLog,
    /// The keyed-hash key, read (or created) once.
    hash_key: std::sync::OnceLock<Vec<u8>>,
    /// States kept for search cursors.
    pins: Mutex<Vec<Pinned>>,
    /// Every sync's progress, for front ends that poll.
    board: Arc<progress::Board>,
    /// The running scheduler's queue of jobs, while `run_schedule` runs.
    jobs: Mutex<Option<tokio::sync::mpsc::Sender<crossdex_sync::Job>>>,
    /// The whole catalogue at the commit it was read at: every OAI-PMH page asks for
    /// it, and it only changes with a commit.
    catalogue: Mutex<Option<CachedCatalogue>>,
}

/// The catalogue and the commit it was read at.
type CachedCatalogue = (Option<CommitMark>, Arc<Vec<catalogue::Dataset>>);

/// The engine of each scope that asked lately, over the commit it last saw.
type Engines =
    std::collections::HashMap<crossdex_query::ReadScope, (Option<CommitMark>, Arc<QueryEngine>)>;

/// A state a search cursor reads, kept for a while.
struct Pinned {
    id: u64,
    since: std::time::Instant,
    engine: Arc<QueryEngine>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("data_dir", &self.inner.data_dir)
            .field("principal", &self.principal.name)
            .field("config", &self.inner.config.as_ref().map(|c| &c.path))
            .finish()
    }
}

impl Service {
    /// Loads the configuration (validating every source's table) and the saved
    /// queries; opens nothing in the data directory yet.
    pub fn open(options: OpenOptions) -> Result<Service> {
        let path = options
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
        let config = if options.config_required || options.config.is_some() || path.exists() {
            Some(Arc::new(Config::load(&path)?))
        } else {
            None
        };
        Self::with_config(config, options.data_dir, options.query_timeout)
    }

    /// A service over an already loaded configuration.
    pub fn with_config(
        config: Option<Arc<Config>>,
        data_dir: Option<PathBuf>,
        query_timeout: Option<Duration>,
    ) -> Result<Service> {
        let data_dir = data_dir
            .or_else(|| config.as_ref().and_then(|c| c.data_dir.clone()))
            .unwrap_or_else(default_data_dir);
        let saved = saved::load(config.as_ref().and_then(|c| c.queries_dir.as_deref()))?;
        let settings = EngineSettings {
            visits: config
                .as_ref()
                .map(|c| c.visit_settings())
                .unwrap_or_default(),
            sensitive: config
                .as_ref()
                .map_or_else(crossdex_store::Sensitive::starting, |c| c.sensitive.clone()),
            // Read when a scope first needs it (`hash_key`).
            hash_key: crossdex_query::HashKey::default(),
            scope: crossdex_query::ReadScope::full(),
        };
        let server = config
            .as_ref()
            .map(|c| c.server.clone())
            .unwrap_or_default();
        Ok(Service {
            inner: Arc::new(Inner {
                config,
                saved,
                settings,
                query_timeout,
                current: Mutex::new(std::collections::HashMap::new()),
                pins: Mutex::new(Vec::new()),
                board: Arc::default(),
                jobs: Mutex::new(None),
                catalogue: Mutex::new(None),
                tokens: access::Tokens::new(&data_dir),
                audit: audit::AuditLog::new(
                    &data_dir,
                    server.audit_max_bytes.unwrap_or(64 << 20),
                    server.audit_keep_days.unwrap_or(365),
                ),
                data_dir,
                hash_key: std::sync::OnceLock::new(),
            }),
            principal: Arc::new(access::Principal::local()),
        })
    }

    /// The configuration, when one was loaded.
    pub fn config(&self) -> Option<&Config> {
        self.inner.config.as_deref()
    }

    /// The configuration, or the error that says one is needed for `what`.
    pub fn require_config(&self, what: &str) -> Result<&Config> {
        self.config().ok_or_else(|| {
            ServiceError::new(
                ErrorCode::ConfigNotFound,
                format!(
                    "{what} needs a configuration file: create one with `crossdex init` or pass --config"
                ),
            )
        })
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// Bytes the data directory's files take (index, tables, spool), for metrics.
    pub fn disk_usage(&self) -> u64 {
        fn walk(dir: &Path) -> u64 {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return 0;
            };
            entries
                .flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => walk(&e.path()),
                    Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
                    _ => 0,
                })
                .sum()
        }
        walk(&self.inner.data_dir)
    }

    /// The engine over the latest commit: reopened when a commit happened since the
    /// last call, shared otherwise. A directory without an index is
    /// [`ErrorCode::NoIndex`], or an empty state when `or_empty`.
    fn engine_at(&self, or_empty: bool) -> Result<Arc<QueryEngine>> {
        let dir = &self.inner.data_dir;
        let scope = self.principal.scope.read_scope();
        // Read before opening: a commit in between makes the next call reopen, never
        // keeps an older state.
        let mark = CommitMark::read(dir);
        let mut current = self.inner.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((seen, engine)) = current.get(&scope)
            && *seen == mark
            && (mark.is_some() || or_empty)
        {
            return Ok(engine.clone());
        }
        let mut settings = self.inner.settings.clone();
        if !scope.is_full(&settings.sensitive) {
            settings.hash_key = crossdex_query::HashKey(self.hash_key()?);
        }
        settings.scope = scope.clone();
        let engine = Arc::new(if or_empty {
            QueryEngine::open_or_empty(dir, settings)?
        } else {
            QueryEngine::open_with(dir, settings)?
        });
        // Engines of scopes not asked for lately go: a handful of tokens, not thousands.
        if current.len() >= 32 {
            current.retain(|_, (seen, _)| *seen == mark);
            if current.len() >= 32 {
                current.clear();
            }
        }
        current.insert(scope, (mark, engine.clone()));
        Ok(engine)
    }

    /// The key of the keyed hash of joinable sensitive values: `[privacy]
    /// hash_key_file`, else `access/hash.key` in the data directory, created once.
    fn hash_key(&self) -> Result<Vec<u8>> {
        if let Some(key) = self.inner.hash_key.get() {
            return Ok(key.clone());
        }
        let key = self.load_hash_key()?;
        Ok(self.inner.hash_key.get_or_init(|| key).clone())
    }

    fn load_hash_key(&self) -> Result<Vec<u8>> {
        let configured = self.config().and_then(|c| c.privacy.hash_key_file.clone());
        let path = configured
            .clone()
            .unwrap_or_else(|| self.inner.data_dir.join("access").join("hash.key"));
        match std::fs::read(&path) {
            Ok(key) if key.len() >= 16 => return Ok(key),
            Ok(_) => {
                return Err(ServiceError::new(
                    ErrorCode::InvalidConfig,
                    format!("{}: a hash key needs 16 bytes at least", path.display()),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && configured.is_none() => {}
            Err(e) => {
                return Err(ServiceError::new(
                    ErrorCode::InvalidConfig,
                    format!("cannot read the hash key {}: {e}", path.display()),
                ));
            }
        }
        let mut key = [0u8; 32];
        aws_lc_rs::rand::fill(&mut key)
            .map_err(|e| ServiceError::internal("drawing a hash key", e))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)
            .map_err(|e| ServiceError::internal("creating the access folder", e))?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        match options.open(&path) {
            Ok(mut f) => {
                use std::io::Write;
                f.write_all(&key)
                    .and_then(|()| f.sync_all())
                    .map_err(|e| ServiceError::internal("writing the hash key", e))?;
                Ok(key.to_vec())
            }
            // Another process created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                std::fs::read(&path).map_err(|e| ServiceError::internal("reading the hash key", e))
            }
            Err(e) => Err(ServiceError::internal("writing the hash key", e)),
        }
    }

    /// The same service, answering for `principal`: every read within its scope.
    pub fn acting_as(&self, principal: Principal) -> Service {
        Service {
            inner: self.inner.clone(),
            principal: Arc::new(principal),
        }
    }

    /// Who this service answers for.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// An error unless the principal may `action`.
    pub fn require(&self, action: Action) -> Result<()> {
        self.principal.require(action)
    }

    /// The caller `secret` (an API token) stands for.
    pub fn authenticate(&self, secret: &str) -> Result<Principal> {
        self.inner.tokens.authenticate(secret)
    }

    /// Whether any API token was ever created for this data directory.
    pub fn has_tokens(&self) -> Result<bool> {
        self.inner.tokens.any()
    }

    /// The API tokens, without their secrets.
    pub fn tokens(&self) -> Result<Vec<TokenInfo>> {
        self.require(Action::Admin)?;
        self.inner.tokens.list()
    }

    /// Creates a token; its secret is in the answer, and nowhere else.
    pub fn create_token(&self, new: NewToken) -> Result<CreatedToken> {
        self.require(Action::Admin)?;
        let max_days = self
            .config()
            .and_then(|c| c.server.max_token_days)
            .unwrap_or(365);
        self.inner.tokens.create(new, max_days)
    }

    /// Derives a token from the caller's own, narrower or equal in scope and limits and
    /// expiring no later: what a portal hands to one of its users. Needs no `admin`
    /// action, only an API token to derive from.
    pub fn derive_token(&self, mut new: NewToken) -> Result<CreatedToken> {
        let caller = &self.principal;
        // API tokens carry limits; the local user and an anonymous loopback caller none.
        if caller.limits.is_none() {
            return Err(ServiceError::new(
                ErrorCode::InvalidParameter,
                "a token is derived from the API token of the request; this request carries none (create tokens with `crossdex token create`)",
            ));
        }
        new.parent = Some(caller.name.clone());
        let max_days = self
            .config()
            .and_then(|c| c.server.max_token_days)
            .unwrap_or(365);
        self.inner.tokens.create(new, max_days)
    }

    /// Revokes token `name` and those derived from it; their names.
    pub fn revoke_token(&self, name: &str) -> Result<Vec<String>> {
        self.require(Action::Admin)?;
        self.inner.tokens.revoke(name)
    }

    /// Appends one line to the audit log.
    pub fn audit(&self, entry: &AuditEntry) -> Result<()> {
        self.inner.audit.append(entry)
    }

    /// The audit log's lines that `filter` keeps, oldest first.
    pub fn audit_entries(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        self.require(Action::Admin)?;
        self.inner.audit.read(filter)
    }

    pub(crate) fn engine(&self) -> Result<Arc<QueryEngine>> {
        self.engine_at(false)
    }

    /// Runs `work` within `control`'s limits.
    pub(crate) async fn bounded<T>(
        &self,
        control: &QueryControl,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let limit = control.timeout.or(self.inner.query_timeout);
        let limited = async {
            match limit {
                Some(limit) => match tokio::time::timeout(limit, work).await {
                    Ok(r) => r,
                    Err(_) => Err(ServiceError::new(
                        ErrorCode::QueryTimeout,
                        format!(
                            "the query ran longer than its limit of {:.1} s and was stopped; narrow it, or raise the limit",
                            limit.as_secs_f64()
                        ),
                    )),
                },
                None => work.await,
            }
        };
        tokio::select! {
            biased;
            () = control.cancel.cancelled() => Err(ServiceError::new(
                ErrorCode::Cancelled,
                "the query was cancelled",
            )),
            r = limited => r,
        }
    }

    /// Runs one read-only SQL statement; `$name` parameters are bound from `params`.
    pub async fn sql(
        &self,
        sql: &str,
        params: Vec<(String, ScalarValue)>,
        control: &QueryControl,
    ) -> Result<QueryOutput> {
        self.require(Action::Sql)?;
        let engine = self.engine()?;
        self.bounded(control, async {
            engine.sql(sql, params).await.map_err(|e| {
                let e = ServiceError::from(e);
                let at = sql_position(sql, &e.message);
                e.at(at)
            })
        })
        .await
    }

    /// Like [`Service::sql`], the rows as a stream of batches as they are computed; the
    /// control bounds the planning, the caller the reading (dropping the stream stops
    /// the query).
    pub async fn sql_stream(
        &self,
        sql: &str,
        params: Vec<(String, ScalarValue)>,
        control: &QueryControl,
    ) -> Result<BatchStream> {
        self.require(Action::Sql)?;
        let engine = self.engine()?;
        self.bounded(control, async {
            engine.sql_stream(sql, params).await.map_err(|e| {
                let e = ServiceError::from(e);
                let at = sql_position(sql, &e.message);
                e.at(at)
            })
        })
        .await
    }

    /// Saved query `name` as a stream of batches, its parameters given as text.
    pub async fn saved_stream(
        &self,
        name: &str,
        values: &[(String, String)],
        control: &QueryControl,
    ) -> Result<BatchStream> {
        self.require(Action::Sql)?;
        let query = crossdex_query::SavedQuery::find(&self.inner.saved, name)?;
        let params = query.bind(values)?;
        let engine = self.engine()?;
        self.bounded(control, async {
            Ok(engine.sql_stream(&query.sql, params).await?)
        })
        .await
    }

    /// The saved queries: the shipped ones and the configuration's `queries_dir`.
    pub fn saved_queries(&self) -> Vec<SavedQueryInfo> {
        self.inner.saved.iter().map(SavedQueryInfo::from).collect()
    }

    /// Runs saved query `name` with `values` (text, typed by its header).
    pub async fn run_saved(
        &self,
        name: &str,
        values: &[(String, String)],
        control: &QueryControl,
    ) -> Result<QueryOutput> {
        self.require(Action::Sql)?;
        let query = crossdex_query::SavedQuery::find(&self.inner.saved, name)?;
        let engine = self.engine()?;
        self.bounded(control, async { Ok(engine.saved(query, values).await?) })
            .await
    }
}

/// A saved query as front ends list it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SavedQueryInfo {
    /// Its name, for `--saved NAME`.
    pub name: String,
    /// What it answers.
    pub description: String,
    /// Its parameters, typed.
    pub params: Vec<SavedParam>,
    /// Its SQL.
    pub sql: String,
}

/// A parameter of a saved query.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SavedParam {
    /// Its name, `$name` in the SQL.
    pub name: String,
    /// `text`, `number` or `integer`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Its default, as text; none: required.
    pub default: Option<String>,
    /// What it means.
    pub description: String,
}

impl From<&crossdex_query::SavedQuery> for SavedQueryInfo {
    fn from(q: &crossdex_query::SavedQuery) -> Self {
        SavedQueryInfo {
            name: q.name.clone(),
            description: q.description.clone(),
            sql: q.sql.clone(),
            params: q
                .params
                .iter()
                .map(|p| SavedParam {
                    name: p.name.clone(),
                    kind: match p.kind {
                        ParamKind::Text => "text",
                        ParamKind::Number => "number",
                        ParamKind::Integer => "integer",
                    },
                    default: p.default.clone(),
                    description: p.description.clone(),
                })
                .collect(),
        }
    }
}

/// Where in `sql` the SQL parser stopped, as a 1-based character position, from the
/// `Line: L, Column: C` its messages end with (the last character when it ran out of
/// text).
fn sql_position(sql: &str, message: &str) -> Option<usize> {
    if message.contains("found: EOF") {
        return Some(sql.trim_end().chars().count());
    }
    let rest = &message[message.rfind("Line: ")? + "Line: ".len()..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let line: usize = line.trim().parse().ok()?;
    let column: usize = rest
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()?;
    let before: usize = sql
        .split('\n')
        .take(line.checked_sub(1)?)
        .map(|l| l.chars().count() + 1)
        .sum();
    Some(before + column)
}

/// The rows of `sql` decoded into `T` through their JSON rendering, so typed answers
/// take the field names of the query's columns.
pub(crate) async fn rows<T: serde::de::DeserializeOwned>(
    engine: &QueryEngine,
    sql: &str,
    params: &[(&str, &str)],
) -> Result<Vec<T>> {
    let out = engine.sql(sql, text_params(params)).await?;
    let text = out
        .render(OutputFormat::Json)
        .map_err(|e| ServiceError::internal("reading the query's rows", e))?;
    serde_json::from_str(&text).map_err(|e| ServiceError::internal("decoding the query's rows", e))
}

pub(crate) fn text_params(params: &[(&str, &str)]) -> Vec<(String, ScalarValue)> {
    params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), ScalarValue::Utf8(Some((*v).to_owned()))))
        .collect()
}

#[cfg(test)]
mod tests;
