//! API tokens and what they allow: actions, sources and projects (row level), and
//! whether sensitive values are seen in clear.
//!
//! A token's secret is shown once, when it is created; the data directory keeps only
//! its SHA-256 (`access/tokens.json`, readable by its owner only). Tokens expire; a
//! token can be derived from another only narrower. Requests are checked against the
//! file as it is now, so a revocation takes effect on the next request, even in the
//! middle of paging through results.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::{ErrorCode, Result, ServiceError};

/// What a token may do.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Full-text search, with facets.
    Search,
    /// SQL and saved queries.
    Sql,
    /// Subject and record views, the subject list and the link report.
    Subjects,
    /// Sources, runs and sync status.
    Status,
    /// Starting syncs; everything else too.
    Admin,
}

impl Action {
    /// Every action, in order.
    pub const ALL: [Action; 5] = [
        Action::Search,
        Action::Sql,
        Action::Subjects,
        Action::Status,
        Action::Admin,
    ];

    /// Its name, as `--scope` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Search => "search",
            Action::Sql => "sql",
            Action::Subjects => "subjects",
            Action::Status => "status",
            Action::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Action {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown action `{s}`; one of: {}",
                    Action::ALL.map(Action::as_str).join(", ")
                )
            })
    }
}

/// What a request may read and do.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Scope {
    /// The actions allowed.
    pub actions: BTreeSet<Action>,
    /// Sources whose records it sees; `None`: all.
    pub sources: Option<BTreeSet<String>>,
    /// Projects whose records it sees; `None`: all.
    pub projects: Option<BTreeSet<String>>,
    /// Whether sensitive values are seen in clear.
    pub sensitive: bool,
}

impl Scope {
    /// Everything: the CLI and the TUI on their own data directory.
    pub fn full() -> Scope {
        Scope {
            actions: Action::ALL.into_iter().collect(),
            sources: None,
            projects: None,
            sensitive: true,
        }
    }

    /// Whether `action` is allowed (`admin` allows every action).
    pub fn allows(&self, action: Action) -> bool {
        self.actions.contains(&action) || self.actions.contains(&Action::Admin)
    }

    /// Whether it allows nothing `other` does not.
    pub fn is_within(&self, other: &Scope) -> bool {
        fn within(inner: &Option<BTreeSet<String>>, outer: &Option<BTreeSet<String>>) -> bool {
            match (inner, outer) {
                (_, None) => true,
                (None, Some(_)) => false,
                (Some(i), Some(o)) => i.is_subset(o),
            }
        }
        self.actions.iter().all(|a| other.allows(*a))
            && (!self.actions.contains(&Action::Admin) || other.actions.contains(&Action::Admin))
            && within(&self.sources, &other.sources)
            && within(&self.projects, &other.projects)
            && (!self.sensitive || other.sensitive)
    }

    /// What the query engine enforces of it.
    pub fn read_scope(&self) -> crossdex_query::ReadScope {
        crossdex_query::ReadScope {
            restriction: crossdex_query::Restriction {
                sources: self.sources.clone(),
                projects: self.projects.clone(),
            },
            sensitive: self.sensitive,
        }
    }
}

/// Limits of one token's use of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Limits {
    /// Requests per second, on average; a burst of twice as many is let through.
    pub requests_per_s: u32,
    /// Queries and searches at once.
    pub concurrent: u32,
    /// Rows of one answer at most.
    pub max_rows: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            requests_per_s: 50,
            concurrent: 4,
            max_rows: 1_000_000,
        }
    }
}

/// A token as listed: everything but its secret, which is not kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenInfo {
    /// Its name, unique.
    pub name: String,
    /// What it allows.
    pub scope: Scope,
    /// Its limits.
    pub limits: Limits,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
    /// The token it was derived from, if any.
    pub parent: Option<String>,
}

impl TokenInfo {
    /// Whether it works at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredToken {
    #[serde(flatten)]
    info: TokenInfo,
    /// SHA-256 of the secret, hex.
    sha256: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TokenFile {
    tokens: Vec<StoredToken>,
}

/// What `token create` asks for.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// Its name: letters, digits, `_`, `-` and `.`.
    pub name: String,
    /// What it allows.
    pub scope: Scope,
    /// How long it works.
    pub expires_in: Duration,
    /// Its limits.
    pub limits: Limits,
    /// Derive it from this token: its scope must be within the parent's.
    pub parent: Option<String>,
}

/// Active tokens one token may have derived at once: a portal minting a token per
/// user session stays well below it, a loop that forgets to reuse them does not.
pub const MAX_CHILDREN: usize = 1000;

/// A token just created: the only time its secret is known.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    /// The secret, for `Authorization: Bearer <secret>`; shown once.
    pub secret: String,
    /// The token.
    pub token: TokenInfo,
}

/// The request's caller, once its token checked out.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The token's name; `local` for the CLI and the TUI on their own directory.
    pub name: String,
    /// What it may do.
    pub scope: Scope,
    /// Its limits; `None`: none.
    pub limits: Option<Limits>,
}

impl Principal {
    /// The local user: everything, no limits.
    pub fn local() -> Principal {
        Principal {
            name: "local".to_owned(),
            scope: Scope::full(),
            limits: None,
        }
    }

    /// An error unless the scope allows `action`.
    pub fn require(&self, action: Action) -> Result<()> {
        if self.scope.allows(action) {
            return Ok(());
        }
        Err(ServiceError::new(
            ErrorCode::Forbidden,
            format!(
                "token `{}` does not allow `{}`; ask for a token with that scope",
                self.name,
                action.as_str()
            ),
        ))
    }
}

/// The data directory's tokens.
#[derive(Debug)]
pub(crate) struct Tokens {
    path: PathBuf,
    /// The file as last read, with its modification time: reread when it changes.
    cache: Mutex<Option<(std::time::SystemTime, std::sync::Arc<TokenFile>)>>,
}

fn sha256_hex(secret: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        secret.as_bytes(),
    ))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn io_error(what: &str, path: &Path, e: impl std::fmt::Display) -> ServiceError {
    ServiceError::internal(&format!("{what} {}", path.display()), e)
}

impl Tokens {
    pub(crate) fn new(data_dir: &Path) -> Tokens {
        Tokens {
            path: data_dir.join("access").join("tokens.json"),
            cache: Mutex::new(None),
        }
    }

    fn read(&self) -> Result<std::sync::Arc<TokenFile>> {
        let modified = match std::fs::metadata(&self.path) {
            Ok(m) => m.modified().ok(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(std::sync::Arc::default());
            }
            Err(e) => return Err(io_error("reading", &self.path, e)),
        };
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some((seen, file)), Some(m)) = (cache.as_ref(), modified)
            && *seen == m
        {
            return Ok(file.clone());
        }
        let text =
            std::fs::read_to_string(&self.path).map_err(|e| io_error("reading", &self.path, e))?;
        let file: TokenFile = serde_json::from_str(&text).map_err(|e| {
            ServiceError::new(
                ErrorCode::InvalidConfig,
                format!(
                    "{} is not a token file crossdex wrote ({e}); restore it from a backup",
                    self.path.display()
                ),
            )
        })?;
        let file = std::sync::Arc::new(file);
        if let Some(m) = modified {
            *cache = Some((m, file.clone()));
        }
        Ok(file)
    }

    fn write(&self, file: &TokenFile) -> Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| io_error("creating", dir, e))?;
        let tmp = self.path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(file)
            .map_err(|e| ServiceError::internal("writing the token file", e))?;
        {
            use std::io::Write;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut f = options
                .open(&tmp)
                .map_err(|e| io_error("writing", &tmp, e))?;
            f.write_all(text.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| io_error("writing", &tmp, e))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(|e| io_error("writing", &self.path, e))?;
        *self.cache.lock().unwrap_or_else(|e| e.into_inner()) = None;
        Ok(())
    }

    /// Whether any token exists at all (active or not).
    pub(crate) fn any(&self) -> Result<bool> {
        Ok(!self.read()?.tokens.is_empty())
    }

    pub(crate) fn list(&self) -> Result<Vec<TokenInfo>> {
        Ok(self.read()?.tokens.iter().map(|t| t.info.clone()).collect())
    }

    pub(crate) fn create(&self, mut new: NewToken, max_days: u32) -> Result<CreatedToken> {
        let invalid = |m: String| ServiceError::new(ErrorCode::InvalidParameter, m);
        if !valid_name(&new.name) {
            return Err(invalid(format!(
                "token name `{}`: use 1 to 64 letters, digits, `_`, `-` or `.`",
                new.name
            )));
        }
        if new.expires_in <= Duration::zero() {
            return Err(invalid("a token must expire in the future".into()));
        }
        if new.expires_in > Duration::days(i64::from(max_days)) {
            return Err(invalid(format!(
                "a token expires after {max_days} days at most (`[server] max_token_days`)"
            )));
        }
        if new.scope.actions.is_empty() {
            return Err(invalid(
                "a token needs at least one action in --scope (search, sql, subjects, status, admin)"
                    .into(),
            ));
        }
        let now = Utc::now();
        let mut file = TokenFile {
            tokens: self.read()?.tokens.clone(),
        };
        if file.tokens.iter().any(|t| t.info.name == new.name) {
            return Err(ServiceError::new(
                ErrorCode::InvalidParameter,
                format!(
                    "a token named `{}` exists; revoke it or choose another name",
                    new.name
                ),
            ));
        }
        let mut expires_at = now + new.expires_in;
        if let Some(parent) = &new.parent {
            let Some(p) = file.tokens.iter().find(|t| &t.info.name == parent) else {
                return Err(ServiceError::new(
                    ErrorCode::UnknownToken,
                    format!("no token named `{parent}` to derive from"),
                ));
            };
            if !p.info.is_active(now) {
                return Err(invalid(format!(
                    "token `{parent}` is expired or revoked: nothing can be derived from it"
                )));
            }
            if !new.scope.is_within(&p.info.scope) {
                return Err(ServiceError::new(
                    ErrorCode::Forbidden,
                    format!(
                        "a token derived from `{parent}` can only be narrower: its actions, sources, projects and sensitive access must be within the parent's"
                    ),
                ));
            }
            expires_at = expires_at.min(p.info.expires_at);
            // Nor more generous: the parent's limits bound the child's.
            new.limits = Limits {
                requests_per_s: new.limits.requests_per_s.min(p.info.limits.requests_per_s),
                concurrent: new.limits.concurrent.min(p.info.limits.concurrent),
                max_rows: new.limits.max_rows.min(p.info.limits.max_rows),
            };
            let children = file
                .tokens
                .iter()
                .filter(|t| t.info.parent.as_ref() == Some(parent) && t.info.is_active(now))
                .count();
            if children >= MAX_CHILDREN {
                return Err(invalid(format!(
                    "token `{parent}` has {children} active derived tokens, the most it may have; revoke some first"
                )));
            }
        }
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes)
            .map_err(|e| ServiceError::internal("drawing a random token", e))?;
        let secret = format!("cdx_{}", hex::encode(bytes));
        let info = TokenInfo {
            name: new.name,
            scope: new.scope,
            limits: new.limits,
            created_at: now,
            expires_at,
            revoked_at: None,
            parent: new.parent,
        };
        file.tokens.push(StoredToken {
            info: info.clone(),
            sha256: sha256_hex(&secret),
        });
        self.write(&file)?;
        Ok(CreatedToken {
            secret,
            token: info,
        })
    }

    /// Revokes `name` and every token derived from it.
    pub(crate) fn revoke(&self, name: &str) -> Result<Vec<String>> {
        let mut file = TokenFile {
            tokens: self.read()?.tokens.clone(),
        };
        if !file.tokens.iter().any(|t| t.info.name == name) {
            return Err(ServiceError::new(
                ErrorCode::UnknownToken,
                format!("no token named `{name}`; `crossdex token list` lists them"),
            ));
        }
        let now = Utc::now();
        let mut revoked: BTreeSet<String> = [name.to_owned()].into();
        loop {
            let before = revoked.len();
            for t in &file.tokens {
                if t.info.parent.as_ref().is_some_and(|p| revoked.contains(p)) {
                    revoked.insert(t.info.name.clone());
                }
            }
            if revoked.len() == before {
                break;
            }
        }
        for t in &mut file.tokens {
            if revoked.contains(&t.info.name) && t.info.revoked_at.is_none() {
                t.info.revoked_at = Some(now);
            }
        }
        self.write(&file)?;
        Ok(revoked.into_iter().collect())
    }

    /// The caller a secret stands for; every failure reads the same, so a probe
    /// learns nothing of which tokens exist.
    pub(crate) fn authenticate(&self, secret: &str) -> Result<Principal> {
        let unauthorized = || {
            ServiceError::new(
                ErrorCode::Unauthorized,
                "a valid API token is needed: send `Authorization: Bearer <token>`; the token may be unknown, expired or revoked",
            )
        };
        let hash = sha256_hex(secret.trim());
        let file = self.read()?;
        let Some(t) = file.tokens.iter().find(|t| t.sha256 == hash) else {
            return Err(unauthorized());
        };
        if !t.info.is_active(Utc::now()) {
            return Err(unauthorized());
        }
        Ok(Principal {
            name: t.info.name.clone(),
            scope: t.info.scope.clone(),
            limits: Some(t.info.limits),
        })
    }
}

/// Parses `90d`, `12h`, `30m` or `2w` into a duration.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: i64 = n
        .parse()
        .map_err(|_| format!("`{s}`: expected a number and a unit, e.g. 90d, 12h, 2w"))?;
    Ok(match unit {
        "m" => Duration::minutes(n),
        "h" => Duration::hours(n),
        "d" | "" => Duration::days(n),
        "w" => Duration::weeks(n),
        _ => return Err(format!("`{s}`: unit must be m, h, d or w")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(actions: &[Action], sources: Option<&[&str]>, sensitive: bool) -> Scope {
        Scope {
            actions: actions.iter().copied().collect(),
            sources: sources.map(|s| s.iter().map(|x| (*x).to_owned()).collect()),
            projects: None,
            sensitive,
        }
    }

    #[test]
    fn tokens_keep_no_secret_and_derive_only_narrower() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = Tokens::new(dir.path());
        assert!(!tokens.any().unwrap());
        let portal = tokens
            .create(
                NewToken {
                    name: "portal".into(),
                    scope: scope(&[Action::Search, Action::Sql], Some(&["imaging"]), false),
                    expires_in: Duration::days(30),
                    limits: Limits::default(),
                    parent: None,
                },
                365,
            )
            .unwrap();
        let stored = std::fs::read_to_string(dir.path().join("access/tokens.json")).unwrap();
        assert!(
            !stored.contains(&portal.secret[4..]),
            "the secret is stored"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("access/tokens.json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the token file is readable by others");
        }
        let who = tokens.authenticate(&portal.secret).unwrap();
        assert_eq!(who.name, "portal");
        assert!(who.require(Action::Search).is_ok());
        assert_eq!(
            who.require(Action::Subjects).unwrap_err().code,
            ErrorCode::Forbidden
        );
        let wrong = tokens.authenticate("cdx_0000").unwrap_err();
        assert_eq!(wrong.code, ErrorCode::Unauthorized);

        let wider = NewToken {
            name: "wider".into(),
            scope: scope(&[Action::Search], None, false),
            expires_in: Duration::days(10),
            limits: Limits::default(),
            parent: Some("portal".into()),
        };
        assert_eq!(
            tokens.create(wider.clone(), 365).unwrap_err().code,
            ErrorCode::Forbidden
        );
        let sensitive = NewToken {
            scope: scope(&[Action::Search], Some(&["imaging"]), true),
            ..wider.clone()
        };
        assert_eq!(
            tokens.create(sensitive, 365).unwrap_err().code,
            ErrorCode::Forbidden
        );
        let narrower = NewToken {
            name: "narrower".into(),
            scope: scope(&[Action::Search], Some(&["imaging"]), false),
            expires_in: Duration::days(300),
            ..wider
        };
        let child = tokens.create(narrower, 365).unwrap();
        // Never outlives its parent.
        assert!(child.token.expires_at <= portal.token.expires_at);

        assert_eq!(tokens.revoke("portal").unwrap(), vec!["narrower", "portal"]);
        for secret in [&portal.secret, &child.secret] {
            assert_eq!(
                tokens.authenticate(secret).unwrap_err().code,
                ErrorCode::Unauthorized
            );
        }
        let too_long = NewToken {
            name: "long".into(),
            scope: scope(&[Action::Search], None, false),
            expires_in: Duration::days(400),
            limits: Limits::default(),
            parent: None,
        };
        assert_eq!(
            tokens.create(too_long, 365).unwrap_err().code,
            ErrorCode::InvalidParameter
        );
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("90d").unwrap(), Duration::days(90));
        assert_eq!(parse_duration("2w").unwrap(), Duration::weeks(2));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5y").is_err());
    }
}
