//! The runtime's command-line arguments: where plugins come from (`run`, `render`, `plugins`
//! share them), and the compiler child's (`compile-plugin`, hidden).
use clap::Args;
use std::path::PathBuf;

use crate::RuntimeOptions;
use crate::oci::OciArgs;

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

/// `mlmodel-operator compile-plugin` (hidden): the child process in which the operator compiles
/// a plugin (`compiler.rs`). Reads the component on stdin, writes the artifact to `--out`.
#[derive(Args, Debug)]
pub struct CompilePluginArgs {
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    memory_bytes: usize,
    #[arg(long)]
    max_concurrent: u32,
}

/// Exits [`crate::compiler::REFUSED`] with the reason on stderr when the component cannot be
/// compiled.
pub fn compile_plugin(args: CompilePluginArgs) -> anyhow::Result<()> {
    use std::io::Read as _;
    let limits = crate::Limits {
        memory_bytes: args.memory_bytes,
        max_concurrent: args.max_concurrent,
        ..crate::Limits::default()
    };
    let mut bytes = Vec::new();
    std::io::stdin().lock().read_to_end(&mut bytes)?;
    if let Err(e) = crate::engine::compile_to_file(&limits, &bytes, &args.out) {
        eprintln!("{e:#}");
        std::process::exit(crate::compiler::REFUSED);
    }
    Ok(())
}
