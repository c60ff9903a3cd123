//! The install path on the local cluster: deploy/ (kustomize), deploy/install.yaml and the Helm
//! chart are rendered by the real tools and accepted by the API server; the operator's pod is
//! admitted in `mlmodel-system` under the `restricted` Pod Security Standard; and its RBAC is
//! proven both ways: the controller, running as the operator's ServiceAccount (impersonated),
//! takes the echo sample to Ready, while what the rules do not grant is refused.
//!
//! Tests run in parallel with the other cluster tests: the objects in `mlmodel-system` are
//! applied idempotently (server-side apply), each controller watches only its own test
//! namespace, and kwok only fakes the operator's pod (no second operator runs in the cluster).
//! Needs the tools of `hack/build-tools.sh` (kubectl, helm) and the cluster: `make test`.
use crate::common;

use crate::common::flow::{ensure_crd, sample_model};
use crate::deploy_support::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};
use mlmodel_operator::api::{MLModel, Phase};
use mlmodel_operator::conditions::ConditionType;
use mlmodel_operator::controller;
use mlmodel_operator::metrics::Metrics;
use mlmodel_operator::plugins::{Runtime, RuntimeOptions};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const SYSTEM_NS: &str = "mlmodel-system";
const SA_USER: &str = "system:serviceaccount:mlmodel-system:mlmodel-operator";

fn sa_groups(ns: &str) -> Vec<String> {
    vec![
        "system:serviceaccounts".into(),
        format!("system:serviceaccounts:{ns}"),
        "system:authenticated".into(),
    ]
}

fn kubeconfig() -> PathBuf {
    common::kubeconfig_path()
}

/// `kubectl apply --server-side ARGS...` for real; returns stdout.
fn apply(args: &[&str]) -> String {
    run_ok(
        kubectl(&kubeconfig())
            .args(["apply", "--server-side"])
            .args(args),
    )
}

/// `kubectl apply --server-side --dry-run=server ARGS...` (conflicts forced: the CRD is also
/// applied by the tests' own field manager); asserts every object was accepted and that no
/// PodSecurity warning came back. Returns the number of objects.
fn dry_run(args: &[&str], stdin: Option<&str>, expected: usize) {
    let mut cmd = kubectl(&kubeconfig());
    cmd.args([
        "apply",
        "--server-side",
        "--dry-run=server",
        "--force-conflicts",
    ])
    .args(args);
    let out = run(&mut cmd, stdin);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "dry run of {args:?} refused:\n{stderr}\n{stdout}"
    );
    let accepted = stdout
        .lines()
        .filter(|l| l.ends_with("serverside-applied (server dry run)"))
        .count();
    assert_eq!(accepted, expected, "{args:?}:\n{stdout}\n{stderr}");
    assert!(
        !stderr.contains("would violate PodSecurity"),
        "{args:?}: {stderr}"
    );
}

/// The operator's namespace, ServiceAccount and rights, applied for real (idempotent).
fn apply_operator_identity() {
    apply(&["-f", "deploy/operator/namespace.yaml"]);
    apply(&["-k", "deploy/rbac"]);
}

/// Whether the client's identity may do `verb` on `resource` (SelfSubjectAccessReview).
async fn allowed(
    client: &Client,
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
) -> bool {
    let (resource, subresource) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(s.to_string())),
        None => (resource, None),
    };
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                subresource,
                namespace: namespace.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let reply = api
        .create(&PostParams::default(), &review)
        .await
        .expect("SelfSubjectAccessReview");
    reply.status.expect("review status").allowed
}

/// Every (verb, group, resource) the rules grant.
fn granted(rules: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for rule in rules.as_array().expect("rules") {
        for group in rule["apiGroups"].as_array().unwrap() {
            for resource in rule["resources"].as_array().unwrap() {
                for verb in rule["verbs"].as_array().unwrap() {
                    out.push((
                        verb.as_str().unwrap().to_string(),
                        group.as_str().unwrap().to_string(),
                        resource.as_str().unwrap().to_string(),
                    ));
                }
            }
        }
    }
    out
}

/// Requests the operator never makes: each must be refused to its identity in `ns`.
const REFUSED: &[(&str, &str, &str)] = &[
    ("get", "", "secrets"),
    ("list", "", "secrets"),
    ("create", "", "secrets"),
    ("create", "mlmodel.dev", "mlmodels"),
    ("update", "mlmodel.dev", "mlmodels"),
    ("patch", "mlmodel.dev", "mlmodels"),
    ("delete", "mlmodel.dev", "mlmodels"),
    ("update", "mlmodel.dev", "mlmodels/status"),
    ("update", "", "pods"),
    ("create", "", "pods/exec"),
    ("create", "", "serviceaccounts"),
    ("update", "apps", "deployments"),
    ("create", "apps", "daemonsets"),
    ("update", "batch", "jobs"),
    ("create", "batch", "cronjobs"),
    ("create", "rbac.authorization.k8s.io", "roles"),
    ("create", "rbac.authorization.k8s.io", "rolebindings"),
    ("create", "coordination.k8s.io", "leases"),
    ("update", "coordination.k8s.io", "leases"),
    ("delete", "events.k8s.io", "events"),
    ("create", "", "events"),
];

/// The in-process controller as `client`, watching only `ns`; aborted on drop.
struct Controller(tokio::task::JoinHandle<()>);

impl Controller {
    fn start(client: Client, ns: &str) -> Self {
        let opts = RuntimeOptions {
            cache_dir: Some(std::env::temp_dir().join("mlmodel-test-wasm-cache")),
            ..RuntimeOptions::default()
        };
        let runtime = Runtime::new(opts).expect("plugin runtime");
        let ns = ns.to_string();
        Controller(tokio::spawn(async move {
            if let Err(e) = controller::run::run_controllers(
                client,
                runtime,
                mlmodel_operator::selection::Selection::default(),
                vec![ns],
                Arc::new(Metrics::new()),
                controller::run::DEFAULT_MAX_CONCURRENT_RECONCILES,
            )
            .await
            {
                panic!("controller stopped: {e:#}");
            }
        }))
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Creates the echo sample in `ns` (as admin) and waits until it is Ready; checks that the
/// operator's events were recorded (it needs its own right to do that).
async fn echo_sample_gets_ready(admin: &Client, ns: &str) {
    let mut model = sample_model("echo-model.yaml");
    model.metadata.namespace = Some(ns.to_string());
    let models: Api<MLModel> = Api::namespaced(admin.clone(), ns);
    models
        .create(&PostParams::default(), &model)
        .await
        .expect("create the echo sample");
    let name = model.name_any();
    let m = common::wait_for_object(
        &models,
        &name,
        "the echo sample to be Ready",
        Duration::from_secs(180),
        |m| {
            m.status.as_ref().is_some_and(|s| {
                s.phase == Some(Phase::Ready) && s.observed_generation == m.metadata.generation
            })
        },
    )
    .await;
    let ready = m
        .status
        .unwrap()
        .condition(ConditionType::Ready)
        .cloned()
        .unwrap();
    assert_eq!(ready.status, "True");
    let events: Api<Event> = Api::namespaced(admin.clone(), ns);
    common::wait_until(
        "the operator's Ready event",
        Duration::from_secs(30),
        || async {
            let lp = ListParams::default().fields(&format!("involvedObject.name={name}"));
            let list = events.list(&lp).await.ok()?;
            list.items
                .iter()
                .any(|e| e.reason.as_deref() == Some("Ready"))
                .then_some(())
        },
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Rendering: kustomize, install.yaml, Helm.

#[test]
#[ignore = "needs the local cluster: make test"]
fn install_yaml_is_the_kustomize_build_of_deploy() {
    let fresh = format!("{INSTALL_HEADER}{}", kustomize("deploy/"));
    assert!(
        read("deploy/install.yaml") == fresh,
        "deploy/install.yaml is stale: run `make manifests`"
    );
    let d = docs(&fresh);
    let kinds = kinds(&d);
    for k in [
        "CustomResourceDefinition/mlmodels.mlmodel.dev",
        "Namespace/mlmodel-system",
        "ServiceAccount/mlmodel-system/mlmodel-operator",
        "ClusterRole/mlmodel-operator",
        "ClusterRoleBinding/mlmodel-operator",
        "Role/mlmodel-system/mlmodel-operator-leader-election",
        "RoleBinding/mlmodel-system/mlmodel-operator-leader-election",
        "ConfigMap/mlmodel-system/mlmodel-operator-plugins",
        "ConfigMap/mlmodel-system/mlmodel-operator-plugin-refs",
        "Deployment/mlmodel-system/mlmodel-operator",
        "ValidatingAdmissionPolicy/mlmodel-author-rights",
        "ValidatingAdmissionPolicyBinding/mlmodel-author-rights",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing from {kinds:?}");
    }
    assert_eq!(kinds.len(), 12, "{kinds:?}");
    assert!(
        !kinds.iter().any(|k| k.starts_with("MLModel/")),
        "no samples"
    );
}

#[test]
#[ignore = "needs the local cluster: make test"]
fn namespaced_variant_has_roles_only_and_the_namespace_arg() {
    let d = docs(&kustomize("deploy/namespaced/"));
    let kinds = kinds(&d);
    assert!(
        !kinds.iter().any(|k| k.starts_with("ClusterRole")),
        "{kinds:?}"
    );
    let role = find(&d, "Role", "mlmodel-operator");
    assert_eq!(role["metadata"]["namespace"], "default");
    assert_eq!(role["rules"], cluster_role_rules());
    let binding = find(&d, "RoleBinding", "mlmodel-operator");
    assert_eq!(binding["metadata"]["namespace"], "default");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "mlmodel-operator", "namespace": SYSTEM_NS}])
    );
    let args = operator_args(find(&d, "Deployment", "mlmodel-operator"));
    assert_eq!(args.last().map(String::as_str), Some("--namespace=default"));
    assert!(args.contains(&"--leader-elect".to_string()), "{args:?}");
}

fn helm_template(values: Option<&Value>, extra: &[&str]) -> Vec<Value> {
    let mut cmd = helm();
    cmd.args([
        "template",
        "rel",
        "deploy/helm/mlmodel-operator",
        "--namespace",
        "ops",
    ])
    .args(extra);
    let file;
    if let Some(v) = values {
        file = std::env::temp_dir().join(common::unique_name("helm-values") + ".yaml");
        std::fs::write(&file, serde_yaml::to_string(v).unwrap()).unwrap();
        cmd.arg("--values").arg(&file);
    }
    docs(&run_ok(&mut cmd))
}

#[test]
#[ignore = "needs the local cluster: make test"]
fn helm_chart_lints_and_renders_the_defaults() {
    run_ok(helm().args(["lint", "--strict", "deploy/helm/mlmodel-operator"]));
    let d = helm_template(None, &[]);
    let mut kinds = kinds(&d);
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole/rel-mlmodel-operator",
            "ClusterRoleBinding/rel-mlmodel-operator",
            "Deployment/ops/rel-mlmodel-operator",
            "Role/ops/rel-mlmodel-operator-leader-election",
            "RoleBinding/ops/rel-mlmodel-operator-leader-election",
            "Service/ops/rel-mlmodel-operator-metrics",
            "ServiceAccount/ops/rel-mlmodel-operator",
            "ValidatingAdmissionPolicy/mlmodel-author-rights",
            "ValidatingAdmissionPolicyBinding/mlmodel-author-rights",
        ]
    );
    assert_eq!(
        find(&d, "ClusterRole", "rel-mlmodel-operator")["rules"],
        cluster_role_rules()
    );
    let leader = docs(&read("deploy/rbac/leader_election_role.yaml"));
    assert_eq!(
        find(&d, "Role", "rel-mlmodel-operator-leader-election")["rules"],
        leader[0]["rules"]
    );
    let subjects = &find(&d, "ClusterRoleBinding", "rel-mlmodel-operator")["subjects"];
    assert_eq!(
        subjects,
        &json!([{"kind": "ServiceAccount", "name": "rel-mlmodel-operator", "namespace": "ops"}])
    );

    // The Deployment as in deploy/ (args, env, probes, security), with the chart's names.
    let deploy = find(&d, "Deployment", "rel-mlmodel-operator");
    assert_eq!(deploy["spec"]["replicas"], 1);
    assert_eq!(
        operator_args(deploy),
        [
            "run",
            "--leader-elect",
            "--leader-election-id=mlmodel-operator",
            "--metrics-bind-address=0.0.0.0:8080",
            "--log-format=json",
            "--log-level=info",
        ]
    );
    let reference = docs(&read("deploy/operator/deployment.yaml"));
    let reference = find(&reference, "Deployment", "mlmodel-operator");
    let (c, r) = (operator_container(deploy), operator_container(reference));
    for field in [
        "image",
        "securityContext",
        "resources",
        "ports",
        "livenessProbe",
        "readinessProbe",
    ] {
        assert_eq!(c[field], r[field], "container {field}");
    }
    assert_eq!(
        deploy["spec"]["template"]["spec"]["securityContext"],
        reference["spec"]["template"]["spec"]["securityContext"]
    );
    assert_eq!(
        env_value(deploy, "MLMODEL_OPERATOR_IMAGE")["value"],
        c["image"]
    );
    for var in ["POD_NAME", "POD_NAMESPACE", "MLMODEL_PLUGIN_CACHE"] {
        assert_eq!(env_value(deploy, var), env_value(reference, var), "{var}");
    }
    let service = find(&d, "Service", "rel-mlmodel-operator-metrics");
    assert_eq!(
        service["spec"]["ports"][0]["targetPort"], "metrics",
        "{service}"
    );
    assert_eq!(
        service["spec"]["selector"],
        deploy["spec"]["selector"]["matchLabels"]
    );

    // The CRD comes with the chart (crds/), rendered only on request.
    let with_crds = helm_template(None, &["--include-crds"]);
    find(
        &with_crds,
        "CustomResourceDefinition",
        "mlmodels.mlmodel.dev",
    );
}

#[test]
#[ignore = "needs the local cluster: make test"]
fn helm_values_change_the_rendered_manifests() {
    let values = json!({
        "image": {"repository": "registry.example/mlmodel-operator", "tag": "v9.9.9", "pullPolicy": "Always"},
        "replicas": 3,
        "leaderElection": {"enabled": false},
        "watchNamespaces": ["team-a", "team-b"],
        "plugins": {
            "configMaps": ["triton-plugin", "more-plugins"],
            "create": {"mine.wasm": "AGFzbQ=="},
        },
        "defaultPlugins": {"download": "dl", "serve": "triton", "expose": "ingress"},
        "pluginAllow": ["triton:image=nvcr.io/nvidia/tritonserver,toleration=nvidia.com/gpu"],
        "storageMode": "PerPod",
        "metrics": {"enabled": false, "port": 9090},
        "logFormat": "text",
        "logLevel": "debug",
        "resources": {"requests": {"cpu": "250m", "memory": "300Mi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
        "nodeSelector": {"pool": "system"},
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
    });
    let d = helm_template(Some(&values), &[]);
    let kinds = kinds(&d);
    // Namespaced mode: a Role and RoleBinding in each watched namespace, nothing cluster-wide;
    // no leader election rights; no metrics Service.
    assert!(
        !kinds.iter().any(|k| k.starts_with("ClusterRole")),
        "{kinds:?}"
    );
    for ns in ["team-a", "team-b"] {
        let role = d
            .iter()
            .find(|x| x["kind"] == "Role" && x["metadata"]["namespace"] == ns)
            .unwrap_or_else(|| panic!("no Role in {ns}: {kinds:?}"));
        assert_eq!(role["rules"], cluster_role_rules());
        let binding = d
            .iter()
            .find(|x| x["kind"] == "RoleBinding" && x["metadata"]["namespace"] == ns)
            .unwrap_or_else(|| panic!("no RoleBinding in {ns}"));
        assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
        assert_eq!(binding["subjects"][0]["namespace"], "ops");
    }
    assert!(
        !kinds.iter().any(|k| k.contains("leader-election")),
        "{kinds:?}"
    );
    assert!(
        !kinds.iter().any(|k| k.starts_with("Service/")),
        "{kinds:?}"
    );

    let deploy = find(&d, "Deployment", "rel-mlmodel-operator");
    assert_eq!(deploy["spec"]["replicas"], 3);
    let args = operator_args(deploy);
    assert_eq!(
        args,
        [
            "run",
            "--namespace=team-a,team-b",
            "--plugin-dir=/plugins/triton-plugin",
            "--plugin-dir=/plugins/more-plugins",
            "--plugin-dir=/plugins/rel-mlmodel-operator-plugins",
            "--default-download-plugin=dl",
            "--default-serve-plugin=triton",
            "--default-expose-plugin=ingress",
            "--plugin-allow=triton:image=nvcr.io/nvidia/tritonserver,toleration=nvidia.com/gpu",
            "--storage-mode=PerPod",
            "--metrics-bind-address=0.0.0.0:9090",
            "--log-format=text",
            "--log-level=debug",
        ]
    );
    let c = operator_container(deploy);
    assert_eq!(c["image"], "registry.example/mlmodel-operator:v9.9.9");
    assert_eq!(c["imagePullPolicy"], "Always");
    assert_eq!(
        env_value(deploy, "MLMODEL_OPERATOR_IMAGE")["value"],
        c["image"]
    );
    assert_eq!(c["resources"], values["resources"]);
    assert_eq!(c["ports"][0]["containerPort"], 9090);

    // Each plugin ConfigMap is a volume mounted where its --plugin-dir points.
    let pod = &deploy["spec"]["template"]["spec"];
    for (cm, dir) in [
        ("triton-plugin", "/plugins/triton-plugin"),
        ("more-plugins", "/plugins/more-plugins"),
        (
            "rel-mlmodel-operator-plugins",
            "/plugins/rel-mlmodel-operator-plugins",
        ),
    ] {
        let volume = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["configMap"]["name"] == cm)
            .unwrap_or_else(|| panic!("no volume of ConfigMap {cm}"));
        let mount = c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == volume["name"])
            .unwrap_or_else(|| panic!("volume of {cm} not mounted"));
        assert_eq!(mount["mountPath"], dir);
        assert_eq!(mount["readOnly"], true);
    }
    let created = find(&d, "ConfigMap", "rel-mlmodel-operator-plugins");
    assert_eq!(created["binaryData"], json!({"mine.wasm": "AGFzbQ=="}));
    assert_eq!(pod["nodeSelector"], values["nodeSelector"]);
    assert_eq!(pod["tolerations"], values["tolerations"]);

    // A plugins.create key that is not a .wasm file is refused.
    let out = run(
        helm().args([
            "template",
            "rel",
            "deploy/helm/mlmodel-operator",
            "--set",
            "plugins.create.notes\\.txt=AA==",
        ]),
        None,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a .wasm file name"));
}

// ---------------------------------------------------------------------------------------------
// On the cluster.

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn manifests_pass_a_server_side_dry_run() {
    let admin = common::client().await;
    ensure_crd(&admin).await;
    // A dry run persists nothing, so the namespaced objects need their namespace to exist.
    apply(&["-f", "deploy/operator/namespace.yaml"]);
    let count = docs(&kustomize("deploy/")).len();
    dry_run(&["-k", "deploy/"], None, count);
    dry_run(&["-f", "deploy/install.yaml"], None, count);
    let count = docs(&kustomize("deploy/namespaced/")).len();
    dry_run(&["-k", "deploy/namespaced/"], None, count);

    // The chart, cluster-wide and namespaced (in a namespace of the test's own).
    let ns = common::TestNamespace::new(&admin, "helm-dry").await;
    for extra in [
        vec![],
        vec![
            "--set".to_string(),
            format!("watchNamespaces={{{}}}", ns.name()),
        ],
    ] {
        let mut cmd = helm();
        cmd.args([
            "template",
            "helm-dry",
            "deploy/helm/mlmodel-operator",
            "--namespace",
            SYSTEM_NS,
            "--include-crds",
            "--set",
            "plugins.create.x\\.wasm=AGFzbQ==",
        ])
        .args(&extra);
        let rendered = run_ok(&mut cmd);
        let count = docs(&rendered).len();
        dry_run(&["-f", "-"], Some(&rendered), count);
    }
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn samples_kustomization_creates_every_model() {
    let admin = common::client().await;
    ensure_crd(&admin).await;
    let ns = common::TestNamespace::new(&admin, "samples").await;
    run_ok(kubectl(&kubeconfig()).args(["apply", "-k", "deploy/samples/", "-n", ns.name()]));
    let models: Api<MLModel> = Api::namespaced(admin.clone(), ns.name());
    let names: BTreeSet<String> = models
        .list(&ListParams::default())
        .await
        .expect("list models")
        .items
        .iter()
        .map(|m| m.name_any())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "echo-model".to_string(),
            "resnet".to_string(),
            "sklearn-iris".to_string()
        ])
    );
    run_ok(kubectl(&kubeconfig()).args([
        "delete",
        "-k",
        "deploy/samples/",
        "-n",
        ns.name(),
        "--wait=true",
    ]));
    assert!(
        models
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn operator_pod_is_admitted_under_the_restricted_standard() {
    let admin = common::client().await;
    ensure_crd(&admin).await;
    apply_operator_identity();
    let out = run(
        kubectl(&kubeconfig()).args(["apply", "--server-side", "-k", "deploy/operator"]),
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("would violate PodSecurity"), "{stderr}");

    // The pod template as a pod, and the same pod made to run as root: PodSecurity admits the
    // first and refuses the second (the namespace enforces `restricted`).
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), SYSTEM_NS);
    let deploy = deployments
        .get("mlmodel-operator")
        .await
        .expect("deployment");
    let template = deploy.spec.clone().unwrap().template;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), SYSTEM_NS);
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let mut pod = Pod {
        metadata: template.metadata.clone().unwrap_or_default(),
        spec: template.spec.clone(),
        ..Default::default()
    };
    pod.metadata.name = Some("mlmodel-operator-admission-check".into());
    pods.create(&dry, &pod)
        .await
        .expect("the operator's pod is admitted in mlmodel-system");
    let mut root = pod.clone();
    let sc = root.spec.as_mut().unwrap().containers[0]
        .security_context
        .as_mut()
        .unwrap();
    sc.run_as_non_root = Some(false);
    sc.run_as_user = Some(0);
    match pods.create(&dry, &root).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403, "{s:?}");
            assert!(s.message.contains("violates PodSecurity"), "{}", s.message);
        }
        other => panic!("a root pod was not refused: {other:?}"),
    }

    // A new rollout: its pod is created through the ReplicaSet and becomes Ready (kwok fakes
    // the container; nothing really runs).
    run_ok(kubectl(&kubeconfig()).args([
        "-n",
        SYSTEM_NS,
        "rollout",
        "restart",
        "deployment/mlmodel-operator",
    ]));
    let out = run(
        kubectl(&kubeconfig()).args([
            "-n",
            SYSTEM_NS,
            "rollout",
            "status",
            "deployment/mlmodel-operator",
            "--timeout=120s",
        ]),
        None,
    );
    if !out.status.success() {
        let rs = run(
            kubectl(&kubeconfig()).args(["-n", SYSTEM_NS, "describe", "replicasets"]),
            None,
        );
        panic!(
            "the operator's rollout did not complete: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&rs.stdout)
        );
    }
    let lp = ListParams::default().labels("app.kubernetes.io/name=mlmodel-operator");
    let ready: Vec<Pod> = pods
        .list(&lp)
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .collect();
    assert!(!ready.is_empty(), "no Ready operator pod");
    let spec = ready[0].spec.as_ref().unwrap();
    assert_eq!(
        spec.service_account_name.as_deref(),
        Some("mlmodel-operator")
    );
    let c = &spec.containers[0];
    assert_eq!(
        c.security_context
            .as_ref()
            .unwrap()
            .read_only_root_filesystem,
        Some(true)
    );
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn operator_rbac_is_enough_for_the_flow_and_refuses_the_rest() {
    let admin = common::client().await;
    ensure_crd(&admin).await;
    apply_operator_identity();
    let ns = common::TestNamespace::with_labels(&admin, "rbac", common::RESTRICTED).await;
    let groups = sa_groups(SYSTEM_NS);
    let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
    let sa = common::client_as(SA_USER, &groups).await;
    // The binding is in effect once the authorizer's cache has it.
    common::wait_until(
        "the operator's ClusterRoleBinding to take effect",
        Duration::from_secs(30),
        || async {
            allowed(&sa, "watch", "mlmodel.dev", "mlmodels", None)
                .await
                .then_some(())
        },
    )
    .await;

    // Every granted verb, in the test's namespace; the leader-election verbs in mlmodel-system.
    for (verb, group, resource) in granted(&cluster_role_rules()) {
        assert!(
            allowed(&sa, &verb, &group, &resource, Some(ns.name())).await,
            "{verb} {group}/{resource} not allowed"
        );
    }
    let leader = docs(&read("deploy/rbac/leader_election_role.yaml"));
    for (verb, group, resource) in granted(&leader[0]["rules"]) {
        assert!(
            allowed(&sa, &verb, &group, &resource, Some(SYSTEM_NS)).await,
            "{verb} {group}/{resource} in {SYSTEM_NS}"
        );
        assert!(
            !allowed(&sa, &verb, &group, &resource, Some(ns.name())).await,
            "{verb} {group}/{resource} allowed outside {SYSTEM_NS}"
        );
    }
    for verb in ["update", "delete", "list", "watch"] {
        assert!(
            !allowed(&sa, verb, "coordination.k8s.io", "leases", Some(SYSTEM_NS)).await,
            "{verb} leases in {SYSTEM_NS}: the leader-election Role is too broad"
        );
    }
    for (verb, group, resource) in REFUSED {
        assert!(
            !allowed(&sa, verb, group, resource, Some(ns.name())).await,
            "the operator may {verb} {group}/{resource}: RBAC is too broad"
        );
    }
    for (verb, group, resource) in [
        ("create", "rbac.authorization.k8s.io", "clusterroles"),
        ("create", "", "namespaces"),
        (
            "delete",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
        ),
        ("update", "coordination.k8s.io", "leases"),
    ] {
        assert!(
            !allowed(&sa, verb, group, resource, Some("kube-system")).await,
            "{verb} {group}/{resource}"
        );
    }
    // And a real request.
    let secrets: Api<Secret> = Api::namespaced(sa.clone(), ns.name());
    match secrets
        .create(
            &PostParams::default(),
            &Secret {
                metadata: kube::api::ObjectMeta {
                    name: Some("stolen".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
    {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
        other => panic!("the operator's identity created a Secret: {other:?}"),
    }

    // The whole flow, with the controller acting as the operator's ServiceAccount.
    let _controller = Controller::start(sa.clone(), ns.name());
    echo_sample_gets_ready(&admin, ns.name()).await;
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn namespaced_role_is_enough_for_the_flow() {
    let admin = common::client().await;
    ensure_crd(&admin).await;
    let ns = common::TestNamespace::with_labels(&admin, "rbac-ns", common::RESTRICTED).await;
    // The variant's Role and RoleBinding, moved to the test's namespace and bound to an identity
    // of the test's own (the cluster-wide binding of the operator's ServiceAccount, applied by
    // other tests, must not help here).
    let d = docs(&kustomize("deploy/namespaced/"));
    let sa_name = "mlmodel-operator";
    let user = format!("system:serviceaccount:{}:{sa_name}", ns.name());
    let mut role = find(&d, "Role", "mlmodel-operator").clone();
    let mut binding = find(&d, "RoleBinding", "mlmodel-operator").clone();
    role["metadata"]["namespace"] = json!(ns.name());
    binding["metadata"]["namespace"] = json!(ns.name());
    binding["subjects"] =
        json!([{"kind": "ServiceAccount", "name": sa_name, "namespace": ns.name()}]);
    let manifests = format!(
        "{}---\n{}",
        serde_yaml::to_string(&role).unwrap(),
        serde_yaml::to_string(&binding).unwrap()
    );
    run_ok_with(
        kubectl(&kubeconfig()).args(["apply", "--server-side", "-f", "-"]),
        Some(&manifests),
    );

    let groups = sa_groups(ns.name());
    let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
    let client = common::client_as(&user, &groups).await;
    common::wait_until(
        "the Role to take effect",
        Duration::from_secs(30),
        || async {
            allowed(&client, "watch", "mlmodel.dev", "mlmodels", Some(ns.name()))
                .await
                .then_some(())
        },
    )
    .await;
    assert!(!allowed(&client, "list", "mlmodel.dev", "mlmodels", None).await);
    assert!(!allowed(&client, "list", "mlmodel.dev", "mlmodels", Some("default")).await);

    let _controller = Controller::start(client, ns.name());
    echo_sample_gets_ready(&admin, ns.name()).await;
}

// ---------------------------------------------------------------------------------------------
// The real binary with the Deployment's flags, as the operator's ServiceAccount.

/// A child process killed on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A GET on loopback with HTTP/1.0; returns (status code, body).
async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|x| x.1.to_string())?;
    Some((code, body))
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn operator_binary_with_leader_election_runs_as_its_service_account() {
    let admin = common::client().await;
    ensure_crd(&admin).await;
    apply_operator_identity();
    let ns = common::TestNamespace::with_labels(&admin, "binary", common::RESTRICTED).await;

    // A kubeconfig that impersonates the operator's ServiceAccount.
    let dir = std::env::temp_dir().join(common::unique_name("mlmodel-binary"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut kc: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(kubeconfig()).unwrap()).unwrap();
    for user in kc["users"].as_sequence_mut().expect("users") {
        user["user"]["as"] = SA_USER.into();
        user["user"]["as-groups"] = serde_yaml::to_value(sa_groups(SYSTEM_NS)).unwrap();
    }
    let kc_path = dir.join("kubeconfig");
    std::fs::write(&kc_path, serde_yaml::to_string(&kc).unwrap()).unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let lease_id = common::unique_name("mlmodel-operator-test");
    let log = dir.join("operator.log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_mlmodel-operator"))
        .args([
            "run",
            "--leader-elect",
            &format!("--leader-election-id={lease_id}"),
            // Short, so that the test sees renewals (the default is 15 s).
            "--lease-duration-seconds=3",
            &format!("--namespace={}", ns.name()),
            &format!("--metrics-bind-address=127.0.0.1:{port}"),
            "--log-format=json",
        ])
        .env("KUBECONFIG", &kc_path)
        .env("POD_NAME", "operator-test-pod")
        .env("POD_NAMESPACE", SYSTEM_NS)
        .env("MLMODEL_PLUGIN_CACHE", dir.join("cache"))
        .env_remove("MLMODEL_NAMESPACES")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.join("operator.err")).unwrap())
        .spawn()
        .expect("start the operator binary");
    let mut child = Child(child);
    let logs = || {
        format!(
            "{}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default(),
            std::fs::read_to_string(dir.join("operator.err")).unwrap_or_default()
        )
    };

    let leases: Api<Lease> = Api::namespaced(admin.clone(), SYSTEM_NS);
    let start = std::time::Instant::now();
    let lease = loop {
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("the operator exited ({status}):\n{}", logs());
        }
        if let Ok(Some(l)) = leases.get_opt(&lease_id).await
            && l.spec
                .as_ref()
                .and_then(|s| s.holder_identity.as_ref())
                .is_some()
        {
            break l;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the operator took no Lease {lease_id} in 60 s:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let spec = lease.spec.unwrap();
    let holder = spec.holder_identity.unwrap();
    assert!(holder.contains("operator-test-pod"), "holder {holder}");

    echo_sample_gets_ready(&admin, ns.name()).await;
    let (code, _) = http_get(port, "/healthz").await.expect("/healthz");
    assert_eq!(code, 200);
    let (code, _) = http_get(port, "/readyz").await.expect("/readyz");
    assert_eq!(code, 200);
    let (code, metrics) = http_get(port, "/metrics").await.expect("/metrics");
    assert_eq!(code, 200);
    assert!(metrics.contains("# TYPE"), "{metrics}");

    // The leader renews its Lease (the Role's patch) ...
    let renewed = spec.renew_time.expect("renewTime").0;
    let lease = common::wait_for_object(
        &leases,
        &lease_id,
        "a renewal of the Lease",
        Duration::from_secs(20),
        |l| {
            l.spec
                .as_ref()
                .and_then(|s| s.renew_time.as_ref())
                .is_some_and(|t| t.0 > renewed)
        },
    )
    .await;
    assert_eq!(lease.spec.unwrap().holder_identity, Some(holder));
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "the operator exited:\n{}",
        logs()
    );
    // ... and hands it over when terminated, as on a rolling update.
    // SAFETY: a plain kill(2) of the child this test started.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    common::wait_for_object(
        &leases,
        &lease_id,
        "the Lease to be released on SIGTERM",
        Duration::from_secs(20),
        |l| l.spec.as_ref().is_some_and(|s| s.holder_identity.is_none()),
    )
    .await;
    drop(child);
    let _ = leases.delete(&lease_id, &DeleteParams::default()).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Creates `model` as `client`; `Err` with the API server's message when refused.
async fn create_as(client: &Client, ns: &str, model: &MLModel) -> Result<(), String> {
    create_with(client, ns, model, false).await
}

/// A server-side dry run of the create: admission runs (policies included), nothing is stored.
async fn create_with(
    client: &Client,
    ns: &str,
    model: &MLModel,
    dry_run: bool,
) -> Result<(), String> {
    let api: Api<MLModel> = Api::namespaced(client.clone(), ns);
    let pp = PostParams {
        dry_run,
        ..Default::default()
    };
    match api.create(&pp, model).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) => Err(format!("{} {}", s.code, s.message)),
        Err(e) => panic!("create: {e}"),
    }
}

/// A Role for `user` in `ns` with `rules`, replacing the previous one.
async fn grant(admin: &Client, ns: &str, user: &str, rules: Value) {
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    use kube::api::{Patch, PatchParams};
    let pp = PatchParams::apply("mlmodel-tests").force();
    let role: Role = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "model-author"}, "rules": rules,
    }))
    .unwrap();
    Api::<Role>::namespaced(admin.clone(), ns)
        .patch("model-author", &pp, &Patch::Apply(&role))
        .await
        .expect("apply the Role");
    let binding: RoleBinding = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "model-author"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "model-author"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), ns)
        .patch("model-author", &pp, &Patch::Apply(&binding))
        .await
        .expect("apply the RoleBinding");
}

/// The admission policy of deploy/admission: a user who may create MLModels but not pods, or not
/// read the Secret a model names, is refused at `kubectl apply`; granted those rights, accepted.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn model_authors_get_no_more_than_their_own_rights() {
    let admin = common::client().await;
    ensure_crd(&admin).await;
    apply(&["-k", "deploy/admission"]);
    let ns = common::TestNamespace::new(&admin, "author-rights").await;
    let user = common::unique_name("alice");
    let author = common::client_as(&user, &[]).await;
    let models_only = json!([{"apiGroups": ["mlmodel.dev"], "resources": ["mlmodels"],
        "verbs": ["create", "get", "list", "update", "patch"]}]);
    grant(&admin, ns.name(), &user, models_only.clone()).await;

    let mut model = sample_model("echo-model.yaml");
    model.metadata.namespace = Some(ns.name().into());
    // A new policy takes a moment to reach the apiserver's admission chain: wait with dry runs,
    // which pass through admission but store nothing.
    let refused = common::wait_until(
        "the admission policy to refuse a model author without pod rights",
        Duration::from_secs(30),
        // Only the policy's refusal: another error (the CRD being applied by a test beside this
        // one) says nothing about the policy, and the real create could still pass.
        || async {
            create_with(&author, ns.name(), &model, true)
                .await
                .err()
                .filter(|e| e.contains("may not create pods in namespace"))
        },
    )
    .await;
    assert_eq!(
        create_as(&author, ns.name(), &model).await.unwrap_err(),
        refused,
        "the real create is refused the same way"
    );
    assert!(
        refused.starts_with("403") && refused.contains("may not create pods in namespace"),
        "{refused}"
    );

    let mut rules = models_only.as_array().unwrap().clone();
    rules.push(json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]}));
    grant(&admin, ns.name(), &user, json!(rules)).await;
    common::wait_until(
        "the author with pod rights to be admitted",
        Duration::from_secs(30),
        || async { create_as(&author, ns.name(), &model).await.ok() },
    )
    .await;

    let mut with_secret = model.clone();
    with_secret.metadata.name = Some("with-secret".into());
    with_secret.spec.credentials_secret_ref = Some(mlmodel_operator::api::SecretRef {
        name: "db-credentials".into(),
    });
    let refused = create_as(&author, ns.name(), &with_secret)
        .await
        .unwrap_err();
    assert!(
        refused.contains("may not get the Secret db-credentials"),
        "{refused}"
    );
    rules.push(json!({"apiGroups": [""], "resources": ["secrets"],
        "resourceNames": ["db-credentials"], "verbs": ["get"]}));
    grant(&admin, ns.name(), &user, json!(rules)).await;
    common::wait_until(
        "the author with the Secret's get to be admitted",
        Duration::from_secs(30),
        || async { create_as(&author, ns.name(), &with_secret).await.ok() },
    )
    .await;
}
