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

/// A namespace (restricted) whose pods tolerate both real nodes and go where `node_selector`
/// says, with an in-process controller giving download Jobs the locally built operator image.
async fn two_node_env(prefix: &str, node_selector: &str) -> crate::common::flow::Env {
    let tolerations = r#"[{"key":"mlmodel.dev/real-node","operator":"Exists","effect":"NoSchedule"},{"key":"mlmodel.dev/second-node","operator":"Exists","effect":"NoSchedule"}]"#;
    let annotations = [
        ("scheduler.alpha.kubernetes.io/node-selector", node_selector),
        (
            "scheduler.alpha.kubernetes.io/defaultTolerations",
            tolerations,
        ),
    ];
    let opts = mlmodel_operator::plugins::RuntimeOptions {
        operator_image: common::operator_image(),
        ..Default::default()
    };
    crate::common::flow::Env::start_with(prefix, common::RESTRICTED, &annotations, opts).await
}

/// The nodes of `model`'s serving pods that are not leaving, sorted.
async fn serving_nodes(pods: &Api<Pod>, model: &str) -> Vec<String> {
    let selector = format!("mlmodel.dev/model={model},mlmodel.dev/step=serve");
    let mut nodes: Vec<String> = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.spec?.node_name)
        .collect();
    nodes.sort();
    nodes
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
    let env = two_node_env("real-lost", &selector).await;
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

/// Uncordons the second node when dropped, whatever the test did meanwhile.
struct Uncordon(String);

impl Drop for Uncordon {
    fn drop(&mut self) {
        let out = crate::deploy_support::kubectl(&common::kubeconfig_path())
            .args(["uncordon", &self.0])
            .output();
        assert!(
            out.is_ok_and(|o| o.status.success()),
            "uncordoning {}",
            self.0
        );
    }
}

/// The node a pod runs on, of the real ones: 1 or 2. Pods of the first node have addresses of
/// 10.88.0.0/16; those of the second reach this machine from its range or its uplink.
fn node_of_address(ip: &std::net::IpAddr) -> u8 {
    if ip.to_string().starts_with("10.88.") {
        1
    } else {
        2
    }
}

/// 29 (4a, 4b): `replicas: 2` on `ReadWriteOnce` node-bound storage (local-path) runs one
/// replica on each real node, each downloading its own copy (the origin sees one GET per
/// node), both answering through the Service; then `kubectl drain` of the second node while
/// requests run through the Service: none fails, the model turns `Degraded` and back to
/// `Ready` (`2/2`) once the replica is rescheduled on the first node.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn replicas_on_read_write_once_storage_spread_over_nodes_and_a_drain_drops_no_request() {
    let env = two_node_env("spread", "mlmodel.dev/real-node=true").await;
    let data = crate::real_node::model_bytes(9, 1024 * 1024 + 3);
    let sha = crate::real_node::sha256_hex(&data);
    let server = crate::real_node::FileServer::start(vec![("/m.bin", data.clone())]);
    let mut model =
        crate::real_node::file_model("spread", &server.url("/m.bin"), Some(&sha), json!({}));
    model.spec.replicas = 2;
    let _one_at_a_time = SECOND_NODE.lock().await;
    let client = env.client.clone();
    let (first, second) = real_nodes(&client).await;
    let (n1, n2) = (hostname(&first), hostname(&second));
    let t0 = std::time::Instant::now();
    env.create(model).await;
    let ready = env
        .wait_phase(
            "spread",
            mlmodel_operator::api::Phase::Ready,
            Duration::from_secs(240),
        )
        .await;
    println!("Ready with 2 replicas in {:?}", t0.elapsed());
    let status = ready.status.unwrap();
    assert_eq!(status.replicas_ready.as_deref(), Some("2/2"));
    let storage = status.storage.expect("status.storage");
    assert_eq!(
        storage.mode,
        mlmodel_operator::api::StorageMode::PerPod,
        "{storage:?}"
    );
    assert_eq!(
        status.download.as_ref().and_then(|d| d.sha256.clone()),
        Some(sha.clone())
    );

    // One replica on each node, no claim, no download Job.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &env.ns);
    let serving = ListParams::default().labels("mlmodel.dev/model=spread,mlmodel.dev/step=serve");
    let placed: BTreeMap<String, String> = pods
        .list(&serving)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| {
            (
                p.metadata.name.clone().unwrap(),
                p.spec.unwrap().node_name.unwrap(),
            )
        })
        .collect();
    let mut nodes: Vec<&String> = placed.values().collect();
    nodes.sort();
    let mut want = vec![&n1, &n2];
    want.sort();
    assert_eq!(nodes, want, "one replica on each node: {placed:?}");
    let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(client.clone(), &env.ns);
    assert!(
        claims
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // The origin: one GET per node.
    let origin: Vec<u8> = server
        .gets_of("/m.bin")
        .iter()
        .map(node_of_address)
        .collect();
    println!("the origin's GETs came from nodes {origin:?}");
    let mut per_node = origin.clone();
    per_node.sort();
    assert_eq!(per_node, [1, 2], "one download per node: {origin:?}");

    // Both replicas answer through the Service (busybox httpd -v logs each answer).
    let services: Api<Service> = Api::namespaced(client.clone(), &env.ns);
    let svc_ip = services
        .get("spread")
        .await
        .unwrap()
        .spec
        .unwrap()
        .cluster_ip
        .unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let url = format!("http://{svc_ip}/m.bin");
    // A Service just made: this machine's kube-proxy may not route it yet.
    env.wait_until("the Service to answer", Duration::from_secs(30), || async {
        http.get(&url)
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
    })
    .await;
    for _ in 0..40 {
        let body = http.get(&url).send().await.unwrap().bytes().await.unwrap();
        assert!(
            body[..] == data[..],
            "the model's bytes through the Service"
        );
    }
    let mut per_pod = BTreeMap::new();
    for pod in placed.keys() {
        let log = pods.logs(pod, &LogParams::default()).await.unwrap();
        per_pod.insert(pod.clone(), log.matches("response:200").count());
    }
    println!("requests through the Service, per pod: {per_pod:?}");
    assert!(
        per_pod.values().all(|n| *n > 0),
        "both replicas answer: {per_pod:?}"
    );
    assert!(per_pod.values().sum::<usize>() >= 40, "{per_pod:?}");

    // A drain of the second node while requests run through the Service.
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let loop_http = http.clone();
    let loop_url = url.clone();
    let requests = tokio::spawn(async move {
        let (mut ok, mut failed) = (0usize, Vec::new());
        loop {
            if stop_rx.try_recv().is_ok() {
                return (ok, failed);
            }
            match loop_http.get(&loop_url).send().await {
                Ok(r) if r.status().is_success() => match r.bytes().await {
                    Ok(b) if b.len() == 1024 * 1024 + 3 => ok += 1,
                    Ok(b) => failed.push(format!("{} bytes", b.len())),
                    Err(e) => failed.push(e.to_string()),
                },
                Ok(r) => failed.push(r.status().to_string()),
                Err(e) => failed.push(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let phases_api = env.models();
    let (seen_tx, mut seen_rx) = tokio::sync::oneshot::channel::<()>();
    let drain_start = std::time::Instant::now() + Duration::from_secs(2);
    let phases = tokio::spawn(async move {
        // (seconds since the drain began, phase, reason, replicas)
        let mut seen: Vec<(String, String, String, String)> = Vec::new();
        loop {
            if seen_rx.try_recv().is_ok() {
                return seen;
            }
            if let Ok(m) = phases_api.get("spread").await
                && let Some(st) = m.status
            {
                let now = (
                    format!("{:?}", st.phase.unwrap_or_default()),
                    st.reason.unwrap_or_default(),
                    st.replicas_ready.unwrap_or_default(),
                );
                if seen
                    .last()
                    .is_none_or(|l| (&l.1, &l.2, &l.3) != (&now.0, &now.1, &now.2))
                {
                    let at = std::time::Instant::now()
                        .checked_duration_since(drain_start)
                        .map_or(0.0, |d| d.as_secs_f64());
                    seen.push((format!("{at:.1}s"), now.0, now.1, now.2));
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _uncordon = Uncordon(n2.clone());
    let t0 = std::time::Instant::now();
    let drain = tokio::task::spawn_blocking({
        let n2 = n2.clone();
        let selector = "mlmodel.dev/model=spread".to_string();
        move || {
            crate::deploy_support::kubectl(&common::kubeconfig_path())
                .args([
                    "drain",
                    &n2,
                    "--ignore-daemonsets",
                    "--delete-emptydir-data",
                    "--pod-selector",
                    &selector,
                    "--timeout=180s",
                ])
                .output()
                .expect("kubectl drain")
        }
    })
    .await
    .unwrap();
    assert!(
        drain.status.success(),
        "kubectl drain: {}",
        String::from_utf8_lossy(&drain.stderr)
    );
    println!("kubectl drain took {:?}", t0.elapsed());
    let again = env
        .wait_until(
            "the model Ready 2/2 on the first node",
            Duration::from_secs(180),
            || async {
                let m = env.get("spread").await;
                let st = m.status?;
                (st.phase == Some(mlmodel_operator::api::Phase::Ready)
                    && st.replicas_ready.as_deref() == Some("2/2"))
                .then_some(st)
            },
        )
        .await;
    println!("Ready again {:?} after the drain began", t0.elapsed());
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_tx.send(()).unwrap();
    seen_tx.send(()).unwrap();
    let (ok, failed) = requests.await.unwrap();
    let seen = phases.await.unwrap();
    println!(
        "during the drain: {ok} requests answered, {} failed; status went {seen:?}",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "requests failed during the drain: {failed:?}"
    );
    assert!(ok > 20, "{ok} requests");
    assert!(
        seen.iter()
            .any(|(_, phase, _, replicas)| phase == "Degraded" && replicas == "1/2"),
        "the model said Degraded 1/2 while a replica was away: {seen:?}"
    );
    assert_eq!(again.replicas_ready.as_deref(), Some("2/2"));
    let now_on = serving_nodes(&pods, "spread").await;
    assert!(
        now_on.iter().all(|n| *n == n1),
        "the replicas left the drained node: {now_on:?}"
    );
    println!(
        "the origin's GETs came from nodes {:?} (the rescheduled replica downloads again)",
        server
            .gets_of("/m.bin")
            .iter()
            .map(node_of_address)
            .collect::<Vec<_>>()
    );
}

/// Starts these components of the second node again (in order) when dropped.
struct ComponentsBack(&'static [&'static str]);

impl Drop for ComponentsBack {
    fn drop(&mut self) {
        for component in self.0 {
            let status =
                std::process::Command::new(crate::common::flow::repo_root().join("hack/node.sh"))
                    .args(["restart", component])
                    .env("MLMODEL_NODE_INDEX", "2")
                    .status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "restarting the second node's {component}"
            );
        }
    }
}

/// 29 (4c): a model with a replica on each real node; the second node is lost (its kubelet and
/// container runtime stop): the model says `Degraded`, `NodeLost`, within the node lifecycle
/// controller's grace, and is `Ready` (`2/2`) again with both replicas on the first node once
/// the lost replica is evicted (serving pods leave a lost node after 30 s) and replaced.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_replica_on_a_lost_node_is_replaced_on_the_other_node() {
    let env = two_node_env("lost-two", "mlmodel.dev/real-node=true").await;
    let data = crate::real_node::model_bytes(11, 256 * 1024);
    let server = crate::real_node::FileServer::start(vec![("/m.bin", data)]);
    let mut model = crate::real_node::file_model("away", &server.url("/m.bin"), None, json!({}));
    model.spec.replicas = 2;
    let _one_at_a_time = SECOND_NODE.lock().await;
    let client = env.client.clone();
    let (first, _) = real_nodes(&client).await;
    let n1 = hostname(&first);
    env.create(model).await;
    env.wait_until("Ready 2/2", Duration::from_secs(240), || async {
        let st = env.get("away").await.status?;
        (st.phase == Some(mlmodel_operator::api::Phase::Ready)
            && st.replicas_ready.as_deref() == Some("2/2"))
        .then_some(())
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &env.ns);
    let before = serving_nodes(&pods, "away").await;
    assert!(
        before.len() == 2 && before[0] != before[1],
        "a replica on each node: {before:?}"
    );

    // The node lost: its kubelet and its container runtime stop.
    let back = ComponentsBack(&["containerd", "kubelet"]);
    let run = common::kubeconfig_path()
        .parent()
        .unwrap()
        .join("run/node2");
    for component in ["kubelet", "containerd"] {
        let pid = std::fs::read_to_string(run.join(format!("{component}.pid")))
            .unwrap_or_else(|e| panic!("the second node's {component} pid: {e}"));
        assert!(
            std::process::Command::new("kill")
                .args(["-TERM", pid.trim()])
                .status()
                .unwrap()
                .success()
        );
    }
    let t0 = std::time::Instant::now();
    let degraded = env
        .wait_until("Degraded, NodeLost", Duration::from_secs(180), || async {
            let st = env.get("away").await.status?;
            (st.phase == Some(mlmodel_operator::api::Phase::Degraded)
                && st.reason.as_deref() == Some("NodeLost"))
            .then_some(st)
        })
        .await;
    let lost_after = t0.elapsed();
    assert_eq!(
        degraded.replicas_ready.as_deref(),
        Some("1/2"),
        "{degraded:?}"
    );
    let ready = env
        .wait_until(
            "Ready 2/2 on the remaining node",
            Duration::from_secs(240),
            || async {
                let st = env.get("away").await.status?;
                let on = serving_nodes(&pods, "away").await;
                (st.phase == Some(mlmodel_operator::api::Phase::Ready)
                    && st.replicas_ready.as_deref() == Some("2/2")
                    && on.iter().all(|n| *n == n1))
                .then_some(st)
            },
        )
        .await;
    println!(
        "node lost: Degraded NodeLost after {lost_after:?} ({:?}); Ready 2/2 on {n1} after {:?}",
        degraded.message,
        t0.elapsed()
    );
    assert_eq!(ready.replicas_ready.as_deref(), Some("2/2"));
    drop(back);
}

/// The design before per-pod storage, shown: one `ReadWriteOnce` claim of node-bound storage
/// (`local-path`) shared by two replicas holds both on the claim's node, whatever the spread
/// asks, so that node's loss or drain takes the whole model down (the reason `PerPod` is the
/// choice for 2+ replicas on such a claim).
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_shared_node_bound_claim_holds_every_replica_on_its_node() {
    let env = two_node_env("shared", "mlmodel.dev/real-node=true").await;
    let data = crate::real_node::model_bytes(13, 64 * 1024);
    let server = crate::real_node::FileServer::start(vec![("/m.bin", data)]);
    let mut model = crate::real_node::file_model("one", &server.url("/m.bin"), None, json!({}));
    model.spec.replicas = 2;
    model.spec.storage_mode = Some(mlmodel_operator::api::StorageMode::Shared);
    let _one_at_a_time = SECOND_NODE.lock().await;
    env.create(model).await;
    let ready = env
        .wait_phase(
            "one",
            mlmodel_operator::api::Phase::Ready,
            Duration::from_secs(240),
        )
        .await;
    let storage = ready.status.unwrap().storage.unwrap();
    assert_eq!(storage.reason, "spec.storageMode");
    assert_eq!(server.gets_of("/m.bin").len(), 1, "one download in all");
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.ns);
    let mut nodes = serving_nodes(&pods, "one").await;
    nodes.dedup();
    println!("a shared local-path claim: both replicas on {nodes:?}");
    assert_eq!(
        nodes.len(),
        1,
        "both replicas on the claim's node: {nodes:?}"
    );
}
