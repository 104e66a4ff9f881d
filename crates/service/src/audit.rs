//! The audit log: one JSON line per API request, appended to `audit/audit.log` in the
//! data directory, started anew past a size and deleted past an age.
//!
//! Query texts may carry personal data (a name, a date of birth in a `WHERE`): the log
//! keeps their SHA-256, and of SQL its shape with every literal replaced by `?`,
//! never the literals themselves.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Result, ServiceError};

/// One request, as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// When the request arrived.
    pub at: DateTime<Utc>,
    /// The token's name (`anonymous` without one, on loopback).
    pub token: String,
    /// The method and the route's template, e.g. `GET /api/v1/subjects/{id}`.
    pub route: String,
    /// The HTTP status answered.
    pub status: u16,
    /// How long the answer took, in milliseconds.
    pub duration_ms: u64,
    /// Rows (or hits) answered, when the route answers rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// Tables the request read (`index` for the full-text index).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
    /// Columns the request read, `table.column`, where known.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    /// SHA-256 of the query text, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_sha256: Option<String>,
    /// The SQL with its literals replaced by `?`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_shape: Option<String>,
}

impl AuditEntry {
    /// Records `query` (hash, and shape when it is SQL) in the entry.
    pub fn with_query(mut self, query: &str, is_sql: bool) -> AuditEntry {
        self.query_sha256 = Some(hex::encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            query.as_bytes(),
        )));
        if is_sql {
            self.query_shape = Some(sql_shape(query));
        }
        self
    }
}

/// What `crossdex audit` shows.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this token's requests.
    pub token: Option<String>,
    /// Only routes containing this text.
    pub route: Option<String>,
    /// Only requests at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only requests before this time.
    pub until: Option<DateTime<Utc>>,
}

impl AuditFilter {
    fn keeps(&self, e: &AuditEntry) -> bool {
        self.token.as_ref().is_none_or(|t| &e.token == t)
            && self
                .route
                .as_ref()
                .is_none_or(|r| e.route.contains(r.as_str()))
            && self.since.is_none_or(|s| e.at >= s)
            && self.until.is_none_or(|u| e.at < u)
    }
}

/// The SQL text with string and number literals replaced by `?`: what was asked,
/// without the values it was asked about.
pub fn sql_shape(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let chars: Vec<char> = sql.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            // A string literal; '' inside it is a quote.
            i += 1;
            while i < chars.len() {
                if chars[i] == '\'' {
                    if chars.get(i + 1) == Some(&'\'') {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i += 1;
            out.push('?');
            continue;
        }
        let starts_word = i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if c.is_ascii_digit() && starts_word {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            out.push('?');
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

/// The append-only log.
#[derive(Debug)]
pub(crate) struct AuditLog {
    dir: PathBuf,
    max_bytes: u64,
    keep_days: u32,
    lock: Mutex<()>,
}

const CURRENT: &str = "audit.log";

impl AuditLog {
    pub(crate) fn new(data_dir: &Path, max_bytes: u64, keep_days: u32) -> AuditLog {
        AuditLog {
            dir: data_dir.join("audit"),
            max_bytes: max_bytes.max(4096),
            keep_days,
            lock: Mutex::new(()),
        }
    }

    fn error(&self, e: impl std::fmt::Display) -> ServiceError {
        ServiceError::internal("writing the audit log", e)
    }

    pub(crate) fn append(&self, entry: &AuditEntry) -> Result<()> {
        let mut line = serde_json::to_vec(entry).map_err(|e| self.error(e))?;
        line.push(b'\n');
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        std::fs::create_dir_all(&self.dir).map_err(|e| self.error(e))?;
        let path = self.dir.join(CURRENT);
        if std::fs::metadata(&path).is_ok_and(|m| m.len() + line.len() as u64 > self.max_bytes) {
            self.rotate(&path)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(&path).map_err(|e| self.error(e))?;
        // One write per line: lines of concurrent writers never interleave.
        f.write_all(&line).map_err(|e| self.error(e))
    }

    /// Moves the current file aside under its closing time and deletes rotated files
    /// past their age; only files of the log's own naming are ever deleted.
    fn rotate(&self, current: &Path) -> Result<()> {
        let stamp = Utc::now().format("%Y%m%dT%H%M%S%.6fZ");
        let aside = self.dir.join(format!("audit-{stamp}.log"));
        std::fs::rename(current, &aside).map_err(|e| self.error(e))?;
        let cutoff = std::time::SystemTime::now()
            - std::time::Duration::from_secs(u64::from(self.keep_days) * 86_400);
        for entry in std::fs::read_dir(&self.dir)
            .map_err(|e| self.error(e))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let rotated = name.starts_with("audit-") && name.ends_with(".log");
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < cutoff);
            if rotated && old {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Every kept line that `filter` keeps, oldest first.
    pub(crate) fn read(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("audit-") && n.ends_with(".log"))
                })
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ServiceError::internal("reading the audit log", e)),
        };
        // Rotated names sort by their closing time; the current file comes last.
        files.sort();
        files.push(self.dir.join(CURRENT));
        let mut out = Vec::new();
        for path in files {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                // A line cut by a crash is skipped, not an error for the whole log.
                if let Ok(e) = serde_json::from_str::<AuditEntry>(line)
                    && filter.keeps(&e)
                {
                    out.push(e);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(token: &str, route: &str) -> AuditEntry {
        AuditEntry {
            at: Utc::now(),
            token: token.to_owned(),
            route: route.to_owned(),
            status: 200,
            duration_ms: 1,
            rows: Some(3),
            tables: vec![],
            columns: vec![],
            query_sha256: None,
            query_shape: None,
        }
    }

    #[test]
    fn literals_never_reach_the_log() {
        let shape = sql_shape(
            "SELECT * FROM observations WHERE value_text = 'Jane O''Doe' AND value_num > 1952.5 AND t2.x = 1",
        );
        assert_eq!(
            shape,
            "SELECT * FROM observations WHERE value_text = ? AND value_num > ? AND t2.x = ?"
        );
        let e = entry("portal", "POST /api/v1/sql").with_query("SELECT 'Jane Doe'", true);
        let line = serde_json::to_string(&e).unwrap();
        assert!(!line.contains("Jane"), "{line}");
    }

    #[test]
    fn the_log_rotates_by_size_and_filters() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path(), 4096, 30);
        for i in 0..100 {
            let token = if i % 2 == 0 { "a" } else { "b" };
            log.append(&entry(token, "GET /api/v1/search")).unwrap();
        }
        let files = std::fs::read_dir(dir.path().join("audit")).unwrap().count();
        assert!(files > 1, "no rotation");
        let all = log.read(&AuditFilter::default()).unwrap();
        assert_eq!(all.len(), 100);
        let only_a = log
            .read(&AuditFilter {
                token: Some("a".into()),
                ..AuditFilter::default()
            })
            .unwrap();
        assert_eq!(only_a.len(), 50);
        assert!(all.windows(2).all(|w| w[0].at <= w[1].at));
    }
}
