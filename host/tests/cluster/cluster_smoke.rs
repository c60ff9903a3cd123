//! Smoke tests of the local control plane itself (hack/cluster.sh): that it behaves like the real
//! cluster the operator's integration tests rely on. Run with `make test`, or against a running
//! cluster: `make cluster-up && cargo test -p mlmodel-operator --test cluster cluster_smoke -- --ignored`.
use crate::common;

use std::time::Duration;

use crate::common::{TestNamespace, wait_for_deletion, wait_for_object, wait_until};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, ContainerStatus, Pod};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(60);
const FAIL_LABEL: &str = "kwok.mlmodel.dev/fail";
const MESSAGE_ANNOTATION: &str = "kwok.mlmodel.dev/message";
const IMAGE: &str = "registry.k8s.io/pause:3.10";

fn from_json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("test object does not deserialize")
}

/// Pod metadata with the kwok failure label and message annotation, when given.
fn pod_meta(app: &str, fail: Option<&str>, message: Option<&str>) -> serde_json::Value {
    let mut meta = json!({ "labels": { "app": app }, "annotations": {} });
    if let Some(f) = fail {
        meta["labels"][FAIL_LABEL] = json!(f);
    }
    if let Some(m) = message {
        meta["annotations"][MESSAGE_ANNOTATION] = json!(m);
    }
    meta
}

/// A bare pod with one container.
fn pod(name: &str, fail: Option<&str>, message: Option<&str>) -> Pod {
    let mut metadata = pod_meta(name, fail, message);
    metadata["name"] = json!(name);
    from_json(json!({
        "metadata": metadata,
        "spec": { "containers": [{ "name": "server", "image": IMAGE }] }
    }))
}

fn job(name: &str, fail: Option<&str>, message: Option<&str>) -> Job {
    from_json(json!({
        "metadata": { "name": name },
        "spec": {
            // No retries: a failed pod fails the Job at once (retries back off 10s, 20s, ...).
            "backoffLimit": 0,
            "template": {
                "metadata": pod_meta(name, fail, message),
                "spec": { "restartPolicy": "Never", "containers": [{ "name": "download", "image": IMAGE }] }
            }
        }
    }))
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    from_json(json!({
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "server", "image": IMAGE }] }
            }
        }
    }))
}

fn phase(p: &Pod) -> Option<&str> {
    p.status.as_ref()?.phase.as_deref()
}

fn pod_condition<'a>(
    p: &'a Pod,
    type_: &str,
) -> Option<&'a k8s_openapi::api::core::v1::PodCondition> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

fn container(p: &Pod) -> Option<&ContainerStatus> {
    p.status.as_ref()?.container_statuses.as_ref()?.first()
}

fn waiting_reason(p: &Pod) -> Option<&str> {
    container(p)?
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .as_deref()
}

fn has_condition(conds: Option<&Vec<impl AsCondition>>, type_: &str) -> bool {
    conds.is_some_and(|cs| {
        cs.iter()
            .any(|c| c.type_() == type_ && c.status() == "True")
    })
}

/// Deployment and Job conditions are distinct types with the same shape.
trait AsCondition {
    fn type_(&self) -> &str;
    fn status(&self) -> &str;
}
impl AsCondition for k8s_openapi::api::apps::v1::DeploymentCondition {
    fn type_(&self) -> &str {
        &self.type_
    }
    fn status(&self) -> &str {
        &self.status
    }
}
impl AsCondition for k8s_openapi::api::batch::v1::JobCondition {
    fn type_(&self) -> &str {
        &self.type_
    }
    fn status(&self) -> &str {
        &self.status
    }
}

/// The pods of a Job (the Job controller labels them with `job-name`).
async fn job_pods(client: &Client, ns: &str, job: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
        .expect("list job pods")
        .items
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn fake_nodes_are_ready() {
    let client = common::client().await;
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client);
    let list = nodes.list(&ListParams::default()).await.unwrap();
    let ready = list
        .items
        .iter()
        .filter(|n| {
            n.annotations()
                .get("kwok.x-k8s.io/node")
                .map(String::as_str)
                == Some("fake")
        })
        .filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .count();
    assert!(ready >= 3, "expected 3 Ready kwok nodes, found {ready}");
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn deployment_becomes_available() {
    let client = common::client().await;
    let ns = TestNamespace::new(&client, "smoke-deploy").await;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), ns.name());
    deploys
        .create(&PostParams::default(), &deployment("web", 3))
        .await
        .unwrap();
    let d = wait_for_object(&deploys, "web", "Deployment web Available", TIMEOUT, |d| {
        let s = d.status.as_ref();
        has_condition(s.and_then(|s| s.conditions.as_ref()), "Available")
            && s.and_then(|s| s.ready_replicas) == Some(3)
    })
    .await;
    assert_eq!(d.status.unwrap().available_replicas, Some(3));

    // Its pods run on the fake nodes, Ready, with a pod IP, as a kubelet would report them.
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let list = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items;
    assert_eq!(list.len(), 3);
    for p in &list {
        assert_eq!(phase(p), Some("Running"), "pod {}", p.name_any());
        assert!(
            p.spec
                .as_ref()
                .unwrap()
                .node_name
                .as_deref()
                .unwrap_or("")
                .starts_with("kwok-node-")
        );
        assert_eq!(
            pod_condition(p, "Ready").map(|c| c.status.as_str()),
            Some("True")
        );
        assert!(
            p.status.as_ref().unwrap().pod_ip.is_some(),
            "pod {} has no IP",
            p.name_any()
        );
        assert!(container(p).unwrap().ready);
    }
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn job_completes() {
    let client = common::client().await;
    let ns = TestNamespace::new(&client, "smoke-job").await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns.name());
    jobs.create(&PostParams::default(), &job("fetch", None, None))
        .await
        .unwrap();
    let j = wait_for_object(&jobs, "fetch", "Job fetch Complete", TIMEOUT, |j| {
        has_condition(
            j.status.as_ref().and_then(|s| s.conditions.as_ref()),
            "Complete",
        )
    })
    .await;
    assert_eq!(j.status.unwrap().succeeded, Some(1));
    let pods = job_pods(&client, ns.name(), "fetch").await;
    assert_eq!(pods.len(), 1);
    assert_eq!(phase(&pods[0]), Some("Succeeded"));
    let terminated = container(&pods[0])
        .unwrap()
        .state
        .as_ref()
        .unwrap()
        .terminated
        .as_ref()
        .unwrap();
    assert_eq!(terminated.exit_code, 0);
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn job_fails_with_the_termination_message() {
    let client = common::client().await;
    let ns = TestNamespace::new(&client, "smoke-job-fail").await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns.name());
    let message = "download failed: 404 Not Found from https://models.example/m.tar.gz";
    jobs.create(
        &PostParams::default(),
        &job("fetch", Some("job"), Some(message)),
    )
    .await
    .unwrap();
    wait_for_object(&jobs, "fetch", "Job fetch Failed", TIMEOUT, |j| {
        has_condition(
            j.status.as_ref().and_then(|s| s.conditions.as_ref()),
            "Failed",
        )
    })
    .await;
    let pods = job_pods(&client, ns.name(), "fetch").await;
    assert_eq!(pods.len(), 1, "backoffLimit 0: exactly one attempt");
    assert_eq!(phase(&pods[0]), Some("Failed"));
    let terminated = container(&pods[0])
        .unwrap()
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .unwrap();
    assert_eq!(terminated.exit_code, 1);
    assert_eq!(terminated.reason.as_deref(), Some("Error"));
    assert_eq!(terminated.message.as_deref(), Some(message));
}

/// Creates a pod with the failure label `fail` and waits until kwok gave it a container status.
async fn failing_pod(fail: &str, message: Option<&str>) -> (TestNamespace, Pod) {
    let client = common::client().await;
    let ns = TestNamespace::new(&client, &format!("smoke-{fail}")).await;
    let pods: Api<Pod> = Api::namespaced(client, ns.name());
    pods.create(&PostParams::default(), &pod("server", Some(fail), message))
        .await
        .unwrap();
    let p = wait_for_object(
        &pods,
        "server",
        &format!("pod with {FAIL_LABEL}={fail} to get a status"),
        TIMEOUT,
        |p| container(p).is_some(),
    )
    .await;
    (ns, p)
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn fail_label_crashloop() {
    let message = "panic: model file is corrupt";
    let (_ns, p) = failing_pod("crashloop", Some(message)).await;
    assert_eq!(phase(&p), Some("Running"));
    assert_eq!(
        pod_condition(&p, "Ready").map(|c| c.status.as_str()),
        Some("False")
    );
    let c = container(&p).unwrap();
    assert!(!c.ready);
    assert!(c.restart_count > 0);
    assert_eq!(waiting_reason(&p), Some("CrashLoopBackOff"));
    let last = c.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
    assert_eq!(last.message.as_deref(), Some(message));
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn fail_label_oom() {
    let (_ns, p) = failing_pod("oom", None).await;
    assert_eq!(phase(&p), Some("Running"));
    let c = container(&p).unwrap();
    assert!(!c.ready && c.restart_count > 0);
    assert_eq!(waiting_reason(&p), Some("CrashLoopBackOff"));
    let last = c.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(
        (last.exit_code, last.reason.as_deref()),
        (137, Some("OOMKilled"))
    );
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn fail_label_imagepull() {
    let (_ns, p) = failing_pod("imagepull", None).await;
    assert_eq!(phase(&p), Some("Pending"));
    assert_eq!(waiting_reason(&p), Some("ImagePullBackOff"));
    let waiting = container(&p)
        .unwrap()
        .state
        .as_ref()
        .unwrap()
        .waiting
        .as_ref()
        .unwrap();
    assert_eq!(
        waiting.message.as_deref(),
        Some(format!("Back-off pulling image \"{IMAGE}\"").as_str())
    );
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn fail_label_errimagepull() {
    let (_ns, p) = failing_pod("errimagepull", Some("manifest unknown")).await;
    assert_eq!(phase(&p), Some("Pending"));
    assert_eq!(waiting_reason(&p), Some("ErrImagePull"));
    let waiting = container(&p)
        .unwrap()
        .state
        .as_ref()
        .unwrap()
        .waiting
        .clone()
        .unwrap();
    let msg = waiting.message.unwrap();
    assert!(
        msg.contains(IMAGE) && msg.contains("manifest unknown"),
        "message: {msg}"
    );
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn fail_label_configerror() {
    let message = "secret \"model-credentials\" not found";
    let (_ns, p) = failing_pod("configerror", Some(message)).await;
    assert_eq!(phase(&p), Some("Pending"));
    assert_eq!(waiting_reason(&p), Some("CreateContainerConfigError"));
    let waiting = container(&p)
        .unwrap()
        .state
        .as_ref()
        .unwrap()
        .waiting
        .clone()
        .unwrap();
    assert_eq!(waiting.message.as_deref(), Some(message));
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn fail_label_unschedulable() {
    let client = common::client().await;
    let ns = TestNamespace::new(&client, "smoke-unschedulable").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    pods.create(
        &PostParams::default(),
        &pod("stuck", Some("unschedulable"), None),
    )
    .await
    .unwrap();
    // The same pod without the label, in the same namespace, is scheduled: it is the label.
    pods.create(&PostParams::default(), &pod("control", None, None))
        .await
        .unwrap();
    let p = wait_for_object(
        &pods,
        "stuck",
        "pod stuck PodScheduled=False",
        TIMEOUT,
        |p| pod_condition(p, "PodScheduled").is_some_and(|c| c.status == "False"),
    )
    .await;
    let cond = pod_condition(&p, "PodScheduled").unwrap();
    assert_eq!(cond.reason.as_deref(), Some("Unschedulable"));
    wait_for_object(&pods, "control", "pod control Running", TIMEOUT, |p| {
        phase(p) == Some("Running")
    })
    .await;
    // And it stays so: the scheduler retries and still finds no node.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let p = pods.get("stuck").await.unwrap();
    assert_eq!(phase(&p), Some("Pending"));
    assert_eq!(p.spec.unwrap().node_name, None);
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn pod_security_restricted_rejects_a_root_pod() {
    let client = common::client().await;
    let ns = TestNamespace::with_labels(&client, "smoke-psa", common::RESTRICTED).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let root: Pod = from_json(json!({
        "metadata": { "name": "root" },
        "spec": { "containers": [{
            "name": "server", "image": IMAGE,
            "securityContext": { "runAsUser": 0, "privileged": true }
        }] }
    }));
    match pods.create(&PostParams::default(), &root).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert!(
                status.message.contains("violates PodSecurity \"restricted"),
                "{}",
                status.message
            );
        }
        other => panic!("a privileged root pod was not rejected: {other:?}"),
    }
    let compliant: Pod = from_json(json!({
        "metadata": { "name": "compliant" },
        "spec": {
            "securityContext": { "runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": { "type": "RuntimeDefault" } },
            "containers": [{
                "name": "server", "image": IMAGE,
                "securityContext": { "allowPrivilegeEscalation": false, "capabilities": { "drop": ["ALL"] } }
            }]
        }
    }));
    pods.create(&PostParams::default(), &compliant)
        .await
        .expect("a pod that meets the restricted standard is admitted");
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn garbage_collector_deletes_dependents() {
    let client = common::client().await;
    let ns = TestNamespace::new(&client, "smoke-gc").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns.name());
    let owner = cms
        .create(
            &PostParams::default(),
            &from_json(json!({ "metadata": { "name": "owner" } })),
        )
        .await
        .unwrap();
    let owner_ref = owner.controller_owner_ref(&()).unwrap();
    let dependent: ConfigMap = from_json(json!({
        "metadata": { "name": "dependent", "ownerReferences": [owner_ref] }
    }));
    cms.create(&PostParams::default(), &dependent)
        .await
        .unwrap();
    // An unrelated ConfigMap must survive: the collector follows owner references only.
    cms.create(
        &PostParams::default(),
        &from_json(json!({ "metadata": { "name": "bystander" } })),
    )
    .await
    .unwrap();
    cms.delete("owner", &DeleteParams::default()).await.unwrap();
    wait_for_deletion(
        &cms,
        "dependent",
        "the garbage collector to delete ConfigMap dependent",
        TIMEOUT,
    )
    .await;
    assert!(cms.get_opt("bystander").await.unwrap().is_some());

    // A Deployment's ReplicaSets and pods go with it.
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), ns.name());
    deploys
        .create(&PostParams::default(), &deployment("web", 2))
        .await
        .unwrap();
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), ns.name());
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    wait_until("2 pods of Deployment web", TIMEOUT, || async {
        let n = pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .ok()?
            .items
            .len();
        (n == 2).then_some(())
    })
    .await;
    assert_eq!(
        rss.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
    deploys
        .delete("web", &DeleteParams::background())
        .await
        .unwrap();
    wait_until(
        "the ReplicaSets and pods of Deployment web to be collected",
        TIMEOUT,
        || async {
            let rs = rss.list(&ListParams::default()).await.ok()?.items.len();
            let p = pods
                .list(&ListParams::default().labels("app=web"))
                .await
                .ok()?
                .items
                .len();
            (rs == 0 && p == 0).then_some(())
        },
    )
    .await;
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn rbac_is_enforced_for_service_accounts() {
    let client = common::client().await;
    let ns = TestNamespace::new(&client, "smoke-rbac").await;
    let user = format!("system:serviceaccount:{}:default", ns.name());
    let groups = ["system:serviceaccounts", "system:authenticated"];
    let as_sa = common::client_as(&user, &groups).await;
    let pods: Api<Pod> = Api::namespaced(as_sa.clone(), ns.name());
    match pods.list(&ListParams::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
        other => panic!("a service account without a Role listed pods: {other:?}"),
    }
    // Granting a Role makes the same request pass.
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": { "name": "pod-reader" },
        "rules": [{ "apiGroups": [""], "resources": ["pods"], "verbs": ["list"] }]
    });
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": { "name": "pod-reader" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader" },
        "subjects": [{ "kind": "ServiceAccount", "name": "default", "namespace": ns.name() }]
    });
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    Api::<Role>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &from_json(role))
        .await
        .unwrap();
    Api::<RoleBinding>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &from_json(binding))
        .await
        .unwrap();
    wait_until("the RoleBinding to take effect", TIMEOUT, || async {
        pods.list(&ListParams::default()).await.ok()
    })
    .await;
    // Only what was granted: the service account still cannot read ConfigMaps.
    let cms: Api<ConfigMap> = Api::namespaced(as_sa, ns.name());
    assert!(
        matches!(cms.list(&ListParams::default()).await, Err(kube::Error::Api(s)) if s.code == 403)
    );
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn claims_of_the_default_class_are_provisioned_and_reclaimed() {
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
    let client = common::client().await;
    let ns = TestNamespace::new(&client, "smoke-pvc").await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns.name());
    // No storageClassName: the DefaultStorageClass admission gives it `standard`.
    let claim: PersistentVolumeClaim = from_json(json!({
        "metadata": { "name": "model" },
        "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "5Gi" } } }
    }));
    pvcs.create(&PostParams::default(), &claim).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let user: Pod = from_json(json!({
        "metadata": { "name": "user" },
        "spec": {
            "containers": [{ "name": "server", "image": IMAGE, "volumeMounts": [{ "name": "m", "mountPath": "/models" }] }],
            "volumes": [{ "name": "m", "persistentVolumeClaim": { "claimName": "model" } }]
        }
    }));
    pods.create(&PostParams::default(), &user).await.unwrap();
    let bound = wait_for_object(&pvcs, "model", "claim model Bound", TIMEOUT, |c| {
        c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
    })
    .await;
    assert_eq!(
        bound.spec.as_ref().unwrap().storage_class_name.as_deref(),
        Some("standard")
    );
    let capacity = bound.status.unwrap().capacity.unwrap();
    assert_eq!(capacity["storage"].0, "5Gi");
    let volume = bound.spec.unwrap().volume_name.unwrap();
    wait_for_object(
        &pods,
        "user",
        "pod user (mounting the claim) Running",
        TIMEOUT,
        |p| phase(p) == Some("Running"),
    )
    .await;
    // Deleting the pod and the claim releases the volume, which is then deleted.
    pods.delete("user", &DeleteParams::default()).await.unwrap();
    pvcs.delete("model", &DeleteParams::default())
        .await
        .unwrap();
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    wait_for_deletion(&pvs, &volume, "the released volume to be deleted", TIMEOUT).await;
}
