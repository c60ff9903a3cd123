//! `mlmodel-operator plugins`: what is loaded, from where, and what failed to load.
use anyhow::Result;
use clap::Args;
use std::io::Write;
use std::path::PathBuf;

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
}

impl SourceArgs {
    /// Runtime options with these sources and the defaults for everything else.
    pub fn options(&self) -> RuntimeOptions {
        let mut opts = RuntimeOptions {
            plugin_dirs: self.plugin_dirs.clone(),
            replace_builtins: self.replace_builtins.iter().cloned().collect(),
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
    #[command(flatten)]
    pub source: SourceArgs,
}

/// Prints a table of plugins and the load errors; fails when any plugin failed to load.
pub fn run(args: PluginsArgs) -> Result<()> {
    let runtime = Runtime::new(args.source.options())?;
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
            let source = if p.active {
                p.source
            } else {
                format!("{} (replaced)", p.source)
            };
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
    anyhow::bail!("{} plugin file(s) could not be loaded", errors.len())
}

/// `mlmodel-operator compile-plugin` (hidden): the child process in which the operator compiles
/// a plugin (`plugins/compiler.rs`). Reads the component on stdin, writes the artifact to `--out`.
#[derive(Args, Debug)]
pub struct CompilePluginArgs {
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    memory_bytes: usize,
    #[arg(long)]
    max_concurrent: u32,
}

/// Exits [`super::compiler::REFUSED`] with the reason on stderr when the component cannot be
/// compiled.
pub fn compile_plugin(args: CompilePluginArgs) -> Result<()> {
    use std::io::Read as _;
    let limits = super::Limits {
        memory_bytes: args.memory_bytes,
        max_concurrent: args.max_concurrent,
        ..super::Limits::default()
    };
    let mut bytes = Vec::new();
    std::io::stdin().lock().read_to_end(&mut bytes)?;
    if let Err(e) = super::engine::compile_to_file(&limits, &bytes, &args.out) {
        eprintln!("{e:#}");
        std::process::exit(super::compiler::REFUSED);
    }
    Ok(())
}
