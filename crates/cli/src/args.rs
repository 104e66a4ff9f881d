//! Command-line arguments. Raw flags are parsed here; commands validate them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
Examples:
  crossdex demo                                  simulate five systems, index them, open the terminal UI
  crossdex sim --write-config sim.toml           serve simulated XNAT, REDCap, OMERO, tranSMART, eLabFTW
  crossdex init                                  write a commented crossdex.toml to start from
  crossdex sync --all                            sync every configured source
  crossdex search 'moca baseline'                full-text search
  crossdex tui                                   search, subjects and SQL in the terminal
  crossdex sql \"SELECT system, count(*) FROM records GROUP BY system\"

Exit codes: 0 success, 1 runtime failure (a source or the store failed), 2 usage or configuration error.";

/// crossdex indexes research data systems (XNAT, REDCap, OMERO, tranSMART, eLabFTW and
/// tabular exports) into one local full-text index and SQL tables.
#[derive(Debug, Parser)]
#[command(name = "crossdex", version, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes, before or after the command name.
#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// Configuration file [default: ./crossdex.toml]
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "CROSSDEX_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
    /// Data directory holding the index and tables [default: `data_dir` of the config,
    /// else $XDG_DATA_HOME/crossdex or ~/.local/share/crossdex]
    #[arg(long, global = true, env = "CROSSDEX_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

const EXPORT_HELP: &str = "\
Each table is a Delta table of its own under DIR: records/, observations/ (one Parquet
file per source), subjects/, subject_links/, sync_runs/, each with its _delta_log. A
file's name carries the hash of its rows: an export after a sync commits only the files
whose rows changed, and no version at all when nothing did. Readers see one commit or
the next, never half of one. Files a commit replaces stay for readers of older versions.
Sensitive variables are left out unless --include-sensitive.

Examples:
  crossdex export /shared/crossdex-delta
  python3 -c 'import deltalake; print(deltalake.DeltaTable(\"/shared/crossdex-delta/records\").to_pandas())'";

/// Formats `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// Delta Lake tables
    Delta,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented example configuration file to start from.
    #[command(
        after_help = "Example:\n  crossdex init                 writes ./crossdex.toml\n  crossdex init --config /etc/crossdex.toml --force"
    )]
    Init {
        /// Overwrite the file if it exists
        #[arg(long)]
        force: bool,
    },
    /// Check that every configured source is reachable and its credentials work.
    #[command(after_help = "Example:\n  crossdex doctor\n  crossdex doctor exports")]
    Doctor {
        /// Sources to check [default: all]
        sources: Vec<String>,
    },
    /// Pull sources into the index. Each source's sync becomes visible all at once.
    #[command(
        after_help = "Examples:\n  crossdex sync --all           every configured source\n  crossdex sync exports         one source\n  crossdex sync --all --full    re-read everything, deleting what disappeared\n  crossdex sync --all -j 1      one source at a time\n  crossdex sync --all --wait 600   wait up to 10 minutes for another sync to end\n\nOne process writes to a data directory at a time. Another `crossdex sync` frees it\nwhen it ends (--wait waits for that); `crossdex serve` holds it for as long as it\nruns and syncs each source on its schedule: stop it to sync by hand."
    )]
    Sync(SyncArgs),
    /// Remove a source's data (records, observations, its checkpoint) from the index,
    /// after it was taken out of the configuration; its run history stays.
    #[command(
        after_help = "Example:\n  crossdex forget old_lab          after removing [sources.old_lab] from the config\n\n`crossdex status` lists sources that are indexed but no longer configured.\nA source still configured comes back at its next sync: --force removes it anyway."
    )]
    Forget {
        /// Sources to remove
        #[arg(required = true)]
        sources: Vec<String>,
        /// Remove a source that is still configured
        #[arg(long)]
        force: bool,
    },
    /// Show each source's state and its last sync run.
    #[command(
        after_help = "Example:\n  crossdex status\n  crossdex sql \"SELECT * FROM sync_runs ORDER BY started_at DESC\"   the full history"
    )]
    Status {
        /// Output format
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Serve the HTTP API (docs/http-api.md) and sync each source on its `schedule`,
    /// until SIGINT or SIGTERM.
    #[command(after_help = SERVE_HELP)]
    Serve(ServeArgs),
    /// Full-text search across every source.
    #[command(after_help = SEARCH_HELP)]
    Search {
        /// The search: words (all must match, typos forgiven in longer words),
        /// "phrases", field:value, OR, -word, prefix*, (groups); `*` for everything
        #[arg(allow_hyphen_values = true)]
        query: String,
        /// Maximum number of hits
        #[arg(long, short = 'n', default_value_t = 20)]
        limit: usize,
        /// Hits skipped first, to page: `-n 20 --offset 20` is the second page
        #[arg(long, default_value_t = 0, value_name = "N")]
        offset: usize,
        /// Output format
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Run a read-only SQL query over the tables and the search() function.
    #[command(after_help = SQL_HELP)]
    Sql(SqlArgs),
    /// Simulate the five systems over a synthetic cohort, sync them and show what
    /// crossdex finds.
    #[command(after_help = DEMO_HELP)]
    Demo(DemoArgs),
    /// Open the terminal UI: search with facets, subjects, SQL, sources and links.
    #[command(after_help = TUI_HELP)]
    Tui(TuiArgs),
    /// Everything every source holds on one subject, side by side, with a timeline.
    #[command(
        after_help = "Examples:\n  crossdex subject subj:INT_0042\n  crossdex subject INT-042          any source's spelling finds the subject\n  crossdex subject 42 --format json"
    )]
    Subject {
        /// A subject id (subj:...), its label, or a source's key
        id: String,
        /// Output format
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// One record: its fields, observations, related records and a link into its
    /// source's own interface.
    #[command(
        after_help = "Examples:\n  crossdex record clinic:row:P-0001\n  crossdex record xnat:session:XNAT_E00001 --format json\n\nRecord ids are the `id` of search hits and of the records table."
    )]
    Record {
        /// The record's id (source:kind:native_id)
        id: String,
        /// Output format
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Subject linking across sources: what links, what conflicts, what stays apart.
    #[command(subcommand)]
    Link(LinkCommand),
    /// Serve simulated XNAT, REDCap, OMERO, tranSMART and eLabFTW on loopback until
    /// interrupted.
    #[command(after_help = SIM_HELP)]
    Sim(SimArgs),
    /// API tokens of the HTTP API: create (the secret is shown once), list, revoke.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The dataset catalogue: list datasets, check their DataCite metadata, export it
    /// as DataCite or Dublin Core (docs/fair.md).
    #[command(subcommand)]
    Catalogue(CatalogueCommand),
    /// Write one dataset as BagIt archive packages (UTF-8 CSV and Parquet, DataCite and
    /// Dublin Core metadata, a README, SHA-256 manifests), in parts of at most 1 GiB.
    #[command(after_help = ARCHIVE_HELP)]
    Archive {
        /// The dataset's id, as `crossdex catalogue list` shows it
        dataset: String,
        /// The folder to write the parts into (created; must be empty)
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Largest part: 1G, 500M, 64K or bytes [default: [catalogue] archive_part_size, else 1G]
        #[arg(long, value_name = "SIZE")]
        part_size: Option<String>,
        /// Put sensitive values in the package (recorded in bag-info.txt)
        #[arg(long)]
        include_sensitive: bool,
        /// Output format of the report
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Publish the tables for engines that cannot open a data directory: Delta Lake
    /// tables (Spark, Trino, Databricks, DuckDB, polars, pandas), committed atomically;
    /// a re-export commits only what changed (docs/scale.md).
    #[command(after_help = EXPORT_HELP)]
    Export {
        /// The folder to publish into (created; a folder of an earlier export is
        /// updated)
        dir: PathBuf,
        /// The table format
        #[arg(long = "format", value_enum, default_value_t = ExportFormat::Delta)]
        table_format: ExportFormat,
        /// Put sensitive values in the tables
        #[arg(long)]
        include_sensitive: bool,
        /// Output format of the report
        #[arg(long = "report", value_enum, default_value_t = Format::Table)]
        report: Format,
    },
    /// The HTTP API's audit log: who asked what, when, and what was answered.
    #[command(after_help = AUDIT_HELP)]
    Audit {
        /// Only this token's requests
        #[arg(long, value_name = "NAME")]
        token: Option<String>,
        /// Only requests at or after this time (2026-12-01 or 2026-12-01T08:00:00Z), or
        /// this long ago (24h, 7d)
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// Only requests before this time
        #[arg(long, value_name = "WHEN")]
        until: Option<String>,
        /// Only routes containing this text, e.g. `/sql`
        #[arg(long, value_name = "TEXT")]
        route: Option<String>,
        /// Output format
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

const AUDIT_HELP: &str = "\
Each line of the audit log (audit/ in the data directory) is one API request: its
time, token, route, status, duration, rows answered, tables read, and the SHA-256 of
its query text (of SQL also its shape, literals replaced by `?`), never the literals.

Examples:
  crossdex audit --since 24h
  crossdex audit --token portal --route /sql --format json";

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print its secret, once; only its hash is kept.
    #[command(after_help = TOKEN_HELP)]
    Create {
        /// Its name (letters, digits, `_`, `-`, `.`)
        name: String,
        /// What it may do, comma-separated: search, sql, subjects, status, admin
        #[arg(long, value_delimiter = ',', required = true)]
        scope: Vec<String>,
        /// Only these sources' records, comma-separated [default: all]
        #[arg(long, value_delimiter = ',')]
        sources: Option<Vec<String>>,
        /// Only these projects' records, comma-separated [default: all]
        #[arg(long, value_delimiter = ',')]
        projects: Option<Vec<String>>,
        /// How long it works: 30d, 12h, 2w ([server] max_token_days at most)
        #[arg(long, value_name = "DURATION")]
        expires: String,
        /// It sees sensitive values in clear
        #[arg(long)]
        sensitive: bool,
        /// Derive it from this token: it can only be narrower
        #[arg(long, value_name = "TOKEN")]
        from: Option<String>,
        /// Requests per second [default 50]
        #[arg(long, value_name = "N")]
        rate: Option<u32>,
        /// Queries at once [default 4]
        #[arg(long, value_name = "N")]
        concurrent: Option<u32>,
        /// Rows per answer at most [default 1000000]
        #[arg(long, value_name = "N")]
        max_rows: Option<u64>,
    },
    /// List tokens: names, scopes, expiry; never secrets.
    List {
        /// Output format
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Revoke a token, and every token derived from it, from the next request on.
    Revoke {
        /// The token's name
        name: String,
    },
}

const TOKEN_HELP: &str = "\
The secret is printed once, on standard output; the data directory keeps its SHA-256
only. Send it as `Authorization: Bearer <secret>`. Once a token exists, every API
request needs one, and `serve` may listen on addresses other than loopback.

Examples:
  crossdex token create portal --scope search --sources imaging --expires 30d
  crossdex token create analyst --scope search,sql,subjects --projects ADNI3 --expires 90d
  crossdex token create steward --scope search,sql,subjects --sensitive --expires 7d
  crossdex token create kiosk --from portal --scope search --projects ADNI3 --expires 1d";

const SERVE_HELP: &str = "\
The HTTP API answers under http://ADDR/api/v1/ (a page there lists every endpoint;
/api/v1/openapi.json describes them): search, SQL as JSON, NDJSON, CSV or Arrow,
subjects, records, sources and their runs, /health, /ready, /metrics.

Each source with a `schedule` (a cron expression: minute hour day-of-month month
day-of-week) in its [sources.<name>] table is synced when due, read in its `timezone`
(default: [sync] timezone, else the machine's zone), up to `jitter_s` seconds late.

  [sources.xnat]
  schedule = \"0 2 * * *\"        # 02:00 every night
  timezone = \"Europe/Paris\"
  jitter_s = 600

A source is never synced twice at once: fires during a run coalesce into one run
right after it. Fires missed while serve was down run once at start-up, or not at all
with [sync] missed_runs = \"skip\". On SIGINT or SIGTERM no new run starts; running
syncs get [sync] shutdown_grace_s (default 30) to finish, then are abandoned: the
previous state of their sources stays. `crossdex status` shows the next runs.

Examples:
  crossdex serve
  crossdex serve --listen 127.0.0.1:9000 --no-schedule
  curl 'http://127.0.0.1:8742/api/v1/search?q=hippocampus'
  systemd: ExecStart=/usr/local/bin/crossdex --config /etc/crossdex.toml serve";

const TUI_HELP: &str = "\
Examples:
  crossdex tui                           over the configuration's data directory
  crossdex --data-dir /tmp/demo tui      over another one
  NO_COLOR=1 crossdex tui                without colours
  crossdex tui --server https://crossdex.example.org --token-file ~/.crossdex-token
                                         the institute's server, within the token's scope

Keys: F1 lists them all (type to filter); F2..F6 switch views; Ctrl-P jumps to a view,
table, saved query or subject; Ctrl-R runs SQL and Esc cancels it; q quits. See
docs/tui.md.";

const DEMO_HELP: &str = "\
Examples:
  crossdex demo                          the default cohort
  crossdex demo --subjects 1000 --seed 7
  crossdex demo --data-dir /tmp/demo     keep the demo's index there

The simulators run inside the demo and stop with it; `crossdex sim` keeps them serving.";

const SIM_HELP: &str = "\
Ports, from --port-base P: XNAT P, REDCap P+1, OMERO P+2, tranSMART P+3, eLabFTW P+4.

Examples:
  crossdex sim --write-config sim.toml --truth truth.csv
  crossdex sim --subjects 1000 --seed 7 --port-base 19000
  crossdex sim --fault redcap:error_rate=0.2 --fault latency_ms=30

Faults (--fault [SYSTEM:]NAME=VALUE, repeatable): latency_ms, error_rate,
rate_limit_rate, retry_after_s, truncate_rate, hang_rate, hang_ms, fail_next, fail_status.

Admin endpoints on every simulator:
  POST /_sim/advance[?days=N]   move the simulated world N days on (adds, edits, deletes)
  GET  /_sim/requests           the requests served (DELETE clears)
  GET|PUT /_sim/faults          read or replace the faults, as JSON
  GET  /_sim/truth              the ground truth CSV: person,system,subject_key
  GET  /_sim/state              seed, cohort size, simulated day";

const SEARCH_HELP: &str = "\
Examples:
  crossdex search moca                        records mentioning MoCA
  crossdex search '\"mild cognitive\" -control'  a phrase, without 'control'
  crossdex search 'kind:row source:exports sub-01'
  crossdex search 'amnes*' --format json
  crossdex search hipocampus                  typos: one in 5+ letters, two in 9+
  crossdex search 'subject_id:INT_0042'       every record linked to one subject
  crossdex search -- '-csf amyloid'           a query starting with '-' (also without --)

Searchable fields: title, body (descriptions and values), subject_key, and exact
source:, system:, kind:, project:, subject_id:.";

const SQL_HELP: &str = "\
Tables: records, observations, subjects, subject_links, sync_runs; views visits,
xnat_sessions, xnat_scans, redcap_records, omero_images, transmart_observations,
elabftw_experiments, elabftw_items; table function search(query [, limit]);
subject_of(source, key) gives the subject a source's key is linked to.
Columns of each: docs/tables.md, or `DESCRIBE records`.
Only queries are accepted: SELECT, WITH, EXPLAIN, SHOW, DESCRIBE.

Examples:
  crossdex sql \"SELECT system, kind, count(*) FROM records GROUP BY 1, 2\"
  crossdex sql --format json \"SELECT r.title FROM search('moca') s JOIN records r ON r.id = s.id\"
  crossdex sql --file report.sql --format csv > report.csv
  echo 'SELECT count(*) FROM records' | crossdex sql --file -
  crossdex sql --list
  crossdex sql --saved low-moca --param threshold=24";

const ARCHIVE_HELP: &str = "\
Each part is a folder `<dataset>.part-NNN` holding a complete BagIt bag (RFC 8493) that
validates on its own: data/tables/ (records, observations, subject_links as CSV and
Parquet), data/metadata/ (DataCite XML and JSON when the dataset has every mandatory
property, Dublin Core, the catalogue entry), data/README.txt (every file and column),
manifest-sha256.txt, tagmanifest-sha256.txt, bag-info.txt (Bag-Count: N of T).
Sensitive variables are left out unless --include-sensitive; bag-info.txt says which.

Examples:
  crossdex archive xnat:project:MEMCLIN --out /archive/memclin
  crossdex archive redcap:project:1742 --out /tmp/bags --part-size 500M";

#[derive(Debug, Subcommand)]
pub enum CatalogueCommand {
    /// Every dataset: its id, title, source and counts.
    #[command(
        after_help = "Examples:\n  crossdex catalogue list\n  crossdex catalogue list --format json     with the steward metadata"
    )]
    List {
        /// Output format
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// DataCite's mandatory properties each dataset lacks, with the configuration key
    /// that supplies each; exit 1 when one lacks any.
    #[command(
        after_help = "Example:\n  crossdex catalogue check\n\nKeys are listed most specific first: one dataset's table, its source's, then\n[catalogue.defaults]. docs/fair.md describes each."
    )]
    Check {
        /// Output format
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Write datasets' metadata as DataCite XML or JSON, Dublin Core or crossdex's JSON.
    #[command(
        after_help = "Examples:\n  crossdex catalogue export xnat:project:MEMCLIN --format datacite\n  crossdex catalogue export --format dc --out metadata/     one file per dataset\n  crossdex catalogue export --format json                   every entry, one JSON array"
    )]
    Export {
        /// Datasets to export [default: all]
        datasets: Vec<String>,
        /// datacite (XML, kernel 4), datacite-json, dc (Dublin Core, oai_dc) or json
        #[arg(long, value_enum, default_value_t = MetadataFormat::Datacite)]
        format: MetadataFormat,
        /// Write one file per dataset into this folder instead of standard output
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MetadataFormat {
    /// DataCite XML, kernel 4
    Datacite,
    /// DataCite JSON (the attributes of DataCite's REST API)
    DataciteJson,
    /// Dublin Core (oai_dc)
    Dc,
    /// crossdex's catalogue entry
    Json,
}

#[derive(Debug, Subcommand)]
pub enum LinkCommand {
    /// Unlinked keys per source, conflicts of hard identifiers, ambiguous crosswalk
    /// entries, and subjects present in one system only.
    #[command(
        after_help = "Examples:\n  crossdex link report\n  crossdex link report --format json\n  crossdex link report --fail-on conflicts    exit 1 when a conflict exists (nightly jobs)"
    )]
    Report {
        /// Output format
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Exit 1 when the report holds this kind of finding
        #[arg(long, value_enum)]
        fail_on: Option<FailOn>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// Keys kept apart because a hard identifier disagrees
    Conflicts,
    /// Conflicts, ambiguous crosswalk entries or unlinked keys
    Any,
}

/// What to simulate: shared by `demo` and `sim`.
#[derive(Debug, Args)]
pub struct CohortArgs {
    /// Number of people in the synthetic cohort
    #[arg(long, default_value_t = crossdex_sim::DEFAULT_SUBJECTS, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub subjects: u32,
    /// Seed of the cohort: the same seed gives the same data, byte for byte
    #[arg(long, default_value_t = crossdex_sim::DEFAULT_SEED)]
    pub seed: u64,
    /// Start the simulated world this many days after day 0
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub days: u32,
}

#[derive(Debug, Args)]
pub struct TuiArgs {
    /// Browse a crossdex server's HTTP API instead of the local data directory, within
    /// the token's scope (e.g. https://crossdex.example.org)
    #[arg(long, value_name = "URL", requires = "token_file")]
    pub server: Option<String>,
    /// A file holding the API token for --server (the secret `token create` printed)
    #[arg(long, value_name = "FILE", requires = "server")]
    pub token_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub cohort: CohortArgs,
    /// Print the summary and exit instead of opening the terminal UI
    #[arg(long)]
    pub no_ui: bool,
}

#[derive(Debug, Args)]
pub struct SimArgs {
    #[command(flatten)]
    pub cohort: CohortArgs,
    /// First port; the five simulators listen on P to P+4
    #[arg(long, default_value_t = crossdex_sim::DEFAULT_PORT_BASE, value_name = "P")]
    pub port_base: u16,
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDR")]
    pub host: std::net::IpAddr,
    /// Write a crossdex configuration pointing at the simulators (credentials included)
    #[arg(long, value_name = "FILE")]
    pub write_config: Option<PathBuf>,
    /// Write the ground truth as CSV: person,system,subject_key
    #[arg(long, value_name = "FILE")]
    pub truth: Option<PathBuf>,
    /// Inject a fault, [SYSTEM:]NAME=VALUE (see below); repeatable
    #[arg(long = "fault", value_name = "SPEC")]
    pub faults: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Sources to sync, by their name in the configuration
    pub sources: Vec<String>,
    /// Sync every configured source
    #[arg(long, conflicts_with = "sources")]
    pub all: bool,
    /// Re-read everything instead of only what changed; deletes what disappeared
    #[arg(long)]
    pub full: bool,
    /// Sources fetched at the same time [default: `parallel_sources` in [sync], else 4]
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
    /// When another sync holds the data directory, wait up to this many seconds for
    /// it to finish instead of failing at once
    #[arg(long, value_name = "SECONDS")]
    pub wait: Option<u64>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: [server] listen, else 127.0.0.1:8742]; port 0
    /// takes a free one. Loopback only: other addresses need API tokens
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Serve the API only: no scheduled syncs, and the data directory stays free for
    /// `crossdex sync` from cron or a timer
    #[arg(long)]
    pub no_schedule: bool,
}

#[derive(Debug, Args)]
pub struct SqlArgs {
    /// The SQL query
    #[arg(conflicts_with_all = ["file", "saved", "list"])]
    pub query: Option<String>,
    /// Read the query from a file (`-` for stdin)
    #[arg(long, short = 'f', value_name = "FILE", conflicts_with_all = ["saved", "list"])]
    pub file: Option<PathBuf>,
    /// Run a saved query by name (see --list)
    #[arg(long, value_name = "NAME", conflicts_with = "list")]
    pub saved: Option<String>,
    /// Parameter of a saved query, NAME=VALUE; repeatable
    #[arg(long = "param", short = 'p', value_name = "NAME=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// List the saved queries with their parameters
    #[arg(long)]
    pub list: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got {s:?}")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// An aligned text table
    Table,
    /// CSV with a header line
    Csv,
    /// A JSON array of objects
    Json,
}

impl From<Format> for crossdex_service::OutputFormat {
    fn from(f: Format) -> Self {
        match f {
            Format::Table => crossdex_service::OutputFormat::Table,
            Format::Csv => crossdex_service::OutputFormat::Csv,
            Format::Json => crossdex_service::OutputFormat::Json,
        }
    }
}
