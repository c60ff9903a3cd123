//! `mlmodel-fetch fetch ...`: the downloader alone, with the command line of
//! `mlmodel-operator fetch` (this crate's tests run it; the download Jobs run the operator's).
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "mlmodel-fetch", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Download a model into a directory (what the default download Job runs).
    Fetch(mlmodel_fetch::FetchArgs),
}

fn main() {
    // As the operator's text logs: filter from MLMODEL_LOG (default `info`), on stderr.
    let filter = std::env::var("MLMODEL_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let Command::Fetch(args) = Cli::parse().command;
    std::process::exit(mlmodel_fetch::run(args));
}
