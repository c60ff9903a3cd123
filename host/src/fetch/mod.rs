//! `mlmodel-operator fetch`: the downloader the default download Job runs.
use clap::Args;

#[derive(Args, Debug)]
pub struct FetchArgs {}

/// Runs the download and returns the process exit code.
pub fn run(_args: FetchArgs) -> i32 {
    eprintln!("fetch is not built yet");
    2
}
