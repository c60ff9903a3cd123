//! The phase: one word for what is happening now, with its reason and message.
use super::Observation;
use super::conditions::downloading;
use crate::api::{MLModel, Phase};
use crate::conditions::Reason;
use crate::interpret::{DownloadState, ServingState};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// The phase, its reason and message, given the `Downloaded` and `Serving` conditions and
/// whether serving and exposing hold.
pub(super) fn phase(
    model: &MLModel,
    obs: &Observation,
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
