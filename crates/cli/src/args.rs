//! Command-line arguments. Raw flags are parsed here; commands validate them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
Examples:
  crossdex demo                                  index the bundled sample exports and query them
  crossdex init                                  write a commented crossdex.toml to start from
  crossdex sync --all                            sync every configured source
  crossdex search 'moca baseline'                full-text search
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
        after_help = "Examples:\n  crossdex sync --all           every configured source\n  crossdex sync exports         one source\n  crossdex sync --all --full    re-read everything, deleting what disappeared"
    )]
    Sync(SyncArgs),
    /// Show each source's state and its last sync run.
    #[command(
        after_help = "Example:\n  crossdex status\n  crossdex sql \"SELECT * FROM sync_runs ORDER BY started_at DESC\"   the full history"
    )]
    Status {
        /// Output format
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Full-text search across every source.
    #[command(after_help = SEARCH_HELP)]
    Search {
        /// The search: words (all must match), "phrases", field:value, OR, -word, prefix*
        query: String,
        /// Maximum number of hits
        #[arg(long, short = 'n', default_value_t = 20)]
        limit: usize,
        /// Output format
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Run a read-only SQL query over the tables and the search() function.
    #[command(after_help = SQL_HELP)]
    Sql(SqlArgs),
    /// Index the bundled sample exports into a demo data directory and query them.
    #[command(
        after_help = "Example:\n  crossdex demo\n  crossdex demo --data-dir /tmp/demo   keep the demo data there"
    )]
    Demo,
}

const SEARCH_HELP: &str = "\
Examples:
  crossdex search moca                        records mentioning MoCA
  crossdex search '\"mild cognitive\" -control'  a phrase, without 'control'
  crossdex search 'kind:row source:exports sub-01'
  crossdex search 'amnes*' --format json

Searchable fields: title, body (descriptions and values), subject_key, and exact
source:, system:, kind:, project:, subject_id:.";

const SQL_HELP: &str = "\
Tables: records, observations, sync_runs; table function search(query [, limit]).
Only queries are accepted: SELECT, WITH, EXPLAIN, SHOW, DESCRIBE.

Examples:
  crossdex sql \"SELECT system, kind, count(*) FROM records GROUP BY 1, 2\"
  crossdex sql --format json \"SELECT r.title FROM search('moca') s JOIN records r ON r.id = s.id\"
  crossdex sql --file report.sql --format csv > report.csv
  echo 'SELECT count(*) FROM records' | crossdex sql --file -
  crossdex sql --list
  crossdex sql --saved low-moca --param threshold=24";

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

impl From<Format> for crossdex_query::OutputFormat {
    fn from(f: Format) -> Self {
        match f {
            Format::Table => crossdex_query::OutputFormat::Table,
            Format::Csv => crossdex_query::OutputFormat::Csv,
            Format::Json => crossdex_query::OutputFormat::Json,
        }
    }
}
