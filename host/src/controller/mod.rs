//! The MLModel controller (`mlmodel-operator run`): watches models and what they own, renders
//! each step through its plugin, applies, prunes, and writes status.
//!
//! One reconcile is: select plugins -> download step for the wanted revision -> serve step for
//! the revision that is downloaded (the old one keeps serving meanwhile) -> expose step -> prune
//! -> status. Decisions live in `plan` and `status`; this module only reads caches and calls the
//! API server.
//!
//! - this module: [`reconcile`], the error policy and the [`Context`] they share;
//! - [`steps`]: one function per step, and the applier that renders and applies;
//! - [`watches`]: the shared reflectors of what the operator owns, their caches, [`Owned`];
//! - [`run`]: the process (metrics and health server, leader election, signals) and
//!   [`run::run_controllers`], one controller per watched namespace.
mod applied;
mod events;
mod progress;
mod renders;
pub mod run;
mod steps;
mod validate;
mod watches;
mod written;

pub use crate::error::Error;
pub use events::Recorder;
pub use watches::{Cache, Stores};

use crate::api::{MANAGER, MLModel, MLModelStatus};
use crate::apply;
use crate::metrics::Metrics;
use crate::plan;
use crate::plugins::{Runtime, Step};
use crate::status;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use steps::{Applier, Progress, run_steps};
use tracing::{info, warn};
use watches::Owned;

/// A status change that is no milestone (a step on the way to Ready, replica counts, progress
/// figures) is written at most once per this window per model, with whatever else changed, and
/// a new phase only once it has lasted this long: a model walking to Ready in a few seconds
/// costs a few writes, not one per step it passes (Deploying, when the server is ready a moment
/// after the download, is written with Ready, in one write and one Event).
const COALESCE: Duration = Duration::from_secs(2);

/// Within a phase, what changes (replica counts, progress figures, a message) is written at
/// most once per this window per model; a change of phase, once per [`COALESCE`].
const DETAILS: Duration = Duration::from_secs(10);

/// How long ago the model was created, by the API server's clock (a clock behind ours reads as
/// no time at all).
fn age(model: &MLModel) -> Option<Duration> {
    let created = model.metadata.creation_timestamp.as_ref()?.0;
    let ago = Timestamp::now().duration_since(created);
    Some(Duration::try_from(ago).unwrap_or_default())
}

pub struct Context {
    pub client: Client,
    pub runtime: Runtime,
    pub stores: Stores,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Running downloads' figures, read from their logs.
    pub progress: crate::progress::Tracker,
    /// Consecutive failures per model, for exponential backoff.
    failures: Mutex<HashMap<ObjectRef<MLModel>, u32>>,
    /// Statuses written that the model cache may not show yet.
    written: written::Written,
    /// Objects applied that the caches may not show yet.
    applied: applied::Applied,
    /// Each model's last render of each step.
    renders: renders::Renders,
}

/// How often the memories are swept of models that are gone.
const FORGET_GONE_EVERY: Duration = Duration::from_secs(60);

impl Context {
    /// Forgets what the per-model memories hold of models not in `live` (the model cache). A
    /// model without finalizers leaves the cache at once when it is deleted, so no reconcile
    /// sees its deletion: without this sweep, a model deleted while failing would keep its
    /// backoff count, and every deleted model its renders, for the process's life.
    pub(crate) fn forget_gone(&self, live: &[Arc<MLModel>]) {
        let refs: std::collections::HashSet<ObjectRef<MLModel>> = live
            .iter()
            .map(|m| ObjectRef::from_obj(m.as_ref()))
            .collect();
        let uids: std::collections::HashSet<String> = live.iter().filter_map(|m| m.uid()).collect();
        self.failures
            .lock()
            .expect("not poisoned")
            .retain(|key, _| refs.contains(key));
        self.written.retain(|key| refs.contains(key));
        self.applied.retain(|uid| uids.contains(uid));
        self.renders.retain(|uid| uids.contains(uid));
    }

    /// Entries the per-model memories hold (for tests of the sweep).
    #[cfg(test)]
    pub(crate) fn remembered(&self) -> usize {
        self.failures.lock().expect("not poisoned").len()
            + self.written.len()
            + self.applied.len()
            + self.renders.len()
    }
}

/// Sweeps the memories of `ctx` every [`FORGET_GONE_EVERY`] against the model cache.
pub(crate) async fn forget_gone_models(
    ctx: Arc<Context>,
    models: kube::runtime::reflector::Store<MLModel>,
) {
    // An empty cache before the first list would sweep everything: harmless, but pointless.
    if models.wait_until_ready().await.is_err() {
        return;
    }
    let mut tick = tokio::time::interval(FORGET_GONE_EVERY);
    loop {
        tick.tick().await;
        ctx.forget_gone(&models.state());
    }
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
        ctx.written.forget(model);
        let uid = model.uid().unwrap_or_default();
        ctx.applied.forget(&uid);
        ctx.renders.forget(&uid);
        return Ok(Action::await_change());
    }
    let ns = model.namespace().ok_or(Error::NoNamespace)?;
    let owned = Owned::read(&ctx.stores, model);
    let mut applier = Applier::new(ctx, model, &ns, &owned);
    let (mut obs, mut requeue) = match run_steps(&mut applier, &owned).await? {
        Progress::Done(obs) => (obs, None),
        Progress::Blocked(obs, after) => (obs, after),
    };
    if let Some(at) = applier.recheck {
        requeue = Some(requeue.map_or(at, |r| r.min(at)));
    }
    if matches!(obs.download, plan::DownloadState::Running { .. }) {
        obs.progress = ctx.progress.sample(&crate::progress::Key {
            namespace: ns.clone(),
            model: model.name_any(),
            revision: obs.wanted_revision.clone(),
        });
    }

    // Prune only after a complete plan: a step that failed to render must not lose its objects.
    if obs.blocking_error.is_none() {
        let mut in_use: BTreeSet<String> = owned
            .pods_of(Step::Serve.as_str(), None)
            .iter()
            .filter_map(|p| plan::revision_of(*p).map(str::to_string))
            .collect();
        in_use.extend(obs.serve_revision.clone());
        let inventory = owned.inventory();
        let existing: Vec<_> = inventory
            .iter()
            .map(|o| (o.key.clone(), o.revision.clone()))
            .collect();
        for key in plan::prune(&existing, &applier.rendered, &in_use) {
            let uid = inventory
                .iter()
                .find(|o| o.key == key)
                .map(|o| o.uid.as_str())
                .unwrap_or_default();
            info!(model = %model.name_any(), kind = %key.kind, name = %key.name, "pruning");
            apply::delete(&ctx.client, &ns, &key.kind, &key.name, uid).await?;
        }
    }

    let old = ctx.written.current(model);
    let new = status::compute(Timestamp::now(), model, &obs, old.as_ref());
    if status::changed(old.as_ref(), &new) {
        // A model's first status counts from its creation: a model that walks fast is first
        // written a step or two further on.
        let since = ctx.written.since_last(model).or_else(|| age(model));
        let window = match &old {
            Some(old) if old.phase == new.phase => DETAILS,
            _ => COALESCE,
        };
        let urgent = status::urgent(old.as_ref(), &new);
        let wait = match since {
            Some(ago) if !urgent => window.saturating_sub(ago),
            _ => Duration::ZERO,
        };
        let held = match &old {
            Some(old) if !urgent && old.phase != new.phase => {
                COALESCE.saturating_sub(ctx.written.pending_for(model))
            }
            _ => Duration::ZERO,
        };
        let wait = wait.max(held);
        if wait.is_zero() {
            tracing::debug!(
                model = %model.name_any(),
                status = %serde_json::to_string(&new).unwrap_or_default(),
                "writing status"
            );
            patch_status(&ctx.client, model, &new).await?;
            ctx.written.record(model, &new);
            if let Some((succeeded, took)) = status::download_ended(old.as_ref(), &new, &obs) {
                ctx.metrics.download_ended(succeeded, took);
            }
            for note in status::events(old.as_ref(), &new) {
                publish(ctx, model, note).await;
            }
        } else {
            // Written with whatever comes next, or when the window ends.
            requeue = Some(requeue.map_or(wait, |r| r.min(wait)));
        }
    } else {
        ctx.written.settled(model);
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
    let message: String = note.message.chars().take(1000).collect();
    if let Err(e) = ctx
        .recorder
        .publish(model, note.warning, &note.reason, &message)
        .await
    {
        warn!(error = %e, "could not publish event");
    }
}

#[cfg(test)]
mod fake_api;
#[cfg(test)]
mod tests;
