use datafusion::error::DataFusionError;

use crate::saved::SavedQueryError;

/// Errors of the query engine. [`QueryError::is_user_error`] separates "the query is
/// wrong" from "something broke".
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A statement that is not a query.
    #[error("only queries are allowed (SELECT, WITH, EXPLAIN, SHOW, DESCRIBE); {found} is refused")]
    NotAQuery {
        /// What was found instead, e.g. `CREATE TABLE`.
        found: String,
    },
    /// The SQL text does not parse.
    #[error("invalid SQL: {0}")]
    Syntax(String),
    /// The SQL parses but cannot be planned: unknown table or column, type mismatch.
    #[error("invalid query: {0}")]
    Plan(String),
    /// A full-text search string that does not parse.
    #[error("{message}")]
    Search {
        /// What is wrong, with the query.
        message: String,
        /// 1-based character where the parser stopped, when it says.
        position: Option<usize>,
    },
    /// A saved query or its parameters are wrong.
    #[error(transparent)]
    Saved(#[from] SavedQueryError),
    /// The store could not be read.
    #[error("cannot read the store: {0}")]
    Store(crossdex_store::StoreError),
    /// Running the query failed.
    #[error("query failed: {0}")]
    Execution(String),
}

impl From<crossdex_store::StoreError> for QueryError {
    fn from(e: crossdex_store::StoreError) -> Self {
        match e {
            crossdex_store::StoreError::InvalidQuery { position, .. } => QueryError::Search {
                position,
                message: e.to_string(),
            },
            other => QueryError::Store(other),
        }
    }
}

impl From<DataFusionError> for QueryError {
    fn from(e: DataFusionError) -> Self {
        QueryError::from_datafusion(e)
    }
}

impl QueryError {
    /// Whether the caller's input is at fault (HTTP 400, exit code 2), rather than
    /// the engine (HTTP 500, exit code 1).
    pub fn is_user_error(&self) -> bool {
        match self {
            // A data directory that is not one was named by the user.
            QueryError::Store(
                crossdex_store::StoreError::NoIndex { .. }
                | crossdex_store::StoreError::NotOurs { .. },
            ) => true,
            QueryError::Store(_) | QueryError::Execution(_) => false,
            _ => true,
        }
    }

    /// A stable snake_case code for APIs.
    pub fn code(&self) -> &'static str {
        match self {
            QueryError::NotAQuery { .. } => "not_a_query",
            QueryError::Syntax(_) => "invalid_sql",
            QueryError::Plan(_) => "invalid_query",
            QueryError::Search { .. } => "invalid_search",
            QueryError::Saved(_) => "invalid_saved_query",
            QueryError::Store(crossdex_store::StoreError::NoIndex { .. }) => "no_index",
            QueryError::Store(crossdex_store::StoreError::NotOurs { .. }) => "not_a_data_directory",
            QueryError::Store(_) => "store_error",
            QueryError::Execution(_) => "query_failed",
        }
    }

    pub(crate) fn from_datafusion(e: DataFusionError) -> Self {
        match e.find_root() {
            DataFusionError::SQL(parser, _) => {
                let msg = parser.to_string();
                let mut msg = msg
                    .strip_prefix("sql parser error: ")
                    .unwrap_or(&msg)
                    .to_owned();
                if msg.ends_with("found: EOF") {
                    msg.push_str(" at the end of the query");
                }
                QueryError::Syntax(msg)
            }
            DataFusionError::Plan(msg) => QueryError::Plan(msg.clone()),
            root @ DataFusionError::SchemaError(..) => {
                let msg = root.to_string();
                QueryError::Plan(
                    msg.strip_prefix("Schema error: ")
                        .unwrap_or(&msg)
                        .to_owned(),
                )
            }
            DataFusionError::NotImplemented(msg) => {
                QueryError::Plan(format!("not supported: {msg}"))
            }
            // A value the query cannot convert or compute with: the query's fault.
            DataFusionError::ArrowError(a, _)
                if matches!(
                    **a,
                    arrow::error::ArrowError::CastError(_)
                        | arrow::error::ArrowError::ParseError(_)
                        | arrow::error::ArrowError::DivideByZero
                        | arrow::error::ArrowError::ArithmeticOverflow(_)
                ) =>
            {
                QueryError::Plan(format!("the query failed on a value: {a}"))
            }
            root => QueryError::Execution(root.to_string()),
        }
    }
}
