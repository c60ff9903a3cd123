//! One function per condition type of `MLModel.status.conditions`, from what the reconcile saw.
use super::Observation;
use crate::api::{MLModel, MLModelStatus};
use crate::conditions::{ConditionStatus, ConditionType, Reason};
use crate::interpret::{DownloadState, ServingState};
use crate::progress::{self, duration_text};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// What every condition of one status shares: the generation it observed and the time.
pub(super) struct Stamp {
    pub generation: Option<i64>,
    pub now: Timestamp,
}

impl Stamp {
    pub fn cond(
        &self,
        type_: ConditionType,
        status: ConditionStatus,
        reason: Reason,
        message: String,
    ) -> Condition {
        Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message,
            observed_generation: self.generation,
            last_transition_time: Time(self.now),
        }
    }
}

/// The reason of a running download: moving, or stalled.
pub(super) fn downloading(obs: &Observation) -> Reason {
    let stalled = obs
        .progress
        .as_ref()
        .is_some_and(|p| p.stalled_for.is_some());
    if stalled {
        Reason::DownloadStalled
    } else {
        Reason::Downloading
    }
}

/// `Downloaded`: the wanted revision is on its volume.
pub(super) fn downloaded(stamp: &Stamp, model: &MLModel, obs: &Observation) -> Condition {
    let url = &model.spec.model_url;
    let rev = &obs.wanted_revision;
    let downloading = downloading(obs);
    match &obs.download {
        DownloadState::Succeeded { report, .. } => {
            let detail = report
                .as_ref()
                .and_then(|r| {
                    Some(format!(
                        ": {} bytes, sha256 {}",
                        r.bytes?,
                        r.sha256.clone()?
                    ))
                })
                .unwrap_or_default();
            stamp.cond(
                ConditionType::Downloaded,
                ConditionStatus::True,
                Reason::Downloaded,
                format!("revision {rev} downloaded{detail}"),
            )
        }
        DownloadState::Running {
            attempts,
            max_attempts,
            ..
        } => {
            let attempt = match max_attempts {
                Some(max) => format!("attempt {attempts} of {max}"),
                None => format!("attempt {attempts}"),
            };
            let message = match &obs.progress {
                Some(progress::Sample {
                    figures,
                    stalled_for: Some(stalled),
                }) => format!(
                    "downloading {url} (revision {rev}): stalled at {} for {}, {attempt}",
                    mlmodel_fetch::human_bytes(figures.done),
                    duration_text(*stalled)
                ),
                Some(sample) => format!(
                    "downloading {url} (revision {rev}, {attempt}): {}",
                    sample.figures.human()
                ),
                None => format!("downloading {url} (revision {rev}, {attempt})"),
            };
            stamp.cond(
                ConditionType::Downloaded,
                ConditionStatus::False,
                downloading.clone(),
                message,
            )
        }
        DownloadState::NotStarted => stamp.cond(
            ConditionType::Downloaded,
            ConditionStatus::False,
            Reason::Pending,
            format!("download of revision {rev} not started"),
        ),
        DownloadState::Failed {
            reason, message, ..
        } => stamp.cond(
            ConditionType::Downloaded,
            ConditionStatus::False,
            reason.clone(),
            message.clone(),
        ),
    }
}

/// `Serving`: the served revision's workload is available.
pub(super) fn serving(stamp: &Stamp, obs: &Observation) -> Condition {
    let served = obs.serve_revision.as_deref().unwrap_or("-");
    match &obs.serving {
        ServingState::Available { ready, wanted } => stamp.cond(
            ConditionType::Serving,
            ConditionStatus::True,
            Reason::Available,
            format!("{ready}/{wanted} replicas ready, serving revision {served}"),
        ),
        ServingState::Progressing { message, .. } => stamp.cond(
            ConditionType::Serving,
            ConditionStatus::False,
            Reason::RollingOut,
            format!("{message} (revision {served})"),
        ),
        ServingState::Short {
            reason, message, ..
        } => stamp.cond(
            ConditionType::Serving,
            ConditionStatus::False,
            reason.clone(),
            format!("{message} (revision {served})"),
        ),
        ServingState::Missing => stamp.cond(
            ConditionType::Serving,
            ConditionStatus::False,
            Reason::NotDeployed,
            "waiting for the download before deploying the server".into(),
        ),
        ServingState::Failed {
            reason, message, ..
        } => stamp.cond(
            ConditionType::Serving,
            ConditionStatus::False,
            reason.clone(),
            message.clone(),
        ),
    }
}

/// `Exposed` (only when `spec.expose`): the Service exists.
pub(super) fn exposed(stamp: &Stamp, obs: &Observation) -> Option<Condition> {
    obs.expose.as_ref().map(|e| match e {
        Some(ep) => stamp.cond(
            ConditionType::Exposed,
            ConditionStatus::True,
            Reason::ServiceReady,
            format!("reachable at {}", ep.url),
        ),
        None => stamp.cond(
            ConditionType::Exposed,
            ConditionStatus::False,
            Reason::ServicePending,
            "the Service is not created yet".into(),
        ),
    })
}

/// `Ready`: a model is served (and exposed, when asked); else the phase's reason and message.
pub(super) fn ready(
    stamp: &Stamp,
    obs: &Observation,
    ready_ok: bool,
    reason: &Reason,
    message: &str,
) -> Condition {
    let served = obs.serve_revision.as_deref().unwrap_or("-");
    if ready_ok {
        stamp.cond(
            ConditionType::Ready,
            ConditionStatus::True,
            Reason::Ready,
            format!("serving revision {served}"),
        )
    } else {
        stamp.cond(
            ConditionType::Ready,
            ConditionStatus::False,
            reason.clone(),
            message.to_string(),
        )
    }
}

/// Keeps the transition time of each condition whose status did not change since `previous`.
pub(super) fn keep_transition_times(
    conditions: &mut [Condition],
    previous: Option<&MLModelStatus>,
) {
    if let Some(prev) = previous {
        for c in conditions.iter_mut() {
            if let Some(old) = prev
                .conditions
                .iter()
                .find(|old| old.type_ == c.type_)
                .filter(|old| old.status == c.status)
            {
                c.last_transition_time = old.last_transition_time.clone();
            }
        }
    }
}
