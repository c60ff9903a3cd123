//! The steps of one reconcile, in order, as far as they can go now: select plugins -> download
//! the wanted revision -> serve the downloaded revision (the old one keeps serving meanwhile) ->
//! expose it. Each step records what it saw in the [`Observation`] and returns `Err(Stop)` when
//! the walk cannot go further: [`Stop::Blocked`] for what the user must fix (written to status),
//! [`Stop::Api`] for what may pass (retried with backoff).
mod applier;
mod download;
mod expose;
mod select;
mod serve;

pub use applier::Applier;

use super::watches::Owned;
use crate::api::StorageMode;
use crate::conditions::Reason;
use crate::error::Error;
use crate::interpret::{self, DownloadState};
use crate::plugins::{LoadedPlugin, PluginError};
use crate::status::Observation;
use kube::ResourceExt;
use std::sync::Arc;
use std::time::Duration;

/// Why a step stopped the walk.
pub enum Stop {
    /// The user must fix something: written to status, not retried with backoff.
    Blocked(Blocked),
    /// The API server failed: the reconcile fails and is retried with backoff.
    Api(Error),
}

/// A failure the user must fix (bad plugin, invalid output, rejected object), kept apart from
/// errors that may pass.
pub struct Blocked {
    reason: Reason,
    message: String,
    /// Look again after this long even if nothing changes (it may pass by itself).
    retry_after: Option<Duration>,
}

impl Blocked {
    fn new(reason: Reason, message: impl Into<String>) -> Self {
        Blocked {
            reason,
            message: message.into(),
            retry_after: None,
        }
    }

    fn retry_after(self, after: Duration) -> Self {
        Blocked {
            retry_after: Some(after),
            ..self
        }
    }
}

impl From<PluginError> for Blocked {
    fn from(e: PluginError) -> Self {
        // Bounded: whatever a plugin says, its failure fits in a status.
        Blocked::new(e.reason(), e.message())
    }
}

impl From<Blocked> for Stop {
    fn from(b: Blocked) -> Self {
        Stop::Blocked(b)
    }
}

impl From<PluginError> for Stop {
    fn from(e: PluginError) -> Self {
        Stop::Blocked(e.into())
    }
}

impl From<kube::Error> for Stop {
    fn from(e: kube::Error) -> Self {
        Stop::Api(e.into())
    }
}

/// The plugin of each step of one model.
struct Plugins {
    download: Arc<LoadedPlugin>,
    serve: Arc<LoadedPlugin>,
    expose: Option<Arc<LoadedPlugin>>,
}

/// Runs the steps, in order, as far as they can go now: what they saw (with the running
/// download's figures), and when to look again if nothing else wakes the model.
pub async fn run_steps(
    applier: &mut Applier<'_>,
    owned: &Owned,
) -> Result<(Observation, Option<Duration>), Error> {
    let mut obs = serve::observe_serving(applier.model, owned);
    let again = match in_order(applier, owned, &mut obs).await {
        Ok(()) => None,
        Err(Stop::Blocked(b)) => {
            obs.blocking_error = Some((b.reason, b.message));
            b.retry_after
        }
        Err(Stop::Api(e)) => return Err(e),
    };
    if matches!(obs.download, DownloadState::Running { .. }) {
        obs.progress = applier.ctx.progress.sample(&crate::progress::Key {
            namespace: applier.ns.to_string(),
            model: applier.model.name_any(),
            revision: obs.wanted_revision.clone(),
        });
    }
    let again = [again, applier.recheck].into_iter().flatten().min();
    Ok((obs, again))
}

/// Each step in turn; the first that cannot go on stops the others.
async fn in_order(
    applier: &mut Applier<'_>,
    owned: &Owned,
    obs: &mut Observation,
) -> Result<(), Stop> {
    let plugins = select::select_plugins(applier, obs)?;
    let wanted = download::download(applier, owned, &plugins.download, obs).await?;
    let per_pod = obs
        .storage
        .as_ref()
        .is_some_and(|s| s.mode == StorageMode::PerPod);
    // Per-pod storage downloads in the serving pods: they start at once, and the pods of the
    // revision before serve until the new ones are ready.
    let downloaded = per_pod || matches!(obs.download, DownloadState::Succeeded { .. });
    let served = obs.serve_revision.clone();
    // Serve the downloaded revision, or keep serving the old one.
    let Some(serve_rev) =
        interpret::serve_revision(&wanted, downloaded, served.as_deref()).map(str::to_string)
    else {
        return Ok(());
    };
    if serve_rev == wanted
        && let DownloadState::Succeeded {
            report: Some(report),
            ..
        } = &obs.download
    {
        serve::check_format(&plugins.serve, report)?;
    }
    let per_pod_download = per_pod.then_some(&plugins.download);
    serve::serve(
        applier,
        owned,
        &plugins.serve,
        per_pod_download,
        &serve_rev,
        obs,
    )
    .await?;
    if let Some(plugin) = &plugins.expose {
        expose::expose(applier, owned, plugin, &serve_rev, obs).await?;
    }
    Ok(())
}
