//! `mlmodel-operator`: the operator, its plugin tools and the model downloader in one binary.
use anyhow::Result;
use clap::{Parser, Subcommand};
use mlmodel_operator::{controller, crd, plugins, render_cli, telemetry};

#[derive(Parser)]
#[command(name = "mlmodel-operator", version, about)]
struct Cli {
    #[command(flatten)]
    log: telemetry::LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller against the cluster of the current kubeconfig.
    Run(controller::run::RunArgs),
    /// Print what each step of a model would apply, with no cluster.
    Render(render_cli::RenderArgs),
    /// Download a model into a directory (what the default download Job runs).
    Fetch(mlmodel_fetch::FetchArgs),
    /// Print the MLModel CustomResourceDefinition as YAML.
    Crd,
    /// List the plugins found (built in and in plugin directories); `new`, `test`: author one.
    Plugins(mlmodel_plugin_author::cli::PluginsArgs),
    /// The operator's compiler process (internal).
    #[command(name = "compile-plugin", hide = true)]
    CompilePlugin(plugins::args::CompilePluginArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    telemetry::init(&cli.log)?;
    match cli.command {
        Command::Run(args) => controller::run::run(args),
        Command::Render(args) => render_cli::run(args),
        Command::Fetch(args) => std::process::exit(mlmodel_fetch::run(args)),
        Command::Crd => crd::print(),
        Command::Plugins(args) => mlmodel_plugin_author::cli::run(args),
        Command::CompilePlugin(args) => plugins::args::compile_plugin(args),
    }
}
