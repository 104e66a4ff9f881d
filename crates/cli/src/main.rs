//! The `crossdex` binary: parses the command line, loads the configuration, wires the
//! connectors of the registry to the store, the sync runner and the query engine.
//!
//! This is the only place that knows every crate; it holds no domain logic of its own
//! beyond presenting results. Errors become exit codes here: 0 success, 1 runtime
//! failure, 2 usage or configuration error.

/// `println!` for results: a closed stdout (`| head`) ends the output quietly instead
/// of panicking, as `commands::print` does for whole renderings.
macro_rules! outln {
    () => {{
        let _ = $crate::commands::print("\n");
    }};
    ($($arg:tt)*) => {{
        let _ = $crate::commands::print(&format!("{}\n", format_args!($($arg)*)));
    }};
}

mod args;
mod commands;
mod config;
mod link;
mod registry;
mod saved;
mod simulate;
mod syncing;

use std::process::ExitCode;

use clap::Parser;

use crate::args::Cli;

/// An error with the exit code it deserves.
#[derive(Debug)]
pub enum CliError {
    /// The user's input or configuration is wrong: exit 2.
    Usage(anyhow::Error),
    /// Something failed while running: exit 1.
    Runtime(anyhow::Error),
}

impl CliError {
    fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Runtime(_) => 1,
        }
    }

    pub fn usage(msg: impl std::fmt::Display) -> CliError {
        CliError::Usage(anyhow::anyhow!("{msg}"))
    }
}

impl From<config::ConfigError> for CliError {
    fn from(e: config::ConfigError) -> Self {
        CliError::Usage(e.into())
    }
}

impl From<crossdex_query::QueryError> for CliError {
    fn from(e: crossdex_query::QueryError) -> Self {
        if e.is_user_error() {
            CliError::Usage(e.into())
        } else {
            CliError::Runtime(e.into())
        }
    }
}

impl From<crossdex_query::SavedQueryError> for CliError {
    fn from(e: crossdex_query::SavedQueryError) -> Self {
        CliError::Usage(e.into())
    }
}

impl From<crossdex_store::StoreError> for CliError {
    fn from(e: crossdex_store::StoreError) -> Self {
        match e {
            // The user named a folder that is not a data directory.
            crossdex_store::StoreError::NoIndex { .. }
            | crossdex_store::StoreError::NotOurs { .. } => CliError::Usage(e.into()),
            e => CliError::Runtime(e.into()),
        }
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        CliError::Runtime(e)
    }
}

/// An error's message with its causes, as printed on stderr.
pub fn error_text(e: &CliError) -> String {
    let (CliError::Usage(err) | CliError::Runtime(err)) = e;
    format!("{err:#}")
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.global.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            ExitCode::from(e.exit_code())
        }
    }
}
