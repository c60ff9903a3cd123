//! The phase: one word for what is happening now, with its reason and message.
use super::Observation;
use super::conditions::downloading;
use crate::api::{MLModel, MLModelStatus, Phase};
use crate::conditions::Reason;
use crate::interpret::{DownloadState, ServingState};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// The phase, its reason and message, given the `Downloaded` and `Serving` conditions and
/// whether serving and exposing hold.
pub(super) fn phase(
    model: &MLModel,
    obs: &Observation,
    previous: Option<&MLModelStatus>,
    downloaded: &Condition,
    serving: &Condition,
    serving_ok: bool,
    exposed_ok: bool,
) -> (Phase, Reason, String) {
    let url = &model.spec.model_url;
    let rev = &obs.wanted_revision;
    let downloading = downloading(obs);
    if let Some((reason, message)) = &obs.blocking_error {
        (Phase::Failed, reason.clone(), message.clone())
    } else if let DownloadState::Failed {
        reason, message, ..
    } = &obs.download
    {
        (
            Phase::Failed,
            Reason::DownloadFailed,
            format!("download of {url} failed ({reason}): {message}"),
        )
    } else if let Some((reason, message)) = degraded(model, obs, previous) {
        (Phase::Degraded, reason, message)
    } else if let ServingState::Failed {
        reason, message, ..
    } = &obs.serving
    {
        (Phase::Failed, reason.clone(), message.clone())
    } else if !matches!(obs.download, DownloadState::Succeeded { .. }) {
        if !obs.storage_exists {
            (
                Phase::CreatingStorage,
                Reason::CreatingStorage,
                format!("creating the volume for revision {rev}"),
            )
        } else {
            (Phase::Downloading, downloading, downloaded.message.clone())
        }
    } else if obs.serve_revision.as_deref() == Some(rev.as_str()) && serving_ok && exposed_ok {
        let ep = obs
            .expose
            .as_ref()
            .and_then(|e| e.as_ref())
            .map(|e| format!(" at {}", e.url))
            .unwrap_or_default();
        (
            Phase::Ready,
            Reason::Ready,
            format!("serving revision {rev}{ep}"),
        )
    } else if serving_ok {
        (
            Phase::Deploying,
            Reason::Exposing,
            "creating the Service".into(),
        )
    } else {
        (Phase::Deploying, Reason::Deploying, serving.message.clone())
    }
}

/// A model that was Ready at this revision and generation, with fewer replicas ready now: why
/// (a replica that cannot come back fails the model only when none is left serving).
fn degraded(
    model: &MLModel,
    obs: &Observation,
    previous: Option<&MLModelStatus>,
) -> Option<(Reason, String)> {
    let served = obs.serve_revision.as_deref()?;
    let was_serving = previous.is_some_and(|p| {
        matches!(p.phase, Some(Phase::Ready | Phase::Degraded))
            && p.revision.as_deref() == Some(served)
            && p.observed_generation == model.metadata.generation
    });
    if !was_serving || served != obs.wanted_revision {
        return None;
    }
    match &obs.serving {
        ServingState::Short {
            reason, message, ..
        } => Some((reason.clone(), message.clone())),
        ServingState::Failed {
            reason,
            message,
            ready,
            wanted,
        } if *ready > 0 => Some((
            reason.clone(),
            format!("{ready}/{wanted} replicas ready; {message}"),
        )),
        _ => None,
    }
}
