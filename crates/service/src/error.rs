//! The one error type of front ends: a stable code, a kind, the HTTP status it maps
//! to, a message a user can act on and, for internal errors, a detail kept for logs.

use serde::Serialize;

/// What kind of failure an error is; decides the CLI's exit code and the HTTP status
/// family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request, query, parameters or configuration are wrong: fix them.
    UserInput,
    /// Missing or insufficient credentials.
    Auth,
    /// What was asked for does not exist.
    NotFound,
    /// The request is valid but clashes with the current state (a busy data
    /// directory, a source still configured).
    Conflict,
    /// The work was stopped: a timeout, a cancellation, a full disk. Trying again
    /// later, or with a narrower request, can succeed.
    Unavailable,
    /// crossdex failed; the message says no more than that, the detail goes to logs.
    Internal,
}

/// Every error code front ends can return. Stable: clients match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The configuration file does not exist.
    ConfigNotFound,
    /// The configuration file or one of its keys is wrong.
    InvalidConfig,
    /// A full-text search that does not parse.
    InvalidSearch,
    /// SQL that does not parse.
    InvalidSql,
    /// SQL that parses but cannot be planned (unknown table or column, types).
    InvalidQuery,
    /// A statement that is not a read-only query.
    NotAQuery,
    /// A parameter is missing or of the wrong type, or an argument is out of range.
    InvalidParameter,
    /// No saved query has that name.
    UnknownSavedQuery,
    /// No source has that name, in the configuration or the data directory.
    UnknownSource,
    /// No subject has that id, label or key.
    SubjectNotFound,
    /// A key that names several subjects.
    AmbiguousSubject,
    /// No record has that id.
    RecordNotFound,
    /// No sync run has that id.
    UnknownRun,
    /// No dataset of the catalogue has that id.
    DatasetNotFound,
    /// A dataset lacks a property a metadata format requires (`crossdex catalogue
    /// check` names the key that supplies it).
    IncompleteMetadata,
    /// The data directory holds no index yet.
    NoIndex,
    /// The folder is not a crossdex data directory.
    NotADataDirectory,
    /// Another process writes to the data directory.
    DataDirectoryBusy,
    /// A source to forget is still configured.
    SourceStillConfigured,
    /// Another export committed to the same Delta table meanwhile.
    ExportConflict,
    /// The query ran longer than its time limit.
    QueryTimeout,
    /// The query was cancelled.
    Cancelled,
    /// A search cursor whose state is no longer kept.
    CursorExpired,
    /// Too little free disk space.
    DiskFull,
    /// Too many requests at once: try again shortly.
    Overloaded,
    /// The index cannot answer yet (nothing synced).
    NotReady,
    /// No such route of the HTTP API.
    NotARoute,
    /// A request body over the server's limit.
    PayloadTooLarge,
    /// Anything else: crossdex's fault.
    Internal,
    /// No valid API token: missing, unknown, expired or revoked.
    Unauthorized,
    /// The token is valid but its scope does not allow this.
    Forbidden,
    /// No token of that name.
    UnknownToken,
    /// The token sent more requests per second than its limit.
    RateLimited,
}

impl ErrorCode {
    /// The kind of failure this code is.
    pub fn kind(self) -> ErrorKind {
        use ErrorCode::*;
        match self {
            ConfigNotFound | InvalidConfig | InvalidSearch | InvalidSql | InvalidQuery
            | NotAQuery | InvalidParameter | NotADataDirectory | PayloadTooLarge => {
                ErrorKind::UserInput
            }
            UnknownSavedQuery | UnknownSource | SubjectNotFound | RecordNotFound | UnknownRun
            | DatasetNotFound | NoIndex | CursorExpired | NotARoute => ErrorKind::NotFound,
            AmbiguousSubject
            | DataDirectoryBusy
            | SourceStillConfigured
            | IncompleteMetadata
            | ExportConflict => ErrorKind::Conflict,
            QueryTimeout | Cancelled | DiskFull | Overloaded | NotReady => ErrorKind::Unavailable,
            Internal => ErrorKind::Internal,
            Unauthorized | Forbidden => ErrorKind::Auth,
            UnknownToken => ErrorKind::NotFound,
            RateLimited => ErrorKind::Unavailable,
        }
    }

    /// The HTTP status an API answers this code with.
    pub fn http_status(self) -> u16 {
        use ErrorCode::*;
        match self {
            ConfigNotFound | InvalidConfig | InvalidSearch | InvalidSql | InvalidQuery
            | NotAQuery | InvalidParameter | NotADataDirectory => 400,
            UnknownSavedQuery | UnknownSource | SubjectNotFound | RecordNotFound | UnknownRun
            | DatasetNotFound | NoIndex | NotARoute => 404,
            AmbiguousSubject
            | DataDirectoryBusy
            | SourceStillConfigured
            | IncompleteMetadata
            | ExportConflict => 409,
            // The client gave up or the server did: nothing was answered.
            Cancelled => 499,
            CursorExpired => 410,
            QueryTimeout => 408,
            DiskFull => 507,
            Overloaded => 429,
            PayloadTooLarge => 413,
            NotReady => 503,
            Internal => 500,
            Unauthorized => 401,
            Forbidden => 403,
            UnknownToken => 404,
            RateLimited => 429,
        }
    }

    /// The code as it appears in answers (`invalid_search`), as serde spells it.
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            ConfigNotFound => "config_not_found",
            InvalidConfig => "invalid_config",
            InvalidSearch => "invalid_search",
            InvalidSql => "invalid_sql",
            InvalidQuery => "invalid_query",
            NotAQuery => "not_a_query",
            InvalidParameter => "invalid_parameter",
            UnknownSavedQuery => "unknown_saved_query",
            UnknownSource => "unknown_source",
            SubjectNotFound => "subject_not_found",
            AmbiguousSubject => "ambiguous_subject",
            RecordNotFound => "record_not_found",
            UnknownRun => "unknown_run",
            DatasetNotFound => "dataset_not_found",
            IncompleteMetadata => "incomplete_metadata",
            NoIndex => "no_index",
            NotADataDirectory => "not_a_data_directory",
            DataDirectoryBusy => "data_directory_busy",
            SourceStillConfigured => "source_still_configured",
            ExportConflict => "export_conflict",
            QueryTimeout => "query_timeout",
            Cancelled => "cancelled",
            CursorExpired => "cursor_expired",
            DiskFull => "disk_full",
            Overloaded => "overloaded",
            NotReady => "not_ready",
            NotARoute => "not_a_route",
            PayloadTooLarge => "payload_too_large",
            Internal => "internal",
            Unauthorized => "unauthorized",
            Forbidden => "forbidden",
            UnknownToken => "unknown_token",
            RateLimited => "rate_limited",
        }
    }
}

/// An error of the service, as every front end shows it.
#[derive(Debug, Clone, thiserror::Error, Serialize, utoipa::ToSchema)]
#[error("{message}")]
pub struct ServiceError {
    /// Stable snake_case code.
    pub code: ErrorCode,
    /// What kind of failure.
    #[serde(rename = "type")]
    pub kind: ErrorKind,
    /// What went wrong and, where possible, what to do.
    pub message: String,
    /// 1-based character of the query where the parser stopped, when it says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
    /// Where the code is documented.
    pub link: String,
    /// The cause of an internal error, for the operator's log; never shown to API
    /// users.
    #[serde(skip)]
    pub detail: Option<String>,
}

impl ServiceError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ServiceError {
        ServiceError {
            code,
            kind: code.kind(),
            message: message.into(),
            position: None,
            link: format!("docs/errors.md#{}", code.as_str()),
            detail: None,
        }
    }

    /// An internal failure: users see that it happened, the log sees `detail`.
    pub fn internal(what: &str, detail: impl std::fmt::Display) -> ServiceError {
        let mut e = ServiceError::new(
            ErrorCode::Internal,
            format!("internal error while {what}; the operator's log has the details"),
        );
        e.detail = Some(detail.to_string());
        e
    }

    /// With the position in the query where the parser stopped.
    pub fn at(mut self, position: Option<usize>) -> ServiceError {
        self.position = position;
        self
    }

    /// The HTTP status of this error.
    pub fn http_status(&self) -> u16 {
        self.code.http_status()
    }

    /// The message with the detail of an internal error, for a local operator (the
    /// CLI's stderr, a server's log).
    pub fn operator_text(&self) -> String {
        match &self.detail {
            Some(d) => format!("{}: {d}", self.message),
            None => self.message.clone(),
        }
    }
}

impl From<crate::config::ConfigError> for ServiceError {
    fn from(e: crate::config::ConfigError) -> Self {
        let code = match e {
            crate::config::ConfigError::NotFound { .. } => ErrorCode::ConfigNotFound,
            _ => ErrorCode::InvalidConfig,
        };
        ServiceError::new(code, e.to_string())
    }
}

impl From<crossdex_query::SavedQueryError> for ServiceError {
    fn from(e: crossdex_query::SavedQueryError) -> Self {
        use crossdex_query::SavedQueryError as S;
        let code = match e {
            S::Unknown { .. } => ErrorCode::UnknownSavedQuery,
            S::Param { .. } => ErrorCode::InvalidParameter,
            S::Header { .. } | S::Io { .. } => ErrorCode::InvalidConfig,
        };
        ServiceError::new(code, e.to_string())
    }
}

impl From<crossdex_store::StoreError> for ServiceError {
    fn from(e: crossdex_store::StoreError) -> Self {
        use crossdex_store::StoreError as S;
        let code = match &e {
            S::NoIndex { .. } => ErrorCode::NoIndex,
            S::NotOurs { .. } => ErrorCode::NotADataDirectory,
            S::Locked { .. } => ErrorCode::DataDirectoryBusy,
            S::UnknownSource(_) => ErrorCode::UnknownSource,
            S::InvalidSourceName(_) => ErrorCode::InvalidParameter,
            S::InvalidQuery { position, .. } => {
                return ServiceError::new(ErrorCode::InvalidSearch, e.to_string()).at(*position);
            }
            S::Io { source, .. } if is_disk_full(source) => ErrorCode::DiskFull,
            _ => return ServiceError::internal("reading or writing the data directory", &e),
        };
        ServiceError::new(code, e.to_string())
    }
}

fn is_disk_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull
}

impl From<crossdex_query::QueryError> for ServiceError {
    fn from(e: crossdex_query::QueryError) -> Self {
        use crossdex_query::QueryError as Q;
        match e {
            Q::NotAQuery { .. } => ServiceError::new(ErrorCode::NotAQuery, e.to_string()),
            Q::Syntax(_) => ServiceError::new(ErrorCode::InvalidSql, e.to_string()),
            Q::Plan(_) => ServiceError::new(ErrorCode::InvalidQuery, e.to_string()),
            Q::Search { position, .. } => {
                ServiceError::new(ErrorCode::InvalidSearch, e.to_string()).at(position)
            }
            Q::Saved(s) => s.into(),
            Q::Store(s) => s.into(),
            Q::Execution(_) => ServiceError::internal("running the query", &e),
        }
    }
}

impl From<crossdex_sync::SyncError> for ServiceError {
    fn from(e: crossdex_sync::SyncError) -> Self {
        ServiceError::internal("syncing", &e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_their_text_and_map_to_honest_statuses() {
        let e = ServiceError::new(ErrorCode::InvalidSearch, "unclosed quote").at(Some(3));
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["code"], "invalid_search");
        assert_eq!(v["type"], "user_input");
        assert_eq!(v["position"], 3);
        assert_eq!(v["link"], "docs/errors.md#invalid_search");
        assert_eq!(e.http_status(), 400);
        assert_eq!(ErrorCode::SubjectNotFound.http_status(), 404);
        assert_eq!(ErrorCode::DataDirectoryBusy.as_str(), "data_directory_busy");
        for code in [
            ErrorCode::NotADataDirectory,
            ErrorCode::QueryTimeout,
            ErrorCode::Internal,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }

    #[test]
    fn internal_errors_keep_their_cause_out_of_the_answer() {
        let e = ServiceError::internal("running the query", "/secret/path: EIO");
        let text = serde_json::to_string(&e).unwrap();
        assert!(!text.contains("/secret/path"), "{text}");
        assert!(e.operator_text().contains("/secret/path"));
        assert_eq!(e.http_status(), 500);
    }
}
