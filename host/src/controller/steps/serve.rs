//! The serve step: the format check, the served revision's workload and how it is doing, a
//! crashed server's last words, and `spec.validation`'s sample requests.
use super::super::brief::name_of;
use super::super::watches::{Owned, find};
use super::{Applier, Blocked, Stop};
use crate::api::MLModel;
use crate::conditions::Reason;
use crate::interpret::{self, DownloadState, ServingState};
use crate::plugins::{LoadedPlugin, Step};
use crate::status::Observation;
use mlmodel_fetch::FetchReport;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::warn;

/// The downloaded files' format against what the serve plugin loads: a mismatch stops before
/// any server starts (a server that cannot load its model never becomes ready, and says why only
/// in its logs).
pub(super) fn check_format(plugin: &LoadedPlugin, report: &FetchReport) -> Result<(), Stop> {
    let Some(format) = report.format.as_deref() else {
        return Ok(());
    };
    if plugin.accepts.loads_format(format) {
        return Ok(());
    }
    let found = match report.largest.as_deref().and_then(|l| l.first()) {
        Some(file) => format!(
            "{format} (largest file: {:?}, {} bytes)",
            file.path, file.bytes
        ),
        None => format.to_string(),
    };
    let message = format!(
        "the downloaded model is {found}, but serve plugin {} loads only {}: choose a model URL in one of those formats, or a serve plugin that loads {format} (annotation {})",
        plugin.name,
        plugin.accepts.model_formats.join(", "),
        Step::Serve.annotation(),
    );
    Err(Blocked::new(Reason::ModelFormatMismatch, message).into())
}

/// What is served now: the revision the current workload's pod template says (level-triggered:
/// read from the cluster, not remembered), and how it is doing.
pub(super) fn observe_serving(model: &MLModel, owned: &Owned) -> Observation {
    let mut obs = Observation {
        blocking_error: None,
        wanted_revision: String::new(),
        storage_exists: false,
        download: DownloadState::NotStarted,
        serve_revision: None,
        serving: ServingState::Missing,
        expose: model.spec.expose.then_some(None),
        plugins: BTreeMap::new(),
        progress: None,
        inference: None,
        storage: None,
    };
    let served = owned
        .deployments
        .iter()
        .find(|d| interpret::step_of(d.as_ref()) == Some(Step::Serve.as_str()))
        .and_then(|d| interpret::revision_of(d.as_ref()).map(str::to_string));
    if let Some(rev) = &served {
        let dep = owned
            .deployments
            .iter()
            .find(|d| interpret::revision_of(d.as_ref()) == Some(rev));
        obs.serving = interpret::serving_state(
            dep.map(|d| d.as_ref()),
            &owned.pods_of(Step::Serve.as_str(), Some(rev)),
        );
    }
    obs.serve_revision = served;
    obs
}

/// Serves `revision` (downloaded, or the one served already).
pub(super) async fn serve(
    applier: &mut Applier<'_>,
    owned: &Owned,
    plugin: &Arc<LoadedPlugin>,
    per_pod_download: Option<&Arc<LoadedPlugin>>,
    revision: &str,
    obs: &mut Observation,
) -> Result<(), Stop> {
    let objs = applier
        .render_and_apply(Step::Serve, plugin, revision, per_pod_download)
        .await?;
    obs.serve_revision = Some(revision.to_string());
    obs.inference = objs.iter().find_map(|b| b.inference.clone());
    let serve_pods = owned.pods_of(Step::Serve.as_str(), Some(revision));
    obs.serving = match name_of(&objs, "Deployment") {
        Some(dep) => {
            let current = find(&owned.deployments, &dep)
                .filter(|d| interpret::revision_of(*d) == Some(revision));
            match current {
                Some(d) => interpret::serving_state(Some(d), &serve_pods),
                // Just applied (or re-labelled to the new revision): the cache catches up next.
                None => ServingState::Progressing {
                    ready: 0,
                    wanted: applier.model.spec.replicas,
                    message: "rolling out".into(),
                },
            }
        }
        None => match interpret::pod_failure(&serve_pods) {
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
    // Ready names the revision that answers: while a pod of the revision before still runs
    // (stopping after the scale-down), a request may reach it through a kube-proxy not yet
    // synced, so the model stays on its way until those pods are gone.
    if let ServingState::Available { ready, wanted } = obs.serving {
        let leaving = pods_of_other_revisions(owned, revision);
        if leaving > 0 {
            obs.serving = ServingState::Progressing {
                ready,
                wanted,
                message: format!(
                    "{ready}/{wanted} replicas ready; {leaving} pod(s) of the revision before still stopping"
                ),
            };
        }
    }
    if let ServingState::Failed {
        reason, message, ..
    } = &mut obs.serving
        && reason.as_str() == "CrashLoopBackOff"
        && let Some((pod, container)) = interpret::silent_crash(&serve_pods)
        && let Some(words) = last_log_words(applier, &pod, &container).await
    {
        message.push_str(&format!(
            "; it left no termination message, its log ends: {words}"
        ));
    }
    if let Some(v) = &applier.model.spec.validation {
        let port = objs.iter().find_map(|b| b.http_port);
        validate(applier, v, revision, &serve_pods, port, obs).await?;
    }
    Ok(())
}

/// Serving pods of revisions other than `revision` that still run or are stopping (a pod that
/// has ended, such as an evicted one, answers nothing and does not count).
fn pods_of_other_revisions(owned: &Owned, revision: &str) -> usize {
    owned
        .pods
        .iter()
        .filter(|p| interpret::step_of(p.as_ref()) == Some(Step::Serve.as_str()))
        .filter(|p| interpret::revision_of(p.as_ref()) != Some(revision))
        .filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        })
        .count()
}

/// The last words of a container's previous run, from its log (a few lines, read while it
/// crash-loops: one read per pod change); none when the log cannot be read.
pub(super) async fn last_log_words(
    applier: &Applier<'_>,
    pod: &str,
    container: &str,
) -> Option<String> {
    let params = kube::api::LogParams {
        container: Some(container.to_string()),
        previous: true,
        tail_lines: Some(40),
        limit_bytes: Some(16 * 1024),
        ..Default::default()
    };
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(applier.ctx.client.clone(), applier.ns);
    match pods.logs(pod, &params).await {
        Ok(log) => interpret::last_words(&log),
        Err(e) => {
            warn!(%pod, %container, error = %e, "cannot read the crashed container's log");
            None
        }
    }
}

/// `spec.validation`: asks the revision's new pods the sample request; a wrong answer fails the
/// model while the pods of the revision before keep the traffic (the new ones never turn
/// Ready, so the rolling update does not go on).
pub(super) async fn validate(
    applier: &mut Applier<'_>,
    v: &crate::api::Validation,
    revision: &str,
    pods: &[&crate::cached::CachedPod],
    port: Option<i64>,
    obs: &mut Observation,
) -> Result<(), Stop> {
    let expected =
        crate::validation::expected(v).map_err(|e| Blocked::new(Reason::InvalidValidation, e))?;
    let asked = super::super::validate::ask_pods(
        &applier.ctx.client,
        applier.ns,
        v,
        expected.as_ref(),
        pods,
        port,
        obs.inference.as_ref(),
    )
    .await?;
    if asked.retry {
        let again = Duration::from_secs(2);
        applier.recheck = Some(applier.recheck.map_or(again, |r| r.min(again)));
    }
    if let Some((pod, why)) = asked.failed {
        let (ready, wanted) = match &obs.serving {
            ServingState::Available { ready, wanted }
            | ServingState::Progressing { ready, wanted, .. }
            | ServingState::Short { ready, wanted, .. }
            | ServingState::Failed { ready, wanted, .. } => (*ready, *wanted),
            ServingState::Missing => (0, applier.model.spec.replicas),
        };
        obs.serving = ServingState::Failed {
            reason: Reason::ValidationFailed,
            message: format!(
                "pod {pod} of revision {revision} {why}; it takes no traffic (spec.validation), and the pods of the revision before keep serving"
            ),
            ready,
            wanted,
        };
    }
    Ok(())
}
