//! Saved queries: `.sql` files with a header that names and documents them.
//!
//! ```sql
//! -- name: low-moca
//! -- description: Subjects whose MoCA score is below a threshold
//! -- param: threshold number 26 -- the score below which a subject is listed
//! SELECT subject_key, value_num FROM observations
//! WHERE variable = 'moca' AND value_num < $threshold
//! ```
//!
//! A `param` line is `name type [default] [-- description]`, `type` being `text`,
//! `number` or `integer`. Parameters are bound as typed values, never spliced into
//! the SQL text.

use std::path::Path;

use datafusion::common::ScalarValue;

/// Errors of saved queries.
#[derive(Debug, thiserror::Error)]
pub enum SavedQueryError {
    /// The header is malformed.
    #[error("saved query {file}: line {line}: {reason}")]
    Header {
        /// The file or name the query came from.
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// No saved query has this name.
    #[error("no saved query named `{name}`; available: {available}")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The names there are.
        available: String,
    },
    /// A parameter value is missing or of the wrong type.
    #[error("parameter `{name}` of `{query}`: {reason}")]
    Param {
        /// The query.
        query: String,
        /// The parameter.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The folder of saved queries cannot be read.
    #[error("cannot read saved queries in {path}: {source}")]
    Io {
        /// The folder or file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// The type of a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// Bound as text.
    Text,
    /// Bound as a 64-bit float.
    Number,
    /// Bound as a 64-bit integer.
    Integer,
}

/// A declared parameter of a saved query.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// Name, used as `$name` in the SQL.
    pub name: String,
    /// Type.
    pub kind: ParamKind,
    /// Default value, as text; a parameter without one is required.
    pub default: Option<String>,
    /// What it means.
    pub description: String,
}

/// A named, documented SQL query.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedQuery {
    /// Name, used by `crossdex sql --saved NAME`.
    pub name: String,
    /// One line on what it answers.
    pub description: String,
    /// Declared parameters.
    pub params: Vec<Param>,
    /// The SQL, header included (comments are valid SQL).
    pub sql: String,
}

impl SavedQuery {
    /// Parses a saved query; `origin` names it in errors.
    pub fn parse(origin: &str, text: &str) -> Result<SavedQuery, SavedQueryError> {
        let err = |line: usize, reason: String| SavedQueryError::Header {
            file: origin.to_owned(),
            line,
            reason,
        };
        let (mut name, mut description, mut params) = (None, String::new(), Vec::new());
        for (i, line) in text.lines().enumerate() {
            let Some(comment) = line.trim().strip_prefix("--") else {
                if line.trim().is_empty() {
                    continue;
                }
                break;
            };
            let comment = comment.trim();
            let Some((key, value)) = comment.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key.trim() {
                "name" => name = Some(value.to_owned()),
                "description" => description = value.to_owned(),
                "param" => params.push(parse_param(value).map_err(|r| err(i + 1, r))?),
                _ => {}
            }
        }
        let name = name.ok_or_else(|| err(1, "missing `-- name: ...` header line".into()))?;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(err(
                1,
                format!("name {name:?} must use letters, digits, `-` and `_`"),
            ));
        }
        Ok(SavedQuery {
            name,
            description,
            params,
            sql: text.to_owned(),
        })
    }

    /// Loads every `*.sql` file of `dir`, sorted by name.
    pub fn load_dir(dir: &Path) -> Result<Vec<SavedQuery>, SavedQueryError> {
        let io = |source| SavedQueryError::Io {
            path: dir.display().to_string(),
            source,
        };
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "sql"))
            .collect();
        paths.sort();
        paths
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(p).map_err(|source| SavedQueryError::Io {
                    path: p.display().to_string(),
                    source,
                })?;
                SavedQuery::parse(&p.display().to_string(), &text)
            })
            .collect()
    }

    /// Finds `name` in `queries`.
    pub fn find<'a>(
        queries: &'a [SavedQuery],
        name: &str,
    ) -> Result<&'a SavedQuery, SavedQueryError> {
        queries
            .iter()
            .find(|q| q.name == name)
            .ok_or_else(|| SavedQueryError::Unknown {
                name: name.to_owned(),
                available: queries
                    .iter()
                    .map(|q| q.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Types `values` by the declared parameters, filling defaults.
    pub fn bind(
        &self,
        values: &[(String, String)],
    ) -> Result<Vec<(String, ScalarValue)>, SavedQueryError> {
        let err = |name: &str, reason: String| SavedQueryError::Param {
            query: self.name.clone(),
            name: name.to_owned(),
            reason,
        };
        if let Some((unknown, _)) = values
            .iter()
            .find(|(k, _)| !self.params.iter().any(|p| &p.name == k))
        {
            let declared: Vec<&str> = self.params.iter().map(|p| p.name.as_str()).collect();
            return Err(err(
                unknown,
                format!("not declared (declared: {})", declared.join(", ")),
            ));
        }
        let mut bound = Vec::with_capacity(self.params.len());
        for p in &self.params {
            let given = values
                .iter()
                .rev()
                .find(|(k, _)| k == &p.name)
                .map(|(_, v)| v.as_str());
            let Some(text) = given.or(p.default.as_deref()) else {
                return Err(err(&p.name, "required; pass --param NAME=VALUE".into()));
            };
            let value = match p.kind {
                ParamKind::Text => ScalarValue::Utf8(Some(text.to_owned())),
                ParamKind::Number => ScalarValue::Float64(Some(
                    text.parse()
                        .map_err(|_| err(&p.name, format!("{text:?} is not a number")))?,
                )),
                ParamKind::Integer => ScalarValue::Int64(Some(
                    text.parse()
                        .map_err(|_| err(&p.name, format!("{text:?} is not an integer")))?,
                )),
            };
            bound.push((p.name.clone(), value));
        }
        Ok(bound)
    }
}

fn parse_param(spec: &str) -> Result<Param, String> {
    let (decl, description) = match spec.split_once("--") {
        Some((d, desc)) => (d.trim(), desc.trim().to_owned()),
        None => (spec.trim(), String::new()),
    };
    let mut words = decl.split_whitespace();
    let name = words.next().ok_or("`param:` needs a name and a type")?;
    let kind = match words.next() {
        Some("text") => ParamKind::Text,
        Some("number") => ParamKind::Number,
        Some("integer") => ParamKind::Integer,
        Some(other) => {
            return Err(format!(
                "unknown parameter type `{other}` (text, number or integer)"
            ));
        }
        None => {
            return Err(format!(
                "parameter `{name}` needs a type (text, number or integer)"
            ));
        }
    };
    let default = words.next().map(|w| w.trim_matches('\'').to_owned());
    Ok(Param {
        name: name.to_owned(),
        kind,
        default,
        description,
    })
}
