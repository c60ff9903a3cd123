//! The plain-client baseline of the scale benchmark (`hack/bench_scale.py`): the API writes the
//! operator makes for N echo models, made by a plain kube-rs client with no controller in the
//! loop, timed. It bounds what any operator can do on this apiserver.
//!
//! For each model `<prefix>-<i>` (the echo sample, `deploy/samples/echo-model.yaml`), with
//! `--concurrency` models in flight, one model's writes in the operator's order:
//!   1. create the MLModel (as `kubectl apply` does in the operator's run),
//!   2. server-side apply of the objects the operator applies: the same render
//!      (`mlmodel_operator::plugins::Runtime`, owner reference to the model included), the same pod
//!      template labels and applied-hash annotation: PVC, Job, Deployment, Service,
//!   3. `--status-patches` server-side applies of `status` (phases in order, Ready last),
//!   4. `--events` Events (events.k8s.io/v1, through kube's `Recorder`, as the operator does).
//!
//! No step waits for the cluster (the operator waits for the Job to complete before the
//! Deployment): this is the write rate alone. `--wait-ready` then also times until every Job has
//! completed and every Deployment is available (the cluster's own pipeline: controller-manager,
//! scheduler, kwok). Last, the models are deleted and the time until the garbage collector has
//! removed every owned object is printed.
//!
//! ```sh
//! KUBECONFIG=... cargo run --release -p mlmodel-operator --example scale_baseline -- \
//!     --namespace bench-baseline --models 100
//! ```
//! The namespace must exist and the CRD be installed. Output, one line per figure:
//! `baseline N=100 objects=400 writes=1300 time_s=... objects_per_s=... writes_per_s=...`
use anyhow::{Context as _, Result};
use clap::Parser;
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::{
    apps::v1::Deployment,
    batch::v1::Job,
    core::v1::{PersistentVolumeClaim, Pod, Service},
};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, Resource, ResourceExt};
use mlmodel_operator::api::{
    LABEL_MANAGED_BY, LABEL_MODEL, MANAGER, MLModel, MLModelStatus, Phase,
};
use mlmodel_operator::plugins::{Runtime, RuntimeOptions, Step};
use mlmodel_operator::selection::select;
use mlmodel_operator::{apply, names};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Namespace to work in (must exist).
    #[arg(long)]
    namespace: String,
    /// Number of models.
    #[arg(long, short = 'n')]
    models: usize,
    /// Models in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Status patches per model (the operator's count: see the audit figures of its run).
    #[arg(long, default_value_t = 4)]
    status_patches: usize,
    /// Events per model.
    #[arg(long, default_value_t = 4)]
    events: usize,
    /// Also time until every Job completed and every Deployment is available.
    #[arg(long)]
    wait_ready: bool,
    /// Leave the objects in place.
    #[arg(long)]
    no_delete: bool,
    /// Model names are `<prefix>-<index>`.
    #[arg(long, default_value = "baseline")]
    prefix: String,
    /// The model template (default: the echo sample).
    #[arg(long)]
    sample: Option<PathBuf>,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 1800)]
    timeout: u64,
}

const ECHO_SAMPLE: &str = include_str!("../../deploy/samples/echo-model.yaml");
const PHASES: [Phase; 4] = [
    Phase::CreatingStorage,
    Phase::Downloading,
    Phase::Deploying,
    Phase::Ready,
];

struct Counts {
    objects: AtomicUsize,
    writes: AtomicUsize,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let client = Client::try_default().await.context("kubeconfig")?;
    let text = match &args.sample {
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("{}", p.display()))?,
        None => ECHO_SAMPLE.to_string(),
    };
    let template: MLModel = serde_yaml::from_str(&text).context("the model template")?;
    // Compiling the plugins happens before the clock starts (the operator does it at start too).
    let runtime = Runtime::new(RuntimeOptions::default()).context("loading plugins")?;
    let ns = args.namespace.as_str();
    let counts = Counts {
        objects: AtomicUsize::new(0),
        writes: AtomicUsize::new(0),
    };
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "mlmodel-bench-baseline".into(),
            instance: None,
        },
    );
    let n = args.models;

    let t0 = Instant::now();
    stream::iter(0..n)
        .map(|i| {
            let mut model = template.clone();
            model.metadata = Default::default();
            model.metadata.name = Some(format!("{}-{i:05}", args.prefix));
            model.metadata.namespace = Some(ns.to_string());
            one_model(&client, &runtime, &recorder, model, &args, &counts)
        })
        .buffer_unordered(args.concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    let secs = t0.elapsed().as_secs_f64();
    let objects = counts.objects.load(Ordering::Relaxed);
    let writes = counts.writes.load(Ordering::Relaxed);
    println!(
        "baseline N={n} objects={objects} writes={writes} time_s={secs:.2} objects_per_s={:.0} writes_per_s={:.0}",
        objects as f64 / secs,
        writes as f64 / secs
    );

    let deadline = t0 + Duration::from_secs(args.timeout);
    if args.wait_ready {
        tokio::time::timeout_at(deadline.into(), settled(&client, ns, n))
            .await
            .context("timed out waiting for Jobs complete and Deployments available")??;
        println!(
            "baseline-settled N={n} time_s={:.2}",
            t0.elapsed().as_secs_f64()
        );
    }

    if !args.no_delete {
        let t1 = Instant::now();
        let models: Api<MLModel> = Api::namespaced(client.clone(), ns);
        stream::iter(0..n)
            .map(|i| {
                let models = models.clone();
                let name = format!("{}-{i:05}", args.prefix);
                async move {
                    match models.delete(&name, &DeleteParams::background()).await {
                        Ok(_) => Ok(()),
                        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                        Err(e) => Err(e),
                    }
                }
            })
            .buffer_unordered(args.concurrency.max(1))
            .try_collect::<Vec<()>>()
            .await?;
        let deletes = t1.elapsed().as_secs_f64();
        let deadline = t1 + Duration::from_secs(args.timeout);
        wait(deadline, "the owned objects to be gone", || {
            owned_left(&client, ns)
        })
        .await?;
        println!(
            "baseline-delete N={n} delete_calls_s={deletes:.2} time_to_gone_s={:.2}",
            t1.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// All the writes of one model, in the operator's order.
async fn one_model(
    client: &Client,
    runtime: &Runtime,
    recorder: &Recorder,
    model: MLModel,
    args: &Args,
    counts: &Counts,
) -> Result<()> {
    let ns = args.namespace.as_str();
    let api: Api<MLModel> = Api::namespaced(client.clone(), ns);
    let model = api.create(&PostParams::default(), &model).await?;
    counts.writes.fetch_add(1, Ordering::Relaxed);

    let download = select(runtime, Step::Download, &model)?;
    let revision = names::revision(
        &model,
        &download.name,
        mlmodel_operator::storage::choose(&model, None).mode,
    );
    let model_name = model.name_any();
    let label = names::label_value(&model_name);
    for step in Step::ALL {
        if step == Step::Expose && !model.spec.expose {
            continue;
        }
        let plugin = select(runtime, step, &model)?;
        for mut obj in runtime.render(&plugin, &model, step, &revision)? {
            apply::decorate_pod_template(&mut obj, &model_name, &label, step.as_str(), &revision);
            apply::stamp_hash(&mut obj);
            apply::apply(client, ns, &obj).await?;
            counts.objects.fetch_add(1, Ordering::Relaxed);
            counts.writes.fetch_add(1, Ordering::Relaxed);
        }
    }

    for k in 0..args.status_patches {
        // Ready last, whatever the count.
        let idx = PHASES.len().saturating_sub(args.status_patches) + k;
        let phase = PHASES[idx.min(PHASES.len() - 1)];
        let status = MLModelStatus {
            phase: Some(phase),
            reason: Some(format!("{phase:?}")),
            message: Some(format!("baseline patch {}", k + 1)),
            observed_generation: model.metadata.generation,
            revision: Some(revision.clone()),
            ..Default::default()
        };
        let patch = serde_json::json!({
            "apiVersion": "mlmodel.dev/v1alpha1",
            "kind": "MLModel",
            "status": status,
        });
        api.patch_status(
            &model_name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
        counts.writes.fetch_add(1, Ordering::Relaxed);
    }

    let reference = model.object_ref(&());
    for k in 0..args.events {
        let event = Event {
            type_: EventType::Normal,
            reason: format!("Baseline{k}"),
            note: Some(format!("baseline event {}", k + 1)),
            action: "Reconcile".into(),
            secondary: None,
        };
        recorder.publish(&event, &reference).await?;
        counts.writes.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

async fn wait<F, Fut>(deadline: Instant, what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    loop {
        if check().await? {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until every Job completed and every Deployment is available, following both through
/// watches (a poll of 1000 full objects would load the apiserver it measures).
async fn settled(client: &Client, ns: &str, n: usize) -> Result<()> {
    let cfg = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGER}"));
    let (jobs, jw) = reflector::store::<Job>();
    let (deps, dw) = reflector::store::<Deployment>();
    let js = watcher(Api::<Job>::namespaced(client.clone(), ns), cfg.clone())
        .default_backoff()
        .reflect(jw)
        .map(|_| ());
    let ds = watcher(Api::<Deployment>::namespaced(client.clone(), ns), cfg)
        .default_backoff()
        .reflect(dw)
        .map(|_| ());
    let mut events = stream::select(js.boxed(), ds.boxed());
    while events.next().await.is_some() {
        let done = jobs
            .state()
            .iter()
            .filter(|j| j.status.as_ref().and_then(|s| s.succeeded).unwrap_or(0) >= 1)
            .count();
        if done < n {
            continue;
        }
        let available = deps
            .state()
            .iter()
            .filter(|d| {
                let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                d.status
                    .as_ref()
                    .and_then(|s| s.available_replicas)
                    .unwrap_or(0)
                    >= want
            })
            .count();
        if available >= n {
            return Ok(());
        }
    }
    anyhow::bail!("the watches ended")
}

async fn owned_left(client: &Client, ns: &str) -> Result<bool> {
    let owned = ListParams::default()
        .labels(&format!("{LABEL_MANAGED_BY}={MANAGER}"))
        .limit(1);
    let pods = ListParams::default().labels(LABEL_MODEL).limit(1);
    let left = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .list_metadata(&owned)
        .await?
        .items
        .len()
        + Api::<Job>::namespaced(client.clone(), ns)
            .list_metadata(&owned)
            .await?
            .items
            .len()
        + Api::<Deployment>::namespaced(client.clone(), ns)
            .list_metadata(&owned)
            .await?
            .items
            .len()
        + Api::<Service>::namespaced(client.clone(), ns)
            .list_metadata(&owned)
            .await?
            .items
            .len()
        + Api::<Pod>::namespaced(client.clone(), ns)
            .list_metadata(&pods)
            .await?
            .items
            .len()
        + Api::<MLModel>::namespaced(client.clone(), ns)
            .list_metadata(&ListParams::default().limit(1))
            .await?
            .items
            .len();
    Ok(left == 0)
}
