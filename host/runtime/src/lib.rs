//! The plugin runtime of mlmodel-operator: each step of a model is rendered by a WebAssembly
//! component plugin (`wit/plugin.wit`) running in a sandbox, and its output is checked before
//! the host uses it. What the controller uses; the author tooling (`plugins new/test/push`) is
//! `mlmodel-plugin-author`, and which plugin a model gets is the controller's choice
//! (`mlmodel_operator::selection`).
//!
//! - `engine`: wasmtime engine, sandbox, limits, compile cache; `compiler`: where a plugin
//!   missing from the cache is compiled (the operator: in a child process);
//! - `registry`: built-in plugins, plugin directories and registry plugins, reload;
//! - `oci`: plugins from OCI registries (fetch by digest or tag, cache; the protocol `push` uses);
//! - `context`: the render input built from the model;
//! - `policy`, `podsecurity`: output checks and what the host adds;
//! - `step`: the steps of a model; `error`: what can go wrong with a plugin, with its reason;
//! - `args`: where plugins come from, as command-line flags; the compiler child's command line.
//!
//! [`Runtime`] is the entry point: `resolve` the plugin a model wants, then `render`.
pub mod args;
mod artifact;
mod artifact_mac;
mod compiler;
mod context;
mod engine;
mod error;
pub mod oci;
pub mod podsecurity;
pub mod policy;
mod registry;
mod stdio;
mod step;

// The API crate's modules, at the paths this crate's modules name them by.
pub(crate) use mlmodel_api::{api, conditions, names, text};

pub use compiler::Compiler;
pub use context::DEFAULT_NAMESPACE;
pub use engine::{CONTRACT, HOST_GRACE, Limits};
pub use error::{MAX_MESSAGE_BYTES, MAX_PLUGIN_MESSAGE_BYTES, PluginError, truncate};
pub use registry::{
    Accepts, BUILTIN_SOURCE, Inspected, LoadedPlugin, MAX_PLUGIN_BYTES, PluginSummary,
    builtin_bytes, inspect, is_builtin,
};
pub use step::Step;

/// Cached compiled plugins refused since the process started (not as this operator compiled
/// them: compiled again).
pub fn artifacts_rejected() -> u64 {
    artifact_mac::REJECTED.load(std::sync::atomic::Ordering::Relaxed)
}

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::DynamicObject;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use crate::api::{GROUP, MLModel, VERSION};
use engine::{PluginEngine, wit};
use oci::sources::{OciSources, View};
use registry::Snapshot;

/// How the runtime is set up (the operator's flags).
#[derive(Clone, Debug)]
pub struct RuntimeOptions {
    /// Directories whose `*.wasm` files are loaded after the built-ins (of two plugins with the
    /// same name the first is kept, the later one is a load error).
    pub plugin_dirs: Vec<PathBuf>,
    /// Plugins from OCI registries, loaded after the directories'.
    pub oci: oci::OciOptions,
    /// Where compiled plugins are cached; `None`: compile at every start.
    pub cache_dir: Option<PathBuf>,
    /// Image of the operator itself (the download Job runs `mlmodel-operator fetch` from it).
    pub operator_image: String,
    pub limits: Limits,
    /// How often `watch_plugin_dirs` looks for changed files and registry references.
    pub reload_interval: Duration,
    /// What the admin allows each plugin (by name) beyond the output policy's defaults.
    pub allowances: BTreeMap<String, policy::Allowances>,
    /// Built-in plugins that a plugin directory may replace (by name); none by default.
    pub replace_builtins: BTreeSet<String>,
    /// Where plugins missing from the cache are compiled.
    pub compiler: Compiler,
}

impl RuntimeOptions {
    /// Every image allowed to every plugin: for tools that render without the admin's list
    /// (`render`, `plugins test`); the operator itself takes the admin's `--plugin-allow`.
    pub fn allow_any_image(mut self) -> Self {
        let any = policy::Allowances {
            images: vec![policy::ANY_IMAGE.to_string()],
            ..Default::default()
        };
        let every = self.allowances.remove("*").unwrap_or_default().merge(any);
        self.allowances.insert("*".into(), every);
        self
    }
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            plugin_dirs: Vec::new(),
            oci: oci::OciOptions::default(),
            cache_dir: std::env::var_os("MLMODEL_CACHE").map(|d| PathBuf::from(d).join("wasm")),
            operator_image: default_operator_image(),
            limits: Limits::default(),
            reload_interval: Duration::from_secs(2),
            allowances: BTreeMap::new(),
            replace_builtins: BTreeSet::new(),
            compiler: Compiler::InProcess,
        }
    }
}

/// The released image of this version: what the download Job runs when neither
/// `--operator-image` nor `MLMODEL_OPERATOR_IMAGE` names another (as `deploy/` ships it).
pub const DEFAULT_OPERATOR_IMAGE: &str = concat!(
    "ghcr.io/mlmodel-dev/mlmodel-operator:v",
    env!("CARGO_PKG_VERSION")
);

/// `MLMODEL_OPERATOR_IMAGE`, or [`DEFAULT_OPERATOR_IMAGE`].
pub fn default_operator_image() -> String {
    std::env::var("MLMODEL_OPERATOR_IMAGE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_OPERATOR_IMAGE.to_string())
}

/// A plugin wanted for a step: its name, the digest it is pinned to (`sha256:<hex>`), if any,
/// and what chose it (said in the errors).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub name: String,
    pub pin: Option<String>,
    pub chosen_by: String,
}

impl Wanted {
    /// `name` or `name@sha256:<hex>`, chosen by `chosen_by`.
    pub fn parse(wanted: &str, chosen_by: String) -> Wanted {
        let (name, pin) = match wanted.split_once('@') {
            Some((name, pin)) => (name, Some(pin.to_string())),
            None => (wanted, None),
        };
        Wanted {
            name: name.to_string(),
            pin,
            chosen_by,
        }
    }
}

/// The loaded plugins and the engine that runs them. Cheap to clone; usable from any thread.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    engine: PluginEngine,
    opts: RuntimeOptions,
    /// The registry references and what was fetched for them (none when no reference is
    /// configured).
    oci: Option<OciSources>,
    snapshot: RwLock<Arc<Snapshot>>,
    /// One reload at a time.
    reloading: Mutex<()>,
    /// Bumped by every reload that changed the loaded set, so that models are rendered again.
    generation: tokio::sync::watch::Sender<u64>,
    /// Turns of [`Runtime::render_async`]: `limits.render_threads` renders at once.
    render_turns: tokio::sync::Semaphore,
    /// Images every plugin may run: the operator's own and the built-ins' defaults.
    host_images: Vec<String>,
    /// What the admin allows each plugin, with what it allows every plugin (`*`) merged in.
    allowances: BTreeMap<String, policy::Allowances>,
}

/// The loaded set (name, version, sha256, source) and the failures, one log line each.
fn log_snapshot(snapshot: &Snapshot) {
    for p in snapshot.summaries() {
        tracing::info!(
            plugin = %p.name,
            version = %p.version,
            sha256 = %p.sha256,
            source = %p.source,
            active = p.active,
            "plugin loaded"
        );
    }
    for (path, error) in &snapshot.errors {
        tracing::warn!(path = %path.display(), %error, "plugin not loaded");
    }
}

impl Runtime {
    /// Compiles (or loads from the cache) the built-in plugins, those of the plugin directories
    /// and those of the registry references. A plugin that fails to load is reported by
    /// `load_errors`, not here. Registry fetches run meanwhile, on a thread of their own; this
    /// waits for them at most the registry timeout.
    pub fn new(opts: RuntimeOptions) -> anyhow::Result<Runtime> {
        let engine = PluginEngine::new(opts.limits.clone(), opts.cache_dir.clone(), opts.compiler)?;
        let render_threads = opts.limits.render_threads.max(1);
        let oci = if opts.oci.configured() {
            Some(OciSources::new(
                opts.oci.clone(),
                opts.cache_dir.as_deref(),
            )?)
        } else {
            None
        };
        if let Some(oci) = &oci {
            oci.refresh();
        }
        let (fingerprint, dir_errors) = registry::scan(&opts.plugin_dirs);
        let mut snapshot = registry::load(
            &engine,
            fingerprint.clone(),
            dir_errors.clone(),
            &View::default(),
            None,
            &opts.replace_builtins,
        );
        if let Some(oci) = &oci {
            // Fetches of an unreachable registry end at the timeout; the grace covers a
            // fetch's own bookkeeping.
            oci.wait_first(opts.oci.registry.timeout + HOST_GRACE);
            snapshot = registry::load(
                &engine,
                fingerprint,
                dir_errors,
                &oci.view(),
                Some(&snapshot),
                &opts.replace_builtins,
            );
        }
        let host_images = std::iter::once(opts.operator_image.clone())
            .chain(policy::BUILTIN_IMAGES.iter().map(|i| i.to_string()))
            .collect();
        let every = opts.allowances.get("*").cloned().unwrap_or_default();
        let mut allowances: BTreeMap<String, policy::Allowances> = opts
            .allowances
            .iter()
            .map(|(name, a)| (name.clone(), a.clone().merge(every.clone())))
            .collect();
        allowances.insert("*".into(), every);
        let inner = Inner {
            engine,
            oci,
            host_images,
            allowances,
            opts,
            snapshot: RwLock::new(Arc::new(snapshot)),
            reloading: Mutex::new(()),
            generation: tokio::sync::watch::Sender::new(0),
            render_turns: tokio::sync::Semaphore::new(render_threads),
        };
        Ok(Runtime {
            inner: Arc::new(inner),
        })
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.inner
            .snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Looks at the plugin directories and the registry references again and loads what
    /// changed (added, replaced or removed files; references added or removed, fetched, or
    /// whose tag moved). Never waits for a registry: a fetch started now is taken in by a later
    /// reload. Returns whether anything changed. Renders in flight keep the plugin they
    /// started with.
    pub fn reload(&self) -> bool {
        let _one = self
            .inner
            .reloading
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let current = self.snapshot();
        let oci_changed = self.inner.oci.as_ref().is_some_and(|o| o.refresh());
        let (fingerprint, dir_errors) = registry::scan(&self.inner.opts.plugin_dirs);
        if !oci_changed && fingerprint == current.fingerprint && dir_errors == current.dir_errors {
            return false;
        }
        let view = self
            .inner
            .oci
            .as_ref()
            .map(|o| o.view())
            .unwrap_or_default();
        let next = registry::load(
            &self.inner.engine,
            fingerprint,
            dir_errors,
            &view,
            Some(&current),
            &self.inner.opts.replace_builtins,
        );
        tracing::info!(
            plugins = next.active.len(),
            errors = next.errors.len(),
            "plugin sources changed; plugins reloaded"
        );
        log_snapshot(&next);
        *self
            .inner
            .snapshot
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        self.inner.generation.send_modify(|g| *g += 1);
        true
    }

    /// Logs the loaded set and the load errors (the operator does at start).
    pub fn log_loaded(&self) {
        log_snapshot(&self.snapshot());
    }

    /// Changes each time a reload changed the loaded plugins.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.generation.subscribe()
    }

    /// Starts a background thread that calls [`Runtime::reload`] every `reload_interval`; it
    /// stops when the last clone of the runtime is dropped. Does nothing without plugin
    /// directories or registry references.
    pub fn watch_plugin_dirs(&self) -> anyhow::Result<()> {
        if self.inner.opts.plugin_dirs.is_empty() && self.inner.oci.is_none() {
            return Ok(());
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let interval = self.inner.opts.reload_interval;
        std::thread::Builder::new()
            .name("plugin-reload".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(interval);
                    let Some(inner) = weak.upgrade() else { return };
                    Runtime { inner }.reload();
                }
            })?;
        Ok(())
    }

    /// The loaded plugin `wanted` for `step`: known by that name (else why not: not found, or
    /// failed to load), of the pinned digest if one is given, and rendering `step`. Which name
    /// a model wants is the controller's choice (`mlmodel_operator::selection`).
    pub fn resolve(&self, step: Step, wanted: &Wanted) -> Result<Arc<LoadedPlugin>, PluginError> {
        let (name, pin, chosen_by) = (
            wanted.name.as_str(),
            wanted.pin.as_deref(),
            wanted.chosen_by.clone(),
        );
        let snapshot = self.snapshot();
        let Some(plugin) = snapshot.active.get(name) else {
            if let Some((source, error)) = snapshot.failed.get(name) {
                return Err(PluginError::LoadFailed {
                    step,
                    wanted: name.to_string(),
                    chosen_by,
                    from: source.clone(),
                    error: error.clone(),
                });
            }
            return Err(PluginError::NotFound {
                step,
                wanted: name.to_string(),
                chosen_by,
                known: snapshot
                    .active
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        if let Some(pin) = pin {
            let hex = pin.strip_prefix("sha256:").unwrap_or("");
            if !hex.eq_ignore_ascii_case(&plugin.sha256) {
                return Err(PluginError::DigestMismatch {
                    plugin: plugin.name.clone(),
                    wanted: pin.to_string(),
                    actual: plugin.sha256.clone(),
                    chosen_by,
                });
            }
        }
        check_step(plugin, step)?;
        Ok(plugin.clone())
    }

    /// Renders `step` of `model` at `revision` with `plugin`, checks the output against the
    /// policy and returns the objects with the namespace, the owner reference (when the model
    /// has a uid) and the `mlmodel.dev/{model,step,revision}` and managed-by labels set.
    ///
    /// Runs on the calling thread (leaving the async context if there is one), bounded by the
    /// epoch deadline: for the CLI, tests and benchmarks. The controller uses
    /// [`Runtime::render_async`].
    pub fn render(
        &self,
        plugin: &LoadedPlugin,
        model: &MLModel,
        step: Step,
        revision: &str,
    ) -> Result<Vec<DynamicObject>, PluginError> {
        self.render_on(plugin, model, step, revision, false)
    }

    /// A digest of everything a render of `step` depends on: the plugin's bytes and the input
    /// documents it is given. The output policy and the host's additions are fixed for the
    /// process's life, and a plugin must give the same output for the same input (the
    /// contract), so the same digest means the same objects: the controller renders again only
    /// when it changes.
    pub fn input_digest(
        &self,
        plugin: &LoadedPlugin,
        model: &MLModel,
        step: Step,
        revision: &str,
    ) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in [
            plugin.sha256.as_str(),
            &context::model_json(model),
            &context::context_json(model, step, revision, &self.inner.opts.operator_image),
        ] {
            // Length-prefixed: no two different inputs hash the same parts.
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        hex::encode(h.finalize())
    }

    /// [`Runtime::render`] off the caller's thread, so that a slow plugin holds up no other
    /// model: the render waits for one of `limits.render_threads` turns (without holding a
    /// thread), runs on a Tokio blocking thread, and the caller waits for it at most
    /// [`Limits::host_deadline`] (the epoch deadline plus [`HOST_GRACE`]): a plugin still
    /// running then fails with [`PluginError::Timeout`] even if the guest sits in a host call
    /// (its thread is left to finish; the pool's instance slots bound how many can linger).
    /// Needs a Tokio runtime.
    pub async fn render_async(
        &self,
        plugin: Arc<LoadedPlugin>,
        model: &MLModel,
        step: Step,
        revision: &str,
    ) -> Result<Vec<DynamicObject>, PluginError> {
        check_step(&plugin, step)?;
        check_config(&plugin, model, step)?;
        let _turn = self
            .inner
            .render_turns
            .acquire()
            .await
            .expect("the render semaphore is never closed");
        let name = plugin.name.clone();
        let (runtime, model, revision) = (self.clone(), model.clone(), revision.to_string());
        let deadline = self.inner.engine.limits().host_deadline();
        let render = move || runtime.render_on(&plugin, &model, step, &revision, true);
        match engine::on_blocking_thread(deadline, render).await {
            Ok(result) => result,
            Err(engine::OwnThread::TimedOut) => {
                tracing::warn!(plugin = %name, %step, ?deadline, "plugin render still running at the host's deadline: given up on, left to finish on its thread");
                Err(PluginError::Timeout {
                    plugin: name,
                    limit: self.inner.engine.limits().timeout,
                    stderr: String::new(),
                })
            }
            Err(engine::OwnThread::Failed(message)) => Err(PluginError::Trap {
                plugin: name,
                message,
                stderr: String::new(),
            }),
        }
    }

    /// The render; `here`: the thread is outside any async context already.
    fn render_on(
        &self,
        plugin: &LoadedPlugin,
        model: &MLModel,
        step: Step,
        revision: &str,
        here: bool,
    ) -> Result<Vec<DynamicObject>, PluginError> {
        let manifests = self.call_render(plugin, model, step, revision, here)?;
        self.check_manifests(&plugin.name, model, step, revision, &manifests)
    }

    /// What `plugin` itself returns for `step` of `model`, before the output policy and the
    /// host's additions (the golden tests compare this; [`Runtime::check_manifests`] then
    /// checks it). Same sandbox and input as [`Runtime::render`].
    pub fn render_manifests(
        &self,
        plugin: &LoadedPlugin,
        model: &MLModel,
        step: Step,
        revision: &str,
    ) -> Result<Vec<String>, PluginError> {
        self.call_render(plugin, model, step, revision, false)
    }

    /// The output policy and the host's additions over a plugin's `manifests`: what
    /// [`Runtime::render`] does after the call.
    pub fn check_manifests(
        &self,
        plugin: &str,
        model: &MLModel,
        step: Step,
        revision: &str,
        manifests: &[String],
    ) -> Result<Vec<DynamicObject>, PluginError> {
        check_output(self, plugin, model, step, revision, manifests)
    }

    /// The two JSON documents of the render input for `step` of `model` (`model`, `context`),
    /// exactly as a plugin receives them.
    pub fn render_input(&self, model: &MLModel, step: Step, revision: &str) -> (String, String) {
        (
            context::model_json(model),
            context::context_json(model, step, revision, &self.inner.opts.operator_image),
        )
    }

    /// Loads the component at `path` with this runtime's engine, apart from the registry: it
    /// renders with [`Runtime::render`] like any plugin but no model can select it (what
    /// `plugins test` runs, whatever its name).
    pub fn load_file(&self, path: &std::path::Path) -> Result<Arc<LoadedPlugin>, String> {
        registry::load_file(&self.inner.engine, path)
    }

    fn call_render(
        &self,
        plugin: &LoadedPlugin,
        model: &MLModel,
        step: Step,
        revision: &str,
        here: bool,
    ) -> Result<Vec<String>, PluginError> {
        check_step(plugin, step)?;
        check_config(plugin, model, step)?;
        let (model_json, context_json) = self.render_input(model, step, revision);
        let input = wit::RenderInput {
            model: model_json,
            context: context_json,
        };
        let engine = &self.inner.engine;
        let call = |store: &mut wasmtime::Store<engine::HostState>,
                    instance: &engine::bindings::Plugin| {
            instance
                .mlmodel_plugin_renderer()
                .call_render(store, &input)
        };
        let called = if here {
            engine.call_here(&plugin.pre, call)
        } else {
            engine.call(&plugin.pre, call)
        };
        let (result, stderr) =
            called.map_err(|f| PluginError::from_call(&plugin.name, engine.limits(), f))?;
        result.map_err(|e| PluginError::Failed {
            plugin: plugin.name.clone(),
            message: error::truncate(
                e.message.lines().next().unwrap_or_default().to_string(),
                MAX_PLUGIN_MESSAGE_BYTES,
            ),
            stderr,
        })
    }

    /// The same render path with a native function in place of the plugin: same input, same
    /// output policy and host additions. The benchmark's baseline, and a way to test a plugin's
    /// logic natively.
    pub fn render_native(
        &self,
        name: &str,
        model: &MLModel,
        step: Step,
        revision: &str,
        render: impl FnOnce(&str, &str) -> Result<Vec<String>, String>,
    ) -> Result<Vec<DynamicObject>, PluginError> {
        check_config_bounds(model)?;
        let model_json = context::model_json(model);
        let context_json =
            context::context_json(model, step, revision, &self.inner.opts.operator_image);
        let manifests =
            render(&model_json, &context_json).map_err(|message| PluginError::Failed {
                plugin: name.to_string(),
                message,
                stderr: String::new(),
            })?;
        check_output(self, name, model, step, revision, &manifests)
    }

    /// The active plugin called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        self.snapshot().active.get(name).cloned()
    }

    /// Every loaded plugin, in load order (built-ins first).
    pub fn plugins(&self) -> Vec<PluginSummary> {
        self.snapshot().summaries()
    }

    /// Files, directories and registry references that could not be loaded, with why.
    pub fn load_errors(&self) -> Vec<(PathBuf, String)> {
        self.snapshot().errors.clone()
    }

    pub fn options(&self) -> &RuntimeOptions {
        &self.inner.opts
    }

    /// What the admin allows plugin `name`, with what it allows every plugin (`*`).
    fn allowances(&self, name: &str) -> &policy::Allowances {
        let all = &self.inner.allowances;
        all.get(name).unwrap_or_else(|| &all["*"])
    }
}

fn check_config_bounds(model: &MLModel) -> Result<(), PluginError> {
    match model.spec.plugin_config_error() {
        Some(e) => Err(e.clone().into()),
        None => Ok(()),
    }
}

/// The model's config within bounds, and its step part without a key `plugin` does not read.
fn check_config(plugin: &LoadedPlugin, model: &MLModel, step: Step) -> Result<(), PluginError> {
    check_config_bounds(model)?;
    let config = model.spec.step_config(step.as_str());
    let unknown = plugin.accepts.unknown_config_keys(&config);
    if unknown.is_empty() {
        return Ok(());
    }
    Err(PluginError::UnknownConfigKeys {
        plugin: plugin.name.clone(),
        step,
        keys: unknown.into_iter().map(str::to_string).collect(),
        known: plugin.accepts.config_keys.clone().unwrap_or_default(),
    })
}

/// Checks what `plugin` rendered for `step` of `model` against the output policy, with what
/// the admin allows it, and adds the host's part.
fn check_output(
    rt: &Runtime,
    plugin: &str,
    model: &MLModel,
    step: Step,
    revision: &str,
    manifests: &[String],
) -> Result<Vec<DynamicObject>, PluginError> {
    let images = &rt.inner.host_images;
    let allow = rt.allowances(plugin);
    let limits = rt.inner.engine.limits();
    let labels = context::labels(model, step, revision);
    let selector = names::selector_labels(&kube::ResourceExt::name_any(model));
    let host = policy::HostAdditions {
        selector: &selector,
        images,
        namespace: context::namespace(model),
        labels: &labels,
        owner: owner_reference(model),
        // The operator holds new serving pods out of traffic until they answer the sample.
        readiness_gate: (step == Step::Serve && model.spec.validation.is_some())
            .then_some(crate::conditions::VALIDATED_GATE),
        credentials_secret: model
            .spec
            .credentials_secret_ref
            .as_ref()
            .filter(|_| step == Step::Download)
            .map(|s| s.name.as_str()),
    };
    policy::check(plugin, step, manifests, limits.output_bytes, &host, allow)
}

fn check_step(plugin: &LoadedPlugin, step: Step) -> Result<(), PluginError> {
    if plugin.steps.contains(&step) {
        return Ok(());
    }
    Err(PluginError::WrongStep {
        plugin: plugin.name.clone(),
        step,
        steps: plugin
            .steps
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

fn owner_reference(model: &MLModel) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: format!("{GROUP}/{VERSION}"),
        kind: "MLModel".into(),
        name: model.metadata.name.clone()?,
        uid: model.metadata.uid.clone()?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_is_shareable_across_threads() {
        fn shareable<T: Send + Sync + Clone + 'static>() {}
        shareable::<Runtime>();
        fn sendable<T: Send + Sync>() {}
        sendable::<Arc<LoadedPlugin>>();
        sendable::<PluginError>();
    }

    #[test]
    fn the_default_operator_image_is_the_one_deploy_ships() {
        let install = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/install.yaml"
        ));
        let line = format!("image: {DEFAULT_OPERATOR_IMAGE}\n");
        assert!(
            install.contains(&line),
            "{line:?} missing from deploy/install.yaml"
        );
    }

    #[test]
    fn steps_parse_and_print() {
        for step in Step::ALL {
            assert_eq!(step.as_str().parse::<Step>(), Ok(step));
            assert_eq!(step.to_string(), step.as_str());
        }
        assert!(
            "deploy"
                .parse::<Step>()
                .unwrap_err()
                .contains("download, serve or expose")
        );
        assert_eq!(Step::Serve.annotation(), "mlmodel.dev/serve-plugin");
    }
}
