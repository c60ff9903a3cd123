//! Where plugins come from: the defaults built into the binary, then every `*.wasm` in the
//! plugin directories, in order, then the plugins of OCI registries (`oci`), in the order
//! configured. Two of these (other than built-ins) with the same name: the first is kept, the
//! later one is a load error naming both. A built-in is replaced only where the admin allows it.
//!
//! A [`Snapshot`] never changes; a reload builds a new one (reusing what is already compiled,
//! by sha256) and the runtime swaps it in, so a render in flight finishes on the plugin it
//! started with.
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::artifact::sha256_hex;
use super::engine::{CallFailure, HostState, PluginEngine, PluginPre};
use super::error::{MAX_PLUGIN_MESSAGE_BYTES, truncate};
use super::oci::sources::{Item, View};
use super::stdio::stderr_suffix;
use super::{Compiler, Limits, Step};

/// Plugins compiled into the operator (built by `host/runtime/build.rs`).
const BUILTINS: &[(&str, &[u8])] = &[
    (
        "download-job",
        include_bytes!(env!("MLMODEL_PLUGIN_WASM_DOWNLOAD_JOB")),
    ),
    (
        "tensorflow-serving",
        include_bytes!(env!("MLMODEL_PLUGIN_WASM_TENSORFLOW_SERVING")),
    ),
    (
        "echo-server",
        include_bytes!(env!("MLMODEL_PLUGIN_WASM_ECHO_SERVER")),
    ),
    (
        "file-server",
        include_bytes!(env!("MLMODEL_PLUGIN_WASM_FILE_SERVER")),
    ),
    (
        "mlserver",
        include_bytes!(env!("MLMODEL_PLUGIN_WASM_MLSERVER")),
    ),
    (
        "service",
        include_bytes!(env!("MLMODEL_PLUGIN_WASM_SERVICE")),
    ),
];

/// A built-in's component, by name.
pub fn builtin_bytes(name: &str) -> Option<&'static [u8]> {
    BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// Whether a plugin of the operator's binary is called `name`.
pub fn is_builtin(name: &str) -> bool {
    BUILTINS.iter().any(|(n, _)| *n == name)
}

pub use crate::artifact::MAX_PLUGIN_BYTES;

/// Longest version `info()` may give: it is shown in every model's status.
const MAX_VERSION_BYTES: usize = 64;
/// Description kept from `info()` (its first line, cut with a marker).
const MAX_DESCRIPTION_BYTES: usize = 1 << 10;

/// Source of the built-in plugins.
pub const BUILTIN_SOURCE: &str = "builtin";

/// A plugin ready to render: checked against the contract and pre-linked.
pub struct LoadedPlugin {
    /// From the plugin's `info()`.
    pub name: String,
    pub version: String,
    pub steps: Vec<Step>,
    pub description: String,
    /// Lowercase hex sha256 of the component's bytes.
    pub sha256: String,
    /// `builtin`, the file it was loaded from, or the registry reference pinned to the digest
    /// fetched (`oci://REGISTRY/REPO@sha256:<manifest hex>`).
    pub source: String,
    /// The tag a registry reference named, when it was given by tag and resolved to `source`.
    pub tag: Option<String>,
    /// From the plugin's optional `inputs` export.
    pub accepts: Accepts,
    pub(crate) pre: PluginPre<HostState>,
}

impl LoadedPlugin {
    /// What a model's `status.plugins` shows for it: `name@version`, and for a plugin from a
    /// registry the pinned reference it came from (`name@version oci://REG/REPO@sha256:<hex>`),
    /// which can be copied into `--plugin-ref` and matches the `plugins` SOURCE column.
    pub fn status_label(&self) -> String {
        if self.source.starts_with(super::oci::SCHEME) {
            format!("{}@{} {}", self.name, self.version, self.source)
        } else {
            format!("{}@{}", self.name, self.version)
        }
    }
}

/// What a plugin accepts (its `inputs` export); a plugin without that export accepts any
/// config key and any model format.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Accepts {
    /// The keys of its step config it reads; `None`: not checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_keys: Option<Vec<String>>,
    /// Model formats a serve plugin loads; empty: any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub model_formats: Vec<String>,
}

/// At most this many config keys and model formats a plugin may declare, each a short word.
const MAX_ACCEPTED_ITEMS: usize = 128;
const MAX_ACCEPTED_ITEM_BYTES: usize = 128;

impl Accepts {
    /// The config keys of `config` this plugin does not read, in the config's order (none
    /// when it declared no keys or `config` is not an object).
    pub fn unknown_config_keys<'a>(&self, config: &'a serde_json::Value) -> Vec<&'a str> {
        match (&self.config_keys, config.as_object()) {
            (Some(known), Some(object)) => object
                .keys()
                .filter(|k| !known.iter().any(|known| known == *k))
                .map(String::as_str)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Whether a serve plugin with these declarations loads files of `format`.
    pub fn loads_format(&self, format: &str) -> bool {
        self.model_formats.is_empty() || self.model_formats.iter().any(|f| f == format)
    }
}

fn check_accepts(name: &str, accepts: &Accepts) -> Result<(), String> {
    let lists = [
        (
            "config key",
            accepts.config_keys.as_deref().unwrap_or_default(),
        ),
        ("model format", &accepts.model_formats[..]),
    ];
    for (what, items) in lists {
        if items.len() > MAX_ACCEPTED_ITEMS {
            return Err(format!(
                "plugin {name}: accepts() lists {} {what}s; at most {MAX_ACCEPTED_ITEMS} are allowed",
                items.len()
            ));
        }
        if let Some(bad) = items.iter().find(|i| {
            i.is_empty() || i.len() > MAX_ACCEPTED_ITEM_BYTES || i.contains(char::is_control)
        }) {
            return Err(format!(
                "plugin {name}: accepts() gave the {what} {:?}; each is one non-empty line of at most {MAX_ACCEPTED_ITEM_BYTES} bytes",
                truncate(bad.clone(), MAX_ACCEPTED_ITEM_BYTES)
            ));
        }
    }
    Ok(())
}

impl fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("steps", &self.steps)
            .field("sha256", &self.sha256)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// One line of `mlmodel-operator plugins`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PluginSummary {
    pub name: String,
    pub version: String,
    pub steps: Vec<Step>,
    pub sha256: String,
    pub source: String,
    /// The tag a registry reference was resolved from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    pub description: String,
    pub accepts: Accepts,
    /// False when a later plugin of the same name replaces it.
    pub active: bool,
}

/// What a plugin directory looked like (path, size, mtime of each `*.wasm`), to notice changes
/// without reading every file.
pub(crate) type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

pub(crate) struct Snapshot {
    /// Selection by name.
    pub(crate) active: BTreeMap<String, Arc<LoadedPlugin>>,
    /// Everything loaded, in load order.
    pub(crate) all: Vec<Arc<LoadedPlugin>>,
    pub(crate) errors: Vec<(PathBuf, String)>,
    /// Sources that failed to load, by the plugin name they stand for (a registry reference's
    /// last path segment, a file's stem): the source and its error. First failure per name.
    pub(crate) failed: BTreeMap<String, (String, String)>,
    /// What the last scan saw: the files, and the directories it could not read.
    pub(crate) fingerprint: Fingerprint,
    pub(crate) dir_errors: Vec<(PathBuf, String)>,
}

impl Snapshot {
    pub(crate) fn summaries(&self) -> Vec<PluginSummary> {
        self.all
            .iter()
            .map(|p| PluginSummary {
                name: p.name.clone(),
                version: p.version.clone(),
                steps: p.steps.clone(),
                sha256: p.sha256.clone(),
                source: p.source.clone(),
                tag: p.tag.clone(),
                description: p.description.clone(),
                accepts: p.accepts.clone(),
                active: self.active.get(&p.name).is_some_and(|a| Arc::ptr_eq(a, p)),
            })
            .collect()
    }
}

/// The `*.wasm` files of `dirs` (following symlinks, as a mounted ConfigMap has them), in
/// order; unreadable directories become errors.
pub(crate) fn scan(dirs: &[PathBuf]) -> (Fingerprint, Vec<(PathBuf, String)>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for dir in dirs {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                errors.push((dir.clone(), format!("cannot read plugin directory: {e}")));
                continue;
            }
        };
        let mut found: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
            .filter(|p| {
                !p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .filter_map(|p| {
                let meta = std::fs::metadata(&p).ok().filter(|m| m.is_file())?;
                Some((p, meta.len(), meta.modified().ok()))
            })
            .collect();
        found.sort();
        files.extend(found);
    }
    (files, errors)
}

/// Loads the built-ins, the files of `fingerprint` and the registry plugins of `oci`, reusing
/// `previous`'s compiled plugins. Built-ins named in `replaceable` may be replaced by another
/// plugin of the same name.
pub(crate) fn load(
    engine: &PluginEngine,
    fingerprint: Fingerprint,
    dir_errors: Vec<(PathBuf, String)>,
    oci: &View,
    previous: Option<&Snapshot>,
    replaceable: &BTreeSet<String>,
) -> Snapshot {
    let reuse: BTreeMap<&str, &Arc<LoadedPlugin>> = previous
        .into_iter()
        .flat_map(|s| s.all.iter())
        .map(|p| (p.sha256.as_str(), p))
        .collect();
    let mut errors = dir_errors.clone();
    let mut failed: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut fail = |errors: &mut Vec<(PathBuf, String)>, name: &str, source: String, e: String| {
        failed
            .entry(name.to_string())
            .or_insert_with(|| (source.clone(), e.clone()));
        errors.push((PathBuf::from(source), e));
    };
    let mut all = Vec::new();

    for (name, bytes) in BUILTINS {
        match load_one(engine, bytes, BUILTIN_SOURCE, None, &reuse) {
            Ok(p) => all.push(p),
            Err(e) => errors.push((PathBuf::from(format!("builtin:{name}")), e)),
        }
    }
    for (path, _, _) in &fingerprint {
        let source = path.display().to_string();
        let loaded = read(path).and_then(|bytes| load_one(engine, &bytes, &source, None, &reuse));
        match loaded {
            Ok(p) => all.push(p),
            // Logged by whoever reports the snapshot (once: `plugins` prints them itself).
            Err(e) => {
                let stem = path.file_stem().unwrap_or_default().to_string_lossy();
                fail(&mut errors, &stem, source, e)
            }
        }
    }
    errors.extend(oci.errors.iter().cloned());
    for item in &oci.items {
        match item {
            Item::Ready { reference, fetched } => {
                let source = reference.pinned(&fetched.manifest_digest);
                let tag = reference
                    .digest
                    .is_none()
                    .then(|| reference.tag.clone())
                    .flatten();
                match load_one(engine, &fetched.bytes, &source, tag.as_deref(), &reuse) {
                    Ok(p) => {
                        if p.name != reference.plugin_name() {
                            tracing::warn!(reference = %reference, plugin = %p.name, "the plugin's name is not the repository's last segment: models select it as {}", p.name);
                        }
                        all.push(p)
                    }
                    Err(e) => fail(
                        &mut errors,
                        reference.plugin_name(),
                        reference.to_string(),
                        e,
                    ),
                }
            }
            Item::Failed { reference, error } => fail(
                &mut errors,
                reference.plugin_name(),
                reference.to_string(),
                error.to_string(),
            ),
        }
    }

    // A plugin from a directory may replace a built-in only where the admin said so: a plugin
    // dropped into a directory must not silently change what every model gets by default.
    let builtins: Vec<String> = all
        .iter()
        .filter(|p| p.source == BUILTIN_SOURCE)
        .map(|p| p.name.clone())
        .collect();
    all.retain(|p| {
        let refused = p.source != BUILTIN_SOURCE
            && builtins.contains(&p.name)
            && !replaceable.contains(&p.name);
        if refused {
            let error = format!(
                "plugin {} would replace the built-in of that name; the operator's admin allows \
                 that with --replace-builtin {}",
                p.name, p.name
            );
            errors.push((PathBuf::from(&p.source), error));
        }
        !refused
    });
    // Two plugins of the same name from the plugin sources: the first stays, the later is
    // refused where everyone looks (a later file silently winning hid the first one's fate).
    let mut first: BTreeMap<String, String> = BTreeMap::new();
    all.retain(|p| {
        if p.source == BUILTIN_SOURCE {
            return true;
        }
        match first.get(&p.name) {
            Some(kept) => {
                let error = format!(
                    "plugin {} from {} has the name of the plugin from {kept}, which is kept; remove or rename one of them",
                    p.name,
                    shown_source(p)
                );
                errors.push((PathBuf::from(shown_source(p)), error));
                false
            }
            None => {
                first.insert(p.name.clone(), shown_source(p));
                true
            }
        }
    });
    let mut active = BTreeMap::new();
    for p in &all {
        if let Some(old) = active.insert(p.name.clone(), p.clone()) {
            tracing::info!(plugin = %p.name, source = %p.source, replaces = %old.source, "plugin replaces the built-in of the same name (--replace-builtin)");
        }
    }
    Snapshot {
        active,
        all,
        errors,
        failed,
        fingerprint,
        dir_errors,
    }
}

/// One component file, loaded and checked like a directory's plugin but kept out of any
/// snapshot.
pub(crate) fn load_file(engine: &PluginEngine, path: &Path) -> Result<Arc<LoadedPlugin>, String> {
    let bytes = read(path)?;
    load_one(
        engine,
        &bytes,
        &path.display().to_string(),
        None,
        &BTreeMap::new(),
    )
}

/// The source as the `plugins` SOURCE column shows it (with the tag it was resolved from).
fn shown_source(p: &LoadedPlugin) -> String {
    match &p.tag {
        Some(tag) => format!("{} (tag {tag})", p.source),
        None => p.source.clone(),
    }
}

/// A plugin checked as the operator would load it, and its component's imports and exports
/// (what `plugins push` writes in the artifact's config).
pub struct Inspected {
    pub summary: PluginSummary,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

/// Loads `bytes` alone, in an engine of its own with the operator's limits and no cache.
pub fn inspect(bytes: &[u8], source: &str) -> Result<Inspected, String> {
    let engine = PluginEngine::new(Limits::default(), None, Compiler::InProcess)
        .map_err(|e| format!("{e:#}"))?;
    let p = load_one(&engine, bytes, source, None, &BTreeMap::new())?;
    let (imports, exports) = engine.world(&p.pre);
    Ok(Inspected {
        summary: PluginSummary {
            name: p.name.clone(),
            version: p.version.clone(),
            steps: p.steps.clone(),
            sha256: p.sha256.clone(),
            source: p.source.clone(),
            tag: None,
            description: p.description.clone(),
            accepts: p.accepts.clone(),
            active: true,
        },
        imports,
        exports,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if len > MAX_PLUGIN_BYTES {
        return Err(format!(
            "{len} bytes; plugins may be at most {MAX_PLUGIN_BYTES}"
        ));
    }
    std::fs::read(path).map_err(|e| format!("cannot read: {e}"))
}

fn load_one(
    engine: &PluginEngine,
    bytes: &[u8],
    source: &str,
    tag: Option<&str>,
    reuse: &BTreeMap<&str, &Arc<LoadedPlugin>>,
) -> Result<Arc<LoadedPlugin>, String> {
    let sha256 = sha256_hex(bytes);
    if let Some(p) = reuse.get(sha256.as_str()) {
        if p.source == source && p.tag.as_deref() == tag {
            return Ok(Arc::clone(p));
        }
        return Ok(Arc::new(LoadedPlugin {
            source: source.to_string(),
            tag: tag.map(str::to_string),
            pre: p.pre.clone(),
            ..clone_meta(p)
        }));
    }
    let started = Instant::now();
    let (component, cached) = engine
        .compile(bytes, &sha256)
        .map_err(|e| format!("{e:#}"))?;
    let pre = engine.prepare(&component).map_err(|e| format!("{e:#}"))?;
    let info = engine.info(&pre).map_err(|f| match f {
        CallFailure::Trap { message, stderr } => {
            let message = truncate(message, MAX_PLUGIN_MESSAGE_BYTES);
            format!("info() failed: {message}{}", stderr_suffix(&stderr))
        }
        CallFailure::Timeout { .. } => format!(
            "info() did not return within {:?} and was stopped; a plugin must answer info() at once",
            engine.limits().timeout
        ),
        CallFailure::OutOfMemory { .. } => "info() ran out of memory".to_string(),
    })?;
    check_info(&info.name, &info.version, &info.steps)?;
    let accepts = engine
        .accepts(&component)
        .map_err(|e| format!("plugin {}: {e:#}", info.name))?
        .map(|a| Accepts {
            config_keys: a.config_keys,
            model_formats: a.model_formats,
        })
        .unwrap_or_default();
    check_accepts(&info.name, &accepts)?;
    let plugin = LoadedPlugin {
        name: info.name,
        version: info.version,
        steps: info.steps.into_iter().map(Step::from).collect(),
        description: truncate(
            info.description
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
            MAX_DESCRIPTION_BYTES,
        ),
        sha256,
        source: source.to_string(),
        tag: tag.map(str::to_string),
        accepts,
        pre,
    };
    tracing::debug!(plugin = %plugin.name, source, cached, ms = started.elapsed().as_secs_f64() * 1e3, "plugin loaded");
    Ok(Arc::new(plugin))
}

fn clone_meta(p: &LoadedPlugin) -> LoadedPlugin {
    LoadedPlugin {
        name: p.name.clone(),
        version: p.version.clone(),
        steps: p.steps.clone(),
        description: p.description.clone(),
        sha256: p.sha256.clone(),
        source: p.source.clone(),
        tag: p.tag.clone(),
        accepts: p.accepts.clone(),
        pre: p.pre.clone(),
    }
}

fn check_info<S>(name: &str, version: &str, steps: &[S]) -> Result<(), String> {
    let dns_label = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !dns_label {
        return Err(format!(
            "info() gave the name {name:?}; a plugin name must be a DNS label (a-z, 0-9, -)"
        ));
    }
    if version.trim().is_empty() {
        return Err(format!("plugin {name}: info() gave no version"));
    }
    if version.len() > MAX_VERSION_BYTES || version.contains(char::is_control) {
        return Err(format!(
            "plugin {name}: info() gave a version of {} bytes; a version is one line of at most {MAX_VERSION_BYTES}",
            version.len()
        ));
    }
    if steps.is_empty() {
        return Err(format!("plugin {name}: info() lists no step"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_is_checked_and_its_version_bounded() {
        let steps = [Step::Serve];
        assert_eq!(check_info("echo", "1.0.0", &steps), Ok(()));
        assert!(check_info("Echo", "1.0.0", &steps).is_err());
        assert!(check_info("echo", " ", &steps).is_err());
        assert!(check_info::<Step>("echo", "1.0.0", &[]).is_err());
        let long = "1".repeat(MAX_VERSION_BYTES + 1);
        let err = check_info("echo", &long, &steps).unwrap_err();
        assert!(err.contains("at most 64"), "{err}");
        assert!(!err.contains(&long), "the version is not echoed: {err}");
        assert!(check_info("echo", "1.0\n2.0", &steps).is_err());
        assert_eq!(
            check_info("echo", &"1".repeat(MAX_VERSION_BYTES), &steps),
            Ok(())
        );
    }
}
