//! The MLModel controller (`mlmodel-operator run`): watches models and what they own, renders
//! each step through its plugin, applies, prunes, and writes status.
//!
//! One reconcile is: select plugins -> download step for the wanted revision -> serve step for
//! the revision that is downloaded (the old one keeps serving meanwhile) -> expose step -> prune
//! -> status. Decisions live in `plan` and `status`; this module only reads caches and calls the
//! API server.
use crate::api::{
    InvalidPluginConfig, LABEL_MANAGED_BY, LABEL_MODEL, MANAGER, MLModel, MLModelStatus,
};
use crate::apply::{self, ANNOTATION_APPLIED_HASH, ANNOTATION_MODEL_NAME};
pub use crate::error::Error;
use crate::index::{self, Index};
use crate::leader::{Candidate, LeaderArgs};
use crate::metrics::Metrics;
use crate::names;
use crate::plan::{self, DownloadState, ObjectKey, ServingState};
use crate::plugins::cli::SourceArgs;
use crate::plugins::{DEFAULT_OPERATOR_IMAGE, PluginError, Runtime, RuntimeOptions, Step};
use crate::server::Readiness;
use crate::status::{self, Endpoint, Observation};
use anyhow::Context as _;
use clap::Args;
use futures::{StreamExt, future::BoxFuture};
use k8s_openapi::api::{
    apps::v1::Deployment,
    batch::v1::Job,
    core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service},
};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Config, Resource, ResourceExt};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{info, warn};

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Plugin directories (watched for changes) and the compile cache.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Image the download Job runs (`mlmodel-operator fetch`).
    #[arg(long, env = "MLMODEL_OPERATOR_IMAGE", default_value = DEFAULT_OPERATOR_IMAGE)]
    pub operator_image: String,
    /// Download plugin used when a model's annotation names none.
    #[arg(long)]
    pub default_download_plugin: Option<String>,
    /// Serve plugin used when a model's annotation names none (before `framework` is looked at).
    #[arg(long)]
    pub default_serve_plugin: Option<String>,
    /// Expose plugin used when a model's annotation names none.
    #[arg(long)]
    pub default_expose_plugin: Option<String>,
    /// Watch only these namespaces (repeatable or comma-separated); all when empty.
    #[arg(long = "namespace", env = "MLMODEL_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Address of `/metrics`, `/healthz` and `/readyz` (port 0: any free port, logged).
    #[arg(
        long,
        env = "MLMODEL_METRICS_BIND_ADDRESS",
        default_value = "0.0.0.0:8080"
    )]
    pub metrics_bind_address: SocketAddr,
    #[command(flatten)]
    pub leader: LeaderArgs,
}

impl RunArgs {
    pub fn runtime_options(&self) -> RuntimeOptions {
        let mut defaults = BTreeMap::new();
        for (step, flag) in [
            (Step::Download, &self.default_download_plugin),
            (Step::Serve, &self.default_serve_plugin),
            (Step::Expose, &self.default_expose_plugin),
        ] {
            if let Some(name) = flag {
                defaults.insert(step, name.clone());
            }
        }
        RuntimeOptions {
            defaults,
            operator_image: self.operator_image.clone(),
            ..self.source.options()
        }
    }
}

/// A watch cache and its index by owner (or, for pods, by model label).
#[derive(Clone)]
pub struct Cache<K: Resource<DynamicType = ()> + 'static> {
    pub store: Store<K>,
    pub index: Index<K>,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Cache<K> {
    fn get(&self, key: &str) -> Vec<Arc<K>> {
        self.index
            .get(key)
            .iter()
            .filter_map(|r| self.store.get(r))
            .collect()
    }
}

/// Caches of what the operator owns, shared by every reconcile.
#[derive(Clone)]
pub struct Stores {
    pub pvcs: Cache<PersistentVolumeClaim>,
    pub jobs: Cache<Job>,
    pub deployments: Cache<Deployment>,
    pub services: Cache<Service>,
    pub configmaps: Cache<ConfigMap>,
    pub pods: Cache<Pod>,
}

pub struct Context {
    pub client: Client,
    pub runtime: Runtime,
    pub stores: Stores,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Consecutive failures per model, for exponential backoff.
    failures: Mutex<HashMap<ObjectRef<MLModel>, u32>>,
}

/// `mlmodel-operator run`.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let config = Config::infer()
            .await
            .context("reading the kubeconfig or the in-cluster config")?;
        let client = Client::try_from(config.clone()).context("connecting to the cluster")?;
        let runtime = Runtime::new(args.runtime_options()).context("loading plugins")?;
        runtime.log_loaded();
        let metrics = Arc::new(Metrics::new());
        metrics.watch_plugins(runtime.clone());
        let readiness = Arc::new(Readiness::default());
        let addr =
            crate::server::serve(args.metrics_bind_address, metrics.clone(), readiness.clone())
                .await?;
        info!(%addr, "serving /metrics, /healthz and /readyz");
        let mut shutdown = std::pin::pin!(shutdown_signal());

        if !args.leader.leader_elect {
            metrics.set_leader(true);
            readiness.set_ready();
            return tokio::select! {
                r = run_with_metrics(client, runtime, args.namespaces.clone(), metrics) => r,
                _ = &mut shutdown => { info!("shutting down"); Ok(()) }
            };
        }

        let mut candidate = Candidate::join(&config, &args.leader).await?;
        // A standby is healthy and ready: it serves metrics and is there to take over.
        readiness.set_ready();
        tokio::select! {
            r = candidate.lead() => r?,
            _ = &mut shutdown => { info!("shutting down before leading"); candidate.release().await; return Ok(()) }
        }
        metrics.set_leader(true);
        let result = tokio::select! {
            r = run_with_metrics(client, runtime, args.namespaces.clone(), metrics.clone()) => r,
            _ = candidate.lost() => Err(anyhow::anyhow!(
                "lost the leader lease; exiting so that this process stands again as a standby"
            )),
            _ = &mut shutdown => { info!("shutting down; handing the lease over"); Ok(()) }
        };
        metrics.set_leader(false);
        candidate.release().await;
        result
    })
}

/// Ctrl-C or SIGTERM (what the kubelet sends).
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}

/// Runs the controller until it fails; one controller per watched namespace (or one for all).
pub async fn run_with(
    client: Client,
    runtime: Runtime,
    namespaces: Vec<String>,
) -> anyhow::Result<()> {
    run_with_metrics(client, runtime, namespaces, Arc::new(Metrics::new())).await
}

/// [`run_with`], recording into `metrics`.
pub async fn run_with_metrics(
    client: Client,
    runtime: Runtime,
    namespaces: Vec<String>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<()> {
    if let Err(e) = runtime.watch_plugin_dirs() {
        warn!(error = %e, "plugin directories are not watched for changes");
    }
    let scopes: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.into_iter().map(Some).collect()
    };
    let runs = scopes
        .into_iter()
        .map(|ns| run_scope(client.clone(), runtime.clone(), ns, metrics.clone()));
    futures::future::try_join_all(runs).await?;
    Ok(())
}

fn scoped<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// A reflector whose cache holds only our objects (by label), without managed fields, plus the
/// stream that keeps it filled and the subscription the controller is triggered from.
type Shared<K> = (
    Cache<K>,
    BoxFuture<'static, ()>,
    reflector::ReflectHandle<K>,
);

fn shared<K>(api: Api<K>, selector: &str, key: fn(&K) -> Option<String>) -> Shared<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store_shared(1024);
    let sub = writer
        .subscribe()
        .expect("shared stores can be subscribed to");
    let cfg = watcher::Config::default().labels(selector);
    let index = Index::new(key);
    let indexer = index.clone();
    let drive = Box::pin(
        watcher(api, cfg)
            .default_backoff()
            .modify(|o: &mut K| o.meta_mut().managed_fields = None)
            .inspect(move |ev| {
                if let Ok(ev) = ev {
                    indexer.apply(ev);
                }
            })
            .reflect_shared(writer)
            .for_each(|ev| async move {
                if let Err(e) = ev {
                    warn!(error = %e, kind = %K::kind(&()), "watch error");
                }
            }),
    );
    (Cache { store, index }, drive, sub)
}

async fn run_scope(
    client: Client,
    runtime: Runtime,
    ns: Option<String>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<()> {
    let ns = ns.as_deref();
    let owned = format!("{LABEL_MANAGED_BY}={MANAGER}");
    let (pvcs, d1, s1) = shared(
        scoped::<PersistentVolumeClaim>(&client, ns),
        &owned,
        index::controller_uid,
    );
    let (jobs, d2, s2) = shared(scoped::<Job>(&client, ns), &owned, index::controller_uid);
    let (deployments, d3, s3) = shared(
        scoped::<Deployment>(&client, ns),
        &owned,
        index::controller_uid,
    );
    let (services, d4, s4) = shared(
        scoped::<Service>(&client, ns),
        &owned,
        index::controller_uid,
    );
    let (configmaps, d5, s5) = shared(
        scoped::<ConfigMap>(&client, ns),
        &owned,
        index::controller_uid,
    );
    let (pods, d6, s6) = shared(scoped::<Pod>(&client, ns), LABEL_MODEL, index::model_label);
    let stores = Stores {
        pvcs,
        jobs,
        deployments,
        services,
        configmaps,
        pods,
    };
    let reporter = Reporter {
        controller: MANAGER.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    // Each reload that changed the plugins renders every model again (unchanged output is not
    // applied: the hash annotation says so).
    let reloads = futures::stream::unfold(runtime.subscribe(), |mut rx| async move {
        rx.changed().await.ok()?;
        Some(((), rx))
    });
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client: client.clone(),
        runtime,
        stores,
        metrics: metrics.clone(),
        failures: Mutex::default(),
    });
    let models = scoped::<MLModel>(&client, ns);
    let controller = Controller::new(models, watcher::Config::default().any_semantic());
    metrics.watch_models(controller.store());
    let controller = controller
        .reconcile_all_on(reloads)
        .owns_shared_stream(s1)
        .owns_shared_stream(s2)
        .owns_shared_stream(s3)
        .owns_shared_stream(s4)
        .owns_shared_stream(s5)
        .watches_shared_stream(s6, |pod: Arc<Pod>| {
            let name = pod.annotations().get(ANNOTATION_MODEL_NAME).cloned();
            let ns = pod.namespace();
            name.zip(ns).map(|(n, ns)| ObjectRef::new(&n).within(&ns))
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "reconcile failed");
            }
        });
    info!(namespace = ns.unwrap_or("<all>"), "controller started");
    tokio::select! {
        _ = controller => {},
        _ = d1 => {}, _ = d2 => {}, _ = d3 => {}, _ = d4 => {}, _ = d5 => {}, _ = d6 => {},
    }
    anyhow::bail!("a watch stream ended unexpectedly")
}

fn error_policy(model: Arc<MLModel>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = ObjectRef::from_obj(model.as_ref());
    let n = {
        let mut f = ctx.failures.lock().expect("not poisoned");
        let n = f.entry(key).or_insert(0);
        *n += 1;
        *n
    };
    let delay = Duration::from_millis(500 * 2u64.pow(n.min(8))).min(Duration::from_secs(120));
    warn!(model = %model.name_any(), error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Objects of one model in the caches, owned by it (owner reference to its uid).
fn owned_by<K: Resource<DynamicType = ()> + Clone + 'static>(
    cache: &Cache<K>,
    model: &MLModel,
) -> Vec<Arc<K>> {
    let Some(uid) = model.uid() else {
        return Vec::new();
    };
    let ns = model.namespace();
    cache
        .get(&uid)
        .into_iter()
        .filter(|o| o.meta().namespace == ns)
        .collect()
}

fn pods_of<'a>(pods: &'a [Arc<Pod>], step: &str, revision: Option<&str>) -> Vec<&'a Pod> {
    pods.iter()
        .filter(|p| plan::step_of(p.as_ref()) == Some(step))
        .filter(|p| revision.is_none() || plan::revision_of(p.as_ref()) == revision)
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| p.as_ref())
        .collect()
}

fn find<'a, K: Resource>(objs: &'a [Arc<K>], name: &str) -> Option<&'a K> {
    objs.iter()
        .find(|o| o.meta().name.as_deref() == Some(name))
        .map(|o| o.as_ref())
}

fn rendered_name(objs: &[DynamicObject], kind: &str) -> Option<String> {
    objs.iter()
        .find(|o| apply::kind_of(o) == kind)
        .and_then(|o| o.metadata.name.clone())
}

/// Everything one model owns now, by kind and name, with its revision label.
struct Owned {
    pvcs: Vec<Arc<PersistentVolumeClaim>>,
    jobs: Vec<Arc<Job>>,
    deployments: Vec<Arc<Deployment>>,
    services: Vec<Arc<Service>>,
    configmaps: Vec<Arc<ConfigMap>>,
    pods: Vec<Arc<Pod>>,
}

impl Owned {
    fn read(stores: &Stores, model: &MLModel) -> Self {
        let label = names::label_value(&model.name_any());
        let pods_key = format!("{}/{label}", model.namespace().unwrap_or_default());
        Owned {
            pvcs: owned_by(&stores.pvcs, model),
            jobs: owned_by(&stores.jobs, model),
            deployments: owned_by(&stores.deployments, model),
            services: owned_by(&stores.services, model),
            configmaps: owned_by(&stores.configmaps, model),
            pods: stores.pods.get(&pods_key),
        }
    }

    /// (kind, name, revision, applied hash) of every owned object the host applies.
    fn inventory(&self) -> Vec<(ObjectKey, Option<String>, Option<String>)> {
        fn add<K: Resource>(
            out: &mut Vec<(ObjectKey, Option<String>, Option<String>)>,
            kind: &str,
            objs: &[Arc<K>],
        ) {
            for o in objs {
                out.push((
                    ObjectKey {
                        kind: kind.into(),
                        name: o.meta().name.clone().unwrap_or_default(),
                    },
                    plan::revision_of(o.as_ref()).map(str::to_string),
                    o.meta()
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(ANNOTATION_APPLIED_HASH).cloned()),
                ));
            }
        }
        let mut out = Vec::new();
        add(&mut out, "PersistentVolumeClaim", &self.pvcs);
        add(&mut out, "Job", &self.jobs);
        add(&mut out, "Deployment", &self.deployments);
        add(&mut out, "Service", &self.services);
        add(&mut out, "ConfigMap", &self.configmaps);
        out
    }
}

/// A failure the user must fix (bad plugin, invalid output, rejected object), kept apart from
/// errors that may pass.
struct Blocked {
    reason: String,
    message: String,
}

impl From<PluginError> for Blocked {
    fn from(e: PluginError) -> Self {
        Blocked {
            reason: e.reason().to_string(),
            message: e.to_string(),
        }
    }
}

struct StepRun<'a> {
    ctx: &'a Context,
    model: &'a MLModel,
    ns: &'a str,
    inventory: HashMap<ObjectKey, Option<String>>,
    keep: BTreeSet<ObjectKey>,
    applied: u32,
}

impl StepRun<'_> {
    /// Renders a step with its plugin, then applies what changed. Returns the rendered objects.
    async fn step(
        &mut self,
        step: Step,
        plugin: &crate::plugins::LoadedPlugin,
        revision: &str,
    ) -> Result<Result<Vec<DynamicObject>, Blocked>, Error> {
        let t0 = Instant::now();
        let rendered = self.ctx.runtime.render(plugin, self.model, step, revision);
        self.ctx.metrics.rendered(
            &plugin.name,
            step.as_str(),
            rendered.as_ref().err().map(|e| e.reason()),
            t0.elapsed(),
        );
        let mut objs = match rendered {
            Ok(o) => o,
            Err(e) => return Ok(Err(e.into())),
        };
        let model_name = self.model.name_any();
        let label = names::label_value(&model_name);
        for obj in &mut objs {
            apply::decorate_pod_template(obj, &model_name, &label, step.as_str(), revision);
            let hash = apply::stamp_hash(obj);
            let kind = apply::kind_of(obj).to_string();
            let key = ObjectKey {
                kind: kind.clone(),
                name: obj.metadata.name.clone().unwrap_or_default(),
            };
            self.keep.insert(key.clone());
            let existing = self.inventory.get(&key);
            let unchanged = match existing {
                Some(_) if apply::create_only(&kind) => true,
                Some(h) => h.as_deref() == Some(hash.as_str()),
                None => false,
            };
            if unchanged {
                continue;
            }
            match apply::apply(&self.ctx.client, self.ns, obj).await {
                Ok(()) => self.applied += 1,
                // The API server refused what the plugin rendered: the user must change something.
                Err(kube::Error::Api(e)) if matches!(e.code, 400 | 403 | 404 | 409 | 422) => {
                    return Ok(Err(Blocked {
                        reason: "ApplyFailed".into(),
                        message: format!(
                            "the API server refused {kind} {:?} rendered by plugin {} for step {}: {}",
                            key.name,
                            plugin.name,
                            step.as_str(),
                            e.message
                        ),
                    }));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Ok(objs))
    }
}

async fn reconcile(model: Arc<MLModel>, ctx: Arc<Context>) -> Result<Action, Error> {
    let t0 = Instant::now();
    let result = reconcile_model(&model, &ctx).await;
    ctx.metrics.reconciled(
        result.as_ref().map(|_| ()).map_err(Error::metric_label),
        t0.elapsed(),
    );
    result
}

async fn reconcile_model(model: &Arc<MLModel>, ctx: &Arc<Context>) -> Result<Action, Error> {
    if model.metadata.deletion_timestamp.is_some() {
        // Owner references hand everything to the garbage collector.
        return Ok(Action::await_change());
    }
    let ns = model.namespace().ok_or(Error::NoNamespace)?;
    let owned = Owned::read(&ctx.stores, model);
    let inventory_list = owned.inventory();
    let mut run = StepRun {
        ctx,
        model,
        ns: &ns,
        inventory: inventory_list
            .iter()
            .map(|(k, _, h)| (k.clone(), h.clone()))
            .collect(),
        keep: BTreeSet::new(),
        applied: 0,
    };

    let outcome = walk(&mut run, &owned).await?;
    let (obs, requeue) = match outcome {
        Walk::Done(obs) => (obs, None),
        Walk::Blocked(obs, after) => (obs, after),
    };

    // Prune only after a complete plan: a step that failed to render must not lose its objects.
    if obs.blocking_error.is_none() {
        let mut in_use: BTreeSet<String> = pods_of(&owned.pods, Step::Serve.as_str(), None)
            .iter()
            .filter_map(|p| plan::revision_of(*p).map(str::to_string))
            .collect();
        in_use.extend(obs.serve_revision.clone());
        let existing: Vec<_> = inventory_list
            .iter()
            .map(|(k, r, _)| (k.clone(), r.clone()))
            .collect();
        for key in plan::prune(&existing, &run.keep, &in_use) {
            info!(model = %model.name_any(), kind = %key.kind, name = %key.name, "pruning");
            apply::delete(&ctx.client, &ns, &key.kind, &key.name).await?;
        }
    }

    let new = status::compute(model, &obs, model.status.as_ref());
    if let Some((succeeded, took)) = status::download_ended(model.status.as_ref(), &new, &obs) {
        ctx.metrics.download_ended(succeeded, took);
    }
    if status::changed(model.status.as_ref(), &new) {
        patch_status(&ctx.client, model, &new).await?;
        if let Some(note) = status::event(model.status.as_ref(), &new) {
            publish(ctx, model, note).await;
        }
    }
    ctx.failures
        .lock()
        .expect("not poisoned")
        .remove(&ObjectRef::from_obj(model.as_ref()));
    // Watches bring every change of what the model owns; the periodic requeue is a safety net.
    Ok(requeue
        .map(Action::requeue)
        .unwrap_or_else(|| Action::requeue(Duration::from_secs(300))))
}

enum Walk {
    Done(Observation),
    /// A failure the user must fix; requeue after the given time if it may pass by itself
    /// (e.g. a plugin that shows up in a plugin directory).
    Blocked(Observation, Option<Duration>),
}

/// The steps, in order, as far as they can go now.
async fn walk(run: &mut StepRun<'_>, owned: &Owned) -> Result<Walk, Error> {
    let model = run.model;
    let runtime = &run.ctx.runtime;
    let mut obs = Observation {
        blocking_error: None,
        wanted_revision: String::new(),
        storage_exists: false,
        download: DownloadState::NotStarted,
        serve_revision: None,
        serving: ServingState::Missing,
        expose: model.spec.expose.then_some(None),
        plugins: BTreeMap::new(),
    };
    // The served revision is what the current workload's pod template says (level-triggered:
    // read from the cluster, not remembered).
    let served = owned
        .deployments
        .iter()
        .find(|d| plan::step_of(d.as_ref()) == Some(Step::Serve.as_str()))
        .and_then(|d| plan::revision_of(d.as_ref()).map(str::to_string));
    obs.serve_revision = served.clone();
    if let Some(rev) = &served {
        let dep = owned
            .deployments
            .iter()
            .find(|d| plan::revision_of(d.as_ref()) == Some(rev));
        obs.serving = plan::serving_state(
            dep.map(|d| d.as_ref()),
            &pods_of(&owned.pods, "serve", Some(rev)),
        );
    }

    macro_rules! blocked {
        ($b:expr, $after:expr) => {{
            let b: Blocked = $b;
            obs.blocking_error = Some((b.reason, b.message));
            return Ok(Walk::Blocked(obs, $after));
        }};
    }

    // A config out of bounds is the user's to fix: no plugin is selected or called, nothing is
    // applied (or pruned), until the spec changes.
    if let Some(e) = model.spec.plugin_config_error() {
        warn!(model = %model.name_any(), namespace = %run.ns, error = %e, "invalid spec.plugins.config");
        blocked!(
            Blocked {
                reason: InvalidPluginConfig::REASON.into(),
                message: e.to_string(),
            },
            None
        );
    }

    let download = match runtime.select(Step::Download, model) {
        Ok(p) => p,
        Err(e) => blocked!(e.into(), Some(Duration::from_secs(60))),
    };
    let serve = match runtime.select(Step::Serve, model) {
        Ok(p) => p,
        Err(e) => blocked!(e.into(), Some(Duration::from_secs(60))),
    };
    let expose = if model.spec.expose {
        match runtime.select(Step::Expose, model) {
            Ok(p) => Some(p),
            Err(e) => blocked!(e.into(), Some(Duration::from_secs(60))),
        }
    } else {
        None
    };
    for (step, p) in [
        (Step::Download, Some(&download)),
        (Step::Serve, Some(&serve)),
        (Step::Expose, expose.as_ref()),
    ] {
        if let Some(p) = p {
            obs.plugins
                .insert(step.as_str().into(), format!("{}@{}", p.name, p.version));
        }
    }

    // Download the wanted revision.
    let wanted = names::revision(model, &download.name);
    obs.wanted_revision = wanted.clone();
    let objs = match run.step(Step::Download, &download, &wanted).await? {
        Ok(o) => o,
        Err(b) => blocked!(b, None),
    };
    if let Some(pvc) = rendered_name(&objs, "PersistentVolumeClaim") {
        obs.storage_exists = find(&owned.pvcs, &pvc).is_some();
    } else {
        obs.storage_exists = true;
    }
    obs.download = match rendered_name(&objs, "Job") {
        Some(job) => plan::download_state(
            find(&owned.jobs, &job),
            &pods_of(&owned.pods, "download", Some(&wanted)),
        ),
        // A download plugin without a Job (e.g. a pre-filled volume) has nothing to wait for.
        None => DownloadState::Succeeded {
            report: None,
            started: None,
            finished: None,
            attempts: 0,
        },
    };
    let downloaded = matches!(obs.download, DownloadState::Succeeded { .. });

    // Serve the downloaded revision, or keep serving the old one.
    let Some(serve_rev) =
        plan::serve_revision(&wanted, downloaded, served.as_deref()).map(str::to_string)
    else {
        return Ok(Walk::Done(obs));
    };
    let objs = match run.step(Step::Serve, &serve, &serve_rev).await? {
        Ok(o) => o,
        Err(b) => blocked!(b, None),
    };
    obs.serve_revision = Some(serve_rev.clone());
    let serve_pods = pods_of(&owned.pods, "serve", Some(&serve_rev));
    obs.serving = match rendered_name(&objs, "Deployment") {
        Some(dep) => {
            let current = find(&owned.deployments, &dep)
                .filter(|d| plan::revision_of(*d) == Some(serve_rev.as_str()));
            match current {
                Some(d) => plan::serving_state(Some(d), &serve_pods),
                // Just applied (or re-labelled to the new revision): the cache catches up next.
                None => ServingState::Progressing {
                    ready: 0,
                    wanted: model.spec.replicas,
                    message: "rolling out".into(),
                },
            }
        }
        None => match plan::pod_failure(&serve_pods) {
            Some((reason, message)) => ServingState::Failed {
                reason,
                message,
                ready: 0,
                wanted: 1,
            },
            None => ServingState::Available {
                ready: serve_pods.len() as i32,
                wanted: serve_pods.len() as i32,
            },
        },
    };

    // Expose it.
    if let Some(expose) = expose {
        let objs = match run.step(Step::Expose, &expose, &serve_rev).await? {
            Ok(o) => o,
            Err(b) => blocked!(b, None),
        };
        let svc = objs.iter().find(|o| apply::kind_of(o) == "Service");
        obs.expose = Some(svc.and_then(|svc| {
            let name = svc.metadata.name.clone()?;
            find(&owned.services, &name)?;
            let port = svc
                .data
                .pointer("/spec/ports/0/port")
                .and_then(|p| p.as_i64())
                .unwrap_or(80);
            let host = format!("{name}.{}.svc.cluster.local", run.ns);
            Some(Endpoint {
                endpoint: format!("{host}:{port}"),
                url: format!("http://{host}:{port}"),
            })
        }));
    }
    Ok(Walk::Done(obs))
}

async fn patch_status(
    client: &Client,
    model: &MLModel,
    status: &MLModelStatus,
) -> Result<(), Error> {
    let api: Api<MLModel> = Api::namespaced(client.clone(), &model.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": "mlmodel.dev/v1alpha1",
        "kind": "MLModel",
        "status": status,
    });
    api.patch_status(
        &model.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

async fn publish(ctx: &Context, model: &MLModel, note: status::EventNote) {
    let event = Event {
        type_: if note.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: note.reason,
        note: Some(note.message.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &model.object_ref(&())).await {
        warn!(error = %e, "could not publish event");
    }
}
