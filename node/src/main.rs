//! The `rendermesh` binary: parses the command line, starts tracing, runs the command, and
//! reports an error once, with its whole chain.

use clap::Parser;
use rendermesh_node::cli::{Cli, run};

#[tokio::main]
async fn main() {
    rendermesh_node::init_tracing();
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
