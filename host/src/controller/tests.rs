//! `reconcile` against a fake API server ([`FakeApi`]) and caches filled by hand: no cluster.
use super::fake_api::{Call, Expect, FakeApi, Reply};
use super::memory::Memory;
use super::watches::{Cache, Stores};
use super::{Context, Recorder, reconcile};
use crate::api::{ANNOTATION_SERVE_PLUGIN, MANAGER, MLModel};
use crate::cached::{
    CachedConfigMap, CachedDeployment, CachedJob, CachedPdb, CachedPod, CachedPvc, CachedService,
};
use crate::index::{self, Index};
use crate::metrics::Metrics;
use crate::names;
use crate::plugins::{Runtime, RuntimeOptions};
use kube::Client;
use kube::runtime::controller::Action;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use std::path::Path;
use std::sync::{Arc, OnceLock};

const NS: &str = "models";

/// The built-in plugins, compiled once per test binary (and cached across runs).
fn runtime() -> Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
            Runtime::new(RuntimeOptions {
                cache_dir: Some(target.join("plugin-test-cache")),
                operator_image: "mlmodel-operator:test".into(),
                ..RuntimeOptions::default()
            })
            .expect("plugin runtime")
        })
        .clone()
}

/// `deploy/samples/echo-model.yaml` as the cluster hands it over.
fn echo_model() -> MLModel {
    let yaml = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/samples/echo-model.yaml"
    ));
    let mut model: MLModel = serde_yaml::from_str(yaml).unwrap();
    model.metadata.namespace = Some(NS.into());
    model.metadata.uid = Some("00000000-0000-0000-0000-000000000001".into());
    model.metadata.generation = Some(1);
    model
}

/// A cache holding `objs`, as a reflector would after seeing them.
fn cache<K>(key: fn(&K) -> Option<String>, objs: &[K]) -> Cache<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let mut writer = Writer::default();
    let index = Index::new(key);
    for obj in objs {
        let event = watcher::Event::Apply(obj.clone());
        index.apply(&event);
        writer.apply_watcher_event(&event);
    }
    Cache {
        store: writer.as_reader(),
        index,
    }
}

/// What the caches hold.
#[derive(Default)]
struct Cluster {
    pvcs: Vec<CachedPvc>,
    jobs: Vec<CachedJob>,
    deployments: Vec<CachedDeployment>,
    services: Vec<CachedService>,
    configmaps: Vec<CachedConfigMap>,
    pdbs: Vec<CachedPdb>,
    pods: Vec<CachedPod>,
}

impl Cluster {
    fn stores(&self) -> Stores {
        Stores {
            pvcs: cache(index::controller_uid, &self.pvcs),
            jobs: cache(index::controller_uid, &self.jobs),
            deployments: cache(index::controller_uid, &self.deployments),
            services: cache(index::controller_uid, &self.services),
            configmaps: cache(index::controller_uid, &self.configmaps),
            pdbs: cache(index::controller_uid, &self.pdbs),
            pods: cache(index::model_label, &self.pods),
        }
    }

    /// Puts what a request applied into the caches, as the watches would.
    fn applied(&mut self, call: &Call) {
        let mut obj = call.body.clone();
        obj["metadata"]["namespace"] = NS.into();
        obj["metadata"]["resourceVersion"] = "1".into();
        match call.body["kind"].as_str() {
            Some("PersistentVolumeClaim") => self.pvcs.push(serde_json::from_value(obj).unwrap()),
            Some("Job") => self.jobs.push(serde_json::from_value(obj).unwrap()),
            Some("Deployment") => self.deployments.push(serde_json::from_value(obj).unwrap()),
            Some("Service") => self.services.push(serde_json::from_value(obj).unwrap()),
            Some("ConfigMap") => self.configmaps.push(serde_json::from_value(obj).unwrap()),
            Some("PodDisruptionBudget") => self.pdbs.push(serde_json::from_value(obj).unwrap()),
            other => panic!("unexpected kind {other:?} in {call:?}"),
        }
    }
}

fn context(client: Client, cluster: &Cluster, written: Memory) -> Arc<Context> {
    context_sharing(client, cluster, written, &Kept::default())
}

/// What an operator keeps between reconciles besides its memory of the models.
#[derive(Default)]
struct Kept {
    metrics: Arc<Metrics>,
    /// The plugins (default: the built-ins).
    runtime: Option<Runtime>,
    /// The models the controller's cache holds (default: none).
    models: Option<kube::runtime::reflector::Store<MLModel>>,
}

fn context_sharing(client: Client, cluster: &Cluster, memory: Memory, kept: &Kept) -> Arc<Context> {
    Arc::new(Context {
        models: kept
            .models
            .clone()
            .unwrap_or_else(|| kube::runtime::reflector::store().0),
        recorder: Recorder::new(client.clone(), MANAGER, None),
        client,
        runtime: kept.runtime.clone().unwrap_or_else(runtime),
        selection: Default::default(),
        stores: cluster.stores(),
        metrics: kept.metrics.clone(),
        progress: Default::default(),
        memory,
    })
}

/// One reconcile of `model` against a fake API server playing `scenario`; the requests made.
async fn reconcile_once(model: &MLModel, cluster: &Cluster, scenario: Vec<Expect>) -> Vec<Call> {
    reconcile_with(model, cluster, scenario, Memory::default())
        .await
        .0
}

/// One reconcile of an operator that remembers the status writes in `written`: the requests
/// made and what it asked for next.
async fn reconcile_with(
    model: &MLModel,
    cluster: &Cluster,
    scenario: Vec<Expect>,
    written: Memory,
) -> (Vec<Call>, Action) {
    let (client, api) = FakeApi::start(scenario);
    let ctx = context(client, cluster, written);
    let action = reconcile(Arc::new(model.clone()), ctx)
        .await
        .expect("reconcile succeeds");
    // The scenario checked the GETs (of an object found in the way of a create); the tests read
    // the writes.
    let calls = api
        .verify()
        .into_iter()
        .filter(|c| c.method != "GET")
        .collect();
    (calls, action)
}

/// A first apply: create-only (it fails if anything of that name exists).
fn create(path: String) -> Expect {
    Expect::apply(path)
}

/// The applies a new echo model starts with (the download step) and its status: a step on the
/// way, no Event.
fn new_model_scenario(model: &MLModel) -> Vec<Expect> {
    let revision = names::revision(model, "download-job", crate::api::StorageMode::Shared);
    let mut scenario = Vec::new();
    scenario.push(create(format!(
        "/api/v1/namespaces/{NS}/persistentvolumeclaims/echo-model-model-{revision}"
    )));
    scenario.push(create(format!(
        "/apis/batch/v1/namespaces/{NS}/jobs/echo-model-download-{revision}"
    )));
    scenario.push(Expect::status_patch(model));
    scenario
}

/// The applies once the download is done (the server, then the Service), the status, and
/// `events` Events (the download's end, if this status is the first to show it).
fn serve_and_expose_scenario(model: &MLModel, events: usize) -> Vec<Expect> {
    let mut scenario = Vec::new();
    scenario.push(create(format!(
        "/apis/apps/v1/namespaces/{NS}/deployments/echo-model-server"
    )));
    scenario.push(create(format!(
        "/api/v1/namespaces/{NS}/services/echo-model"
    )));
    scenario.push(Expect::status_patch(model));
    scenario.extend((0..events).map(|_| Expect::event(NS)));
    scenario
}

#[tokio::test]
async fn a_new_model_gets_its_download_step_applied_then_its_status() {
    let model = echo_model();
    let calls = reconcile_once(&model, &Cluster::default(), new_model_scenario(&model)).await;
    assert_eq!(calls[0].body["kind"], "PersistentVolumeClaim");
    assert_eq!(calls[1].body["kind"], "Job");
    for apply in &calls[..2] {
        let meta = &apply.body["metadata"];
        assert_eq!(
            meta["ownerReferences"][0]["uid"],
            model.uid().unwrap().as_str()
        );
        assert!(meta["annotations"]["mlmodel.dev/applied-hash"].is_string());
        // Create-only: a resourceVersion precondition that no existing object can meet.
        assert!(meta["resourceVersion"].is_string(), "{meta}");
    }
    let status = &calls[2].body["status"];
    // The claim the API server just accepted counts as storage.
    assert_eq!(status["phase"], "Downloading", "{status}");
    assert_eq!(status["plugins"]["serve"], "echo-server@0.1.0", "{status}");
}

#[tokio::test]
async fn an_unknown_plugin_fails_the_model_and_applies_nothing() {
    let mut model = echo_model();
    model
        .annotations_mut()
        .insert(ANNOTATION_SERVE_PLUGIN.into(), "no-such-plugin".into());
    let calls = reconcile_once(
        &model,
        &Cluster::default(),
        vec![Expect::status_patch(&model), Expect::event(NS)],
    )
    .await;
    let status = &calls[0].body["status"];
    assert_eq!(status["phase"], "Failed", "{status}");
    assert_eq!(status["reason"], "PluginNotFound", "{status}");
    assert_eq!(calls[1].body["type"], "Warning");
}

#[tokio::test]
async fn a_model_whose_objects_are_current_costs_no_request() {
    let mut model = echo_model();
    let mut cluster = Cluster::default();
    let calls = reconcile_once(&model, &cluster, new_model_scenario(&model)).await;
    for call in &calls[..2] {
        cluster.applied(call);
    }
    model.status = Some(serde_json::from_value(calls[2].body["status"].clone()).unwrap());
    // The caches caught up with what was applied: the status moves on once.
    let calls = reconcile_once(&model, &cluster, vec![Expect::status_patch(&model)]).await;
    assert_eq!(calls[0].body["status"]["phase"], "Downloading");
    model.status = Some(serde_json::from_value(calls[0].body["status"].clone()).unwrap());
    // Nothing changed since: no apply, no status patch, no event.
    let calls = reconcile_once(&model, &cluster, vec![]).await;
    assert!(calls.is_empty(), "{calls:?}");
}

/// A step on the way to Ready right after a status write waits for the coalescing window (the
/// reconcile asks to come back then), and is written once the window has passed; a milestone
/// is written at once. Each reconcile here sees the cache before the operator's last write, as
/// a reconcile woken by a Job or pod event can.
#[tokio::test]
async fn steps_on_the_way_are_coalesced_and_milestones_are_not() {
    let model = echo_model();
    let mut cluster = Cluster::default();
    let written = Memory::default();
    let (calls, _) = reconcile_with(
        &model,
        &cluster,
        new_model_scenario(&model),
        written.clone(),
    )
    .await;
    cluster.applied(&calls[0]);
    cluster.applied(&calls[1]);

    // The download is done: the server and Service are created, and the status would say
    // Deploying, but the last write was just now.
    cluster.jobs[0].status = Some(
        serde_json::from_value(serde_json::json!({
            "succeeded": 1,
            "conditions": [{"type": "Complete", "status": "True"}],
        }))
        .unwrap(),
    );
    let creates = vec![
        create(format!(
            "/apis/apps/v1/namespaces/{NS}/deployments/echo-model-server"
        )),
        create(format!("/api/v1/namespaces/{NS}/services/echo-model")),
    ];
    let (calls, action) = reconcile_with(&model, &cluster, creates, written.clone()).await;
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_ne!(action, Action::requeue(std::time::Duration::from_secs(300)));
    cluster.applied(&calls[0]);
    cluster.applied(&calls[1]);
    tokio::time::sleep(super::status_write::COALESCE).await;
    let (calls, _) = reconcile_with(
        &model,
        &cluster,
        vec![Expect::status_patch(&model), Expect::event(NS)],
        written.clone(),
    )
    .await;
    assert_eq!(calls[0].body["status"]["phase"], "Deploying");
    assert_eq!(calls[1].body["reason"], "Downloaded");

    // The rollout failed: bad news is written at once, with its Event, however recent the
    // last write.
    cluster.deployments[0].status = Some(
        serde_json::from_value(serde_json::json!({
            "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                "message": "ReplicaSet has timed out progressing."}],
        }))
        .unwrap(),
    );
    let (calls, _) = reconcile_with(
        &model,
        &cluster,
        vec![Expect::status_patch(&model), Expect::event(NS)],
        written,
    )
    .await;
    assert_eq!(calls[0].body["status"]["phase"], "Failed", "{calls:?}");
    assert_eq!(calls[1].body["type"], "Warning");
}

/// Takes the status a reconcile patched in, as the next watch event would bring it.
fn patched_status(model: &mut MLModel, call: &Call) {
    assert!(call.path.ends_with("/status"), "{call:?}");
    model.status = Some(serde_json::from_value(call.body["status"].clone()).unwrap());
}

#[tokio::test]
async fn a_model_walks_step_by_step_to_ready_then_costs_no_request() {
    let mut model = echo_model();
    let mut cluster = Cluster::default();
    let calls = reconcile_once(&model, &cluster, new_model_scenario(&model)).await;
    cluster.applied(&calls[0]);
    cluster.applied(&calls[1]);
    patched_status(&mut model, &calls[2]);

    // The download Job completed: serve and expose are applied.
    let job = &mut cluster.jobs[0];
    job.status = Some(
        serde_json::from_value(serde_json::json!({
            "succeeded": 1,
            "conditions": [{"type": "Complete", "status": "True"}],
        }))
        .unwrap(),
    );
    // Deploying is held back for the coalescing window: the server may be ready a moment later.
    let written = Memory::default();
    let mut scenario = serve_and_expose_scenario(&model, 0);
    scenario.pop();
    let (calls, action) = reconcile_with(&model, &cluster, scenario, written.clone()).await;
    assert_eq!(calls[0].body["kind"], "Deployment");
    assert_eq!(calls[1].body["kind"], "Service");
    assert_eq!(calls.len(), 2, "no status write yet: {calls:?}");
    assert_ne!(
        action,
        Action::requeue(std::time::Duration::from_secs(300)),
        "comes back when the window ends"
    );
    cluster.applied(&calls[0]);
    cluster.applied(&calls[1]);

    // The Deployment rolled out within it: one write says Ready, with the Service's endpoint,
    // and one Event, Ready, tells what was downloaded too.
    cluster.deployments[0].status = Some(
        serde_json::from_value(serde_json::json!({
            "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1,
        }))
        .unwrap(),
    );
    let (calls, _) = reconcile_with(
        &model,
        &cluster,
        vec![Expect::status_patch(&model), Expect::event(NS)],
        written,
    )
    .await;
    let status = &calls[0].body["status"];
    assert_eq!(status["phase"], "Ready", "{status}");
    assert_eq!(calls[1].body["reason"], "Ready");
    assert!(
        calls[1].body.to_string().contains("downloaded"),
        "{:?}",
        calls[1].body
    );
    assert!(
        status
            .to_string()
            .contains("http://echo-model.models.svc.cluster.local:80"),
        "{status}"
    );
    patched_status(&mut model, &calls[0]);

    // Nothing changed since: no apply, no prune, no status patch, no event.
    let calls = reconcile_once(&model, &cluster, vec![]).await;
    assert!(calls.is_empty(), "{calls:?}");
}

/// An object of the same name that the model does not control is never taken over: the model
/// fails with NameConflict naming it, and nothing is applied over it.
#[tokio::test]
async fn an_existing_object_of_another_owner_is_not_adopted() {
    let mut model = echo_model();
    let mut cluster = Cluster::default();
    let calls = reconcile_once(&model, &cluster, new_model_scenario(&model)).await;
    cluster.applied(&calls[0]);
    cluster.applied(&calls[1]);
    patched_status(&mut model, &calls[2]);
    cluster.jobs[0].status = Some(
        serde_json::from_value(serde_json::json!({
            "succeeded": 1,
            "conditions": [{"type": "Complete", "status": "True"}],
        }))
        .unwrap(),
    );
    // A Service `echo-model` made by someone else (e.g. the team's frontend) already exists.
    let svc = format!("/api/v1/namespaces/{NS}/services/echo-model");
    let theirs = serde_json::json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "echo-model", "namespace": NS, "uid": "someone-else"}});
    let mut scenario = vec![create(format!(
        "/apis/apps/v1/namespaces/{NS}/deployments/echo-model-server"
    ))];
    scenario.push(Expect::exists(svc.clone()));
    scenario.push(Expect::present(svc, theirs));
    scenario.push(Expect::status_patch(&model));
    scenario.push(Expect::event(NS)); // Downloaded
    scenario.push(Expect::event(NS)); // NameConflict
    let calls = reconcile_once(&model, &cluster, scenario).await;
    assert_eq!(calls[0].body["kind"], "Deployment", "{calls:?}");
    assert_eq!(calls[1].body["kind"], "Service", "{calls:?}");
    let status = &calls[2].body["status"];
    assert_eq!(status["phase"], "Failed", "{status}");
    assert_eq!(status["reason"], "NameConflict", "{status}");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains("Service \"echo-model\" already exists")
            && message.contains("never takes over"),
        "{message}"
    );
}

/// An object the model created that its cache does not show yet (the watch lags the create) is
/// found in the way of the create, checked to be the model's own, and applied: no NameConflict.
#[tokio::test]
async fn its_own_object_not_yet_in_the_cache_is_applied() {
    let model = echo_model();
    let revision = names::revision(&model, "download-job", crate::api::StorageMode::Shared);
    let pvc = format!("/api/v1/namespaces/{NS}/persistentvolumeclaims/echo-model-model-{revision}");
    let ours = serde_json::json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": format!("echo-model-model-{revision}"), "namespace": NS, "uid": "u",
            "ownerReferences": [{"apiVersion": "mlmodel.dev/v1alpha1", "kind": "MLModel",
                "name": "echo-model", "uid": model.uid().unwrap(), "controller": true}]}});
    let mut scenario = vec![
        Expect::exists(pvc.clone()),
        Expect::present(pvc.clone(), ours),
        Expect::apply(pvc),
    ];
    scenario.extend(new_model_scenario(&model).into_iter().skip(1));
    let calls = reconcile_once(&model, &Cluster::default(), scenario).await;
    // The create that found it, then a plain apply (no precondition).
    assert!(calls[0].body["metadata"]["resourceVersion"].is_string());
    assert!(
        calls[1].body["metadata"]["resourceVersion"].is_null(),
        "{:?}",
        calls[1]
    );
    assert_eq!(calls[3].body["status"]["phase"], "Downloading");
}

/// A ConfigMap the model owns but no longer renders (e.g. left by the serve plugin it used
/// before), as the cache holds it.
fn leftover_config_map(model: &MLModel) -> CachedConfigMap {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "echo-model-old-config", "namespace": NS, "uid": "uid-of-the-leftover",
            "ownerReferences": [{"apiVersion": "mlmodel.dev/v1alpha1", "kind": "MLModel",
                "name": "echo-model", "uid": model.uid().unwrap(), "controller": true}]},
    }))
    .unwrap()
}

/// Pruning deletes exactly the object the cache saw the model own: the UID is a precondition,
/// so an object recreated under the same name since (by someone else) is never deleted.
#[tokio::test]
async fn pruning_deletes_with_the_uid_of_the_owned_object() {
    let mut model = echo_model();
    let mut cluster = Cluster::default();
    let calls = reconcile_once(&model, &cluster, new_model_scenario(&model)).await;
    cluster.applied(&calls[0]);
    cluster.applied(&calls[1]);
    patched_status(&mut model, &calls[2]);
    cluster.configmaps.push(leftover_config_map(&model));
    let path = format!("/api/v1/namespaces/{NS}/configmaps/echo-model-old-config");

    let calls = reconcile_once(
        &model,
        &cluster,
        vec![
            Expect::delete(path.clone(), Reply::Deleted),
            Expect::status_patch(&model),
        ],
    )
    .await;
    assert_eq!(calls[0].method, "DELETE");
    assert_eq!(
        calls[0].body["preconditions"]["uid"], "uid-of-the-leftover",
        "{:?}",
        calls[0]
    );
    assert_eq!(calls[0].body["propagationPolicy"], "Background");

    // Replaced meanwhile: the precondition fails (409) and the reconcile goes on as if pruned.
    let calls = reconcile_once(
        &model,
        &cluster,
        vec![
            Expect::delete(path, Reply::Conflict),
            Expect::status_patch(&model),
        ],
    )
    .await;
    assert_eq!(calls[1].body["status"]["phase"], "Downloading");
}

/// A finished download pod of `model` whose termination log reports files of `format`.
fn download_pod(model: &MLModel, format: &str) -> CachedPod {
    let revision = names::revision(model, "download-job", crate::api::StorageMode::Shared);
    let report = serde_json::json!({"status": "ok", "bytes": 91005, "files": 1, "format": format,
        "largest": [{"path": "tf_model.h5", "bytes": 91005}]});
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "echo-model-download-x", "namespace": NS, "labels": {
            "mlmodel.dev/model": model.name_any(), "mlmodel.dev/step": "download",
            "mlmodel.dev/revision": revision}},
        "status": {"containerStatuses": [{"name": "fetch", "image": "i", "imageID": "",
            "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "message": report.to_string()}}}]},
    }))
    .unwrap()
}

/// Files the serve plugin cannot load stop the model before any server starts: `Failed`,
/// `ModelFormatMismatch`, naming the file and what the server needs; a serve plugin that loads
/// them goes on.
#[tokio::test]
async fn a_model_format_the_server_cannot_load_fails_before_any_server_starts() {
    let mut model = echo_model();
    model
        .annotations_mut()
        .insert(ANNOTATION_SERVE_PLUGIN.into(), "tensorflow-serving".into());
    let mut cluster = Cluster::default();
    let calls = reconcile_once(&model, &cluster, new_model_scenario(&model)).await;
    cluster.applied(&calls[0]);
    cluster.applied(&calls[1]);
    patched_status(&mut model, &calls[2]);
    cluster.jobs[0].status = Some(
        serde_json::from_value(serde_json::json!({
            "succeeded": 1,
            "conditions": [{"type": "Complete", "status": "True"}],
        }))
        .unwrap(),
    );
    cluster.pods.push(download_pod(&model, "keras-hdf5"));

    // No Deployment is applied: the scenario has only the status and its Events.
    let calls = reconcile_once(
        &model,
        &cluster,
        vec![
            Expect::status_patch(&model),
            Expect::event(NS),
            Expect::event(NS),
        ],
    )
    .await;
    let status = &calls[0].body["status"];
    assert_eq!(status["phase"], "Failed", "{status}");
    assert_eq!(status["reason"], "ModelFormatMismatch", "{status}");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains("keras-hdf5")
            && message.contains("tf_model.h5")
            && message.contains("tensorflow-serving loads only saved-model"),
        "{message}"
    );
    assert_eq!(status["download"]["format"], "keras-hdf5", "{status}");
    assert_eq!(calls[1].body["reason"], "Downloaded");
    assert_eq!(calls[2].body["reason"], "ModelFormatMismatch");
    assert_eq!(calls[2].body["type"], "Warning");
    patched_status(&mut model, &calls[0]);

    // A serve plugin that loads any format: the server is deployed from the same download.
    model
        .annotations_mut()
        .insert(ANNOTATION_SERVE_PLUGIN.into(), "echo-server".into());
    let calls = reconcile_once(&model, &cluster, serve_and_expose_scenario(&model, 0)).await;
    assert_eq!(calls[0].body["kind"], "Deployment");
    assert_ne!(calls[2].body["status"]["phase"], "Failed");
}

/// Renders counted by the metrics.
fn renders_counted(metrics: &Metrics) -> u64 {
    metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("mlmodel_plugin_renders_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A reconcile woken before the watch shows what the last one created (a pod event, say)
/// neither creates it again (a 409, a GET and an apply) nor calls a plugin for the same input.
#[tokio::test]
async fn what_was_just_applied_is_neither_applied_nor_rendered_again() {
    let model = echo_model();
    let cluster = Cluster::default();
    let (written, memory) = (Memory::default(), Kept::default());
    let (client, api) = FakeApi::start(new_model_scenario(&model));
    let ctx = context_sharing(client, &cluster, written.clone(), &memory);
    reconcile(Arc::new(model.clone()), ctx).await.unwrap();
    assert_eq!(api.verify().len(), 3);
    let rendered = renders_counted(&memory.metrics);
    assert!(rendered >= 1, "{}", memory.metrics.encode());

    // The caches still show nothing of the model.
    let (client, api) = FakeApi::start(vec![]);
    let ctx = context_sharing(client, &cluster, written, &memory);
    let action = reconcile(Arc::new(model.clone()), ctx).await.unwrap();
    assert!(api.verify().is_empty());
    assert_eq!(
        renders_counted(&memory.metrics),
        rendered,
        "no plugin called"
    );
    // It looks again when the trust in those applies ends.
    assert!(
        action != Action::requeue(std::time::Duration::from_secs(300)),
        "{action:?}"
    );
}

/// The built-ins beside a registry reference to `triton` that failed to load: nothing listens
/// on its registry's port.
fn runtime_with_a_failed_reference() -> (Runtime, String) {
    use crate::plugins::oci::{OciOptions, RegistryOptions};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = format!("127.0.0.1:{port}");
    let reference = format!("oci://{host}/plugins/triton@sha256:{}", "1".repeat(64));
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    let runtime = Runtime::new(RuntimeOptions {
        cache_dir: Some(target.join("plugin-test-cache")),
        operator_image: "mlmodel-operator:test".into(),
        oci: OciOptions {
            refs: vec![reference.parse().unwrap()],
            registry: RegistryOptions {
                insecure: vec![host],
                timeout: std::time::Duration::from_secs(5),
                ..RegistryOptions::default()
            },
            ..OciOptions::default()
        },
        ..RuntimeOptions::default()
    })
    .expect("plugin runtime");
    (runtime, reference)
}

/// A model naming a plugin whose registry reference failed to load fails with
/// `PluginLoadFailed` and the load error; a name nothing stands for is `PluginNotFound`; a
/// model of a loaded plugin goes on as usual.
#[tokio::test]
async fn a_plugin_that_failed_to_load_fails_only_the_models_that_ask_for_it() {
    let (runtime, reference) = runtime_with_a_failed_reference();
    assert_eq!(
        runtime.load_errors().len(),
        1,
        "{:?}",
        runtime.load_errors()
    );
    let memory = Kept {
        runtime: Some(runtime),
        ..Kept::default()
    };
    let failed_with = |model: &MLModel, scenario: Vec<_>| {
        let (client, api) = FakeApi::start(scenario);
        let ctx = context_sharing(client, &Cluster::default(), Memory::default(), &memory);
        let model = Arc::new(model.clone());
        async move {
            reconcile(model, ctx).await.unwrap();
            let calls = api.verify();
            assert_eq!(calls[1].body["type"], "Warning");
            calls[0].body["status"].clone()
        }
    };
    let mut triton = echo_model();
    triton
        .annotations_mut()
        .insert(ANNOTATION_SERVE_PLUGIN.into(), "triton".into());
    let status = failed_with(
        &triton,
        vec![Expect::status_patch(&triton), Expect::event(NS)],
    )
    .await;
    assert_eq!(status["phase"], "Failed", "{status}");
    assert_eq!(status["reason"], "PluginLoadFailed", "{status}");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "failed to load from {reference}: cannot reach registry 127.0.0.1:"
        )),
        "{message}"
    );

    let mut unknown = echo_model();
    unknown
        .annotations_mut()
        .insert(ANNOTATION_SERVE_PLUGIN.into(), "onnx".into());
    let status = failed_with(
        &unknown,
        vec![Expect::status_patch(&unknown), Expect::event(NS)],
    )
    .await;
    assert_eq!(status["reason"], "PluginNotFound", "{status}");

    let echo = echo_model();
    let (client, api) = FakeApi::start(new_model_scenario(&echo));
    let ctx = context_sharing(client, &Cluster::default(), Memory::default(), &memory);
    reconcile(Arc::new(echo.clone()), ctx).await.unwrap();
    let calls = api.verify();
    assert_eq!(calls[2].body["status"]["phase"], "Downloading");
    assert_eq!(
        calls[2].body["status"]["plugins"]["serve"],
        "echo-server@0.1.0"
    );
}

/// A model without finalizers leaves the cache at once when deleted, so no reconcile sees it go:
/// after 1,000 cycles of create, reconcile, fail and delete unseen, the sweep against the model
/// cache leaves nothing of them in any memory (the backoff counts of failed models included).
#[tokio::test]
async fn models_deleted_unseen_leave_nothing_in_memory() {
    let template = echo_model();
    let models: Vec<Arc<MLModel>> = (0..1000)
        .map(|i| {
            let mut m = template.clone();
            m.metadata.uid = Some(format!("uid-{i}"));
            Arc::new(m)
        })
        .collect();
    let scenario = models.iter().flat_map(|m| new_model_scenario(m)).collect();
    let (client, api) = FakeApi::start(scenario);
    let ctx = context(client, &Cluster::default(), Memory::default());
    for m in &models {
        reconcile(m.clone(), ctx.clone())
            .await
            .expect("reconcile succeeds");
        super::error_policy(m.clone(), &crate::error::Error::NoNamespace, ctx.clone());
    }
    api.verify();
    let before = ctx.remembered();
    assert!(
        before >= 1000,
        "renders of every model are remembered: {before}"
    );
    // The last model still exists: it keeps what is its own, the others lose theirs.
    ctx.forget_gone(&models[999..]);
    let kept = ctx.remembered();
    assert!(kept > 0 && kept < 10, "kept {kept} of {before}");
    ctx.forget_gone(&[]);
    assert_eq!(ctx.remembered(), 0);
}

/// A model deleted with a reconcile seeing it go (a deletion timestamp: a finalizer of someone
/// else's holds it) is forgotten at once, its failures included: one entry per model, one forget.
#[tokio::test]
async fn a_failed_model_seen_deleted_is_forgotten_whole() {
    let mut m = echo_model();
    m.metadata.uid = Some("uid-gone".into());
    let (client, api) = FakeApi::start(new_model_scenario(&m));
    let ctx = context(client, &Cluster::default(), Memory::default());
    reconcile(Arc::new(m.clone()), ctx.clone()).await.unwrap();
    api.verify();
    super::error_policy(
        Arc::new(m.clone()),
        &crate::error::Error::NoNamespace,
        ctx.clone(),
    );
    assert_eq!(
        ctx.remembered(),
        1,
        "the model's renders, writes and failures"
    );
    m.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    reconcile(Arc::new(m), ctx.clone()).await.unwrap();
    assert_eq!(ctx.remembered(), 0);
}

#[tokio::test]
async fn replicas_on_a_read_write_once_claim_each_download_in_their_pod() {
    let mut model = echo_model();
    model.spec.replicas = 2;
    // No claim, no Job: the server (with the download in it), its disruption budget and the
    // Service at once.
    let mut scenario = serve_and_expose_scenario(&model, 0);
    scenario.insert(
        1,
        create(format!(
            "/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/echo-model-server"
        )),
    );
    let calls = reconcile_once(&model, &Cluster::default(), scenario).await;
    assert!(calls.iter().all(|c| !c.unexpected), "{calls:#?}");
    let pod = &calls[0].body["spec"]["template"]["spec"];
    let init = &pod["initContainers"][0];
    assert_eq!(init["name"], "fetch", "{pod}");
    assert_eq!(init["command"][1], "fetch", "{init}");
    let mount = &init["volumeMounts"][0]["name"];
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| &v["name"] == mount)
        .unwrap();
    assert_eq!(
        volume["emptyDir"]["sizeLimit"], model.spec.storage_size,
        "{volume}"
    );
    assert!(volume.get("persistentVolumeClaim").is_none(), "{volume}");
    let budget = &calls[1].body["spec"];
    assert_eq!(budget["maxUnavailable"], 1, "{budget}");
    assert_eq!(
        budget["selector"], calls[0].body["spec"]["selector"],
        "the budget covers the serving pods"
    );
    let status = &calls[3].body["status"];
    assert_eq!(status["storage"]["mode"], "PerPod", "{status}");
    assert!(
        status["storage"]["reason"]
            .as_str()
            .unwrap()
            .contains("ReadWriteOnce"),
        "{status}"
    );
    // The revision says where the files are: not the shared claim's.
    let shared = names::revision(&model, "download-job", crate::api::StorageMode::Shared);
    assert_ne!(status["download"]["revision"], shared, "{status}");
}

/// A model author may not run an image the admin never allowed through a plugin's config:
/// nothing is applied, and the status says which image and how the admin allows it.
#[tokio::test]
async fn an_image_the_admin_never_allowed_is_refused_before_anything_is_applied() {
    let mut model = echo_model();
    let config =
        serde_json::json!({"download": {"image": "attacker.example/mlmodel-operator:dev"}});
    model.spec.plugins =
        Some(serde_json::from_value(serde_json::json!({ "config": config })).unwrap());
    let calls = reconcile_once(
        &model,
        &Cluster::default(),
        vec![Expect::status_patch(&model), Expect::event(NS)],
    )
    .await;
    assert!(calls.iter().all(|c| !c.unexpected), "{calls:#?}");
    let status = &calls[0].body["status"];
    assert_eq!(status["phase"], "Failed", "{status}");
    assert_eq!(status["reason"], "ForbiddenPluginOutput", "{status}");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains("attacker.example/mlmodel-operator:dev")
            && message.contains("--plugin-allow"),
        "{message}"
    );
}

/// Two models whose names derive the same names (`my.model` and its hashed form, literally):
/// the younger applies nothing and says which model it clashes with; the older is untouched.
#[tokio::test]
async fn a_model_named_like_anothers_derived_names_is_refused_before_anything_is_applied() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    let mut older = echo_model();
    older.metadata.name = Some("my.model".into());
    older.metadata.uid = Some("00000000-0000-0000-0000-00000000000a".into());
    older.metadata.creation_timestamp = Some(Time(
        k8s_openapi::jiff::Timestamp::from_second(1_000).unwrap(),
    ));
    let mut younger = echo_model();
    younger.metadata.name = Some(names::object_name("my.model", ""));
    younger.metadata.creation_timestamp = Some(Time(
        k8s_openapi::jiff::Timestamp::from_second(2_000).unwrap(),
    ));
    let (store, mut writer) = kube::runtime::reflector::store();
    for m in [&older, &younger] {
        writer.apply_watcher_event(&watcher::Event::Apply(m.clone()));
    }
    let kept = Kept {
        models: Some(store),
        ..Kept::default()
    };
    let (client, api) = FakeApi::start(vec![Expect::status_patch(&younger), Expect::event(NS)]);
    let ctx = context_sharing(client, &Cluster::default(), Memory::default(), &kept);
    reconcile(Arc::new(younger.clone()), ctx)
        .await
        .expect("reconcile");
    let calls: Vec<Call> = api
        .verify()
        .into_iter()
        .filter(|c| c.method != "GET")
        .collect();
    assert!(calls.iter().all(|c| !c.unexpected), "{calls:#?}");
    let status = &calls[0].body["status"];
    assert_eq!(status["reason"], "NameConflict", "{status}");
    assert!(
        status["message"].as_str().unwrap().contains("\"my.model\""),
        "{status}"
    );
    // The older model goes on: its download step is applied.
    let revision = names::revision(&older, "download-job", crate::api::StorageMode::Shared);
    let n = names::Names::new("my.model", &revision);
    let (client, api) = FakeApi::start(vec![
        create(format!(
            "/api/v1/namespaces/{NS}/persistentvolumeclaims/{}",
            n.volume
        )),
        create(format!("/apis/batch/v1/namespaces/{NS}/jobs/{}", n.job)),
        Expect::status_patch(&older),
    ]);
    let ctx = context_sharing(client, &Cluster::default(), Memory::default(), &kept);
    reconcile(Arc::new(older), ctx).await.expect("reconcile");
    let calls: Vec<Call> = api
        .verify()
        .into_iter()
        .filter(|c| c.method != "GET")
        .collect();
    assert!(calls.iter().all(|c| !c.unexpected), "{calls:#?}");
    assert_eq!(calls[0].body["kind"], "PersistentVolumeClaim");
}
