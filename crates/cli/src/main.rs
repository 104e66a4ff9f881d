//! The `crossdex` binary: a thin client of `crossdex-service`. It parses the command
//! line, calls the service, renders its typed answers (tables, CSV, JSON, progress
//! bars) and turns errors into exit codes: 0 success, 1 runtime failure, 2 usage or
//! configuration error.
//!
//! It must hold no domain logic and never reach the store, the writer or a snapshot:
//! what a user can ask lives in the service, shared with the HTTP API and the TUI.
//! Only `crossdex sim` and `demo` link the simulators.

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
mod progress;
mod render;
mod simulate;

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

impl From<crossdex_service::ServiceError> for CliError {
    fn from(e: crossdex_service::ServiceError) -> Self {
        use crossdex_service::{ErrorCode, ErrorKind};
        // The operator runs this process: an internal error's detail is theirs to see.
        let err = anyhow::anyhow!("{}", e.operator_text());
        let runtime = matches!(
            e.kind,
            ErrorKind::Internal | ErrorKind::Unavailable | ErrorKind::Auth
        ) || e.code == ErrorCode::DataDirectoryBusy;
        if runtime {
            CliError::Runtime(err)
        } else {
            CliError::Usage(err)
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
    let outcome = runtime.block_on(commands::run(cli));
    // Work still running is work the command let go of (a query cancelled in the
    // terminal UI, stuck in a long step): the process does not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            ExitCode::from(e.exit_code())
        }
    }
}
