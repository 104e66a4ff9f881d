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
    "mr-and-low-moca.sql",
    "missing-modality.sql",
    "subject-timeline.sql",
    "sessions-without-visit.sql",
    "images-by-diagnosis.sql",
    "nfl-vs-imaging.sql",
    "experiments-per-subject.sql",
    "completeness-matrix.sql",
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    /// Files under `dir`, relative to it, with `/` separators.
    fn files(dir: &Path, prefix: &str, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            if entry.file_type().unwrap().is_dir() {
                files(&entry.path(), &format!("{name}/"), out);
            } else {
                out.insert(name);
            }
        }
    }

    /// The embedded lists are written by hand: a file added to `queries/` or
    /// `samples/` must be listed too, or the binary silently ships without it.
    #[test]
    fn embedded_files_match_the_repository() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut queries = BTreeSet::new();
        files(&root.join("queries"), "", &mut queries);
        let embedded: BTreeSet<String> =
            super::BUILTIN.iter().map(|(f, _)| f.to_string()).collect();
        assert_eq!(
            embedded, queries,
            "update BUILTIN in crates/service/src/saved.rs"
        );
    }
}
