//! Status writes and their pacing: the status computed from what a reconcile saw is patched
//! only when it changed, steps on the way are coalesced (a model that walks to Ready in a few
//! seconds costs a few writes, not one per step), and each write publishes the Events it
//! deserves. The status written lately is remembered in [`super::written`] because the model
//! cache may not show it yet.
use super::Context;
use crate::api::{MANAGER, MLModel, MLModelStatus};
use crate::error::Error;
use crate::status::{self, Observation};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use std::time::Duration;
use tracing::warn;

/// A status change that is no milestone (a step on the way to Ready, replica counts, progress
/// figures) is written at most once per this window per model, with whatever else changed, and
/// a new phase only once it has lasted this long: a model walking to Ready in a few seconds
/// costs a few writes, not one per step it passes (Deploying, when the server is ready a moment
/// after the download, is written with Ready, in one write and one Event).
pub(super) const COALESCE: Duration = Duration::from_secs(2);

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

/// Writes the model's status from `obs` if it changed and its window allows; otherwise says
/// when to come back to write it.
pub async fn write(
    ctx: &Context,
    model: &MLModel,
    obs: &Observation,
) -> Result<Option<Duration>, Error> {
    let mut come_back = None;
    let old = ctx.memory.current_status(model);
    let new = status::compute(Timestamp::now(), model, obs, old.as_ref());
    if status::changed(old.as_ref(), &new) {
        // A model's first status counts from its creation: a model that walks fast is first
        // written a step or two further on.
        let since = ctx.memory.since_last_write(model).or_else(|| age(model));
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
                COALESCE.saturating_sub(ctx.memory.pending_for(model))
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
            ctx.memory.record_write(model, &new);
            if let Some((succeeded, took)) = status::download_ended(old.as_ref(), &new, obs) {
                ctx.metrics.download_ended(succeeded, took);
            }
            for note in status::events(old.as_ref(), &new) {
                publish(ctx, model, note).await;
            }
        } else {
            // Written with whatever comes next, or when the window ends.
            come_back = Some(wait);
        }
    } else {
        ctx.memory.settled(model);
    }
    Ok(come_back)
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
