//! The `mlmodel-operator run` process: the metrics and health server, leader election, signals,
//! and one controller per watched namespace.
use super::watches::{self, Watches, scoped};
use super::{Context, Recorder, download_logs, error_policy, reconcile};
use crate::api::{MANAGER, MLModel};
use crate::apply::ANNOTATION_MODEL_NAME;
use crate::cached::CachedPod;
use crate::leader::{Candidate, LeaderArgs};
use crate::metrics::Metrics;
use crate::plugins::args::SourceArgs;
use crate::plugins::{Compiler, DEFAULT_OPERATOR_IMAGE, Runtime, RuntimeOptions, Step};
use crate::progress::Tracker;
use crate::selection::Selection;
use crate::server::{self, Readiness};
use anyhow::Context as _;
use clap::Args;
use futures::StreamExt;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Predicate, WatchStreamExt, predicates, reflector, watcher};
use kube::{Client, Config, ResourceExt};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
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
    /// Widen the output policy for one plugin: `PLUGIN:RULE[,RULE...]`, rules
    /// `service-accounts` (pods of another ServiceAccount), `service-type=NodePort|LoadBalancer|
    /// ExternalName`, `downloader-overrides` (`--allow-link-local`, endpoint variables),
    /// `secrets` (pods may reference any Secret of the model's namespace). Repeatable.
    #[arg(long = "plugin-allow", value_name = "PLUGIN:RULES", value_parser = crate::plugins::policy::Allowances::parse_flag)]
    pub plugin_allow: Vec<(String, crate::plugins::policy::Allowances)>,
    /// Serve plugin used when a model's annotation names none (before `framework` is looked at).
    #[arg(long)]
    pub default_serve_plugin: Option<String>,
    /// Expose plugin used when a model's annotation names none.
    #[arg(long)]
    pub default_expose_plugin: Option<String>,
    /// Storage mode of models whose `spec.storageMode` names none: `Shared` or `PerPod`;
    /// unset: chosen per model (one replica or a ReadWriteMany claim: Shared; else PerPod).
    #[arg(long, env = "MLMODEL_STORAGE_MODE", value_parser = parse_storage_mode)]
    pub storage_mode: Option<crate::api::StorageMode>,
    /// Watch only these namespaces (repeatable or comma-separated); all when empty.
    #[arg(long = "namespace", env = "MLMODEL_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Reconciles run at once, at most (the others wait their turn). Each holds its rendered
    /// objects and an API connection while it runs: unbounded, a burst of new models opens a
    /// connection per model and the memory stays with the process.
    #[arg(
        long,
        env = "MLMODEL_MAX_CONCURRENT_RECONCILES",
        default_value_t = DEFAULT_MAX_CONCURRENT_RECONCILES,
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    pub max_concurrent_reconciles: u16,
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
    /// The operator's plugin per step (`--default-*-plugin`), before the framework's.
    pub fn selection(&self) -> Selection {
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
        Selection::new(defaults).with_storage(self.storage_mode)
    }

    pub fn runtime_options(&self) -> RuntimeOptions {
        let mut allowances: BTreeMap<String, crate::plugins::policy::Allowances> = BTreeMap::new();
        for (plugin, allow) in &self.plugin_allow {
            let merged = allowances
                .remove(plugin)
                .unwrap_or_default()
                .merge(allow.clone());
            allowances.insert(plugin.clone(), merged);
        }
        RuntimeOptions {
            allowances,
            operator_image: self.operator_image.clone(),
            // The long-lived process never runs the compiler (plugins/compiler.rs).
            compiler: Compiler::Subprocess,
            ..self.source.options()
        }
    }
}

/// Default of `--max-concurrent-reconciles`: enough to keep a busy API server at work (each
/// reconcile waits on it most of the time), few enough to bound connections and memory.
pub const DEFAULT_MAX_CONCURRENT_RECONCILES: u16 = 32;

/// A model's objects change in bursts (a pod scheduled, started, ready; its Deployment's counts;
/// the Job's) and each change asks for a reconcile: those asked within this window of each other
/// are one reconcile, done when the burst is over.
const DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(500);

/// `mlmodel-operator run`.
/// glibc gives each thread that allocates under contention an arena of its own, up to 8 per
/// core, and keeps their freed memory: with the runtime's workers and blocking threads (renders,
/// DNS) that grows the resident set by tens of MiB for nothing. Two arenas are enough for two
/// workers. `MALLOC_ARENA_MAX` in the environment still wins.
fn bound_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets a tunable; called before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// Gives the memory malloc holds free back to the system. Compiling the plugins (at start,
/// when the compile cache has no artifact for them, and on a reload) takes some 20 MiB of
/// scratch that glibc keeps once freed; the process would carry it for its whole life.
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages of malloc's own heaps.
    unsafe {
        libc::malloc_trim(0);
    }
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    bound_malloc_arenas();
    let rt = tokio::runtime::Runtime::new()?;
    let result = rt.block_on(async move {
        let config = Config::infer()
            .await
            .context("reading the kubeconfig or the in-cluster config")?;
        let client = Client::try_from(config.clone()).context("connecting to the cluster")?;
        // Health first: loading may wait for a registry (at most --registry-timeout), and the
        // liveness probe must not kill the process meanwhile; /readyz waits for the plugins.
        let metrics = Arc::new(Metrics::new());
        let readiness = Arc::new(Readiness::default());
        let addr =
            server::serve(args.metrics_bind_address, metrics.clone(), readiness.clone()).await?;
        info!(%addr, "serving /metrics, /healthz and /readyz");
        // Compiling and fetching block: off the async workers.
        let options = args.runtime_options();
        let runtime = tokio::task::spawn_blocking(move || Runtime::new(options))
            .await
            .context("loading plugins")?
            .context("loading plugins")?;
        runtime.log_loaded();
        return_freed_memory();
        metrics.watch_plugins(runtime.clone());
        let mut shutdown = std::pin::pin!(shutdown_signal());

        if !args.leader.leader_elect {
            metrics.set_leader(true);
            readiness.set_ready();
            return tokio::select! {
                r = run_controllers(client, runtime, args.selection(), args.namespaces.clone(), metrics, args.max_concurrent_reconciles) => r,
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
            r = run_controllers(client, runtime, args.selection(), args.namespaces.clone(), metrics.clone(), args.max_concurrent_reconciles) => r,
            _ = candidate.lost() => Err(anyhow::anyhow!(
                "lost the leader lease; exiting so that this process stands again as a standby"
            )),
            _ = &mut shutdown => { info!("shutting down; handing the lease over"); Ok(()) }
        };
        metrics.set_leader(false);
        candidate.release().await;
        result
    });
    // A render the host gave up on may still sit on a blocking thread: dropping the runtime
    // would wait for it, so give the blocking threads a bounded time instead.
    rt.shutdown_timeout(crate::plugins::HOST_GRACE);
    result
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

/// Runs the controllers until one fails: one per watched namespace (or one for all when
/// `namespaces` is empty), recording into `metrics`. What `run` runs once it leads; tests run it
/// in-process.
pub async fn run_controllers(
    client: Client,
    runtime: Runtime,
    selection: Selection,
    namespaces: Vec<String>,
    metrics: Arc<Metrics>,
    max_concurrent_reconciles: u16,
) -> anyhow::Result<()> {
    if let Err(e) = runtime.watch_plugin_dirs() {
        warn!(error = %e, "plugin directories are not watched for changes");
    }
    let scopes: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.into_iter().map(Some).collect()
    };
    // One pace for every scope's log reads: the operator's ceiling, not a namespace's.
    let pacer = Arc::new(download_logs::Pacer::per_second(
        download_logs::READS_PER_SECOND,
    ));
    let (client, runtime, selection, metrics, pacer) =
        (&client, &runtime, &selection, &metrics, &pacer);
    let controllers = scopes.into_iter().map(|ns| async move {
        let ns = ns.as_deref();
        let Watches {
            stores,
            triggers,
            drivers,
        } = Watches::start(client, ns);
        // Each reload that changed the plugins renders every model again (unchanged output is
        // not applied: the hash annotation says so).
        let reloads = futures::stream::unfold(runtime.subscribe(), |mut rx| async move {
            rx.changed().await.ok()?;
            return_freed_memory();
            Some(((), rx))
        });
        let tracker = Tracker::default();
        let (progressed, progressed_rx) = tokio::sync::mpsc::channel(256);
        let follow_logs = download_logs::follow(
            client.clone(),
            stores.pods.store.clone(),
            tracker.clone(),
            pacer.clone(),
            progressed,
        );
        let progressed_rx = futures::stream::unfold(progressed_rx, |mut rx| async move {
            rx.recv().await.map(|model| (model, rx))
        });
        let (models, writer) = reflector::store();
        let ctx = Arc::new(Context {
            models: models.clone(),
            recorder: Recorder::new(client.clone(), MANAGER, std::env::var("POD_NAME").ok()),
            client: client.clone(),
            runtime: runtime.clone(),
            selection: selection.clone(),
            stores,
            metrics: metrics.clone(),
            progress: tracker,
            memory: Default::default(),
        });
        // The cache drops managed fields (nothing reads them). A model is reconciled when what
        // its owner controls changes (spec, labels, annotations: the plugin choice), not when
        // only its status does: that is the operator's own write, and reconciling on it would
        // render every step again for nothing. The periodic requeue still looks at every model.
        let model_changes = watcher(
            scoped::<MLModel>(client, ns),
            watcher::Config::default().any_semantic(),
        )
        .backoff(watches::watch_backoff())
        .modify(|m: &mut MLModel| m.metadata.managed_fields = None)
        .reflect(writer)
        .applied_objects()
        .predicate_filter(
            predicates::generation
                .combine(predicates::labels)
                .combine(predicates::annotations),
            Default::default(),
        );
        let controller = Controller::for_stream(model_changes, models).with_config(
            controller::Config::default()
                .concurrency(max_concurrent_reconciles)
                .debounce(DEBOUNCE),
        );
        metrics.watch_models(controller.store());
        let forget_gone = super::forget_gone_models(ctx.clone(), controller.store());
        let controller = controller
            .reconcile_all_on(reloads)
            .reconcile_on(progressed_rx)
            .owns_shared_stream(triggers.pvcs)
            .owns_shared_stream(triggers.jobs)
            .owns_shared_stream(triggers.deployments)
            .owns_shared_stream(triggers.services)
            .owns_shared_stream(triggers.configmaps)
            .owns_shared_stream(triggers.pdbs)
            .watches_shared_stream(triggers.pods, |pod: Arc<CachedPod>| {
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
            _ = futures::future::select_all(drivers) => {},
            _ = follow_logs => {},
            _ = forget_gone => {},
        }
        Err::<(), _>(anyhow::anyhow!("a watch stream ended unexpectedly"))
    });
    futures::future::try_join_all(controllers).await?;
    Ok(())
}

fn parse_storage_mode(text: &str) -> Result<crate::api::StorageMode, String> {
    match text {
        "Shared" => Ok(crate::api::StorageMode::Shared),
        "PerPod" => Ok(crate::api::StorageMode::PerPod),
        other => Err(format!("{other:?}: want Shared or PerPod")),
    }
}
