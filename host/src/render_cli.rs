//! `mlmodel-operator render`: what each step of a model would apply, with no cluster. It runs
//! the operator's own plugin runtime (selection, sandbox, output policy, host additions), so a
//! plugin author sees exactly what the operator would send to the API server.
use anyhow::{Context as _, Result};
use clap::Args;
use serde::Deserialize;
use std::io::{Read, Write};
use std::path::PathBuf;

use crate::api::MLModel;
use crate::names;
use crate::plugins::args::SourceArgs;
use crate::plugins::{Runtime, Step};
use crate::selection::select;

#[derive(Args, Debug)]
pub struct RenderArgs {
    /// MLModel manifest(s) to render, YAML or JSON (`-` for stdin); several documents allowed.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub source: SourceArgs,
    /// Render only these steps (repeatable); default: download, serve, and expose when
    /// `spec.expose` is true.
    #[arg(long = "step", value_name = "STEP")]
    pub steps: Vec<Step>,
    /// Revision to render (default: the one the operator would compute).
    #[arg(long, value_name = "REV")]
    pub revision: Option<String>,
    /// Image the download Job runs.
    #[arg(long, value_name = "IMAGE", env = "MLMODEL_OPERATOR_IMAGE")]
    pub operator_image: Option<String>,
}

pub fn run(args: RenderArgs) -> Result<()> {
    let text = if args.file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading stdin")?;
        s
    } else {
        std::fs::read_to_string(&args.file)
            .with_context(|| format!("reading {}", args.file.display()))?
    };
    let models = parse_models(&text)
        .with_context(|| format!("reading MLModels from {}", args.file.display()))?;

    let mut opts = args.source.options();
    if let Some(image) = args.operator_image.clone() {
        opts.operator_image = image;
    }
    // Which images run is the operator's --plugin-allow, not known here.
    let runtime = Runtime::new(opts.allow_any_image())?;
    for (path, error) in runtime.load_errors() {
        eprintln!("warning: plugin {} not loaded: {error}", path.display());
    }

    let mut out = std::io::stdout().lock();
    for model in &models {
        let name = model.metadata.name.as_deref().unwrap_or_default();
        for doc in render_model(&runtime, model, &args.steps, args.revision.as_deref())
            .with_context(|| format!("rendering MLModel {name}"))?
        {
            write!(out, "---\n{doc}")?;
        }
    }
    Ok(())
}

/// The YAML documents of every step of `model`, each preceded by a comment naming the step and
/// the plugin.
pub fn render_model(
    runtime: &Runtime,
    model: &MLModel,
    steps: &[Step],
    revision: Option<&str>,
) -> Result<Vec<String>> {
    let download = select(runtime, Step::Download, model)?;
    let storage = crate::storage::choose(model, None);
    let per_pod = storage.mode == crate::api::StorageMode::PerPod;
    let revision = revision
        .map(str::to_string)
        .unwrap_or_else(|| names::revision(model, &download.name, storage.mode));
    let steps: Vec<Step> = if steps.is_empty() {
        Step::ALL
            .into_iter()
            .filter(|s| *s != Step::Expose || model.spec.expose)
            .collect()
    } else {
        steps.to_vec()
    };
    let mut docs = Vec::new();
    for step in steps {
        let plugin = select(runtime, step, model)?;
        let mut objects = runtime.render(&plugin, model, step, &revision)?;
        if per_pod && step == Step::Download {
            // What the operator applies: the download runs in the serving pods.
            docs.push(format!(
                "# step: download, plugin: {}@{}: storage PerPod ({}), run by each serving pod
",
                plugin.name, plugin.version, storage.reason
            ));
            continue;
        }
        if per_pod && step == Step::Serve {
            let downloaded = runtime.render(&download, model, Step::Download, &revision)?;
            crate::per_pod::fold(&mut objects, &downloaded, &model.spec.storage_size)
                .map_err(|why| anyhow::anyhow!("storage PerPod: {why}"))?;
        }
        for object in objects {
            let yaml = serde_yaml::to_string(&object).context("printing YAML")?;
            docs.push(format!(
                "# step: {step}, plugin: {}@{}\n{yaml}",
                plugin.name, plugin.version
            ));
        }
    }
    Ok(docs)
}

fn parse_models(text: &str) -> Result<Vec<MLModel>> {
    let mut models = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = serde_yaml::Value::deserialize(doc)?;
        if value.is_null() {
            continue;
        }
        let kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or_default();
        if kind != "MLModel" {
            anyhow::bail!("expected kind MLModel, found {kind:?}");
        }
        models.push(serde_yaml::from_value(value)?);
    }
    anyhow::ensure!(!models.is_empty(), "no MLModel found");
    Ok(models)
}
