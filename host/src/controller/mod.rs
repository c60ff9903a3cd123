//! The MLModel controller (`mlmodel-operator run`): watches models and what they own, renders
//! each step through its plugin, applies, prunes, and writes status.
//!
//! One reconcile is: select plugins -> download step for the wanted revision -> serve step for
//! the revision that is downloaded (the old one keeps serving meanwhile) -> expose step -> prune
//! -> status. Decisions live in `plan` and `status`; this module only reads caches and calls the
//! API server.
//!
//! - this module: [`reconcile`] (a driver of four named calls), the error policy and the
//!   [`Context`] they share, with the sweep of models that are gone;
//! - [`steps`]: one function per step, and the applier that renders and applies;
//! - [`prune`]: what the plan left out, deleted; [`status_write`]: the status patch, its
//!   pacing and its Events;
//! - [`watches`]: the shared reflectors of what the operator owns, their caches, [`Owned`];
//! - [`run`]: the process (metrics and health server, leader election, signals) and
//!   [`run::run_controllers`], one controller per watched namespace.
mod applied;
mod brief;
mod download_logs;
mod events;
mod last_renders;
mod memory;
mod prune;
pub mod run;
mod status_write;
mod steps;
mod validate;
mod watches;
mod written;

pub use crate::error::Error;
pub use events::Recorder;
pub use watches::{Cache, Stores};

use crate::api::MLModel;
use crate::metrics::Metrics;
use crate::plugins::Runtime;
use crate::selection::Selection;
use kube::runtime::controller::Action;
use kube::{Client, ResourceExt};
use memory::Memory;
use std::sync::Arc;
use std::time::{Duration, Instant};
use steps::{Applier, run_steps};
use tracing::warn;
use watches::Owned;

pub struct Context {
    pub client: Client,
    pub runtime: Runtime,
    /// Which plugin each model gets (the operator's defaults per step).
    pub selection: Selection,
    pub stores: Stores,
    /// The models of the watched namespaces (the controller's cache): two models whose names
    /// derive the same object names or labels are told apart by it.
    pub models: kube::runtime::reflector::Store<MLModel>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Running downloads' figures, read from their logs.
    pub progress: crate::progress::Tracker,
    /// What is remembered of each model between reconciles (failures, the status written,
    /// objects applied, last renders), with one forget.
    memory: Memory,
}

/// How often the memories are swept of models that are gone.
const FORGET_GONE_EVERY: Duration = Duration::from_secs(60);

impl Context {
    /// Forgets what the per-model memories hold of models not in `live` (the model cache). A
    /// model without finalizers leaves the cache at once when it is deleted, so no reconcile
    /// sees its deletion: without this sweep, a model deleted while failing would keep its
    /// backoff count, and every deleted model its renders, for the process's life.
    pub(crate) fn forget_gone(&self, live: &[Arc<MLModel>]) {
        let keys: std::collections::HashSet<String> = live.iter().map(|m| memory::key(m)).collect();
        self.memory.retain(|key| keys.contains(key));
    }

    /// Forgets everything remembered of `model` (it is being deleted).
    fn forget(&self, model: &MLModel) {
        self.memory.forget(&memory::key(model));
    }

    /// A reconcile of `model` succeeded: its backoff starts again.
    fn reconciled(&self, model: &MLModel) {
        self.memory.update(&memory::key(model), |m| m.failures = 0);
    }

    /// Models the memory holds (for tests of the sweep).
    #[cfg(test)]
    pub(crate) fn remembered(&self) -> usize {
        self.memory.len()
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
    let n = ctx.memory.with(&memory::key(&model), |m| {
        m.failures += 1;
        m.failures
    });
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

/// One reconcile: observe what the model owns -> run the steps as far as they go -> prune what
/// the plan left out -> write status. Each returns when it wants to look again; the soonest wins.
async fn reconcile_model(model: &Arc<MLModel>, ctx: &Arc<Context>) -> Result<Action, Error> {
    if model.metadata.deletion_timestamp.is_some() {
        // Owner references hand everything to the garbage collector.
        ctx.forget(model);
        return Ok(Action::await_change());
    }
    let ns = model.namespace().ok_or(Error::NoNamespace)?;
    let owned = Owned::read(&ctx.stores, model);
    let mut applier = Applier::new(ctx, model, &ns, &owned);
    let (obs, steps_again) = run_steps(&mut applier, &owned).await?;
    // Only after a complete plan: a step that failed to render must not lose its objects.
    if obs.blocking_error.is_none() {
        let serving = obs.serve_revision.as_deref();
        prune::prune(ctx, model, &ns, &owned, &applier.rendered, serving).await?;
    }
    let status_again = status_write::write(ctx, model, &obs).await?;
    ctx.reconciled(model);
    // Watches bring every change of what the model owns; the periodic requeue is a safety net.
    let again = [steps_again, status_again].into_iter().flatten().min();
    Ok(Action::requeue(again.unwrap_or(Duration::from_secs(300))))
}

#[cfg(test)]
mod fake_api;
#[cfg(test)]
mod tests;
