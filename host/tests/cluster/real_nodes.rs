//! The local cluster's two real nodes (hack/node.sh; the second in a network namespace of its
//! own, with its own containerd, kubelet, cgroup root and kube-proxy): pods run on each, reach
//! each other and a Service's endpoints on both, from this machine and from each node.
use crate::common::{self, TestNamespace};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::{Api, ListParams, LogParams, PostParams};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

/// The real nodes: (the first, the second), by the second node's own taint.
async fn real_nodes(client: &kube::Client) -> (Node, Node) {
    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes
        .list(&ListParams::default().labels("mlmodel.dev/real-node=true"))
        .await
        .unwrap()
        .items;
    assert_eq!(list.len(), 2, "two real nodes (hack/cluster.sh up)");
    let second = |n: &Node| {
        n.spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .is_some_and(|t| t.iter().any(|t| t.key == "mlmodel.dev/second-node"))
    };
    let (mut seconds, mut firsts): (Vec<Node>, Vec<Node>) = list.into_iter().partition(second);
    assert_eq!((firsts.len(), seconds.len()), (1, 1));
    (firsts.remove(0), seconds.remove(0))
}

fn hostname(node: &Node) -> String {
    node.metadata.name.clone().unwrap()
}

/// A pod on `node` running `script` in busybox (tolerating both real nodes' taints).
fn busybox_pod(name: &str, node: &str, labels: serde_json::Value, script: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": {"kubernetes.io/hostname": node},
            "tolerations": [
                {"key": "mlmodel.dev/real-node", "operator": "Exists", "effect": "NoSchedule"},
                {"key": "mlmodel.dev/second-node", "operator": "Exists", "effect": "NoSchedule"}
            ],
            "containers": [{
                "name": "main", "image": "localhost:23500/library/busybox:1.35",
                "command": ["/bin/busybox", "sh", "-c", script]
            }]
        }
    }))
    .unwrap()
}

async fn running_ip(pods: &Api<Pod>, name: &str) -> String {
    let pod = common::wait_for_object(
        pods,
        name,
        "the pod Running",
        Duration::from_secs(90),
        |p| {
            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                && p.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_some()
        },
    )
    .await;
    pod.status.unwrap().pod_ip.unwrap()
}

/// A client script: `GET /` of each `target:port`, 12 times; the answers, one a line, each after its target.
fn fetch_script(targets: &[(String, u16)]) -> String {
    let mut script = String::new();
    for (ip, port) in targets {
        script.push_str(&format!(
            "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 3 {ip} {port} | tail -n 1 | sed 's/^/{ip}:{port} /'; done; "
        ));
    }
    script
}

/// Answers seen per target, from a finished client pod's log.
fn answers(log: &str) -> BTreeMap<String, BTreeMap<String, usize>> {
    let mut seen: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for line in log.lines() {
        if let Some((target, answer)) = line.split_once(' ') {
            *seen
                .entry(target.to_string())
                .or_default()
                .entry(answer.trim().to_string())
                .or_default() += 1;
        }
    }
    seen
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn pods_on_two_real_nodes_reach_each_other_and_a_service_over_both() {
    let _one_at_a_time = SECOND_NODE.lock().await;
    let client = common::client().await;
    let (first, second) = real_nodes(&client).await;
    let (n1, n2) = (hostname(&first), hostname(&second));
    let ip_of = |n: &Node| {
        n.status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
            .map(|a| a.address.clone())
            .unwrap()
    };
    assert_ne!(ip_of(&first), ip_of(&second), "each node its own address");

    let ns = TestNamespace::new(&client, "real-nodes").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let services: Api<Service> = Api::namespaced(client.clone(), ns.name());
    let serve = |node: &str| {
        format!(
            "mkdir -p /tmp/w && echo {node} > /tmp/w/index.html && exec busybox httpd -f -p 8080 -h /tmp/w"
        )
    };
    let pp = PostParams::default();
    for (name, node) in [("web-1", &n1), ("web-2", &n2)] {
        pods.create(
            &pp,
            &busybox_pod(name, node, json!({"app": "web"}), &serve(node)),
        )
        .await
        .unwrap();
    }
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}
    }))
    .unwrap();
    let svc_ip = services
        .create(&pp, &svc)
        .await
        .unwrap()
        .spec
        .unwrap()
        .cluster_ip
        .unwrap();
    let (ip1, ip2) = (
        running_ip(&pods, "web-1").await,
        running_ip(&pods, "web-2").await,
    );
    assert!(
        ip1.starts_with("10.88.") && ip2.starts_with("10.89."),
        "each node's own pod range: {ip1}, {ip2}"
    );

    // From this machine: each pod, and the Service's endpoints on both nodes.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let get = |url: String| {
        let http = http.clone();
        async move { http.get(url).send().await?.text().await }
    };
    assert_eq!(get(format!("http://{ip1}:8080/")).await.unwrap().trim(), n1);
    assert_eq!(get(format!("http://{ip2}:8080/")).await.unwrap().trim(), n2);
    let mut via_service = BTreeMap::<String, usize>::new();
    let t0 = std::time::Instant::now();
    while via_service.len() < 2 || via_service.values().sum::<usize>() < 20 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the Service's answers from here: {via_service:?}"
        );
        if let Ok(body) = get(format!("http://{svc_ip}/")).await {
            *via_service.entry(body.trim().to_string()).or_default() += 1;
        }
    }
    println!("from this machine through the Service: {via_service:?}");

    // From a pod on each node: the pod on the other node, and the Service.
    for (client_name, node, other_ip) in [("client-1", &n1, &ip2), ("client-2", &n2, &ip1)] {
        let script = fetch_script(&[(other_ip.clone(), 8080), (svc_ip.clone(), 80)]);
        pods.create(&pp, &busybox_pod(client_name, node, json!({}), &script))
            .await
            .unwrap();
    }
    for (client_name, node, other, other_ip) in
        [("client-1", &n1, &n2, &ip2), ("client-2", &n2, &n1, &ip1)]
    {
        common::wait_for_object(
            &pods,
            client_name,
            "the client pod to finish",
            Duration::from_secs(120),
            |p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded"),
        )
        .await;
        // The log comes through the apiserver from that node's kubelet.
        let log = pods.logs(client_name, &LogParams::default()).await.unwrap();
        let seen = answers(&log);
        println!("from a pod on {node}: {seen:?}");
        assert_eq!(
            seen[&format!("{other_ip}:8080")],
            BTreeMap::from([(other.clone(), 12)]),
            "a pod on {node} reaches the pod on {other}: {log}"
        );
        let through_service = &seen[&format!("{svc_ip}:80")];
        assert_eq!(through_service.values().sum::<usize>(), 12, "{log}");
        assert!(
            through_service.keys().all(|k| *k == n1 || *k == n2),
            "{through_service:?}"
        );
    }
}

/// Tests that stop a component of the second node, or count on it, run one at a time.
static SECOND_NODE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Starts the second node's kubelet again when dropped, whatever the test did meanwhile.
struct KubeletBack;

impl Drop for KubeletBack {
    fn drop(&mut self) {
        let status =
            std::process::Command::new(crate::common::flow::repo_root().join("hack/node.sh"))
                .args(["restart", "kubelet"])
                .env("MLMODEL_NODE_INDEX", "2")
                .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "restarting the second node's kubelet"
        );
    }
}

/// A model Ready with two replicas on the second node; that node's kubelet stops (a node lost):
/// the model turns `Degraded`, reason `NodeLost`, `0/2` in `kubectl get`'s Replicas column, and
/// back to `Ready` (`2/2`) once the kubelet is back.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_model_whose_node_is_lost_is_degraded_then_ready_again() {
    let client = common::client().await;
    let (_, second) = real_nodes(&client).await;
    let node2 = hostname(&second);
    let selector = format!("kubernetes.io/hostname={node2}");
    let tolerations = r#"[{"key":"mlmodel.dev/real-node","operator":"Exists","effect":"NoSchedule"},{"key":"mlmodel.dev/second-node","operator":"Exists","effect":"NoSchedule"}]"#;
    let annotations = [
        (
            "scheduler.alpha.kubernetes.io/node-selector",
            selector.as_str(),
        ),
        (
            "scheduler.alpha.kubernetes.io/defaultTolerations",
            tolerations,
        ),
    ];
    let opts = mlmodel_operator::plugins::RuntimeOptions {
        operator_image: common::operator_image(),
        ..Default::default()
    };
    let env =
        crate::common::flow::Env::start_with("real-lost", common::RESTRICTED, &annotations, opts)
            .await;
    let data = crate::real_node::model_bytes(7, 64 * 1024);
    let server = crate::real_node::FileServer::start(vec![("/m.bin", data)]);
    let mut model = crate::real_node::file_model("lost", &server.url("/m.bin"), None, json!({}));
    model.spec.replicas = 2;
    let _one_at_a_time = SECOND_NODE.lock().await;
    env.create(model).await;
    let ready = env
        .wait_phase(
            "lost",
            mlmodel_operator::api::Phase::Ready,
            Duration::from_secs(240),
        )
        .await;
    assert_eq!(ready.status.unwrap().replicas_ready.as_deref(), Some("2/2"));

    // The node lost: its kubelet stops reporting (its containers go on, as on a partitioned node).
    let pid_file = common::kubeconfig_path()
        .parent()
        .unwrap()
        .join("run/node2/kubelet.pid");
    let pid = std::fs::read_to_string(&pid_file).expect("the second node's kubelet pid");
    let back = KubeletBack;
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", pid.trim()])
            .status()
            .unwrap()
            .success()
    );
    let t0 = std::time::Instant::now();
    let degraded = env
        .wait_until(
            "the model Degraded, NodeLost",
            Duration::from_secs(180),
            || async {
                let m = env.get("lost").await;
                let st = m.status?;
                (st.phase == Some(mlmodel_operator::api::Phase::Degraded)
                    && st.reason.as_deref() == Some("NodeLost"))
                .then_some(st)
            },
        )
        .await;
    println!(
        "Degraded {:?} after the kubelet stopped: {:?} ({:?})",
        t0.elapsed(),
        degraded.message,
        degraded.replicas_ready
    );
    assert_eq!(degraded.replicas_ready.as_deref(), Some("0/2"));
    assert!(
        degraded
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("lost"),
        "{degraded:?}"
    );

    drop(back);
    let t0 = std::time::Instant::now();
    let again = env
        .wait_phase(
            "lost",
            mlmodel_operator::api::Phase::Ready,
            Duration::from_secs(180),
        )
        .await;
    println!("Ready again {:?} after the kubelet came back", t0.elapsed());
    assert_eq!(again.status.unwrap().replicas_ready.as_deref(), Some("2/2"));
}
