//! Logging set-up shared by every subcommand.
use anyhow::Result;
use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Args, Debug)]
pub struct LogArgs {
    /// Log format.
    #[arg(
        long,
        global = true,
        env = "MLMODEL_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `mlmodel_operator=debug`.
    #[arg(long, global = true, env = "MLMODEL_LOG", default_value = "info")]
    pub log_level: String,
}

/// Logs go to stderr so that `render` and `crd` keep stdout for their YAML.
pub fn init(args: &LogArgs) -> Result<()> {
    let filter = EnvFilter::try_new(&args.log_level)?;
    // Colours only on a terminal: in a container's log (`kubectl logs`) escape codes are noise.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}
