//! The saved queries shipped in `queries/`, compiled into the binary so they work from
//! anywhere, plus those of the configured `queries_dir`, which take precedence.

use std::path::Path;

use crossdex_query::{SavedQuery, SavedQueryError};

macro_rules! builtin {
    ($($file:literal),* $(,)?) => {
        &[$(($file, include_str!(concat!("../../../queries/", $file)))),*]
    };
}

/// (file name, text) of every shipped saved query.
pub const BUILTIN: &[(&str, &str)] = builtin![
    "records-per-source.sql",
    "low-moca.sql",
    "search-records.sql",
    "subject-overview.sql",
    "sync-history.sql",
    "variable-summary.sql",
];

/// The shipped queries, overridden by same-named ones from `dir`.
pub fn load(dir: Option<&Path>) -> Result<Vec<SavedQuery>, SavedQueryError> {
    let mut queries = BUILTIN
        .iter()
        .map(|(file, text)| SavedQuery::parse(&format!("queries/{file}"), text))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(dir) = dir {
        for q in SavedQuery::load_dir(dir)? {
            queries.retain(|b| b.name != q.name);
            queries.push(q);
        }
    }
    queries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(queries)
}
