//! `mlmodel-operator plugins push FILE oci://REGISTRY/REPO:TAG`: publishes a plugin as a Wasm
//! OCI artifact, after checking that the operator can load it.
use anyhow::{Context as _, Result, anyhow, bail, ensure};
use clap::Args;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use mlmodel_plugin_runtime::oci::{OciRef, RegistryArgs, transfer};
use mlmodel_plugin_runtime::{Inspected, MAX_PLUGIN_BYTES, inspect};

#[derive(Args, Debug)]
pub struct PushArgs {
    /// The plugin: a WebAssembly component built for `wasm32-wasip2`.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Where to publish it: `oci://REGISTRY/REPO:TAG` (the repository's last segment should be
    /// the plugin's name).
    #[arg(value_name = "REF")]
    pub reference: OciRef,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Checks the file loads as a plugin, pushes it, and prints the pinned reference (first line,
/// for scripts) and the layer's digest.
pub fn run(args: PushArgs) -> Result<()> {
    let reference = &args.reference;
    ensure!(
        reference.tag.is_some() && reference.digest.is_none(),
        "push to a tag (oci://REGISTRY/REPO:TAG), not {reference}: the registry gives the digest"
    );
    let shown = args.file.display();
    let mut bytes = Vec::new();
    std::fs::File::open(&args.file)
        .and_then(|f| f.take(MAX_PLUGIN_BYTES + 1).read_to_end(&mut bytes))
        .with_context(|| format!("reading {shown}"))?;
    if bytes.len() as u64 > MAX_PLUGIN_BYTES {
        bail!("{shown} is larger than {MAX_PLUGIN_BYTES} bytes, the most a plugin may be");
    }
    let plugin = inspect(&bytes, &shown.to_string())
        .map_err(|e| anyhow!("{shown} is not a plugin the operator can load: {e}"))?;
    let name = &plugin.summary.name;
    if name != reference.plugin_name() {
        eprintln!(
            "warning: plugin {name} pushed to repository {}: models name a plugin by its own name, and a failed load is traced to a reference by the repository's last segment",
            reference.repository
        );
    }
    let layer_digest = format!("sha256:{}", plugin.summary.sha256);
    let config = config_json(&plugin, &layer_digest);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let pushed = runtime
        .block_on(transfer::push(
            reference,
            &bytes,
            &config,
            annotations(&plugin),
            &args.registry.options(),
        ))
        .map_err(|e| anyhow!("pushing {shown} to {reference}: {e}"))?;
    debug_assert_eq!(pushed.layer_digest, layer_digest);
    println!("{}", reference.pinned(&pushed.manifest_digest));
    println!(
        "layer {} ({} bytes): plugin {name} {} ({})",
        pushed.layer_digest,
        bytes.len(),
        plugin.summary.version,
        reference
    );
    Ok(())
}

/// The artifact's config (CNCF Wasm OCI layout): platform, layer digests, the component's
/// imports and exports. No timestamp: the same file gives the same manifest digest.
fn config_json(plugin: &Inspected, layer_digest: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [layer_digest],
        "component": {
            "exports": plugin.exports,
            "imports": plugin.imports,
            "target": null,
        },
    }))
    .expect("the config serializes")
}

fn annotations(plugin: &Inspected) -> BTreeMap<String, String> {
    let s = &plugin.summary;
    let mut a = BTreeMap::from([
        ("org.opencontainers.image.title".to_string(), s.name.clone()),
        (
            "org.opencontainers.image.version".to_string(),
            s.version.clone(),
        ),
    ]);
    if !s.description.is_empty() {
        a.insert(
            "org.opencontainers.image.description".into(),
            s.description.clone(),
        );
    }
    a
}
