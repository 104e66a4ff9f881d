//! The configuration file: one TOML file, every key overridable from the environment
//! as `CROSSDEX__KEY__SUBKEY` (e.g. `CROSSDEX__SOURCES__EXPORTS__PATH=/data/exports`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crossdex_model::{Connector, SourceContext, is_valid_source_name};
use crossdex_sync::schedule::{Missed, Schedule, Zone};
use serde::Deserialize;

use crate::registry;

/// A configuration that cannot be used. Always exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file does not exist.
    #[error("config file {path} not found; create one with `crossdex init` or pass --config")]
    NotFound {
        /// The file looked for.
        path: PathBuf,
    },
    /// The file, or a key outside `[sources]`, is wrong.
    #[error("config file {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key.
        reason: String,
    },
    /// A key of one source's table is wrong.
    #[error("config file {path}: key `sources.{source_name}{key}`: {reason}")]
    Source {
        /// The file.
        path: PathBuf,
        /// The source.
        source_name: String,
        /// The key, dotted, after the source's name (empty: the whole table).
        key: String,
        /// What is wrong.
        reason: String,
    },
}

/// The file's top level.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// Data directory; relative paths start at the config file's folder.
    data_dir: Option<PathBuf>,
    /// Folder of extra saved queries (`*.sql`).
    queries_dir: Option<PathBuf>,
    /// One table per source, keyed by the source's name.
    #[serde(default)]
    sources: BTreeMap<String, serde_json::Value>,
    /// Subject linking across sources.
    #[serde(default)]
    linking: LinkingSettings,
    /// How syncs run: concurrency and schedules.
    #[serde(default)]
    sync: SyncSettings,
    /// The HTTP API of `crossdex serve`.
    #[serde(default)]
    server: ServerSettings,
    /// Personal data: what stays out of the index and from tokens without access.
    #[serde(default)]
    privacy: PrivacySettings,
    /// The dataset catalogue: steward metadata, OAI-PMH, archives.
    #[serde(default)]
    catalogue: crate::catalogue::CatalogueSettings,
    /// Tables published for other engines after every sync.
    #[serde(default)]
    publish: PublishSettings,
}

/// `[publish]`: the tables published after every sync (`crossdex sync` and the
/// scheduler of `serve`), as `crossdex export` writes them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishSettings {
    /// A folder of Delta Lake tables, updated with what each sync changed [default:
    /// none]; relative paths start at the config file's folder.
    pub delta: Option<PathBuf>,
    /// Put sensitive values in the published tables [default false].
    #[serde(default)]
    pub include_sensitive: bool,
}

/// `[privacy]`: which observation variables hold personal data. Each source may add
/// its own with a `sensitive` list in its table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacySettings {
    /// Variable names or patterns (`*` for any run of characters, no case) of every
    /// source that are sensitive [default: crossdex's starting list, see
    /// docs/security.md]. Their values never enter the full-text index, and tokens
    /// without the `sensitive` scope do not see them.
    pub sensitive: Option<Vec<String>>,
    /// Sensitive variables that tokens without the `sensitive` scope still see, as a
    /// keyed hash (HMAC-SHA256), so they can join on them [default: none].
    #[serde(default)]
    pub hashed: Vec<String>,
    /// A file holding the key of the keyed hash [default: `access/hash.key` in the data
    /// directory, created on first use].
    pub hash_key_file: Option<PathBuf>,
}

/// `[server]`: the HTTP API of `crossdex serve`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address and port to listen on [default 127.0.0.1:8742]; loopback only until
    /// API tokens exist.
    pub listen: Option<String>,
    /// Largest request body in bytes [default 1048576].
    pub max_body_bytes: Option<usize>,
    /// Time limit of a query or search in seconds [default 30]; a request may ask for
    /// less (`timeout_ms`).
    pub query_timeout_s: Option<u64>,
    /// Time limit of a whole request in seconds [default 60].
    pub request_timeout_s: Option<u64>,
    /// Queries and searches at once; more are answered 429 [default 32].
    pub max_concurrent_queries: Option<usize>,
    /// Origins whose web pages may call the API (CORS) [default: none].
    #[serde(default)]
    pub cors_origins: Vec<String>,
    /// `token create --expires` takes at most this many days [default 365].
    pub max_token_days: Option<u32>,
    /// The audit log starts a new file past this many bytes [default 67108864].
    pub audit_max_bytes: Option<u64>,
    /// Audit files older than this many days are deleted [default 365].
    pub audit_keep_days: Option<u32>,
}

/// `[sync]`: how `sync` and the scheduler of `serve` run sources.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncSettings {
    /// Sources fetched at the same time [default 4].
    pub parallel_sources: Option<usize>,
    /// The zone of every `schedule` without a `timezone` of its own [default: the
    /// machine's zone].
    pub timezone: Option<String>,
    /// `catch-up` (one run at start-up for sources whose fire was missed while
    /// `serve` was down) or `skip` [default catch-up].
    pub missed_runs: Option<String>,
    /// On SIGINT or SIGTERM, `serve` lets running syncs finish for this long, then
    /// abandons them [default 30].
    pub shutdown_grace_s: Option<u64>,
}

/// Keys of a source table that are crossdex's, not the connector's.
const ENGINE_KEYS: &[&str] = &["link", "schedule", "timezone", "jitter_s", "sensitive"];

/// `[linking]`: what applies across sources; each source's own rule is its `link` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkingSettings {
    /// A CSV `source,subject_key,subject_id` whose entries override the rules
    /// (relative to the config file).
    pub crosswalk: Option<PathBuf>,
    /// Sources whose hard identifiers (sex, year of birth) are the reference, first
    /// first [default: the order of the sources].
    #[serde(default)]
    pub priority: Vec<String>,
    /// The `visits` view ties a session to the clinical visits of its subject at most
    /// this many days apart [default 90].
    pub visit_window_days: Option<u32>,
    /// Observation variables holding a clinical visit's date [default: assessment_date].
    pub visit_date_variables: Option<Vec<String>>,
}

/// A loaded, validated configuration.
#[derive(Debug)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// `data_dir`, resolved against the file's folder.
    pub data_dir: Option<PathBuf>,
    /// `queries_dir`, resolved against the file's folder.
    pub queries_dir: Option<PathBuf>,
    /// Each source's table, by name; secrets as text.
    pub sources: BTreeMap<String, serde_json::Value>,
    /// `[linking]`.
    pub linking: LinkingSettings,
    /// `[sync]`.
    pub sync: SyncSettings,
    /// `[server]`.
    pub server: ServerSettings,
    /// `[privacy]`, `hash_key_file` resolved against the file's folder.
    pub privacy: PrivacySettings,
    /// `[catalogue]`, checked when the file loads.
    pub catalogue: crate::catalogue::CatalogueSettings,
    /// `[publish]`, `delta` resolved against the file's folder.
    pub publish: PublishSettings,
    /// The sensitive variables: `[privacy] sensitive` (or the starting list) and each
    /// source's `sensitive` list, read when the file loads.
    pub sensitive: crossdex_store::Sensitive,
    /// Each scheduled source's schedule, read from its `schedule`, `timezone` and
    /// `jitter_s` keys when the file loads.
    pub schedules: BTreeMap<String, Schedule>,
    /// The policy for fires missed while `serve` was down (`[sync] missed_runs`).
    pub missed_runs: Missed,
}

/// Whether a configuration key holds a secret (its value is never parsed or shown).
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "token", "secret", "api_key", "apikey"]
        .iter()
        .any(|s| key.contains(s))
        && !key.ends_with("_file")
}

/// Secrets written as bare numbers or booleans in TOML (`password = 987654321`) are
/// taken as the text they spell.
fn secrets_as_text(table: &mut serde_json::Value) {
    if let Some(map) = table.as_object_mut() {
        for (key, value) in map.iter_mut() {
            if is_secret_key(key) && (value.is_number() || value.is_boolean()) {
                *value = serde_json::Value::String(value.to_string());
            }
        }
    }
}

impl Config {
    /// Loads `path`, applies `CROSSDEX__...` environment overrides, and validates every
    /// source table by building its connector (nothing is contacted).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        if !path.is_file() {
            return Err(ConfigError::NotFound {
                path: path.to_owned(),
            });
        }
        let invalid = |reason: String| ConfigError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let mut builder = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("CROSSDEX")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true),
            );
        // Secrets are text whatever they look like: a digits-only token parsed as a
        // number loses digits and ends up echoed in type errors.
        for (name, value) in std::env::vars() {
            if let Some(rest) = name.strip_prefix("CROSSDEX__") {
                let key = rest.to_lowercase().replace("__", ".");
                if key.rsplit('.').next().is_some_and(is_secret_key) {
                    builder = builder
                        .set_override(key, value)
                        .map_err(|e| invalid(clean_config_error(&e.to_string(), path)))?;
                }
            }
        }
        let mut raw: RawConfig = builder
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|e| invalid(clean_config_error(&e.to_string(), path)))?;
        for table in raw.sources.values_mut() {
            secrets_as_text(table);
        }
        let base = path.parent().unwrap_or(Path::new(".")).to_owned();
        let resolve = |p: PathBuf| normalize(&if p.is_relative() { base.join(p) } else { p });
        let mut cfg = Config {
            path: path.to_owned(),
            data_dir: raw.data_dir.map(resolve),
            queries_dir: raw.queries_dir.map(resolve),
            sources: raw.sources,
            linking: LinkingSettings {
                crosswalk: raw.linking.crosswalk.clone().map(resolve),
                ..raw.linking
            },
            sync: raw.sync,
            server: raw.server,
            privacy: PrivacySettings {
                hash_key_file: raw.privacy.hash_key_file.clone().map(resolve),
                ..raw.privacy
            },
            catalogue: raw.catalogue,
            publish: PublishSettings {
                delta: raw.publish.delta.clone().map(resolve),
                ..raw.publish
            },
            sensitive: crossdex_store::Sensitive::none(),
            schedules: BTreeMap::new(),
            missed_runs: Missed::default(),
        };
        cfg.link_rules()?;
        cfg.catalogue.check(&cfg.sources).map_err(invalid)?;
        cfg.sensitive = cfg.read_sensitive()?;
        cfg.schedules = cfg.read_schedules()?;
        cfg.missed_runs = cfg.read_missed_runs()?;
        for name in cfg.sources.keys() {
            cfg.connector(name)?;
        }
        Ok(cfg)
    }

    fn read_sensitive(&self) -> Result<crossdex_store::Sensitive, ConfigError> {
        let all = match &self.privacy.sensitive {
            Some(list) => list.clone(),
            None => crossdex_store::Sensitive::starting().all,
        };
        let mut by_source = BTreeMap::new();
        for (name, table) in &self.sources {
            let Some(list) = table.get("sensitive") else {
                continue;
            };
            let patterns: Option<Vec<String>> = list.as_array().and_then(|a| {
                a.iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
            });
            let Some(patterns) = patterns else {
                return Err(self.source_error(
                    name,
                    "sensitive",
                    "expected a list of variable names or patterns, e.g. [\"mrn\", \"*_name\"]"
                        .into(),
                ));
            };
            by_source.insert(name.clone(), patterns);
        }
        Ok(crossdex_store::Sensitive {
            all,
            by_source,
            hashed: self.privacy.hashed.clone(),
        })
    }

    fn base_dir(&self) -> PathBuf {
        self.path.parent().unwrap_or(Path::new(".")).to_owned()
    }

    /// An error about `key` (dotted, e.g. `link.pattern`; empty: the whole table) of
    /// source `name`.
    fn source_error(&self, name: &str, key: &str, reason: String) -> ConfigError {
        ConfigError::Source {
            path: self.path.clone(),
            source_name: name.to_owned(),
            key: if key.is_empty() {
                String::new()
            } else {
                format!(".{key}")
            },
            reason,
        }
    }

    /// Builds the connector of source `name`.
    pub fn connector(&self, name: &str) -> Result<Box<dyn Connector>, ConfigError> {
        self.connector_with(name, |_| {})
    }

    /// The connector of source `name` for `doctor`: no retries and at most
    /// `timeout_s` seconds per answer, so a source that is down says so at once.
    pub fn connector_for_check(
        &self,
        name: &str,
        timeout_s: u64,
    ) -> Result<Box<dyn Connector>, ConfigError> {
        self.connector_with(name, |table| {
            // Only connectors that speak HTTP take these keys.
            if table.contains_key("url") {
                table.insert("retries".into(), 0.into());
                let configured = table
                    .get("timeout_s")
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(u64::MAX);
                table.insert("timeout_s".into(), configured.min(timeout_s).into());
            }
        })
    }

    fn connector_with(
        &self,
        name: &str,
        adjust: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
    ) -> Result<Box<dyn Connector>, ConfigError> {
        let err = |key: &str, reason: String| self.source_error(name, key, reason);
        if !is_valid_source_name(name) {
            return Err(err(
                "",
                "source names use letters, digits, `_` and `-` only".into(),
            ));
        }
        let Some(table) = self.sources.get(name) else {
            return Err(err("", "no such source".into()));
        };
        let Some(system) = table.get("type").and_then(|t| t.as_str()) else {
            return Err(err(
                "type",
                format!("missing; one of: {}", registry::systems().join(", ")),
            ));
        };
        let Some(factory) = registry::factory(system) else {
            return Err(err(
                "type",
                format!(
                    "unknown source type {system:?}; one of: {}",
                    registry::systems().join(", ")
                ),
            ));
        };
        // Linking and scheduling keys are the engine's, not the connector's.
        let mut table = table.clone();
        if let Some(map) = table.as_object_mut() {
            for key in ENGINE_KEYS {
                map.remove(*key);
            }
            adjust(map);
        }
        factory
            .build(SourceContext {
                name: name.to_owned(),
                config: table,
                base_dir: self.base_dir(),
            })
            .map_err(|e| match e {
                crossdex_model::ConnectorError::Config { key, reason } => err(&key, reason),
                other => err("", other.to_string()),
            })
    }

    /// Each source's linking rule, from its `link` table; sources without one use their
    /// subject keys as they are (case-folded).
    pub fn link_rules(&self) -> Result<BTreeMap<String, crossdex_linking::Rule>, ConfigError> {
        let mut out = BTreeMap::new();
        for (name, table) in &self.sources {
            let err = |field: &str, reason: String| {
                self.source_error(name, &format!("link{field}"), reason)
            };
            let rule: crossdex_linking::RuleConfig = match table.get("link") {
                None => Default::default(),
                Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
                    let field = e
                        .to_string()
                        .split('`')
                        .nth(1)
                        .map(|f| format!(".{f}"))
                        .unwrap_or_default();
                    err(&field, e.to_string())
                })?,
            };
            let compiled = crossdex_linking::Rule::new(rule).map_err(|e| err("", e.to_string()))?;
            out.insert(name.clone(), compiled);
        }
        Ok(out)
    }

    fn read_schedules(&self) -> Result<BTreeMap<String, Schedule>, ConfigError> {
        let mut out = BTreeMap::new();
        for (name, table) in &self.sources {
            let err = |key: &str, reason: String| self.source_error(name, key, reason);
            let text = |key: &str| -> Result<Option<&str>, ConfigError> {
                match table.get(key) {
                    None => Ok(None),
                    Some(v) => v
                        .as_str()
                        .map(Some)
                        .ok_or_else(|| err(key, "expected a string".into())),
                }
            };
            let Some(expr) = text("schedule")? else {
                for key in ["timezone", "jitter_s"] {
                    if table.get(key).is_some() {
                        return Err(err(key, "set without a `schedule`".into()));
                    }
                }
                continue;
            };
            let zone_key = if table.get("timezone").is_some() {
                "timezone"
            } else {
                "schedule"
            };
            let zone_name = text("timezone")?.or(self.sync.timezone.as_deref());
            let zone = Zone::parse(zone_name).map_err(|e| err(zone_key, e.to_string()))?;
            let jitter = match table.get("jitter_s") {
                None => 0,
                // Numbers arrive as strings when they come from the environment.
                Some(v) => v
                    .as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| err("jitter_s", "expected a number of seconds".into()))?,
            };
            let schedule =
                Schedule::new(expr, zone, jitter).map_err(|e| err("schedule", e.to_string()))?;
            out.insert(name.clone(), schedule);
        }
        Ok(out)
    }

    fn read_missed_runs(&self) -> Result<Missed, ConfigError> {
        match &self.sync.missed_runs {
            None => Ok(Missed::default()),
            Some(s) => s.parse().map_err(|reason| ConfigError::Invalid {
                path: self.path.clone(),
                reason: format!("key `sync.missed_runs`: {reason}"),
            }),
        }
    }

    /// How the `visits` view ties sessions to visits.
    pub fn visit_settings(&self) -> crossdex_query::VisitSettings {
        let d = crossdex_query::VisitSettings::default();
        crossdex_query::VisitSettings {
            window_days: self.linking.visit_window_days.unwrap_or(d.window_days),
            date_variables: self
                .linking
                .visit_date_variables
                .clone()
                .unwrap_or(d.date_variables),
        }
    }

    /// The names of the configured sources, sorted.
    pub fn source_names(&self) -> Vec<String> {
        self.sources.keys().cloned().collect()
    }
}

/// Removes `.` and `dir/..` pairs without touching the file system, so paths print
/// as users expect.
fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        out
    }
}

/// The config crate appends "in <file>" to some messages; the path is already said.
fn clean_config_error(msg: &str, path: &Path) -> String {
    let suffix = format!(" in {}", path.display());
    msg.strip_suffix(&suffix).unwrap_or(msg).to_owned()
}

/// The data directory when neither `--data-dir` nor the config names one.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("crossdex");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(home).join(".local/share/crossdex");
    }
    PathBuf::from("crossdex-data")
}

/// The commented configuration `crossdex init` writes.
pub fn example() -> String {
    let mut out = String::from(
        "# crossdex configuration.\n\
         # Every key can be overridden from the environment: CROSSDEX__<KEY>__<SUBKEY>,\n\
         # e.g. CROSSDEX__SOURCES__EXPORTS__PATH=/data/exports. Secrets (tokens, passwords)\n\
         # are read from environment variables or files named here, never written inline.\n\n\
         # Where the index and tables live (relative to this file). --data-dir and\n\
         # CROSSDEX_DATA_DIR override it. Default: ~/.local/share/crossdex\n\
         # data_dir = \"crossdex-data\"\n\n\
         # A folder of extra saved queries (*.sql) for `crossdex sql --saved`.\n\
         # queries_dir = \"queries\"\n\n\
         # How syncs run. `crossdex sync` fetches up to parallel_sources sources at once.\n\
         # `crossdex serve` syncs each source on its own schedule, a cron expression\n\
         # (minute hour day-of-month month day-of-week) set in the source's table:\n\
         #   schedule = \"0 2 * * *\"     # every night at 02:00\n\
         #   timezone = \"Europe/Paris\"  # default: [sync] timezone, else the machine's\n\
         #   jitter_s = 600             # start up to 10 minutes late, spreading sources\n\
         # [sync]\n\
         # parallel_sources = 4\n\
         # timezone = \"Europe/Paris\"\n\
         # missed_runs = \"catch-up\"     # one run at start-up for fires missed while serve\n\
         #                              # was down; \"skip\" waits for the next fire\n\
         # shutdown_grace_s = 30        # on SIGTERM, running syncs get this long to finish\n\n\
         # The HTTP API of `crossdex serve` (docs/http-api.md), on loopback only.\n\
         # [server]\n\
         # listen = \"127.0.0.1:8742\"     # other addresses once `crossdex token create` made a token\n\
         # query_timeout_s = 30\n\
         # max_concurrent_queries = 32\n\
         # cors_origins = []            # web origins allowed to call the API\n\
         # max_token_days = 365         # longest --expires of a token\n\
         # audit_max_bytes = 67108864   # the audit log starts a new file past this size\n\
         # audit_keep_days = 365        # and deletes its files past this age\n\n\
         # Personal data (docs/security.md): variables (names or patterns, `*` for any run,\n\
         # no case) whose values never enter the full-text index and that API tokens\n\
         # without --sensitive do not see. Without `sensitive`, crossdex's starting list\n\
         # applies; a source adds its own with `sensitive = [...]` in its table.\n\
         # [privacy]\n\
         # sensitive = [\"name\", \"patient_name\", \"dob\", \"birth_year\", \"*address*\", \"*notes*\"]\n\
         # hashed = [\"birth_year\"]      # still joinable, as keyed hashes (HMAC-SHA256)\n\
         # hash_key_file = \"/etc/crossdex/hash.key\"  # default: access/hash.key in data_dir\n\n\
         # One [sources.<name>] table per source; `type` selects the connector.\n\n",
    );
    // The first example is live so the file loads as written; the others need
    // servers and secrets, so they start commented out.
    for (i, f) in registry::factories().iter().enumerate() {
        for line in f.example_config().lines() {
            if i > 0 && !line.starts_with('#') && !line.is_empty() {
                out.push_str("# ");
            }
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

/// A source of a configuration file to write.
#[derive(Debug, Clone)]
pub struct SourceDraft {
    /// The source's name.
    pub name: String,
    /// Its table: `type`, the connector's keys, `link`, ...
    pub table: serde_json::Map<String, serde_json::Value>,
}

/// A configuration file to write, e.g. one pointing at servers a program just
/// started (`crossdex sim --write-config`, `crossdex demo`).
#[derive(Debug, Clone, Default)]
pub struct ConfigDraft {
    /// Comment lines at the top, without their `#`.
    pub header: Vec<String>,
    /// `data_dir`.
    pub data_dir: Option<PathBuf>,
    /// The sources, in order.
    pub sources: Vec<SourceDraft>,
    /// `[linking] priority`.
    pub link_priority: Vec<String>,
}

impl ConfigDraft {
    /// The file's text. A source whose `type` this build has no connector for is
    /// written commented out, so the file loads as written.
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        let invalid = |e: toml::ser::Error| ConfigError::Invalid {
            path: PathBuf::from("(new configuration)"),
            reason: e.to_string(),
        };
        let mut out = String::new();
        for line in &self.header {
            out.push_str(&format!("# {line}\n"));
        }
        out.push('\n');
        if let Some(d) = &self.data_dir {
            let top = serde_json::json!({ "data_dir": d.display().to_string() });
            out.push_str(&toml::to_string(&top).map_err(invalid)?);
            out.push('\n');
        }
        for source in &self.sources {
            let doc = serde_json::json!({ "sources": { source.name.clone(): source.table } });
            let text = toml::to_string(&doc).map_err(invalid)?;
            let system = source
                .table
                .get("type")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("");
            if registry::factory(system).is_some() {
                out.push_str(&text);
            } else {
                out.push_str(&format!(
                    "# No {system} connector in this build; the source is left out.\n"
                ));
                for line in text.lines() {
                    out.push_str(&format!("# {line}\n"));
                }
            }
            out.push('\n');
        }
        if !self.link_priority.is_empty() {
            out.push_str(
                "# Whose sex and year of birth are the reference when sources disagree.\n",
            );
            let linking = serde_json::json!({ "linking": { "priority": self.link_priority } });
            out.push_str(&toml::to_string(&linking).map_err(invalid)?);
            out.push('\n');
        }
        out.push_str(
            "# Personal data (docs/security.md): never in the full-text index; API tokens\n\
             # without --sensitive do not see it, or see `hashed` variables as keyed hashes.\n",
        );
        let privacy = serde_json::json!({ "privacy": {
            "sensitive": crossdex_store::DEFAULT_SENSITIVE,
            "hashed": ["birth_year"],
        }});
        out.push_str(&toml::to_string(&privacy).map_err(invalid)?);
        out.push_str(
            "\n# The dataset catalogue (docs/fair.md): what sources cannot know of their\n\
             # datasets, declared by data stewards. `crossdex catalogue check` lists what\n\
             # DataCite still needs, and the key that supplies it.\n",
        );
        let mut catalogue = serde_json::json!({ "catalogue": {
            "defaults": {
                "publisher": "Institute for Memory Research (simulated)",
                "identifier": "https://catalogue.example.org/datasets/{id}",
                "licence": "CC-BY-4.0",
                "rights": "Restricted access: apply to the data access committee",
                "language": "en",
            },
            "sources": {},
        }});
        let has = |name: &str| self.sources.iter().any(|s| s.name == name);
        if has("xnat") {
            catalogue["catalogue"]["sources"]["xnat"] = serde_json::json!({
                "creators": [{"name": "Moreau, Camille", "orcid": "0000-0002-1825-0097",
                              "affiliation": "Imaging platform"}],
                "publication_year": 2024,
                "keywords": ["neuroimaging", "memory clinic"],
            });
        }
        if has("redcap") {
            catalogue["catalogue"]["sources"]["redcap"] = serde_json::json!({
                "creators": [{"name": "Memory clinic study team", "organisation": true}],
                "publication_year": 2023,
                "funding": [{"funder": "Agence Nationale de la Recherche",
                             "funder_id": "https://ror.org/00rbzpz17",
                             "award": "ANR-21-SIM-0001"}],
            });
        }
        out.push_str(&toml::to_string(&catalogue).map_err(invalid)?);
        Ok(out)
    }
}
