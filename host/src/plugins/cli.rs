//! `mlmodel-operator plugins`: what is loaded, from where, and what failed to load;
//! `plugins push`: publish a plugin to an OCI registry.
use anyhow::Result;
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::PathBuf;

use super::oci::OciArgs;
use super::oci::push::PushArgs;
use super::{Runtime, RuntimeOptions};

/// Where plugins come from; shared by `run`, `render` and `plugins`.
#[derive(Args, Debug, Clone, Default)]
pub struct SourceArgs {
    /// Directory of `*.wasm` plugins, loaded after the built-ins (repeatable or comma-separated).
    #[arg(
        long = "plugin-dir",
        value_name = "DIR",
        env = "MLMODEL_PLUGIN_DIRS",
        value_delimiter = ','
    )]
    pub plugin_dirs: Vec<PathBuf>,
    /// Directory for compiled plugins (default: `$MLMODEL_CACHE/wasm`, none when unset).
    #[arg(long, value_name = "DIR", env = "MLMODEL_PLUGIN_CACHE")]
    pub cache_dir: Option<PathBuf>,
    /// Built-in plugin that a plugin directory's plugin of the same name may replace
    /// (repeatable or comma-separated); without it such a plugin is refused.
    #[arg(
        long = "replace-builtin",
        value_name = "NAME",
        env = "MLMODEL_REPLACE_BUILTINS",
        value_delimiter = ','
    )]
    pub replace_builtins: Vec<String>,
    /// Plugins from OCI registries and how the registries are reached.
    #[command(flatten)]
    pub oci: OciArgs,
}

impl SourceArgs {
    /// Runtime options with these sources and the defaults for everything else.
    pub fn options(&self) -> RuntimeOptions {
        let mut opts = RuntimeOptions {
            plugin_dirs: self.plugin_dirs.clone(),
            replace_builtins: self.replace_builtins.iter().cloned().collect(),
            oci: self.oci.options(),
            ..RuntimeOptions::default()
        };
        if self.cache_dir.is_some() {
            opts.cache_dir = self.cache_dir.clone();
        }
        opts
    }
}

#[derive(Args, Debug)]
pub struct PluginsArgs {
    /// With no subcommand: list the plugins.
    #[command(subcommand)]
    pub command: Option<PluginsCommand>,
    #[command(flatten)]
    pub source: SourceArgs,
}

#[derive(Subcommand, Debug)]
pub enum PluginsCommand {
    /// Publish a plugin to an OCI registry as a Wasm artifact (checked to load first); prints
    /// the reference pinned to its digest, for `--plugin-ref`.
    Push(PushArgs),
}

/// `plugins` (the list) or one of its subcommands.
pub fn run(args: PluginsArgs) -> Result<()> {
    match args.command {
        Some(PluginsCommand::Push(push)) => super::oci::push::run(push),
        None => list(args.source),
    }
}

/// Prints a table of plugins and the load errors; fails when any plugin failed to load.
fn list(source: SourceArgs) -> Result<()> {
    let runtime = Runtime::new(source.options())?;
    let mut out = std::io::stdout().lock();
    let rows: Vec<[String; 7]> = runtime
        .plugins()
        .into_iter()
        .map(|p| {
            let steps = p
                .steps
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(",");
            let mut source = p.source;
            if let Some(tag) = &p.tag {
                source = format!("{source} (tag {tag})");
            }
            if !p.active {
                source = format!("{source} (replaced)");
            }
            let formats = match &p.accepts.model_formats[..] {
                [] => "any".to_string(),
                formats => formats.join(","),
            };
            let keys = match &p.accepts.config_keys {
                None => "any".to_string(),
                Some(keys) => keys.join(","),
            };
            [
                p.name,
                p.version,
                steps,
                p.sha256.clone(),
                source,
                formats,
                keys,
            ]
        })
        .collect();
    let header = [
        "NAME",
        "VERSION",
        "STEPS",
        "SHA256",
        "SOURCE",
        "FORMATS",
        "CONFIG KEYS",
    ]
    .map(String::from);
    let mut widths = [0; 7];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    let errors = runtime.load_errors();
    if errors.is_empty() {
        return Ok(());
    }
    writeln!(out, "\nNot loaded:")?;
    for (path, error) in &errors {
        writeln!(out, "  {}: {error}", path.display())?;
    }
    anyhow::bail!("{} plugin source(s) could not be loaded", errors.len())
}
