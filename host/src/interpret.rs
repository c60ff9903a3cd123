//! Pure decisions: observed objects in, what they mean out. No I/O here, so every rule of the
//! flow (download state, serving failures, what to prune, which revision to serve) is unit-tested
//! without a cluster.
use crate::api::{LABEL_REVISION, LABEL_STEP};
use crate::cached::{CachedDeployment, CachedJob, CachedPod};
use crate::conditions::{ConditionStatus, Reason};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
// The one-line JSON the downloader writes to its termination log: the downloader's own type.
use mlmodel_fetch::FetchReport;
use std::collections::BTreeSet;

/// Where the download of one revision stands.
#[derive(Clone, Debug, PartialEq)]
pub enum DownloadState {
    /// The Job is not in the cache yet.
    NotStarted,
    Running {
        attempts: i32,
        /// The Job's `backoffLimit` + 1, when it has one.
        max_attempts: Option<i32>,
        started: Option<Time>,
        /// Attempts that failed and were retried, oldest first.
        retried: Vec<FailedAttempt>,
    },
    Succeeded {
        /// Boxed: the report (with what landed) dwarfs the other variants.
        report: Option<Box<FetchReport>>,
        started: Option<Time>,
        finished: Option<Time>,
        attempts: i32,
    },
    Failed {
        /// The downloader's reason (`NotFound`, `ChecksumMismatch`...) or the Job's, passed
        /// through; `DownloadFailed` when neither has one.
        reason: Reason,
        message: String,
        attempts: i32,
    },
}

/// A download attempt (pod) that failed: the downloader's reason and message from its
/// termination log, else the container's.
#[derive(Clone, Debug, PartialEq)]
pub struct FailedAttempt {
    pub reason: String,
    pub message: String,
    pub finished: Option<Time>,
}

/// The failed attempts among a download's `pods`, oldest first.
pub fn failed_attempts(pods: &[&CachedPod]) -> Vec<FailedAttempt> {
    let mut failed: Vec<FailedAttempt> = pods
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed"))
        .filter_map(|p| {
            let t = p
                .status
                .as_ref()?
                .container_statuses
                .as_ref()?
                .iter()
                .find_map(|cs| cs.state.as_ref()?.terminated.as_ref())?;
            let report = t.message.as_deref().and_then(parse_report);
            let reason = report
                .as_ref()
                .and_then(|r| r.reason.clone())
                .or_else(|| t.reason.clone())
                .unwrap_or_else(|| format!("ExitCode{}", t.exit_code));
            let message = report
                .and_then(|r| r.message)
                .or_else(|| t.message.clone())
                .unwrap_or_default();
            Some(FailedAttempt {
                reason,
                message,
                finished: t.finished_at.clone(),
            })
        })
        .collect();
    failed.sort_by_key(|f| f.finished.as_ref().map(|t| t.0));
    failed
}

fn job_condition<'a>(
    job: &'a CachedJob,
    type_: &str,
) -> Option<&'a k8s_openapi::api::batch::v1::JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && ConditionStatus::True.is(&c.status))
}

/// The termination message of the most recent terminated container among `pods`, newest first.
fn termination_message(pods: &[&CachedPod]) -> Option<String> {
    let mut terminated: Vec<_> = pods
        .iter()
        .flat_map(|p| {
            p.status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
        })
        .filter_map(|cs| {
            let t = cs
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .or_else(|| cs.last_state.as_ref().and_then(|s| s.terminated.as_ref()))?;
            (t.exit_code != 0).then_some(t)
        })
        .collect();
    terminated.sort_by(|a, b| {
        b.finished_at
            .as_ref()
            .map(|t| t.0)
            .cmp(&a.finished_at.as_ref().map(|t| t.0))
    });
    terminated
        .into_iter()
        .find_map(|t| t.message.clone().filter(|m| !m.trim().is_empty()))
}

fn parse_report(message: &str) -> Option<FetchReport> {
    let line = message
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))?;
    serde_json::from_str(line.trim()).ok()
}

/// Reads the downloads of per-pod storage: the init containers of the revision's serving
/// `pods`. Succeeded once a pod's init containers have ended well (the revision is
/// downloadable; a replica still downloading is a replica not ready yet, as after a drain);
/// else Failed while a pod's last attempt failed (the kubelet tries again, with backoff); else
/// Running.
pub fn per_pod_download_state(pods: &[&CachedPod]) -> DownloadState {
    if pods.is_empty() {
        return DownloadState::NotStarted;
    }
    let inits = |p: &CachedPod| {
        p.status
            .as_ref()
            .and_then(|s| s.init_container_statuses.clone())
            .unwrap_or_default()
    };
    let mut report = None;
    let mut done = 0;
    let mut failure = None;
    let mut attempts = 1;
    for pod in pods {
        let statuses = inits(pod);
        attempts = attempts.max(
            statuses
                .iter()
                .map(|c| c.restart_count + 1)
                .max()
                .unwrap_or(1),
        );
        let ended_well = |c: &k8s_openapi::api::core::v1::ContainerStatus| {
            c.state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .is_some_and(|t| t.exit_code == 0)
        };
        if !statuses.is_empty() && statuses.iter().all(ended_well) {
            done += 1;
            report = report.or_else(|| {
                statuses
                    .iter()
                    .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.message.as_deref())
                    .find_map(parse_report)
            });
            continue;
        }
        let failed = statuses.iter().find_map(|c| {
            let t = c
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .or_else(|| c.last_state.as_ref().and_then(|s| s.terminated.as_ref()))?;
            let running = c.state.as_ref().is_some_and(|s| s.running.is_some());
            (t.exit_code != 0 && !running).then_some(t)
        });
        if let Some(t) = failed {
            let raw = t.message.clone().unwrap_or_default();
            let (reason, message) = match parse_report(&raw) {
                Some(r) if r.reason.is_some() => (
                    Reason::Passed(r.reason.unwrap_or_default()),
                    r.message.unwrap_or_else(|| "the downloader failed".into()),
                ),
                _ if !raw.trim().is_empty() => (Reason::DownloadFailed, raw.trim().to_string()),
                _ => (
                    Reason::DownloadFailed,
                    format!(
                        "the download in the serving pod exited with code {}",
                        t.exit_code
                    ),
                ),
            };
            failure = failure.or(Some((reason, message)));
        }
    }
    if done > 0 {
        return DownloadState::Succeeded {
            report: report.map(Box::new),
            started: None,
            finished: None,
            attempts,
        };
    }
    if let Some((reason, message)) = failure {
        return DownloadState::Failed {
            reason,
            message,
            attempts,
        };
    }
    DownloadState::Running {
        attempts,
        max_attempts: None,
        started: None,
        retried: Vec::new(),
    }
}

/// Reads a download Job and its pods.
pub fn download_state(job: Option<&CachedJob>, pods: &[&CachedPod]) -> DownloadState {
    let Some(job) = job else {
        return DownloadState::NotStarted;
    };
    let status = job.status.clone().unwrap_or_default();
    let attempts =
        status.failed.unwrap_or(0) + status.succeeded.unwrap_or(0) + status.active.unwrap_or(0);
    if job_condition(job, "Complete").is_some() {
        let report = pods
            .iter()
            .flat_map(|p| {
                p.status
                    .iter()
                    .flat_map(|s| s.container_statuses.iter().flatten())
            })
            .filter_map(|cs| cs.state.as_ref()?.terminated.as_ref()?.message.as_deref())
            .find_map(parse_report)
            .map(Box::new);
        return DownloadState::Succeeded {
            report,
            started: status.start_time,
            finished: status.completion_time,
            attempts: attempts.max(1),
        };
    }
    if let Some(failed) = job_condition(job, "Failed") {
        let raw = termination_message(pods);
        let report = raw.as_deref().and_then(parse_report);
        let (reason, message) = match (report, raw) {
            (Some(r), _) if r.reason.is_some() => (
                Reason::Passed(r.reason.unwrap_or_default()),
                r.message.unwrap_or_else(|| "the downloader failed".into()),
            ),
            (_, Some(raw)) => (Reason::DownloadFailed, raw.trim().to_string()),
            _ => (
                failed
                    .reason
                    .clone()
                    .map_or(Reason::DownloadFailed, Reason::Passed),
                failed
                    .message
                    .clone()
                    .unwrap_or_else(|| "the download Job failed".into()),
            ),
        };
        return DownloadState::Failed {
            reason,
            message,
            attempts,
        };
    }
    DownloadState::Running {
        attempts: attempts.max(status.failed.unwrap_or(0) + 1),
        max_attempts: job
            .spec
            .as_ref()
            .and_then(|s| s.backoff_limit)
            .map(|b| b.saturating_add(1)),
        started: status.start_time,
        retried: failed_attempts(pods),
    }
}

/// Where the serving workload stands.
#[derive(Clone, Debug, PartialEq)]
pub enum ServingState {
    Missing,
    Progressing {
        ready: i32,
        wanted: i32,
        message: String,
    },
    Available {
        ready: i32,
        wanted: i32,
    },
    /// Every replica is of the served revision, but not all are ready: why, from the first pod
    /// that is not (a first rollout starting, or a model that lost replicas: the status tells
    /// them apart by what it said before).
    Short {
        ready: i32,
        wanted: i32,
        reason: Reason,
        message: String,
    },
    Failed {
        reason: Reason,
        message: String,
        ready: i32,
        wanted: i32,
    },
}

/// The first failure a user must act on among the serving pods, as (reason, message).
pub fn pod_failure(pods: &[&CachedPod]) -> Option<(Reason, String)> {
    for pod in pods {
        let name = pod.name_any();
        let Some(status) = pod.status.as_ref() else {
            continue;
        };
        for cs in status.container_statuses.iter().flatten() {
            let waiting = cs.state.as_ref().and_then(|s| s.waiting.as_ref());
            let last = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref());
            if let Some(t) = last.filter(|t| t.reason.as_deref() == Some("OOMKilled")) {
                let _ = t;
                return Some((
                    Reason::Passed("OOMKilled".into()),
                    format!(
                        "container {} of pod {name} was killed for using more memory than its limit (restarts: {}); raise spec.resources.limits.memory",
                        cs.name, cs.restart_count
                    ),
                ));
            }
            if let Some(w) = waiting {
                let reason = w.reason.clone().unwrap_or_default();
                let detail = w.message.clone().unwrap_or_default();
                let hint = match reason.as_str() {
                    "CrashLoopBackOff" => {
                        let last_msg = last
                            .and_then(|t| t.message.clone().or_else(|| t.reason.clone()))
                            .map(|m| format!("; last exit: {}", m.trim()))
                            .unwrap_or_default();
                        Some(format!(
                            "container {} of pod {name} keeps crashing (restarts: {}){last_msg}",
                            cs.name, cs.restart_count
                        ))
                    }
                    "ImagePullBackOff" | "ErrImagePull" | "InvalidImageName" => Some(format!(
                        "cannot pull image {:?} for container {} of pod {name}: {detail}",
                        cs.image, cs.name
                    )),
                    "CreateContainerConfigError" | "CreateContainerError" | "RunContainerError" => {
                        Some(format!(
                            "container {} of pod {name} cannot start: {detail}",
                            cs.name
                        ))
                    }
                    _ => None,
                };
                if let Some(message) = hint {
                    return Some((Reason::Passed(reason), message));
                }
            }
        }
        for c in status.conditions.iter().flatten() {
            if c.type_ == "PodScheduled"
                && ConditionStatus::False.is(&c.status)
                && c.reason.as_deref() == Some("Unschedulable")
            {
                return Some((
                    Reason::Unschedulable,
                    format!(
                        "pod {name} cannot be scheduled: {}",
                        c.message.clone().unwrap_or_default()
                    ),
                ));
            }
        }
    }
    None
}

/// A container in `CrashLoopBackOff` whose last run left no termination message: a server that
/// exits 0 after a failure (MLServer when a model does not load) or writes none while its pod
/// does not fall back to its log. Its reason is then only in its log: (pod, container).
pub fn silent_crash(pods: &[&CachedPod]) -> Option<(String, String)> {
    pods.iter().find_map(|pod| {
        let status = pod.status.as_ref()?;
        status.container_statuses.iter().flatten().find_map(|cs| {
            let waiting = cs.state.as_ref()?.waiting.as_ref()?;
            let last = cs.last_state.as_ref()?.terminated.as_ref()?;
            (waiting.reason.as_deref() == Some("CrashLoopBackOff")
                && last.message.as_deref().is_none_or(|m| m.trim().is_empty()))
            .then(|| (pod.name_any(), cs.name.clone()))
        })
    })
}

/// Longest line of a log quoted in a status message.
const MAX_LAST_WORDS: usize = 512;

/// What a log says of why its program ended: the last line that names an exception
/// (`ModuleNotFoundError: ...`, Python's last traceback line), else the last that says error,
/// fatal or panic, else the last line; cut to [`MAX_LAST_WORDS`] bytes.
pub fn last_words(log: &str) -> Option<String> {
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let exception = |l: &&&str| {
        l.split_once(": ").is_some_and(|(name, _)| {
            !name.contains(' ') && (name.ends_with("Error") || name.ends_with("Exception"))
        })
    };
    let alarm = |l: &&&str| {
        let lower = l.to_ascii_lowercase();
        ["error", "fatal", "panic"]
            .iter()
            .any(|w| lower.contains(w))
    };
    let line = lines
        .iter()
        .rev()
        .find(exception)
        .or_else(|| lines.iter().rev().find(alarm))
        .or(lines.last())?;
    Some(crate::text::truncate(line.to_string(), MAX_LAST_WORDS))
}

/// Reads a Deployment and its pods (only the pods of the revision being rolled out matter for
/// failures; older pods are leaving).
pub fn serving_state(dep: Option<&CachedDeployment>, pods: &[&CachedPod]) -> ServingState {
    let Some(dep) = dep else {
        return ServingState::Missing;
    };
    let wanted = dep.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let st = dep.status.clone().unwrap_or_default();
    let ready = st.ready_replicas.unwrap_or(0);
    let generation = dep.metadata.generation.unwrap_or(0);
    let observed = st.observed_generation.unwrap_or(0) >= generation;
    let updated = st.updated_replicas.unwrap_or(0);
    let available = st.available_replicas.unwrap_or(0);
    let total = st.replicas.unwrap_or(0);
    if observed && updated >= wanted && available >= wanted && total <= wanted && ready >= wanted {
        return ServingState::Available { ready, wanted };
    }
    if let Some((reason, message)) = pod_failure(pods) {
        return ServingState::Failed {
            reason,
            message,
            ready,
            wanted,
        };
    }
    let deadline = st.conditions.iter().flatten().find(|c| {
        c.type_ == "Progressing"
            && ConditionStatus::False.is(&c.status)
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    if let Some(c) = deadline {
        return ServingState::Failed {
            reason: Reason::Passed("ProgressDeadlineExceeded".into()),
            message: c
                .message
                .clone()
                .unwrap_or_else(|| "the rollout did not progress in time".into()),
            ready,
            wanted,
        };
    }
    if observed && updated >= wanted && total <= wanted {
        let (reason, why) = shortfall(pods);
        return ServingState::Short {
            ready,
            wanted,
            reason,
            message: format!("{ready}/{wanted} replicas ready; {why}"),
        };
    }
    ServingState::Progressing {
        ready,
        wanted,
        message: format!("{ready}/{wanted} replicas ready"),
    }
}

/// Why a replica of the revision is not ready, from the first pod that is not: its node
/// stopped reporting (the node lifecycle controller marked it not ready while its containers
/// last said ready, or named the node unreachable), it was evicted, it cannot be scheduled, or
/// it is not ready yet.
pub fn shortfall(pods: &[&CachedPod]) -> (Reason, String) {
    let condition = |pod: &CachedPod, type_: &str| {
        pod.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == type_).cloned())
    };
    for pod in pods {
        let name = pod.name_any();
        let ready = condition(pod, "Ready");
        if ready
            .as_ref()
            .is_some_and(|c| ConditionStatus::True.is(&c.status))
        {
            continue;
        }
        let status = pod.status.clone().unwrap_or_default();
        // The kubelet says why a pod is not ready (`ContainersNotReady`, `ReadinessGatesNotReady`);
        // the node lifecycle controller only turns the condition False, leaving containers that
        // last said ready.
        let containers_ready = status
            .container_statuses
            .as_ref()
            .is_some_and(|cs| !cs.is_empty() && cs.iter().all(|c| c.ready));
        let gated = ready
            .as_ref()
            .is_some_and(|c| c.reason.as_deref() == Some("ReadinessGatesNotReady"));
        if status.reason.as_deref() == Some("NodeLost") || (containers_ready && !gated) {
            let detail = status
                .message
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| "its node stopped reporting".into());
            return (Reason::NodeLost, format!("pod {name}: {detail}"));
        }
        if let Some(c) =
            condition(pod, "DisruptionTarget").filter(|c| ConditionStatus::True.is(&c.status))
        {
            let why = c.message.or(c.reason).unwrap_or_default();
            return (Reason::Evicted, format!("pod {name} was evicted: {why}"));
        }
        if let Some(c) =
            condition(pod, "PodScheduled").filter(|c| ConditionStatus::False.is(&c.status))
        {
            return (
                Reason::Unschedulable,
                format!(
                    "pod {name} cannot be scheduled: {}",
                    c.message.unwrap_or_default()
                ),
            );
        }
        let waiting = status
            .container_statuses
            .iter()
            .flatten()
            .find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone());
        let doing = waiting.map(|w| format!(" ({w})")).unwrap_or_default();
        return (
            Reason::ReplicasNotReady,
            format!("pod {name} is not ready yet{doing}"),
        );
    }
    (
        Reason::ReplicasNotReady,
        "a replica is not created yet".into(),
    )
}

/// The revision a pod or object carries (the host's label), if any.
pub fn revision_of<K: kube::Resource>(obj: &K) -> Option<&str> {
    obj.meta()
        .labels
        .as_ref()?
        .get(LABEL_REVISION)
        .map(String::as_str)
}

/// The step a pod or object belongs to (the host's label), if any.
pub fn step_of<K: kube::Resource>(obj: &K) -> Option<&str> {
    obj.meta()
        .labels
        .as_ref()?
        .get(LABEL_STEP)
        .map(String::as_str)
}

/// Which revision to serve: the wanted one once downloaded, otherwise the one served now (so an
/// update keeps the old model serving while the new one downloads).
pub fn serve_revision<'a>(
    wanted: &'a str,
    downloaded: bool,
    served: Option<&'a str>,
) -> Option<&'a str> {
    if downloaded { Some(wanted) } else { served }
}

/// Identity of an owned object, for pruning.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub kind: String,
    pub name: String,
}

/// Objects to delete: every owned object not kept, except the volumes and download objects of
/// revisions that pods still use (an old revision's volume stays until its pods are gone).
pub fn prune(
    existing: &[(ObjectKey, Option<String>)],
    keep: &BTreeSet<ObjectKey>,
    revisions_in_use: &BTreeSet<String>,
) -> Vec<ObjectKey> {
    existing
        .iter()
        .filter(|(key, _)| !keep.contains(key))
        .filter(|(key, rev)| {
            // Keep storage (and the Job that filled it) of a revision that live pods still mount.
            let storage = matches!(key.kind.as_str(), "PersistentVolumeClaim" | "Job");
            !(storage && rev.as_ref().is_some_and(|r| revisions_in_use.contains(r)))
        })
        .map(|(key, _)| key.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(status: serde_json::Value) -> CachedJob {
        serde_json::from_value(json!({"metadata": {"name": "j"}, "status": status})).unwrap()
    }
    fn pod(status: serde_json::Value) -> CachedPod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "status": status})).unwrap()
    }

    #[test]
    fn per_pod_downloads_are_read_from_the_serving_pods_init_containers() {
        let init = |state: serde_json::Value, last: serde_json::Value| {
            pod(
                json!({"initContainerStatuses": [{"name": "fetch", "image": "i", "imageID": "",
                "ready": false, "restartCount": 1, "state": state, "lastState": last}]}),
            )
        };
        let running = init(json!({"running": {}}), json!({}));
        let report = r#"{"bytes": 5, "sha256": "ab", "format": "files"}"#;
        let done = init(
            json!({"terminated": {"exitCode": 0, "message": report}}),
            json!({}),
        );
        let refused =
            r#"{"reason": "NotFound", "message": "the server answered 404 for the model URL"}"#;
        let failing = init(
            json!({"waiting": {"reason": "CrashLoopBackOff"}}),
            json!({"terminated": {"exitCode": 2, "message": refused}}),
        );
        assert_eq!(per_pod_download_state(&[]), DownloadState::NotStarted);
        assert!(matches!(
            per_pod_download_state(&[&running]),
            DownloadState::Running { attempts: 2, .. }
        ));
        match per_pod_download_state(&[&running, &failing]) {
            DownloadState::Failed {
                reason, message, ..
            } => {
                assert_eq!(reason.as_str(), "NotFound");
                assert!(message.contains("404"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        // One pod has the files: the revision is downloaded; the others are replicas on their way.
        match per_pod_download_state(&[&failing, &done, &running]) {
            DownloadState::Succeeded {
                report: Some(r), ..
            } => assert_eq!(r.sha256.as_deref(), Some("ab")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn download_reads_job_and_termination_message() {
        assert_eq!(download_state(None, &[]), DownloadState::NotStarted);
        let running = job(json!({"active": 1}));
        assert!(matches!(
            download_state(Some(&running), &[]),
            DownloadState::Running { attempts: 1, .. }
        ));

        let failed = job(
            json!({"failed": 2, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}),
        );
        let p = pod(
            json!({"containerStatuses": [{"name": "fetch", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 1, "message": "{\"reason\":\"NotFound\",\"message\":\"HTTP 404 for https://x/m\"}"}}}]}),
        );
        assert_eq!(
            download_state(Some(&failed), &[&p]),
            DownloadState::Failed {
                reason: Reason::Passed("NotFound".into()),
                message: "HTTP 404 for https://x/m".into(),
                attempts: 2
            }
        );
        // Without a readable report, the raw message, then the Job's own reason.
        let raw = pod(
            json!({"containerStatuses": [{"name": "fetch", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 1, "message": "disk on fire"}}}]}),
        );
        assert!(
            matches!(download_state(Some(&failed), &[&raw]), DownloadState::Failed { ref message, .. } if message == "disk on fire")
        );
        assert!(
            matches!(download_state(Some(&failed), &[]), DownloadState::Failed { ref reason, .. } if reason.as_str() == "BackoffLimitExceeded")
        );

        // Running again after a failed attempt: the attempt, its reason and message.
        let mut failed_pod = p.clone();
        failed_pod.status.as_mut().unwrap().phase = Some("Failed".into());
        let retrying = job(json!({"active": 1, "failed": 1}));
        match download_state(Some(&retrying), &[&failed_pod]) {
            DownloadState::Running {
                attempts, retried, ..
            } => {
                assert_eq!(attempts, 2);
                assert_eq!(retried.len(), 1);
                assert_eq!(retried[0].reason, "NotFound");
                assert_eq!(retried[0].message, "HTTP 404 for https://x/m");
            }
            other => panic!("{other:?}"),
        }

        let done =
            job(json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}));
        let ok = pod(
            json!({"containerStatuses": [{"name": "fetch", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "message": "{\"reason\":\"Downloaded\",\"bytes\":42,\"sha256\":\"ab\"}"}}}]}),
        );
        match download_state(Some(&done), &[&ok]) {
            DownloadState::Succeeded {
                report: Some(r), ..
            } => assert_eq!(r.bytes, Some(42)),
            other => panic!("{other:?}"),
        }
    }

    /// What the downloader writes after a download (with what landed: the format, the largest
    /// files) is what the controller reads back from the termination message.
    #[test]
    fn the_downloaders_report_reads_back_with_what_landed() {
        let dir = std::env::temp_dir().join(format!("plan-report-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("1/variables")).unwrap();
        // A SavedModel: saved_model_schema_version 1, meta_graphs { meta_info_def {} }.
        std::fs::write(dir.join("1/saved_model.pb"), b"\x08\x01\x12\x02\x0a\x00").unwrap();
        std::fs::write(dir.join("1/variables/variables.index"), b"index").unwrap();
        let written = FetchReport {
            reason: Some("Downloaded".into()),
            bytes: Some(11),
            sha256: Some("ab".repeat(32)),
            files: Some(2),
            cached: Some(false),
            seconds: Some(0.25),
            ..FetchReport::default()
        }
        .with_inventory(&mlmodel_fetch::format::inspect(&dir, &[]));
        std::fs::remove_dir_all(&dir).unwrap();
        let line = written.to_line();
        assert!(line.contains(r#""format":"saved-model""#), "{line}");
        let done =
            job(json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}));
        let ok = pod(
            json!({"containerStatuses": [{"name": "fetch", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "message": format!("{line}\n")}}}]}),
        );
        match download_state(Some(&done), &[&ok]) {
            DownloadState::Succeeded {
                report: Some(read), ..
            } => {
                assert_eq!(*read, written);
                assert_eq!(read.format.as_deref(), Some("saved-model"));
                assert_eq!(read.total_bytes, Some(11));
                assert_eq!(read.largest.unwrap()[0].path, "1/saved_model.pb");
            }
            other => panic!("{other:?}"),
        }
    }

    fn container(state: serde_json::Value, last: serde_json::Value) -> serde_json::Value {
        json!({"name": "server", "image": "img:1", "imageID": "", "ready": false, "restartCount": 3, "state": state, "lastState": last})
    }

    #[test]
    fn each_server_failure_has_its_reason() {
        let cases = [
            (
                container(
                    json!({"waiting": {"reason": "CrashLoopBackOff"}}),
                    json!({"terminated": {"exitCode": 1, "reason": "Error"}}),
                ),
                "CrashLoopBackOff",
            ),
            (
                container(
                    json!({"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}),
                    json!({}),
                ),
                "ImagePullBackOff",
            ),
            (
                container(json!({"waiting": {"reason": "ErrImagePull"}}), json!({})),
                "ErrImagePull",
            ),
            (
                container(
                    json!({"waiting": {"reason": "CrashLoopBackOff"}}),
                    json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}),
                ),
                "OOMKilled",
            ),
            (
                container(
                    json!({"waiting": {"reason": "CreateContainerConfigError", "message": "secret \"s\" not found"}}),
                    json!({}),
                ),
                "CreateContainerConfigError",
            ),
        ];
        for (cs, want) in cases {
            let p = pod(json!({"containerStatuses": [cs]}));
            let (reason, message) = pod_failure(&[&p]).expect(want);
            assert_eq!(reason.as_str(), want);
            assert!(message.contains("pod p"), "{message}");
        }
        let pending = pod(
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes are available"}]}),
        );
        assert_eq!(
            pod_failure(&[&pending]).unwrap().0.as_str(),
            "Unschedulable"
        );
        let healthy =
            pod(json!({"containerStatuses": [container(json!({"running": {}}), json!({}))]}));
        assert_eq!(pod_failure(&[&healthy]), None);
    }

    /// A server that exits 0 after a failure leaves its reason only in its log.
    #[test]
    fn a_crash_without_a_termination_message_is_read_from_the_log() {
        let silent = pod(json!({"containerStatuses": [container(
            json!({"waiting": {"reason": "CrashLoopBackOff"}}),
            json!({"terminated": {"exitCode": 0, "reason": "Completed"}}),
        )]}));
        assert_eq!(
            silent_crash(&[&silent]),
            Some(("p".to_string(), "server".to_string()))
        );
        let said = pod(json!({"containerStatuses": [container(
            json!({"waiting": {"reason": "CrashLoopBackOff"}}),
            json!({"terminated": {"exitCode": 1, "message": "bind: address in use"}}),
        )]}));
        assert_eq!(silent_crash(&[&said]), None);
        let pulling = pod(json!({"containerStatuses": [container(
            json!({"waiting": {"reason": "ImagePullBackOff"}}),
            json!({}),
        )]}));
        assert_eq!(silent_crash(&[&pulling]), None);

        // MLServer's end after a model that does not load: the exception, not the shutdown.
        let log = "[mlserver] ERROR - Some of the models failed to load during startup!\n\
            Traceback (most recent call last):\n  File \"/usr/lib/python3.11/pickle.py\", line 1580, in find_class\n\
            ModuleNotFoundError: No module named 'sklearn.no_such_module'\n\
            [mlserver.grpc] INFO - Waiting for gRPC server shutdown\n\
            INFO:     Finished server process [1]\n";
        assert_eq!(
            last_words(log).as_deref(),
            Some("ModuleNotFoundError: No module named 'sklearn.no_such_module'")
        );
        assert_eq!(
            last_words("starting\nlevel=fatal msg=\"no model\"\nbye\n").as_deref(),
            Some("level=fatal msg=\"no model\"")
        );
        assert_eq!(last_words("one\ntwo\n\n").as_deref(), Some("two"));
        assert_eq!(last_words(""), None);
        assert!(last_words(&"x".repeat(5000)).unwrap().len() <= MAX_LAST_WORDS);
    }

    fn deployment(replicas: i32, status: serde_json::Value) -> CachedDeployment {
        serde_json::from_value(json!({"metadata": {"name": "d", "generation": 2},
            "spec": {"replicas": replicas, "selector": {}, "template": {}}, "status": status}))
        .unwrap()
    }

    #[test]
    fn serving_is_available_only_when_the_rollout_is_complete() {
        assert_eq!(serving_state(None, &[]), ServingState::Missing);
        let done = deployment(
            2,
            json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2}),
        );
        assert_eq!(
            serving_state(Some(&done), &[]),
            ServingState::Available {
                ready: 2,
                wanted: 2
            }
        );
        // Old pods still around: not done.
        let rolling = deployment(
            2,
            json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2, "readyReplicas": 3, "availableReplicas": 3}),
        );
        assert!(matches!(
            serving_state(Some(&rolling), &[]),
            ServingState::Progressing { .. }
        ));
        // Status of an older generation: not done.
        let stale = deployment(
            2,
            json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2}),
        );
        assert!(matches!(
            serving_state(Some(&stale), &[]),
            ServingState::Progressing { .. }
        ));
        let stuck = deployment(
            1,
            json!({"observedGeneration": 2, "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet \"d-1\" has timed out progressing."}]}),
        );
        assert!(
            matches!(serving_state(Some(&stuck), &[]), ServingState::Failed { ref reason, .. } if reason.as_str() == "ProgressDeadlineExceeded")
        );
        let zero = deployment(0, json!({"observedGeneration": 2}));
        assert_eq!(
            serving_state(Some(&zero), &[]),
            ServingState::Available {
                ready: 0,
                wanted: 0
            }
        );
    }

    #[test]
    fn old_revision_keeps_serving_until_the_new_one_is_downloaded() {
        assert_eq!(serve_revision("new", false, Some("old")), Some("old"));
        assert_eq!(serve_revision("new", true, Some("old")), Some("new"));
        assert_eq!(serve_revision("new", false, None), None);
    }

    #[test]
    fn prune_spares_storage_in_use() {
        let k = |kind: &str, name: &str| ObjectKey {
            kind: kind.into(),
            name: name.into(),
        };
        let existing = vec![
            (
                k("PersistentVolumeClaim", "m-model-old"),
                Some("old".to_string()),
            ),
            (k("Job", "m-download-old"), Some("old".to_string())),
            (
                k("PersistentVolumeClaim", "m-model-new"),
                Some("new".to_string()),
            ),
            (k("Deployment", "m-server"), Some("new".to_string())),
            (k("Service", "m"), None),
        ];
        let keep = BTreeSet::from([
            k("PersistentVolumeClaim", "m-model-new"),
            k("Deployment", "m-server"),
        ]);
        let in_use = BTreeSet::from(["old".to_string()]);
        assert_eq!(prune(&existing, &keep, &in_use), vec![k("Service", "m")]);
        assert_eq!(
            prune(&existing, &keep, &BTreeSet::new()),
            vec![
                k("PersistentVolumeClaim", "m-model-old"),
                k("Job", "m-download-old"),
                k("Service", "m")
            ]
        );
    }

    /// Why a replica is not ready, from its pod: a node that stopped reporting (containers
    /// last ready, the pod not), an eviction, the scheduler, or not ready yet. A pod held by
    /// the validation gate is not taken for a lost node.
    #[test]
    fn a_missing_replica_says_why() {
        let ready = |status: &str, reason: &str| json!({"type": "Ready", "status": status, "reason": reason});
        let running = json!([{"name": "c", "ready": true, "restartCount": 0, "image": "i", "imageID": "",
            "state": {"running": {}}}]);
        let lost = pod(
            json!({"phase": "Running", "conditions": [ready("False", "")],
            "containerStatuses": running}),
        );
        assert_eq!(shortfall(&[&lost]).0, Reason::NodeLost);
        let named = pod(json!({"phase": "Running", "reason": "NodeLost",
            "message": "Node n2 which was running pod p is unresponsive",
            "conditions": [ready("False", "")], "containerStatuses": running}));
        assert_eq!(
            shortfall(&[&named]),
            (
                Reason::NodeLost,
                "pod p: Node n2 which was running pod p is unresponsive".into()
            )
        );
        let gated = pod(json!({"phase": "Running",
            "conditions": [ready("False", "ReadinessGatesNotReady")], "containerStatuses": running}));
        assert_eq!(shortfall(&[&gated]).0, Reason::ReplicasNotReady);
        let evicted = pod(
            json!({"phase": "Running", "conditions": [ready("False", "ContainersNotReady"),
            {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
             "message": "Eviction API: evicting"}]}),
        );
        assert_eq!(
            shortfall(&[&evicted]),
            (
                Reason::Evicted,
                "pod p was evicted: Eviction API: evicting".into()
            )
        );
        let pending = pod(
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
            "status": "False", "reason": "Unschedulable", "message": "0/5 nodes are available"}]}),
        );
        assert_eq!(shortfall(&[&pending]).0, Reason::Unschedulable);
        let ok = pod(json!({"phase": "Running", "conditions": [ready("True", "")]}));
        let starting = pod(
            json!({"phase": "Pending", "containerStatuses": [{"name": "c",
            "ready": false, "restartCount": 0, "image": "i", "imageID": "",
            "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
        );
        assert_eq!(
            shortfall(&[&ok, &starting]),
            (
                Reason::ReplicasNotReady,
                "pod p is not ready yet (ContainerCreating)".into()
            )
        );
    }
}
