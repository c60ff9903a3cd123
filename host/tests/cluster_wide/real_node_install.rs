//! The operator installed as a user installs it, `kubectl apply --server-side -f
//! deploy/install.yaml`, with only its image set to the locally built one
//! (hack/operator-image.sh): its pod really runs on the real node, as its ServiceAccount, under
//! the `restricted` Pod Security Standard, reaches the API server through the `kubernetes`
//! Service, takes the echo sample to Ready and answers on `/metrics` and `/readyz`.
//!
//! A test binary of its own: the installed operator watches every namespace, so it must not run
//! beside the in-process controllers of the other cluster tests. It removes the install at the
//! end (the CRD stays: the other tests share it).
use crate::common;

use crate::common::flow::{Env, kubectl_path, sample_model};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams};
use mlmodel_operator::api::Phase;
use std::process::{Command, Stdio};
use std::time::Duration;

const RELEASED_IMAGE: &str = "ghcr.io/mlmodel-dev/mlmodel-operator:v0.1.0";
const SYSTEM_NS: &str = "mlmodel-system";

fn kubectl(args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(kubectl_path())
        .arg("--kubeconfig")
        .arg(common::kubeconfig_path())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    if let Some(text) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes the installed operator (its namespace and its cluster-wide binding), even when the
/// test fails, so no cluster-wide operator outlives the test.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let kubeconfig = common::kubeconfig_path();
        for args in [
            vec![
                "-n",
                SYSTEM_NS,
                "scale",
                "deployment/mlmodel-operator",
                "--replicas=0",
            ],
            vec![
                "delete",
                "namespace",
                SYSTEM_NS,
                "--wait=false",
                "--ignore-not-found",
            ],
        ] {
            let _ = Command::new(kubectl_path())
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(&args)
                .output();
        }
    }
}

async fn wait_namespace_gone(client: &kube::Client) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    common::wait_until(
        "the namespace mlmodel-system left by an earlier test to be deleted",
        Duration::from_secs(120),
        || async {
            namespaces
                .get_opt(SYSTEM_NS)
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn install_yaml_runs_the_operator_on_the_real_node() {
    let client = common::client().await;
    common::flow::ensure_crd(&client).await;
    // Another test applies deploy/operator with the released image (its pod on a kwok node):
    // start from no operator at all.
    let _ = Api::<Namespace>::all(client.clone())
        .delete(SYSTEM_NS, &DeleteParams::default())
        .await;
    wait_namespace_gone(&client).await;

    // The operator's namespace is sent to the real node first (the annotations of
    // hack/node.sh, by a field manager of the test's own), then install.yaml as shipped, with the
    // image set to the local one.
    let annotations: serde_json::Map<String, serde_json::Value> = common::REAL_NODE
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
        .collect();
    let namespace = serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": SYSTEM_NS, "annotations": annotations},
    });
    let _installed = Installed;
    kubectl(
        &[
            "apply",
            "--server-side",
            "--field-manager=real-node-test",
            "-f",
            "-",
        ],
        Some(&namespace.to_string()),
    );
    let manifest = std::fs::read_to_string(common::flow::repo_root().join("deploy/install.yaml"))
        .expect("deploy/install.yaml")
        .replace(RELEASED_IMAGE, &common::operator_image());
    kubectl(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        Some(&manifest),
    );

    // The operator's pod: on the real node, its own ServiceAccount, Ready (its /readyz passed).
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), SYSTEM_NS);
    common::wait_for_object(
        &deployments,
        "mlmodel-operator",
        "the operator's Deployment to be available",
        Duration::from_secs(180),
        |d: &Deployment| d.status.as_ref().and_then(|s| s.available_replicas) == Some(1),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), SYSTEM_NS);
    let pod = pods
        .list(&ListParams::default().labels("app.kubernetes.io/name=mlmodel-operator"))
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|p| p.metadata.deletion_timestamp.is_none())
        .expect("the operator's pod");
    let spec = pod.spec.clone().unwrap();
    assert_eq!(
        spec.service_account_name.as_deref(),
        Some("mlmodel-operator")
    );
    assert_eq!(
        spec.containers[0].image.as_deref(),
        Some(common::operator_image().as_str())
    );
    let node = Api::<Node>::all(client.clone())
        .get(spec.node_name.as_deref().unwrap())
        .await
        .unwrap();
    assert!(
        node.metadata
            .labels
            .unwrap_or_default()
            .contains_key("mlmodel.dev/real-node"),
        "the operator's pod is not on the real node"
    );
    let status = pod.status.clone().unwrap();
    let cs = &status.container_statuses.unwrap()[0];
    assert!(
        cs.container_id
            .as_deref()
            .unwrap_or_default()
            .starts_with("containerd://")
            && cs.ready,
        "{cs:?}"
    );
    let ip = status.pod_ip.expect("a pod IP");

    // The echo sample, in a namespace of its own (its pods on kwok nodes), reconciled by the
    // operator in the pod.
    let env = Env::without_controller("real-install", common::RESTRICTED).await;
    env.create(sample_model("echo-model.yaml")).await;
    env.wait_phase("echo-model", Phase::Ready, Duration::from_secs(120))
        .await;

    let http = common::http_client();
    let readyz = http
        .get(format!("http://{ip}:8080/readyz"))
        .send()
        .await
        .expect("GET /readyz on the pod");
    assert_eq!(readyz.status(), 200);
    let metrics = http
        .get(format!("http://{ip}:8080/metrics"))
        .send()
        .await
        .expect("GET /metrics on the pod")
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("mlmodel_reconciles_total") && metrics.contains("mlmodel_leader 1"),
        "/metrics of the operator's pod:\n{metrics}"
    );
    let logs = kubectl(
        &["-n", SYSTEM_NS, "logs", "deployment/mlmodel-operator"],
        None,
    );
    assert!(!logs.is_empty(), "the operator's pod wrote no log");
}
