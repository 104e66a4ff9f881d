use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::Entity;

/// Whether a sync re-reads everything or only what changed since the last checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// Everything the source holds is read; what was not seen is deleted.
    Full,
    /// Only changes since the checkpoint are read; the rest is kept as it was.
    Incremental,
}

impl SyncMode {
    /// `full` or `incremental`.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::Full => "full",
            SyncMode::Incremental => "incremental",
        }
    }
}

/// An opaque position in a source, chosen by its connector (a timestamp, a cursor, a
/// map of content hashes). The store commits it together with the data it covers.
///
/// It is kept as the JSON text the connector wrote, shared rather than copied: the
/// checkpoint of a large source (a hash per object) takes megabytes as a JSON tree,
/// and the engine only stores it and hands it back. In a manifest it is a JSON string;
/// a checkpoint written as a JSON value by older versions is read too.
#[derive(Clone, PartialEq, Eq)]
pub struct Checkpoint(Arc<str>);

impl Checkpoint {
    /// The checkpoint of a connector's state.
    pub fn of<T: Serialize>(state: &T) -> Result<Checkpoint, serde_json::Error> {
        Ok(Checkpoint(serde_json::to_string(state)?.into()))
    }

    /// The connector's state back, or why it cannot be read (e.g. a checkpoint of an
    /// older shape).
    pub fn read<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.0)
    }
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOWN: usize = 200;
        match self.0.char_indices().nth(SHOWN) {
            None => write!(f, "Checkpoint({})", self.0),
            Some((cut, _)) => write!(
                f,
                "Checkpoint({}... ({} bytes))",
                &self.0[..cut],
                self.0.len()
            ),
        }
    }
}

impl Serialize for Checkpoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Checkpoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(text) => Checkpoint(text.into()),
            legacy => Checkpoint(legacy.to_string().into()),
        })
    }
}

/// What the engine asks of a connector.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    /// The mode the engine would like. A connector that cannot honour
    /// [`SyncMode::Incremental`] runs a full sync and says so in [`SyncOutcome::mode`].
    pub mode: SyncMode,
    /// The checkpoint committed by the last successful sync of this source, if any.
    pub checkpoint: Option<Checkpoint>,
}

/// What a connector reports at the end of a sync.
#[derive(Debug, Clone)]
pub struct SyncOutcome {
    /// The mode actually run. After a full sync the store deletes every entity of the
    /// source that no page mentioned.
    pub mode: SyncMode,
    /// The checkpoint to hand back at the next sync.
    pub checkpoint: Option<Checkpoint>,
}

/// An item the connector could not turn into an entity. It is counted and its reason
/// recorded in `sync_runs`; the sync goes on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    /// The native id, when it could be read.
    pub native_id: Option<String>,
    /// Why it was rejected, naming the offending field or position.
    pub reason: String,
}

/// One batch of changes from a source. Connectors push pages as they read them so
/// memory stays bounded whatever the size of the source. Serialisable so a page
/// waiting for the writer can be spooled to disk instead of held in memory.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Page {
    /// Entities created or modified (or, in a full sync, simply present).
    pub upserts: Vec<Entity>,
    /// Global ids of entities deleted at the source.
    pub deletions: Vec<String>,
    /// Items that could not be parsed.
    pub rejected: Vec<Rejection>,
}

impl Page {
    /// Whether the page carries nothing.
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.deletions.is_empty() && self.rejected.is_empty()
    }
}

/// Failure of the engine side to take a page (disk full, index error). A connector
/// returns it as [`ConnectorError::Sink`] and stops.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub Box<dyn std::error::Error + Send + Sync>);

/// Where a connector pushes its pages. Implemented by the engine.
#[async_trait]
pub trait PageSink: Send {
    /// Takes one page. Returns when the page is written (not yet visible: a sync
    /// becomes visible all at once when the engine commits it).
    async fn page(&mut self, page: Page) -> Result<(), SinkError>;
}

/// The result of [`Connector::check`], shown by `crossdex doctor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    /// A one-line description of what was reached, e.g. "3 projects visible".
    pub summary: String,
}

/// What a connector can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// Whether incremental syncs are supported.
    pub incremental: bool,
}

/// Errors of a connector. Messages are lowercase, name the offending thing, and never
/// contain credentials.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The source's configuration is wrong.
    #[error("invalid configuration: `{key}`: {reason}")]
    Config {
        /// The configuration key, relative to the source's table.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The source refused the credentials.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The source could not be reached (connection refused, timeout, DNS).
    #[error("source unreachable: {0}")]
    Unreachable(String),
    /// The source answered something the connector cannot use as a whole (a status
    /// or a body that makes the sync impossible). Single bad items are rejections.
    #[error("unexpected answer from source: {0}")]
    Protocol(String),
    /// A local file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The engine failed to take a page.
    #[error("cannot store page: {0}")]
    Sink(#[from] SinkError),
}

impl ConnectorError {
    /// A stable snake_case code for APIs and `sync_runs`.
    pub fn code(&self) -> &'static str {
        match self {
            ConnectorError::Config { .. } => "invalid_config",
            ConnectorError::Auth(_) => "auth_failed",
            ConnectorError::Unreachable(_) => "source_unreachable",
            ConnectorError::Protocol(_) => "source_protocol",
            ConnectorError::Io { .. } => "io_error",
            ConnectorError::Sink(_) => "store_error",
        }
    }
}

/// A running connection to one configured source.
#[async_trait]
pub trait Connector: Send + Sync {
    /// The configured source name.
    fn source(&self) -> &str;

    /// The system this connector speaks (`xnat`, `redcap`, ..., `files`).
    fn system(&self) -> &'static str;

    /// What this connector supports.
    fn capabilities(&self) -> Capabilities;

    /// Checks that the source is reachable and the credentials work, reading as
    /// little as possible.
    async fn check(&self) -> Result<CheckReport, ConnectorError>;

    /// Reads the source and pushes its changes into `sink`, page by page.
    ///
    /// Pages must be pushed as they are read, not collected first. An error aborts
    /// the sync: nothing of it becomes visible and the previous state stays.
    async fn sync(
        &self,
        request: SyncRequest,
        sink: &mut dyn PageSink,
    ) -> Result<SyncOutcome, ConnectorError>;
}

/// What a factory gets to build a connector for one configured source.
#[derive(Debug, Clone)]
pub struct SourceContext {
    /// The configured source name (the key under `[sources]`).
    pub name: String,
    /// The source's configuration table, `type` key included.
    pub config: serde_json::Value,
    /// The folder relative paths in the configuration are resolved against: the
    /// folder of the config file.
    pub base_dir: PathBuf,
}

/// Builds connectors of one system from configuration. One factory per connector
/// crate; the binary lists them all in one registry.
pub trait ConnectorFactory: Send + Sync {
    /// The `type` value that selects this connector in the configuration.
    fn system(&self) -> &'static str;

    /// A commented TOML example of a source table, used by `crossdex init` and the docs.
    fn example_config(&self) -> &'static str;

    /// Validates the configuration and builds the connector. Nothing is contacted yet.
    fn build(&self, context: SourceContext) -> Result<Box<dyn Connector>, ConnectorError>;
}
