//! The `rendermesh` binary: parses the command line, starts tracing, runs the command, and
//! reports an error once, with its whole chain (exit 1; clap's usage errors exit 2, ctrl-c
//! during `render` 130).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
mod args;
mod chart;
mod commands;
mod submit;
mod tables;

use args::{Cli, Command};
use commands::run;
use tracing_subscriber::EnvFilter;

/// Log levels when `RUST_LOG` is unset.
const DEFAULT_LOGS: &str = "warn,rendermesh=info,rendermesh_node=info,rendermesh_bootstrap=info";
/// `render` draws a progress bar on stderr: its embedded node only speaks up about problems.
const RENDER_LOGS: &str = "warn";

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let default = match cli.command {
        Command::Render(_) => RENDER_LOGS,
        _ => DEFAULT_LOGS,
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .compact()
        .init();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
