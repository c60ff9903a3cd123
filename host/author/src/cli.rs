//! `mlmodel-operator plugins`: what is loaded, from where, and what failed to load (`list`, also
//! `plugins` alone); a new plugin project (`new`); a project's golden cases through the
//! operator's runtime (`test`); publish a plugin to an OCI registry (`push`).
use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::PathBuf;

use crate::project::{self, Lang, TESTS_DIR};
use crate::push::PushArgs;
use crate::{golden, scaffold};
use mlmodel_plugin_runtime::args::SourceArgs;
use mlmodel_plugin_runtime::{Runtime, RuntimeOptions, Step};

#[derive(Args, Debug)]
pub struct PluginsArgs {
    #[command(subcommand)]
    pub command: Option<PluginsCommand>,
    /// Without a subcommand: `list`.
    #[command(flatten)]
    pub list: ListArgs,
}

#[derive(Subcommand, Debug)]
pub enum PluginsCommand {
    /// List the plugins found (built in and in plugin directories) and the files that failed to
    /// load (what `plugins` alone does).
    List(ListArgs),
    /// Write a new plugin project (Rust, TypeScript or Python) that builds, tests and renders as
    /// it is.
    New(NewArgs),
    /// Render a plugin project's golden cases with its built component through the operator's
    /// runtime (sandbox, output policy): a diff for each case that differs.
    Test(TestArgs),
    /// Publish a plugin to an OCI registry as a Wasm artifact (checked to load first); prints
    /// the reference pinned to its digest, for `--plugin-ref`.
    Push(PushArgs),
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub source: SourceArgs,
}

#[derive(Args, Debug)]
pub struct NewArgs {
    /// The plugin's name, what models select it by: a DNS label.
    pub name: String,
    /// The language of the project.
    #[arg(long, value_enum)]
    pub lang: Lang,
    /// The step it renders; its template is the built-in plugin of that step (download:
    /// download-job, serve: echo-server, expose: service).
    #[arg(long, default_value = "serve")]
    pub step: Step,
    /// Directory to create, absent or empty (default: ./NAME).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct TestArgs {
    /// The plugin project.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// The component to test (default: where the project's build puts it).
    #[arg(long, value_name = "FILE.wasm")]
    pub plugin: Option<PathBuf>,
    /// Folder of golden cases (default: DIR/tests).
    #[arg(long, value_name = "DIR")]
    pub tests: Option<PathBuf>,
    /// Step to render the cases for (default: the plugin's only step).
    #[arg(long, value_name = "STEP")]
    pub step: Option<Step>,
    /// Write each case's input.json and expected.json from what the host and the plugin give
    /// now, rather than compare (a refused output still fails).
    #[arg(long)]
    pub update: bool,
    /// Directory for compiled plugins (default: `$MLMODEL_CACHE/wasm`, none when unset).
    #[arg(long, value_name = "DIR", env = "MLMODEL_PLUGIN_CACHE")]
    pub cache_dir: Option<PathBuf>,
}

pub fn run(args: PluginsArgs) -> Result<()> {
    match args.command {
        None => list(args.list),
        Some(PluginsCommand::List(list_args)) => list(list_args),
        Some(PluginsCommand::New(new_args)) => new(new_args),
        Some(PluginsCommand::Test(test_args)) => test(test_args),
        Some(PluginsCommand::Push(push)) => crate::push::run(push),
    }
}

/// Prints a table of plugins and the load errors; fails when any plugin failed to load.
fn list(args: ListArgs) -> Result<()> {
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

/// Writes the project and says what to do next.
fn new(args: NewArgs) -> Result<()> {
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
    let project = scaffold::NewProject {
        name: args.name,
        lang: args.lang,
        step: args.step,
        dir: dir.clone(),
    };
    let files = scaffold::create(&project)?;
    if mlmodel_plugin_runtime::is_builtin(&project.name) {
        eprintln!(
            "note: {} is the name of a built-in plugin: the operator loads it only with --replace-builtin {}",
            project.name, project.name
        );
    }
    println!(
        "created the {} plugin {} ({}) in {}: {} files\nnext: its README.md (build), then `mlmodel-operator plugins test {}`",
        project.step,
        project.name,
        project.lang,
        dir.display(),
        files.len(),
        dir.display()
    );
    Ok(())
}

/// Loads the component, renders every case and prints how each went; fails when any did.
fn test(args: TestArgs) -> Result<()> {
    let wasm = match args.plugin {
        Some(file) => file,
        None => project::built_component(&args.dir)?,
    };
    let mut opts = RuntimeOptions {
        operator_image: golden::OPERATOR_IMAGE.into(),
        ..RuntimeOptions::default()
    };
    if args.cache_dir.is_some() {
        opts.cache_dir = args.cache_dir;
    }
    // Which images run is the cluster admin's list, not known here.
    let runtime = Runtime::new(opts.allow_any_image())?;
    let plugin = runtime
        .load_file(&wasm)
        .map_err(|e| anyhow::anyhow!("{}: not loaded: {e}", wasm.display()))?;
    let steps = plugin
        .steps
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let step = match (args.step, &plugin.steps[..]) {
        (Some(step), _) if plugin.steps.contains(&step) => step,
        (Some(step), _) => anyhow::bail!("plugin {} renders {steps}, not step {step}", plugin.name),
        (None, [one]) => *one,
        (None, _) => anyhow::bail!(
            "plugin {} renders several steps ({steps}): pass --step, and --tests with that step's cases",
            plugin.name
        ),
    };
    let tests_dir = args.tests.unwrap_or_else(|| args.dir.join(TESTS_DIR));
    let cases = golden::cases(&tests_dir)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "plugin {} {} (step {step}) from {}, sha256 {}: {} cases in {}",
        plugin.name,
        plugin.version,
        wasm.display(),
        &plugin.sha256[..12],
        cases.len(),
        tests_dir.display()
    )?;
    let mut failed = 0;
    for case in &cases {
        let report = golden::run_case(&runtime, &plugin, step, case, args.update)
            .with_context(|| format!("case {}", case.name))?;
        let verdict = match (report.passed(), report.written.is_empty()) {
            (false, _) => "FAIL",
            (true, true) => "PASS",
            (true, false) => "UPDATED",
        };
        writeln!(out, "{verdict:<7} {}", report.name)?;
        for path in &report.written {
            writeln!(out, "        wrote {}", path.display())?;
        }
        for failure in &report.failures {
            for line in failure.lines() {
                writeln!(out, "        {line}")?;
            }
        }
        failed += usize::from(!report.passed());
    }
    writeln!(
        out,
        "{} cases: {} passed, {failed} failed",
        cases.len(),
        cases.len() - failed
    )?;
    if failed > 0 {
        anyhow::bail!("{failed} of {} cases failed", cases.len());
    }
    Ok(())
}
