//! The controller on the local cluster: each test runs its own controller, in-process, scoped to
//! its own namespace, so tests run in parallel without seeing each other's models.
//!
//! Run by `make test` (they need the local control plane: `#[ignore]` keeps plain `cargo test`
//! from failing without one).
use crate::common;

use crate::common::flow::*;
use k8s_openapi::api::{
    apps::v1::Deployment,
    batch::v1::Job,
    core::v1::{PersistentVolumeClaim, Service},
};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use mlmodel_operator::api::{MLModel, Phase};
use mlmodel_operator::conditions::ConditionType;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn happy_path_echo_tensorflow_and_sklearn_samples() {
    let env = Env::start("happy", &[]).await;
    for sample in [
        "echo-model.yaml",
        "tensorflow-model.yaml",
        "sklearn-model.yaml",
    ] {
        let model = sample_model(sample);
        let name = model.name_any();
        let phases = env.record_phases(&name);
        env.create(model).await;
        let m = env
            .wait_phase(&name, Phase::Ready, Duration::from_secs(120))
            .await;
        let seen = phases.stop().await;
        assert_flow_order(&seen, &m);

        let st = m.status.clone().unwrap();
        for c in [
            ConditionType::Downloaded,
            ConditionType::Serving,
            ConditionType::Exposed,
            ConditionType::Ready,
        ] {
            let cond = st
                .condition(c)
                .unwrap_or_else(|| panic!("{sample}: condition {c} missing: {st:?}"));
            assert_eq!(cond.status, "True", "{sample}: {c}: {cond:?}");
            assert_eq!(
                cond.observed_generation, m.metadata.generation,
                "{sample}: {c}"
            );
        }
        assert_eq!(st.observed_generation, m.metadata.generation);
        let endpoint = st.service_endpoint.clone().expect("endpoint");
        assert!(
            endpoint.starts_with(&format!("{name}.{}.svc.cluster.local:", env.ns)),
            "{endpoint}"
        );
        assert_eq!(
            st.revision,
            st.download.as_ref().map(|d| d.revision.clone())
        );
        // How a client calls it, as its serve plugin declared.
        let inference = st.inference.clone().expect("status.inference");
        let (protocol, path) = match sample {
            "echo-model.yaml" => ("http", "/".to_string()),
            "tensorflow-model.yaml" => ("tfserving-rest", format!("/v1/models/{name}:predict")),
            _ => ("v2", format!("/v2/models/{name}/infer")),
        };
        assert_eq!(inference.protocol, protocol, "{sample}");
        assert_eq!(
            inference.url,
            Some(format!("http://{endpoint}{path}")),
            "{sample}"
        );

        // Every owned object: controller owner reference to the model, and the host's labels.
        let objects = env.owned_objects(&m).await;
        let kinds: Vec<&str> = objects.iter().map(|o| o.0.as_str()).collect();
        // Two replicas (the tensorflow sample) on a ReadWriteOnce claim: each pod downloads,
        // and a disruption budget keeps one serving through a drain.
        let per_pod =
            st.storage.as_ref().map(|s| s.mode) == Some(mlmodel_operator::api::StorageMode::PerPod);
        let want: &[&str] = if per_pod {
            &["Deployment", "Service", "PodDisruptionBudget"]
        } else {
            &["PersistentVolumeClaim", "Job", "Deployment", "Service"]
        };
        for kind in want {
            assert!(kinds.contains(kind), "{sample}: no {kind} in {kinds:?}");
        }
        assert_eq!(per_pod, m.spec.replicas > 1, "{sample}: {:?}", st.storage);
        for (kind, meta) in &objects {
            let owner = meta
                .owner_references
                .as_ref()
                .and_then(|o| o.first())
                .expect("owner");
            assert_eq!(owner.uid, m.uid().unwrap(), "{kind}");
            assert_eq!(owner.controller, Some(true), "{kind}");
            let labels = meta.labels.clone().unwrap_or_default();
            assert_eq!(labels.get("mlmodel.dev/model"), Some(&name), "{kind}");
            assert!(labels.contains_key("mlmodel.dev/step"), "{kind}");
            assert!(labels.contains_key("mlmodel.dev/revision"), "{kind}");
        }
        // The download's end is told once: by its own Event, or by the Ready Event when one
        // status write said both.
        env.wait_event(&name, "Ready").await;
        let events = env.events_of(&name).await;
        assert!(
            events
                .iter()
                .any(|(r, m)| r == "Downloaded" || (r == "Ready" && m.contains("downloaded"))),
            "{events:?}"
        );
        env.kubectl_wait_ready(&name).await;
    }
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn download_failure_reports_the_downloader_message_and_recovers() {
    let env = Env::start("dlfail", &[]).await;
    let mut model = sample_model("echo-model.yaml");
    let report = r#"{"reason":"NotFound","message":"HTTP 404 Not Found for https://models.example/missing.tar.gz"}"#;
    set_config(
        &mut model,
        json!({"download": {"podLabels": {"kwok.mlmodel.dev/fail": "job"}, "podAnnotations": {"kwok.mlmodel.dev/message": report}, "backoffLimit": 0}}),
    );
    let name = model.name_any();
    env.create(model).await;
    let m = env
        .wait_phase(&name, Phase::Failed, Duration::from_secs(120))
        .await;
    let st = m.status.unwrap();
    assert_eq!(st.reason.as_deref(), Some("DownloadFailed"));
    let msg = st.message.clone().unwrap();
    assert!(
        msg.contains("HTTP 404") && msg.contains("NotFound"),
        "{msg}"
    );
    assert_eq!(
        st.condition(ConditionType::Downloaded).unwrap().reason,
        "NotFound"
    );
    env.wait_event(&name, "DownloadFailed").await;

    // Fixing the spec (here: dropping what made the download fail) recovers by itself.
    env.merge_spec(&name, json!({"plugins": {"config": {"download": null}}}))
        .await;
    env.wait_phase(&name, Phase::Ready, Duration::from_secs(120))
        .await;
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn each_server_failure_has_its_reason_and_recovers() {
    let env = Env::start("srvfail", &[]).await;
    let cases = [
        ("crashloop", "CrashLoopBackOff"),
        ("imagepull", "ImagePullBackOff"),
        ("errimagepull", "ErrImagePull"),
        ("oom", "OOMKilled"),
        ("configerror", "CreateContainerConfigError"),
        ("unschedulable", "Unschedulable"),
    ];
    let mut names = Vec::new();
    for (label, _) in cases {
        let mut model = sample_model("echo-model.yaml");
        model.metadata.name = Some(format!("srv-{label}"));
        set_config(
            &mut model,
            json!({"serve": {"podLabels": {"kwok.mlmodel.dev/fail": label}, "podAnnotations": {"kwok.mlmodel.dev/message": format!("simulated {label}")}}}),
        );
        names.push(model.name_any());
        env.create(model).await;
    }
    for ((_, reason), name) in cases.iter().zip(&names) {
        let m = env
            .wait_reason(name, reason, Duration::from_secs(120))
            .await;
        let st = m.status.unwrap();
        assert_eq!(st.phase, Some(Phase::Failed), "{name}");
        assert!(!st.message.clone().unwrap_or_default().is_empty(), "{name}");
        assert_eq!(
            st.condition(ConditionType::Serving).unwrap().reason,
            *reason,
            "{name}"
        );
    }
    for name in &names {
        env.merge_spec(name, json!({"plugins": {"config": {"serve": null}}}))
            .await;
    }
    for name in &names {
        env.wait_phase(name, Phase::Ready, Duration::from_secs(180))
            .await;
    }
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn updates_replicas_without_download_and_url_without_downtime() {
    let env = Env::start("update", &[]).await;
    let mut model = sample_model("echo-model.yaml");
    model.spec.replicas = 2;
    // One claim for every replica: a replicas change reuses it (per-pod storage, the choice
    // for 2 replicas on a ReadWriteOnce claim, downloads in each new pod).
    model.spec.storage_mode = Some(mlmodel_operator::api::StorageMode::Shared);
    let name = model.name_any();
    env.create(model).await;
    let first = env
        .wait_phase(&name, Phase::Ready, Duration::from_secs(120))
        .await;
    let rev1 = first.status.unwrap().revision.unwrap();
    let jobs: Api<Job> = Api::namespaced(env.client.clone(), &env.ns);

    // Replicas only: re-rendered, no new download.
    env.merge_spec(&name, json!({"replicas": 3})).await;
    env.wait_until("3 ready replicas", Duration::from_secs(120), || async {
        let m = env.get(&name).await;
        let st = m.status?;
        (st.ready_replicas == Some(3)
            && st.phase == Some(Phase::Ready)
            && st.observed_generation == m.metadata.generation)
            .then_some(())
    })
    .await;
    assert_eq!(
        jobs.list(&ListParams::default()).await.unwrap().items.len(),
        1,
        "a replicas change must not download again"
    );

    // New URL: new revision downloaded while the old one keeps serving, then rolled, then pruned.
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.ns);
    let dep_name = env
        .owned_objects(&env.get(&name).await)
        .await
        .into_iter()
        .find(|(k, _)| k == "Deployment")
        .unwrap()
        .1
        .name
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (deployments, dep_name, stop) = (deployments.clone(), dep_name.clone(), stop.clone());
        tokio::spawn(async move {
            let mut min_ready = i32::MAX;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(d) = deployments.get(&dep_name).await {
                    min_ready = min_ready.min(d.status.and_then(|s| s.ready_replicas).unwrap_or(0));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            min_ready
        })
    };
    env.merge_spec(
        &name,
        json!({"modelURL": "https://models.example/echo-v2.tar.gz"}),
    )
    .await;
    let m = env
        .wait_until("new revision served", Duration::from_secs(120), || async {
            let m = env.get(&name).await;
            let st = m.status.clone()?;
            (st.phase == Some(Phase::Ready)
                && st.revision.as_deref() != Some(rev1.as_str())
                && st.observed_generation == m.metadata.generation)
                .then_some(m)
        })
        .await;
    let rev2 = m.status.clone().unwrap().revision.unwrap();
    env.wait_until("old revision pruned", Duration::from_secs(60), || async {
        let objs = env.owned_objects(&m).await;
        let old = objs
            .iter()
            .filter(|(_, meta)| {
                meta.labels
                    .as_ref()
                    .and_then(|l| l.get("mlmodel.dev/revision"))
                    == Some(&rev1)
            })
            .count();
        (old == 0).then_some(())
    })
    .await;
    let job_revs: Vec<String> = jobs
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter_map(|j| j.labels().get("mlmodel.dev/revision").cloned())
        .collect();
    assert_eq!(job_revs, vec![rev2.clone()]);
    // Sampled during the whole update: the served replicas never dropped below what was asked.
    stop.store(true, Ordering::Relaxed);
    let min_ready = sampler.await.unwrap();
    assert!(
        min_ready >= 3,
        "ready replicas dropped to {min_ready} during the update"
    );
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn plugin_switch_by_annotation_rerenders() {
    let env = Env::start("switch", &[]).await;
    let model = sample_model("tensorflow-model.yaml");
    let name = model.name_any();
    env.create(model).await;
    env.wait_phase(&name, Phase::Ready, Duration::from_secs(120))
        .await;
    let image_of = common::flow::first_image;
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.ns);
    let before = deployments
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(before.len(), 1);
    assert!(
        image_of(&before[0]).contains("tensorflow/serving"),
        "{}",
        image_of(&before[0])
    );

    let api: Api<MLModel> = Api::namespaced(env.client.clone(), &env.ns);
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"annotations": {"mlmodel.dev/serve-plugin": "echo-server"}}}),
        ),
    )
    .await
    .unwrap();
    env.wait_until("echo-server serving", Duration::from_secs(120), || async {
        let m = env.get(&name).await;
        let st = m.status?;
        let plugin = st.plugins.get("serve")?;
        (plugin.starts_with("echo-server@") && st.phase == Some(Phase::Ready)).then_some(())
    })
    .await;
    let after = deployments
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(after.len(), 1, "nothing left of the old plugin's workload");
    assert!(
        !image_of(&after[0]).contains("tensorflow/serving"),
        "{}",
        image_of(&after[0])
    );
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn deletion_removes_every_owned_object() {
    let env = Env::start("delete", &[]).await;
    let model = sample_model("echo-model.yaml");
    let name = model.name_any();
    env.create(model).await;
    let m = env
        .wait_phase(&name, Phase::Ready, Duration::from_secs(120))
        .await;
    assert!(!env.owned_objects(&m).await.is_empty());
    let api: Api<MLModel> = Api::namespaced(env.client.clone(), &env.ns);
    api.delete(&name, &DeleteParams::default()).await.unwrap();
    env.wait_until(
        "owned objects collected",
        Duration::from_secs(120),
        || async {
            let left = env.labelled_objects(&name).await;
            left.is_empty().then_some(())
        },
    )
    .await;
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn operator_restart_mid_flow_converges_without_duplicates() {
    let mut env = Env::start("restart", &[]).await;
    let mut model = sample_model("echo-model.yaml");
    // A slow download keeps the flow mid-way while the operator is stopped.
    set_config(
        &mut model,
        json!({"download": {"podAnnotations": {"kwok.mlmodel.dev/complete-after": "8s"}}}),
    );
    let name = model.name_any();
    env.create(model).await;
    env.wait_phase(&name, Phase::Downloading, Duration::from_secs(60))
        .await;
    env.stop_controller();
    tokio::time::sleep(Duration::from_secs(2)).await;
    env.start_controller();
    env.stop_controller();
    env.start_controller();
    let m = env
        .wait_phase(&name, Phase::Ready, Duration::from_secs(180))
        .await;
    let rev = m.status.clone().unwrap().revision.unwrap();
    let jobs: Api<Job> = Api::namespaced(env.client.clone(), &env.ns);
    let all = jobs.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(all.len(), 1, "exactly one Job per revision");
    assert_eq!(all[0].labels().get("mlmodel.dev/revision"), Some(&rev));
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), &env.ns);
    assert_eq!(
        pvcs.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
    let svcs: Api<Service> = Api::namespaced(env.client.clone(), &env.ns);
    assert_eq!(
        svcs.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
    for (kind, meta) in env.labelled_objects(&name).await {
        assert!(
            meta.owner_references.is_some(),
            "orphan {kind} {:?}",
            meta.name
        );
    }
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_faulty_plugin_fails_one_model_only() {
    let env = Env::start("faulty", &[]).await;
    let mut bad = sample_model("echo-model.yaml");
    bad.metadata.name = Some("bad".into());
    bad.annotations_mut()
        .insert("mlmodel.dev/serve-plugin".into(), "no-such-plugin".into());
    let mut pinned = sample_model("echo-model.yaml");
    pinned.metadata.name = Some("pinned".into());
    pinned.annotations_mut().insert(
        "mlmodel.dev/serve-plugin".into(),
        format!("echo-server@sha256:{}", "0".repeat(64)),
    );
    let good = sample_model("echo-model.yaml");
    let good_name = good.name_any();
    env.create(bad).await;
    env.create(pinned).await;
    env.create(good).await;
    let m = env
        .wait_phase("bad", Phase::Failed, Duration::from_secs(60))
        .await;
    let st = m.status.unwrap();
    assert_eq!(st.reason.as_deref(), Some("PluginNotFound"));
    assert!(st.message.unwrap().contains("no-such-plugin"));
    let m = env
        .wait_phase("pinned", Phase::Failed, Duration::from_secs(60))
        .await;
    assert_eq!(
        m.status.unwrap().reason.as_deref(),
        Some("PluginDigestMismatch")
    );
    env.wait_phase(&good_name, Phase::Ready, Duration::from_secs(120))
        .await;
}

/// An echo model whose `spec.plugins.config` nests `depth` objects deep, as JSON text.
fn deep_config_model(name: &str, depth: usize) -> String {
    let config = format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));
    format!(
        r#"{{"apiVersion":"mlmodel.dev/v1alpha1","kind":"MLModel","metadata":{{"name":"{name}"}},"spec":{{"modelURL":"https://example.com/m","storageSize":"100Mi","framework":"echo","expose":true,"plugins":{{"config":{config}}}}}}}"#
    )
}

/// A config nested beyond serde_json's recursion limit (128 levels for the whole list or watch
/// document) is accepted by the API server; it fails its own model, and the models beside it,
/// in the initial list and in later watch events alike, are still reconciled.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_too_deep_plugin_config_fails_that_model_only() {
    let mut env = Env::without_controller("deepconfig", &[]).await;
    // One before the controller starts (in its initial list), one after (a watch event).
    env.create_raw(deep_config_model("deep-listed", 130)).await;
    env.start_controller();
    env.create_raw(deep_config_model("deep-watched", 130)).await;
    let good = sample_model("echo-model.yaml");
    let good_name = good.name_any();
    env.create(good).await;

    for name in ["deep-listed", "deep-watched"] {
        let m = env
            .wait_phase(name, Phase::Failed, Duration::from_secs(60))
            .await;
        let st = m.status.clone().unwrap();
        assert_eq!(st.reason.as_deref(), Some("InvalidPluginConfig"), "{name}");
        assert_eq!(
            st.message.as_deref(),
            Some("spec.plugins.config nests 130 levels deep; at most 32 are allowed"),
            "{name}"
        );
        assert_eq!(
            st.condition(ConditionType::Ready)
                .map(|c| (c.status.as_str(), c.reason.as_str())),
            Some(("False", "InvalidPluginConfig")),
            "{name}"
        );
        env.wait_event(name, "InvalidPluginConfig").await;
    }
    env.wait_phase(&good_name, Phase::Ready, Duration::from_secs(120))
        .await;
    // Nothing was rendered for the deep ones (checked after the good model is Ready, so the
    // controller has had every chance to create something).
    for name in ["deep-listed", "deep-watched"] {
        let m = env.get(name).await;
        let owned = env.owned_objects(&m).await;
        assert!(owned.is_empty(), "{name} owns {owned:?}");
        let labelled = env.labelled_objects(name).await;
        assert!(labelled.is_empty(), "{name} has objects: {labelled:?}");
    }
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn samples_are_ready_under_the_restricted_pod_security_standard() {
    let env = Env::start(
        "restricted",
        &[("pod-security.kubernetes.io/enforce", "restricted")],
    )
    .await;
    let mut names = Vec::new();
    for sample in ["echo-model.yaml", "tensorflow-model.yaml"] {
        let model = sample_model(sample);
        names.push(model.name_any());
        env.create(model).await;
    }
    for name in names {
        env.wait_phase(&name, Phase::Ready, Duration::from_secs(120))
            .await;
    }
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_253_character_dotted_name_is_served() {
    let env = Env::start("longname", &[]).await;
    let mut model = sample_model("echo-model.yaml");
    let long = format!("{}.{}.{}", "a".repeat(100), "b".repeat(100), "c".repeat(51));
    assert_eq!(long.len(), 253);
    model.metadata.name = Some(long.clone());
    env.create(model).await;
    let m = env
        .wait_phase(&long, Phase::Ready, Duration::from_secs(120))
        .await;
    let objects = env.owned_objects(&m).await;
    assert!(objects.len() >= 4, "{objects:?}");
    for (kind, meta) in objects {
        let name = meta.name.unwrap();
        assert!(name.len() <= 63, "{kind} {name}");
    }
}

/// The trust issue's takeover: a model named like an existing Service (not the operator's) with
/// `expose: true` must not overwrite it, own it, or delete it with the model.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn an_existing_service_of_the_same_name_is_never_taken_over() {
    let env = Env::start("no-adopt", &[]).await;
    let services: Api<Service> = Api::namespaced(env.client.clone(), &env.ns);
    let theirs: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "echo-model", "labels": {"team": "frontend"}},
        "spec": {"ports": [{"port": 443, "targetPort": 8443}], "selector": {"app": "frontend"}},
    }))
    .unwrap();
    services
        .create(&Default::default(), &theirs)
        .await
        .expect("the team's Service");
    env.create(sample_model("echo-model.yaml")).await;
    let model = env
        .wait_reason("echo-model", "NameConflict", Duration::from_secs(60))
        .await;
    let message = model.status.unwrap().message.unwrap_or_default();
    assert!(
        message.contains("Service \"echo-model\" already exists"),
        "{message}"
    );
    env.wait_event("echo-model", "NameConflict").await;
    let svc = services.get("echo-model").await.unwrap();
    assert!(
        svc.metadata.owner_references.is_none(),
        "{:?}",
        svc.metadata
    );
    assert_eq!(
        svc.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port,
        443
    );
    assert!(!svc.labels().contains_key("mlmodel.dev/model"));

    // Deleting the model leaves the team's Service alone.
    env.models()
        .delete("echo-model", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(services.get_opt("echo-model").await.unwrap().is_some());
}
