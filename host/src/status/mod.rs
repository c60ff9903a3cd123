//! Status from what the reconcile saw: phase, reason, message and conditions, plus the Event a
//! change deserves. Pure (the caller gives the time), so every phase rule is unit-tested: one
//! room per concern (`conditions`, `phase`, `download`, `events`), `compute` assembles them.
use crate::api::{MLModel, MLModelStatus, Phase};
use crate::conditions::{ConditionStatus, Reason};
use crate::inference;
use crate::interpret::{DownloadState, ServingState};
use crate::progress::{self};
use crate::redact;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use std::collections::BTreeMap;

/// Everything the reconcile learnt, in the terms status is written in.
#[derive(Clone, Debug)]
pub struct Observation {
    /// A failure before anything could be read (plugin selection, render, invalid output, apply):
    /// (reason, message).
    pub blocking_error: Option<(Reason, String)>,
    pub wanted_revision: String,
    pub storage_exists: bool,
    pub download: DownloadState,
    /// The revision the serve step renders (None while nothing is downloaded yet).
    pub serve_revision: Option<String>,
    pub serving: ServingState,
    /// None when `spec.expose` is false; Some(endpoint) once the Service exists.
    pub expose: Option<Option<Endpoint>>,
    /// Plugins used, by step, as `name@version`.
    pub plugins: BTreeMap<String, String>,
    /// The running download's figures, read from its pod's log.
    pub progress: Option<progress::Sample>,
    /// How clients call the served revision, as its serve plugin declared it.
    pub inference: Option<inference::Declared>,
    /// Where the serving pods read the files, and why.
    pub storage: Option<crate::api::StorageStatus>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Endpoint {
    pub endpoint: String,
    pub url: String,
}

/// What to tell the user through an Event.
#[derive(Clone, Debug, PartialEq)]
pub struct EventNote {
    pub warning: bool,
    pub reason: Reason,
    pub message: String,
}

/// Whether a condition holds.
fn holds(c: &Condition) -> bool {
    ConditionStatus::True.is(&c.status)
}

mod conditions;
mod download;
mod events;
mod phase;

pub use events::{changed, download_ended, events, urgent};

/// The status the model should have at `now`. `previous` keeps transition times of conditions
/// whose status did not change; the others changed at `now`.
pub fn compute(
    now: Timestamp,
    model: &MLModel,
    obs: &Observation,
    previous: Option<&MLModelStatus>,
) -> MLModelStatus {
    let generation = model.metadata.generation;
    let stamp = conditions::Stamp { generation, now };
    let downloaded = conditions::downloaded(&stamp, model, obs);
    let serving = conditions::serving(&stamp, obs);
    let exposed = conditions::exposed(&stamp, obs);
    let serving_ok = holds(&serving);
    let exposed_ok = exposed.as_ref().is_none_or(holds);
    let (phase, reason, message) = phase::phase(
        model,
        obs,
        previous,
        &downloaded,
        &serving,
        serving_ok,
        exposed_ok,
    );
    let ready = conditions::ready(&stamp, obs, serving_ok && exposed_ok, &reason, &message);
    let mut conditions = vec![downloaded, serving];
    conditions.extend(exposed);
    conditions.push(ready);
    conditions::keep_transition_times(&mut conditions, previous);
    let (replicas, ready_replicas) = match &obs.serving {
        ServingState::Available { ready, wanted }
        | ServingState::Progressing { ready, wanted, .. }
        | ServingState::Short { ready, wanted, .. }
        | ServingState::Failed { ready, wanted, .. } => (Some(*wanted), Some(*ready)),
        ServingState::Missing => (None, None),
    };
    let mut download = download::download_status(&obs.wanted_revision, &obs.download, previous);
    if let (DownloadState::Running { .. }, Some(sample)) = (&obs.download, &obs.progress) {
        download.progress = Some(download::progress_status(sample));
    }
    let download = Some(download);
    let endpoint = obs.expose.as_ref().and_then(|e| e.clone());
    // A degraded model still serves its revision (with fewer replicas).
    let serves = serving_ok || phase == Phase::Degraded;
    let inference = obs.serve_revision.as_ref().filter(|_| serves).map(|_| {
        let declared = obs.inference.clone().unwrap_or_default();
        inference::status(&declared, endpoint.as_ref().map(|e| e.url.as_str()))
    });

    // Model URLs may carry credentials (userinfo, a presigned query): every reader of the
    // model sees its status, so messages show them redacted.
    let conditions = conditions
        .into_iter()
        .map(|mut c| {
            c.message = redact::urls_in(&c.message);
            c
        })
        .collect();
    MLModelStatus {
        phase: Some(phase),
        reason: Some(reason.to_string()),
        message: Some(redact::urls_in(&message)),
        conditions,
        observed_generation: generation,
        service_endpoint: endpoint.as_ref().map(|e| e.endpoint.clone()),
        url: endpoint.map(|e| e.url),
        revision: obs.serve_revision.clone().filter(|_| serves),
        download,
        plugins: obs.plugins.clone(),
        replicas,
        ready_replicas,
        replicas_ready: replicas
            .zip(ready_replicas)
            .map(|(w, r)| format!("{r}/{w}")),
        inference,
        storage: obs.storage.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{DownloadStatus, Phase};
    use crate::conditions::ConditionType;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use mlmodel_fetch::FetchReport;

    /// A fixed time: status is computed at the time it is given.
    fn now() -> Timestamp {
        Timestamp::from_second(1_700_000_000).unwrap()
    }

    #[test]
    fn the_download_start_time_alone_is_no_change() {
        let old = MLModelStatus {
            phase: Some(Phase::Downloading),
            download: Some(DownloadStatus {
                revision: "r".into(),
                attempts: Some(1),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut new = old.clone();
        new.download.as_mut().unwrap().started_at = Some(Time(now()));
        assert!(!changed(Some(&old), &new), "written with the next change");
        new.download.as_mut().unwrap().attempts = Some(2);
        assert!(changed(Some(&old), &new));
    }

    fn model() -> MLModel {
        let mut m: MLModel = serde_yaml::from_str(
            "apiVersion: mlmodel.dev/v1alpha1\nkind: MLModel\nmetadata: {name: m, generation: 3}\nspec: {modelURL: 'https://x/m', expose: true}",
        )
        .unwrap();
        m.metadata.generation = Some(3);
        m
    }

    fn obs() -> Observation {
        Observation {
            blocking_error: None,
            wanted_revision: "r2".into(),
            storage_exists: true,
            download: DownloadState::NotStarted,
            serve_revision: None,
            serving: ServingState::Missing,
            expose: Some(None),
            plugins: BTreeMap::new(),
            progress: None,
            inference: None,
            storage: None,
        }
    }

    fn succeeded() -> DownloadState {
        DownloadState::Succeeded {
            report: Some(Box::new(FetchReport {
                bytes: Some(10),
                sha256: Some("ab".into()),
                files: Some(2),
                format: Some("onnx".into()),
                largest: Some(vec![mlmodel_fetch::PlacedFile {
                    bytes: 8,
                    path: "m.onnx".into(),
                }]),
                ..Default::default()
            })),
            started: None,
            finished: None,
            attempts: 1,
        }
    }

    #[test]
    fn a_download_is_counted_once_when_it_ends() {
        let m = model();
        let running = compute(
            now(),
            &m,
            &Observation {
                download: DownloadState::Running {
                    attempts: 1,
                    max_attempts: None,
                    started: None,
                    retried: Vec::new(),
                },
                ..obs()
            },
            None,
        );
        assert_eq!(
            download_ended(None, &running, &obs()),
            None,
            "still running"
        );
        let done_obs = Observation {
            download: succeeded(),
            ..obs()
        };
        let done = compute(now(), &m, &done_obs, Some(&running));
        assert_eq!(
            download_ended(Some(&running), &done, &done_obs),
            Some((true, None))
        );
        let again = compute(now(), &m, &done_obs, Some(&done));
        assert_eq!(download_ended(Some(&done), &again, &done_obs), None);
        let failed_obs = Observation {
            download: DownloadState::Failed {
                reason: Reason::Passed("NotFound".into()),
                message: "404".into(),
                attempts: 1,
            },
            ..obs()
        };
        let failed = compute(now(), &m, &failed_obs, Some(&running));
        assert_eq!(
            download_ended(Some(&running), &failed, &failed_obs),
            Some((false, None))
        );
    }

    #[test]
    fn phases_follow_the_flow() {
        let m = model();
        let mut o = obs();
        o.storage_exists = false;
        assert_eq!(
            compute(now(), &m, &o, None).phase,
            Some(Phase::CreatingStorage)
        );
        o.storage_exists = true;
        o.download = DownloadState::Running {
            attempts: 1,
            max_attempts: None,
            started: None,
            retried: Vec::new(),
        };
        assert_eq!(compute(now(), &m, &o, None).phase, Some(Phase::Downloading));
        o.download = succeeded();
        o.serve_revision = Some("r2".into());
        o.serving = ServingState::Progressing {
            ready: 0,
            wanted: 1,
            message: "0/1".into(),
        };
        let s = compute(now(), &m, &o, None);
        assert_eq!(s.phase, Some(Phase::Deploying));
        assert_eq!(s.inference, None, "nothing to call while not serving");
        o.serving = ServingState::Available {
            ready: 1,
            wanted: 1,
        };
        let s = compute(now(), &m, &o, None);
        assert_eq!(s.phase, Some(Phase::Deploying), "waits for the Service");
        o.expose = Some(Some(Endpoint {
            endpoint: "m.ns.svc.cluster.local:80".into(),
            url: "http://m.ns.svc.cluster.local:80".into(),
        }));
        let s = compute(now(), &m, &o, None);
        assert_eq!(s.phase, Some(Phase::Ready));
        assert_eq!(s.condition(ConditionType::Ready).unwrap().status, "True");
        assert_eq!(
            s.condition(ConditionType::Ready)
                .unwrap()
                .observed_generation,
            Some(3)
        );
        assert_eq!(
            s.service_endpoint.as_deref(),
            Some("m.ns.svc.cluster.local:80")
        );
        assert_eq!(s.revision.as_deref(), Some("r2"));
        assert_eq!(s.download.as_ref().unwrap().bytes, Some(10));
        let d = s.download.as_ref().unwrap();
        assert_eq!(
            (d.format.as_deref(), d.files, d.largest_file.as_deref()),
            (Some("onnx"), Some(2), Some("m.onnx"))
        );
        // A plugin that declares nothing serves plain HTTP at the Service.
        let plain = s.inference.unwrap();
        assert_eq!(
            (plain.protocol.as_str(), plain.url.as_deref()),
            ("http", Some("http://m.ns.svc.cluster.local:80/"))
        );
        o.inference = Some(inference::Declared {
            protocol: "v2".into(),
            model: Some("m".into()),
        });
        let v2 = compute(now(), &m, &o, None).inference.unwrap();
        assert_eq!(
            v2.url.as_deref(),
            Some("http://m.ns.svc.cluster.local:80/v2/models/m/infer")
        );
        assert_eq!(v2.model_name.as_deref(), Some("m"));
    }

    #[test]
    fn old_revision_keeps_ready_true_while_new_downloads() {
        let mut o = obs();
        o.download = DownloadState::Running {
            attempts: 1,
            max_attempts: None,
            started: None,
            retried: Vec::new(),
        };
        o.serve_revision = Some("r1".into());
        o.serving = ServingState::Available {
            ready: 2,
            wanted: 2,
        };
        o.expose = None;
        let s = compute(now(), &model(), &o, None);
        assert_eq!(s.phase, Some(Phase::Downloading));
        assert_eq!(s.condition(ConditionType::Ready).unwrap().status, "True");
        assert_eq!(s.revision.as_deref(), Some("r1"));
        assert!(s.condition(ConditionType::Exposed).is_none());
    }

    #[test]
    fn url_secrets_stay_out_of_messages_conditions_and_events() {
        let mut m = model();
        m.spec.model_url = "https://user:hunter2@x.example/m.bin?X-Amz-Signature=deadbeef".into();
        let mut o = obs();
        o.download = DownloadState::Running {
            attempts: 1,
            max_attempts: None,
            started: None,
            retried: Vec::new(),
        };
        let running = compute(now(), &m, &o, None);
        o.download = DownloadState::Failed {
            reason: Reason::Passed("NotFound".into()),
            message: format!("HTTP 404 Not Found from {}", m.spec.model_url),
            attempts: 1,
        };
        let failed = compute(now(), &m, &o, Some(&running));
        let [event] = &events(Some(&running), &failed)[..] else {
            panic!("one Event for the failure")
        };
        for s in [&running, &failed] {
            let mut texts = vec![s.message.clone().unwrap_or_default()];
            texts.extend(s.conditions.iter().map(|c| c.message.clone()));
            for text in texts {
                assert!(
                    !text.contains("hunter2") && !text.contains("deadbeef"),
                    "{text}"
                );
            }
        }
        assert!(!event.message.contains("hunter2") && !event.message.contains("deadbeef"));
        assert!(
            failed
                .message
                .unwrap()
                .contains("https://REDACTED@x.example/m.bin?X-Amz-Signature=REDACTED"),
        );
    }

    #[test]
    fn failures_carry_reason_and_message() {
        let mut o = obs();
        o.download = DownloadState::Failed {
            reason: Reason::Passed("NotFound".into()),
            message: "HTTP 404".into(),
            attempts: 3,
        };
        let s = compute(now(), &model(), &o, None);
        assert_eq!(s.phase, Some(Phase::Failed));
        assert_eq!(s.reason.as_deref(), Some("DownloadFailed"));
        assert!(s.message.as_deref().unwrap().contains("HTTP 404"));
        assert_eq!(
            s.condition(ConditionType::Downloaded).unwrap().reason,
            "NotFound"
        );

        let mut o = obs();
        o.download = succeeded();
        o.serve_revision = Some("r2".into());
        o.serving = ServingState::Failed {
            reason: Reason::Passed("ImagePullBackOff".into()),
            message: "cannot pull".into(),
            ready: 0,
            wanted: 1,
        };
        let s = compute(now(), &model(), &o, None);
        assert_eq!(
            (s.phase, s.reason.as_deref()),
            (Some(Phase::Failed), Some("ImagePullBackOff"))
        );
        assert_eq!(
            s.condition(ConditionType::Ready).unwrap().reason,
            "ImagePullBackOff"
        );

        let mut o = obs();
        o.blocking_error = Some((Reason::PluginNotFound, "no plugin named x".into()));
        assert_eq!(
            compute(now(), &model(), &o, None).reason.as_deref(),
            Some("PluginNotFound")
        );
    }

    #[test]
    fn unchanged_status_is_not_patched_and_times_are_kept() {
        let mut o = obs();
        o.download = DownloadState::Running {
            attempts: 1,
            max_attempts: None,
            started: None,
            retried: Vec::new(),
        };
        let later = |secs| Timestamp::from_second(now().as_second() + secs).unwrap();
        let first = compute(now(), &model(), &o, None);
        let second = compute(later(5), &model(), &o, Some(&first));
        assert!(!changed(Some(&first), &second));
        assert_eq!(first.conditions, second.conditions);
        assert!(events(Some(&first), &second).is_empty());
        o.download = succeeded();
        let third = compute(later(10), &model(), &o, Some(&second));
        assert!(changed(Some(&second), &third));
        let notes = events(Some(&second), &third);
        assert_eq!(
            notes.iter().map(|n| n.reason.as_str()).collect::<Vec<_>>(),
            ["Downloaded"],
            "the download's end is a milestone"
        );
        // Only the condition whose status changed has a new transition time.
        let at = |s: &MLModelStatus, t| s.condition(t).unwrap().last_transition_time.0;
        assert_eq!(at(&third, ConditionType::Downloaded), later(10));
        assert_eq!(at(&third, ConditionType::Ready), now());
    }
    #[test]
    fn a_running_download_shows_its_progress_and_its_stall() {
        let m = model();
        let mut o = obs();
        o.storage_exists = true;
        o.download = DownloadState::Running {
            attempts: 2,
            max_attempts: Some(4),
            started: None,
            retried: vec![crate::interpret::FailedAttempt {
                reason: "StalledTooLong".into(),
                message: "no byte for 60s from https://user:pw@x/m".into(),
                finished: None,
            }],
        };
        let figures = mlmodel_fetch::Figures {
            done: 1288490189,
            total: Some(3006477107),
            rate: 36700160,
        };
        o.progress = Some(progress::Sample {
            figures,
            stalled_for: None,
        });
        let s = compute(now(), &m, &o, None);
        assert_eq!(s.phase, Some(Phase::Downloading));
        assert_eq!(s.reason.as_deref(), Some("Downloading"));
        let p = s.download.as_ref().unwrap().progress.clone().unwrap();
        assert_eq!(p.percent, Some(42));
        assert_eq!(p.bytes_total, Some(3006477107));
        assert_eq!(p.summary, "42% 1.2Gi/2.8Gi 35.0Mi/s");
        assert_eq!(p.eta_seconds, Some(47));
        let message = s.message.clone().unwrap();
        assert!(
            message.ends_with("attempt 2 of 4): 1.2 GiB of 2.8 GiB (42%), 35.0 MiB/s, ETA 47s"),
            "{message}"
        );
        // The failed attempt, its reason and its message (redacted), and an Event for it.
        let retries = &s.download.as_ref().unwrap().retries;
        assert_eq!(retries.len(), 1);
        assert_eq!(
            (retries[0].attempt, retries[0].reason.as_str()),
            (1, "StalledTooLong")
        );
        assert!(!retries[0].message.contains("pw"), "{:?}", retries[0]);
        let mut before = s.clone();
        before.download.as_mut().unwrap().retries.clear();
        let [note] = &events(Some(&before), &s)[..] else {
            panic!("one Event for the retry")
        };
        assert_eq!(note.reason, Reason::DownloadRetried);
        assert!(
            note.warning
                && note
                    .message
                    .starts_with("download attempt 1 failed (StalledTooLong)")
        );
        // Moving figures are a change to write; the reason stays, so no Event.
        assert!(changed(None, &s));
        assert_eq!(events(Some(&s), &s), []);

        o.progress = Some(progress::Sample {
            figures,
            stalled_for: Some(std::time::Duration::from_secs(300)),
        });
        let stalled = compute(now(), &m, &o, Some(&s));
        assert_eq!(stalled.reason.as_deref(), Some("DownloadStalled"));
        let message = stalled.message.clone().unwrap();
        assert!(
            message.ends_with("stalled at 1.2 GiB for 5m0s, attempt 2 of 4"),
            "{message}"
        );
        let p = stalled.download.as_ref().unwrap().progress.clone().unwrap();
        assert_eq!((p.stalled_seconds, p.eta_seconds), (Some(300), None));
        assert_eq!(p.summary, "stalled 1.2Gi/2.8Gi");
        // A stall is news: an Event.
        assert_eq!(
            events(Some(&s), &stalled)
                .into_iter()
                .map(|e| (e.reason, e.warning))
                .collect::<Vec<_>>(),
            [(Reason::DownloadStalled, true)]
        );

        // Once downloaded, no progress is shown.
        o.download = succeeded();
        let done = compute(now(), &m, &o, Some(&stalled));
        assert_eq!(done.download.unwrap().progress, None);
    }

    /// The walk of a new model to Ready: the steps on the way are coalesced and bring no Event;
    /// the end of the download and Ready are milestones, written at once with one Event each.
    #[test]
    fn steps_on_the_way_wait_and_milestones_do_not() {
        let m = model();
        let mut o = obs();
        o.storage_exists = false;
        let creating = compute(now(), &m, &o, None);
        assert!(
            !urgent(None, &creating),
            "a first step on the way may wait (counted from the model's creation)"
        );
        let mut failing = o.clone();
        failing.blocking_error = Some((Reason::InvalidPluginConfig, "bad".into()));
        assert!(
            urgent(None, &compute(now(), &m, &failing, None)),
            "a first status that is bad news is not kept waiting"
        );
        assert_eq!(events(None, &creating), []);
        o.storage_exists = true;
        o.download = DownloadState::Running {
            attempts: 1,
            max_attempts: None,
            started: None,
            retried: Vec::new(),
        };
        let downloading = compute(now(), &m, &o, Some(&creating));
        assert!(changed(Some(&creating), &downloading));
        assert!(!urgent(Some(&creating), &downloading));
        assert_eq!(events(Some(&creating), &downloading), []);
        o.download = succeeded();
        o.serve_revision = Some("r2".into());
        o.serving = ServingState::Progressing {
            message: "0/1 replicas ready".into(),
            ready: 0,
            wanted: 1,
        };
        let deploying = compute(now(), &m, &o, Some(&downloading));
        assert_eq!(deploying.phase, Some(Phase::Deploying));
        assert!(!urgent(Some(&downloading), &deploying));
        o.serving = ServingState::Available {
            ready: 1,
            wanted: 1,
        };
        o.expose = Some(Some(Endpoint {
            endpoint: "m.ns.svc:80".into(),
            url: "http://m.ns.svc:80".into(),
        }));
        let ready = compute(now(), &m, &o, Some(&deploying));
        assert_eq!(ready.phase, Some(Phase::Ready));
        assert!(urgent(Some(&deploying), &ready));
        // Deploying was coalesced away: the last write was Downloading. One Event says both.
        let notes = events(Some(&downloading), &ready);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(notes[0].reason, Reason::Ready);
        assert!(
            notes[0].message.contains("revision r2 downloaded"),
            "{}",
            notes[0].message
        );
        // Through Deploying: Downloaded then, Ready alone later.
        let notes: Vec<_> = events(Some(&downloading), &deploying)
            .into_iter()
            .map(|n| n.reason)
            .collect();
        assert_eq!(notes, [Reason::Downloaded]);
        let notes = events(Some(&deploying), &ready);
        assert_eq!(notes.len(), 1);
        assert!(
            !notes[0].message.contains("downloaded"),
            "{}",
            notes[0].message
        );
        // A replica lost: Ready is left at once, with no Event until it is bad news.
        o.serving = ServingState::Progressing {
            message: "0/1 replicas ready".into(),
            ready: 0,
            wanted: 1,
        };
        let degraded = compute(now(), &m, &o, Some(&ready));
        assert!(urgent(Some(&ready), &degraded));
        assert_eq!(events(Some(&ready), &degraded), []);
        // A new generation is said at once.
        let mut m2 = m.clone();
        m2.metadata.generation = Some(4);
        assert!(urgent(Some(&ready), &compute(now(), &m2, &o, Some(&ready))));
    }

    /// A model Ready at its revision that loses a replica is Degraded, with why, at once and
    /// with a Warning; the same shortfall in a first rollout is only Deploying; back to Ready
    /// when the replicas are.
    #[test]
    fn a_ready_model_that_loses_a_replica_is_degraded_with_why() {
        let m = model();
        let mut o = obs();
        o.download = succeeded();
        o.serve_revision = Some("r2".into());
        o.expose = Some(Some(Endpoint {
            endpoint: "m.ns.svc:80".into(),
            url: "http://m.ns.svc:80".into(),
        }));
        let short = ServingState::Short {
            ready: 1,
            wanted: 2,
            reason: Reason::NodeLost,
            message: "1/2 replicas ready; pod p-1: its node stopped reporting".into(),
        };
        o.serving = short.clone();
        let first = compute(now(), &m, &o, None);
        assert_eq!(
            first.phase,
            Some(Phase::Deploying),
            "a first rollout: {first:?}"
        );

        o.serving = ServingState::Available {
            ready: 2,
            wanted: 2,
        };
        let ready = compute(now(), &m, &o, Some(&first));
        assert_eq!(ready.phase, Some(Phase::Ready));
        assert_eq!(ready.replicas_ready.as_deref(), Some("2/2"));

        o.serving = short;
        let degraded = compute(now(), &m, &o, Some(&ready));
        assert_eq!(degraded.phase, Some(Phase::Degraded));
        assert_eq!(degraded.reason.as_deref(), Some("NodeLost"));
        assert_eq!(degraded.replicas_ready.as_deref(), Some("1/2"));
        assert_eq!(
            degraded.revision.as_deref(),
            Some("r2"),
            "it still serves r2"
        );
        let ready_cond = degraded.condition(ConditionType::Ready).unwrap();
        assert_eq!(
            (ready_cond.status.as_str(), ready_cond.reason.as_str()),
            ("False", "NodeLost")
        );
        assert!(urgent(Some(&ready), &degraded));
        let notes = events(Some(&ready), &degraded);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].warning && notes[0].reason == Reason::NodeLost,
            "{notes:?}"
        );
        // Still short next time: still Degraded (it was at this revision).
        assert_eq!(
            compute(now(), &m, &o, Some(&degraded)).phase,
            Some(Phase::Degraded)
        );

        // A replica that cannot come back while another serves: Degraded, not Failed; with
        // none left, Failed.
        o.serving = ServingState::Failed {
            reason: Reason::Unschedulable,
            message: "pod p-2 cannot be scheduled: 0/5 nodes are available".into(),
            ready: 1,
            wanted: 2,
        };
        let one_left = compute(now(), &m, &o, Some(&degraded));
        assert_eq!(one_left.phase, Some(Phase::Degraded));
        assert_eq!(one_left.reason.as_deref(), Some("Unschedulable"));
        o.serving = ServingState::Failed {
            reason: Reason::Unschedulable,
            message: "pod p-2 cannot be scheduled".into(),
            ready: 0,
            wanted: 2,
        };
        assert_eq!(
            compute(now(), &m, &o, Some(&one_left)).phase,
            Some(Phase::Failed)
        );

        o.serving = ServingState::Available {
            ready: 2,
            wanted: 2,
        };
        let back = compute(now(), &m, &o, Some(&degraded));
        assert_eq!(back.phase, Some(Phase::Ready));
        assert!(urgent(Some(&degraded), &back));
    }
}
