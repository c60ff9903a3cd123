//! The whole flow on the local cluster's real node (hack/node.sh): a real kubelet, containerd and
//! runc, images pulled from the loopback registry, volumes made by the local-path provisioner,
//! Services routed by kube-proxy. Nothing here is simulated: the download Job is the operator
//! image's `fetch` writing onto a real volume as a non-root user, the server is a real process
//! reading it, and the bytes are fetched back through the Service's ClusterIP.
//!
//! Run by `make test` (which builds and pushes the operator image first, hack/operator-image.sh).
use crate::common;

use crate::common::flow::Env;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams};
use mlmodel_operator::api::{MLModel, Phase};
use mlmodel_operator::plugins::RuntimeOptions;
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

/// The real node's bridge address: this machine, as the pods see it.
pub(crate) const HOST_IP: &str = "10.88.0.1";

/// Bytes that do not compress to nothing, different for each seed.
pub(crate) fn model_bytes(seed: u8, len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// An HTTP/1.1 file server on the bridge address (pods reach it), one thread per connection.
/// Unknown paths are 404.
pub(crate) struct FileServer {
    port: u16,
    /// The address each GET of a file came from, in order (HEADs and 404s are not counted).
    gets: Arc<std::sync::Mutex<Vec<(String, std::net::IpAddr)>>>,
}

/// How a [`FileServer`] sends a body.
#[derive(Clone, Copy)]
pub(crate) enum Pace {
    /// All at once.
    Full,
    /// About this many bytes per second, in 16 KiB pieces.
    Rate(usize),
    /// This many bytes, then nothing more while the connection lasts (10 minutes at most).
    HangAfter(usize),
}

impl Pace {
    fn send(self, conn: &mut std::net::TcpStream, body: &[u8]) -> std::io::Result<()> {
        match self {
            Pace::Full => conn.write_all(body),
            Pace::Rate(rate) => {
                let piece = 16 * 1024;
                for chunk in body.chunks(piece) {
                    conn.write_all(chunk)?;
                    std::thread::sleep(Duration::from_secs_f64(chunk.len() as f64 / rate as f64));
                }
                Ok(())
            }
            Pace::HangAfter(n) => {
                conn.write_all(&body[..n.min(body.len())])?;
                conn.flush()?;
                std::thread::sleep(Duration::from_secs(600));
                Ok(())
            }
        }
    }
}

impl FileServer {
    pub(crate) fn start(files: Vec<(&str, Vec<u8>)>) -> FileServer {
        Self::start_paced(files, Pace::Full)
    }

    fn start_paced(files: Vec<(&str, Vec<u8>)>, pace: Pace) -> FileServer {
        Self::start_with(files, pace, 0)
    }

    /// Answers the first `missing` requests 404 Not Found, as if the file were not there yet.
    fn start_with(files: Vec<(&str, Vec<u8>)>, pace: Pace, missing: usize) -> FileServer {
        let missing = Arc::new(std::sync::atomic::AtomicUsize::new(missing));
        let listener = TcpListener::bind((HOST_IP, 0)).unwrap_or_else(|e| {
            panic!("bind {HOST_IP}: {e} (is the real node's bridge up? hack/node.sh)")
        });
        let port = listener.local_addr().unwrap().port();
        let gets = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = gets.clone();
        let shared: Arc<Vec<(String, Vec<u8>)>> =
            Arc::new(files.into_iter().map(|(p, b)| (p.to_string(), b)).collect());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let files = shared.clone();
                let missing = missing.clone();
                let log = log.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut line = String::new();
                    if reader.read_line(&mut line).is_err() {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let head = line.starts_with("HEAD ");
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                            break;
                        }
                    }
                    let not_yet = missing
                        .fetch_update(
                            std::sync::atomic::Ordering::SeqCst,
                            std::sync::atomic::Ordering::SeqCst,
                            |n| n.checked_sub(1),
                        )
                        .is_ok();
                    let body = files
                        .iter()
                        .find(|(p, _)| *p == path && !not_yet)
                        .map(|(_, b)| b.clone());
                    if let (Some(_), false, Ok(peer)) = (&body, head, conn.peer_addr()) {
                        log.lock().unwrap().push((path.clone(), peer.ip()));
                    }
                    let _ = match body {
                        Some(b) => {
                            let _ = write!(
                                conn,
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                                b.len()
                            );
                            if head { Ok(()) } else { pace.send(&mut conn, &b) }
                        }
                        None => conn.write_all(
                            b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\nConnection: close\r\n\r\nnot found\n",
                        ),
                    };
                });
            }
        });
        FileServer { port, gets }
    }

    /// Where each GET of `path` came from.
    pub(crate) fn gets_of(&self, path: &str) -> Vec<std::net::IpAddr> {
        let log = self.gets.lock().unwrap();
        log.iter()
            .filter(|(p, _)| p == path)
            .map(|(_, ip)| *ip)
            .collect()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{HOST_IP}:{}{path}", self.port)
    }
}

/// A namespace whose pods all run on the real node (restricted Pod Security), with a controller
/// that gives download Jobs the locally built operator image.
pub(crate) async fn real_env(prefix: &str) -> Env {
    let opts = RuntimeOptions {
        operator_image: common::operator_image(),
        ..RuntimeOptions::default()
    };
    Env::start_with(prefix, common::RESTRICTED, common::REAL_NODE, opts).await
}

/// A model served by the built-in `file-server` plugin (busybox httpd) from a claim of the real node's StorageClass.
pub(crate) fn file_model(
    name: &str,
    url: &str,
    sha256: Option<&str>,
    extra: serde_json::Value,
) -> MLModel {
    let mut config = serde_json::json!({
        "download": {"storageClassName": "local-path", "backoffLimit": 0},
    });
    json_merge(&mut config, extra);
    serde_json::from_value(serde_json::json!({
        "apiVersion": "mlmodel.dev/v1alpha1",
        "kind": "MLModel",
        "metadata": {"name": name},
        "spec": {
            "modelURL": url,
            "storageSize": "64Mi",
            "framework": "file-server",
            "replicas": 1,
            "expose": true,
            "sha256": sha256,
            "plugins": {"config": config},
        },
    }))
    .expect("a valid model")
}

pub(crate) fn json_merge(into: &mut serde_json::Value, from: serde_json::Value) {
    match (into, from) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                json_merge(a.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

pub(crate) async fn cluster_ip(env: &Env, model: &str) -> String {
    let services: Api<Service> = Api::namespaced(env.client.clone(), &env.ns);
    let svc = services.get(model).await.expect("the model's Service");
    svc.spec.and_then(|s| s.cluster_ip).expect("a ClusterIP")
}

/// An error with its sources (reqwest's Display stops at "error sending request").
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

pub(crate) fn http() -> reqwest::Client {
    common::http_client()
}

/// GET `url` through a Service that may have been created a moment ago: kube-proxy programs a
/// new Service within its sync period (about 1 s); until then the ClusterIP is unreachable (the
/// service range is routed to the bridge, so nothing leaves the machine). Retries connection
/// errors for at most 20 s.
async fn get_when_routed(url: &str) -> reqwest::Response {
    let t0 = std::time::Instant::now();
    loop {
        match http().get(url).send().await {
            Ok(r) => {
                println!("{url} routed {:?} after the first try", t0.elapsed());
                return r;
            }
            Err(e)
                if (e.is_connect() || e.is_timeout()) && t0.elapsed() < Duration::from_secs(20) =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("GET {url} through the Service: {}", chain(&e)),
        }
    }
}

/// The model's pods (not deleting), as the kubelet reports them.
pub(crate) async fn model_pods(env: &Env, model: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.ns);
    pods.list(&ListParams::default().labels(&format!("mlmodel.dev/model={model}")))
        .await
        .expect("list pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

const REAL_NODE_LABEL: &str = "mlmodel.dev/real-node";

/// 3a: a file on a local server -> the download Job writes it onto a real volume as a non-root
/// user -> a server pod serves it read-only -> the bytes come back through the Service.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_model_is_downloaded_served_and_routed_on_the_real_node() {
    let data = model_bytes(1, 300 * 1024 + 7);
    let sha = sha256_hex(&data);
    let server = FileServer::start(vec![("/model.bin", data.clone())]);
    let env = real_env("real-serve").await;
    env.create(file_model(
        "files",
        &server.url("/model.bin"),
        Some(&sha),
        serde_json::json!({}),
    ))
    .await;

    let model = env
        .wait_phase("files", Phase::Ready, Duration::from_secs(240))
        .await;
    let status = model.status.clone().unwrap();
    assert_eq!(
        status.download.as_ref().and_then(|d| d.sha256.clone()),
        Some(sha.clone()),
        "the downloader's own report of what it wrote: {status:?}"
    );

    // Ready only once a real container is: the server pod runs on the real node, under
    // containerd, Ready, with the volume mounted read-only.
    let pods = model_pods(&env, "files").await;
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(env.client.clone());
    let server_pod = pods
        .iter()
        .find(|p| {
            p.metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.get("mlmodel.dev/step").map(String::as_str) == Some("serve"))
        })
        .unwrap_or_else(|| {
            panic!(
                "no server pod among {:?}",
                pods.iter().map(|p| &p.metadata.name).collect::<Vec<_>>()
            )
        });
    let node = nodes
        .get(
            server_pod
                .spec
                .as_ref()
                .unwrap()
                .node_name
                .as_deref()
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(
        node.metadata
            .labels
            .unwrap_or_default()
            .contains_key(REAL_NODE_LABEL),
        "the server pod runs on a kwok node"
    );
    let cs = &server_pod
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0];
    assert!(cs.ready, "server container not ready: {cs:?}");
    assert!(
        cs.container_id
            .as_deref()
            .unwrap_or_default()
            .starts_with("containerd://"),
        "not a containerd container: {cs:?}"
    );
    let mount = &server_pod.spec.as_ref().unwrap().containers[0]
        .volume_mounts
        .as_ref()
        .unwrap()[0];
    assert_eq!(mount.read_only, Some(true), "model mount: {mount:?}");

    // The download pod ran as a non-root user and wrote a real file.
    let download_pod = pods
        .iter()
        .find(|p| {
            p.metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key("job-name"))
        })
        .expect("the download pod is kept");
    let uid = download_pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|c| c.run_as_user);
    assert!(uid.is_some_and(|u| u != 0), "download pod user: {uid:?}");
    let dterm = download_pod
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .state
        .as_ref()
        .and_then(|s| s.terminated.clone())
        .expect("the download container terminated");
    assert_eq!(dterm.exit_code, 0, "download container: {dterm:?}");

    // Through the Service (ClusterIP -> kube-proxy -> the pod), the same bytes.
    let ip = cluster_ip(&env, "files").await;
    let resp = get_when_routed(&format!("http://{ip}/model.bin")).await;
    assert_eq!(resp.status(), 200, "GET /model.bin through the Service");
    let got = resp.bytes().await.unwrap();
    assert_eq!(got.len(), data.len());
    assert_eq!(sha256_hex(&got), sha, "served bytes differ from the source");
}

/// 3b: real download failures end in `Failed` with the downloader's own message, read from the
/// real termination log; one that a retry would meet again is not retried.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn real_download_failures_show_the_downloaders_message() {
    let data = model_bytes(2, 4096);
    let server = FileServer::start(vec![("/model.bin", data)]);
    let env = real_env("real-dlfail").await;
    env.create(file_model(
        "missing",
        &server.url("/missing.bin"),
        None,
        serde_json::json!({}),
    ))
    .await;
    let wrong = "0".repeat(64);
    env.create(file_model(
        "corrupt",
        &server.url("/model.bin"),
        Some(&wrong),
        serde_json::json!({}),
    ))
    .await;

    // The status names the downloader's own reason and message, read from the termination log
    // of the real container (the JSON report `fetch` writes to /dev/termination-log).
    let missing = env
        .wait_phase("missing", Phase::Failed, Duration::from_secs(180))
        .await
        .status
        .unwrap();
    assert_eq!(
        missing.reason.as_deref(),
        Some("DownloadFailed"),
        "{missing:?}"
    );
    let msg = missing.message.unwrap_or_default();
    assert!(
        msg.contains("(NotFound)") && msg.contains("HTTP 404 Not Found from http://"),
        "the downloader's message: {msg}"
    );

    let corrupt = env
        .wait_phase("corrupt", Phase::Failed, Duration::from_secs(180))
        .await
        .status
        .unwrap();
    assert_eq!(
        corrupt.reason.as_deref(),
        Some("DownloadFailed"),
        "{corrupt:?}"
    );
    let msg = corrupt.message.unwrap_or_default();
    assert!(
        msg.contains("(ChecksumMismatch)") && msg.contains(&format!("expected {wrong}")),
        "the downloader's message names the expected sum: {msg}"
    );
    // A failure a retry would meet again (a refused address: `fetch` exits 2) ends the Job at
    // the first attempt through its podFailurePolicy, though backoffLimit allows 3 retries.
    env.create(file_model(
        "forbidden",
        "http://169.254.169.254/model.bin",
        None,
        serde_json::json!({"download": {"backoffLimit": 3}}),
    ))
    .await;
    let forbidden = env
        .wait_phase("forbidden", Phase::Failed, Duration::from_secs(180))
        .await
        .status
        .unwrap();
    let msg = forbidden.message.clone().unwrap_or_default();
    assert!(msg.contains("(ForbiddenAddress)"), "{forbidden:?}");
    assert_eq!(
        forbidden.download.as_ref().and_then(|d| d.attempts),
        Some(1),
        "no retry of a refused address: {forbidden:?}"
    );

    for model in ["missing", "corrupt", "forbidden"] {
        env.wait_event(model, "DownloadFailed").await;
    }
}

/// 3c: an image that cannot be pulled, and a server that exits, as the kubelet reports them.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn real_server_failures_are_reported_from_the_kubelet() {
    let data = model_bytes(3, 4096);
    let server = FileServer::start(vec![("/model.bin", data)]);
    // The admin allows the local registry's images to file-server (the image below is not there).
    let (_, allow) = mlmodel_operator::plugins::policy::Allowances::parse_flag(
        "file-server:image=localhost:23500/",
    )
    .unwrap();
    let opts = RuntimeOptions {
        operator_image: common::operator_image(),
        allowances: [("file-server".to_string(), allow)].into(),
        ..RuntimeOptions::default()
    };
    let env = Env::start_with("real-srvfail", common::RESTRICTED, common::REAL_NODE, opts).await;
    env.create(file_model(
        "nopull",
        &server.url("/model.bin"),
        None,
        serde_json::json!({"serve": {"image": "localhost:23500/no-such-image:1"}}),
    ))
    .await;
    env.create(file_model(
        "crash",
        &server.url("/model.bin"),
        None,
        serde_json::json!({"serve": {"directory": "no-such-directory"}}),
    ))
    .await;

    let nopull = env
        .wait_until(
            "nopull to fail pulling",
            Duration::from_secs(180),
            || async {
                let st = env.get("nopull").await.status?;
                matches!(
                    st.reason.as_deref(),
                    Some("ErrImagePull" | "ImagePullBackOff")
                )
                .then_some(st)
            },
        )
        .await;
    let msg = nopull.message.unwrap_or_default();
    assert!(msg.contains("no-such-image"), "names the image: {msg}");

    let crash = env
        .wait_reason("crash", "CrashLoopBackOff", Duration::from_secs(180))
        .await;
    let msg = crash.status.unwrap().message.unwrap_or_default();
    assert!(
        msg.contains("no-such-directory"),
        "the container's last words (busybox httpd's error) in the message: {msg}"
    );
}

/// 3d: a URL change on a served model: GETs through the Service during the update all succeed
/// while the new revision downloads and the Deployment rolls.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_url_change_rolls_without_a_failed_request() {
    let old = model_bytes(4, 64 * 1024);
    let new = model_bytes(5, 96 * 1024);
    let server = FileServer::start(vec![
        ("/v1/model.bin", old.clone()),
        ("/v2/model.bin", new.clone()),
    ]);
    let env = real_env("real-update").await;
    env.create(file_model(
        "rolling",
        &server.url("/v1/model.bin"),
        None,
        serde_json::json!({}),
    ))
    .await;
    let first = env
        .wait_phase("rolling", Phase::Ready, Duration::from_secs(240))
        .await;
    let first_rev = first.status.unwrap().revision;
    let ip = cluster_ip(&env, "rolling").await;
    let url = format!("http://{ip}/model.bin");
    assert_eq!(get_when_routed(&url).await.status(), 200);

    // GETs every 50 ms (at most 4 minutes' worth) until the new bytes have been seen 20 times.
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let client = http();
    let (old_sum, new_sum) = (sha256_hex(&old), sha256_hex(&new));
    let prober = tokio::spawn(async move {
        let (mut ok_old, mut ok_new, mut errors) = (0u32, 0u32, Vec::new());
        for _ in 0..4800 {
            if stop_rx.try_recv().is_ok() {
                break;
            }
            match client.get(&url).send().await {
                Ok(r) if r.status() == 200 => match r.bytes().await {
                    Ok(b) if sha256_hex(&b) == old_sum => ok_old += 1,
                    Ok(b) if sha256_hex(&b) == new_sum => ok_new += 1,
                    Ok(b) => errors.push(format!("unknown body of {} bytes", b.len())),
                    Err(e) => errors.push(format!("body: {e}")),
                },
                Ok(r) => errors.push(format!("HTTP {}", r.status())),
                Err(e) => errors.push(format!("request: {}", chain(&e))),
            }
            if ok_new >= 20 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (ok_old, ok_new, errors)
    });

    env.merge_spec(
        "rolling",
        serde_json::json!({"modelURL": server.url("/v2/model.bin")}),
    )
    .await;
    let updated = env
        .wait_until(
            "the new revision to be served and Ready",
            Duration::from_secs(240),
            || async {
                let m = env.get("rolling").await;
                let st = m.status.clone()?;
                (st.phase == Some(Phase::Ready)
                    && st.observed_generation == m.metadata.generation
                    && st.revision != first_rev)
                    .then_some(st)
            },
        )
        .await;
    let (ok_old, ok_new, errors) = tokio::time::timeout(Duration::from_secs(60), prober)
        .await
        .map(|r| r.unwrap())
        .unwrap_or_else(|_| {
            let _ = stop_tx.send(());
            panic!("the prober never saw the new bytes 20 times")
        });
    println!(
        "during the update: {ok_old} GETs of the old revision, {ok_new} of the new, {} errors",
        errors.len()
    );
    assert!(
        errors.is_empty(),
        "failed requests during the update: {errors:?}"
    );
    assert!(ok_old > 0 && ok_new >= 20, "old {ok_old}, new {ok_new}");
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.ns);
    let d = deployments
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(d.len(), 1, "one Deployment rolled, not a second one");
    assert!(updated.revision.is_some());
}

/// The original Go operator's sample, in miniature: a Keras HDF5 file (`tf_model.h5`) with
/// `framework: tensorflow`. TensorFlow Serving loads only a SavedModel, so the model fails with
/// `ModelFormatMismatch` as soon as the real download ends, and no server pod is ever created.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_model_the_server_cannot_load_fails_before_any_server_starts() {
    // The HDF5 superblock signature, then bytes: what the downloader's content check reads.
    let mut h5 = b"\x89HDF\r\n\x1a\n\0\0\0\0\0\x08\x08\0\x04\0\x10\0\0\0\0\0".to_vec();
    h5.extend(model_bytes(3, 64 * 1024));
    let server = FileServer::start(vec![("/tf_model.h5", h5)]);
    let env = real_env("real-format").await;
    let mut model = file_model(
        "keras",
        &server.url("/tf_model.h5"),
        None,
        serde_json::json!({}),
    );
    model.spec.framework = "tensorflow".into();
    env.create(model).await;

    let failed = env
        .wait_phase("keras", Phase::Failed, Duration::from_secs(180))
        .await;
    let status = failed.status.clone().unwrap();
    assert_eq!(
        status.reason.as_deref(),
        Some("ModelFormatMismatch"),
        "{status:?}"
    );
    let message = status.message.clone().unwrap_or_default();
    assert!(
        message.contains("keras-hdf5")
            && message.contains("tf_model.h5")
            && message.contains("tensorflow-serving loads only saved-model"),
        "{message}"
    );
    let download = status.download.clone().unwrap();
    assert_eq!(download.format.as_deref(), Some("keras-hdf5"), "{status:?}");
    assert_eq!(download.largest_file.as_deref(), Some("tf_model.h5"));
    // Seen Failed (polled every 200 ms) this long after the download pod finished.
    if let Some(finished) = download.finished_at.as_ref() {
        let now = k8s_openapi::jiff::Timestamp::now();
        println!(
            "ModelFormatMismatch seen {:.1} s after the download finished",
            (now.as_millisecond() - finished.0.as_millisecond()) as f64 / 1e3
        );
    }
    env.wait_event("keras", "ModelFormatMismatch").await;
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.ns);
    let servers = deployments
        .list(&ListParams::default().labels("mlmodel.dev/step=serve"))
        .await
        .unwrap();
    assert!(servers.items.is_empty(), "no server: {:?}", servers.items);
    let pods = model_pods(&env, "keras").await;
    assert!(
        pods.iter().all(|p| p
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("mlmodel.dev/step"))
            .is_some_and(|s| s == "download")),
        "only the download pod ran"
    );
}

/// Progress in status while a real download runs: a server sending about 256 KiB/s, so the
/// 6 MiB take about 24 s; the percentage seen in status moves before the model is Ready.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_download_shows_its_progress_moving_in_status() {
    let data = model_bytes(4, 6 << 20);
    let server = FileServer::start_paced(vec![("/slow.bin", data)], Pace::Rate(256 << 10));
    let env = real_env("real-progress").await;
    env.create(file_model(
        "slow",
        &server.url("/slow.bin"),
        None,
        serde_json::json!({}),
    ))
    .await;

    let progress = |m: &MLModel| m.status.as_ref()?.download.as_ref()?.progress.clone();
    let first = env
        .wait_until("progress in status", Duration::from_secs(120), || async {
            progress(&env.get("slow").await).filter(|p| p.percent.is_some_and(|p| p < 100))
        })
        .await;
    let later = env
        .wait_until("the progress to move", Duration::from_secs(120), || async {
            progress(&env.get("slow").await).filter(|p| p.bytes_done > first.bytes_done)
        })
        .await;
    println!(
        "progress seen: {:?} then {:?}",
        first.summary, later.summary
    );
    assert_eq!(first.bytes_total, Some(6 << 20));
    assert!(first.summary.contains("/6.0Mi "), "{first:?}");
    let model = env.get("slow").await;
    let message = model.status.unwrap().message.unwrap_or_default();
    assert!(message.contains(" of 6.0 MiB ("), "{message}");

    // Done: Ready, and no progress left in status.
    let ready = env
        .wait_phase("slow", Phase::Ready, Duration::from_secs(180))
        .await;
    assert_eq!(progress(&ready), None);
}

/// A download whose server stops sending: after a minute without a byte the model says
/// `DownloadStalled`, with where it stopped and the attempt, in its message and an Event.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_stalled_download_says_so() {
    let data = model_bytes(5, 1 << 20);
    let server = FileServer::start_paced(vec![("/stuck.bin", data)], Pace::HangAfter(256 << 10));
    let env = real_env("real-stall").await;
    env.create(file_model(
        "stuck",
        &server.url("/stuck.bin"),
        None,
        serde_json::json!({}),
    ))
    .await;
    let stalled = env
        .wait_until("DownloadStalled", Duration::from_secs(240), || async {
            let m = env.get("stuck").await;
            let status = m.status?;
            (status.reason.as_deref() == Some("DownloadStalled")).then_some(status)
        })
        .await;
    let message = stalled.message.clone().unwrap_or_default();
    assert!(
        message.contains("stalled at 256.0 KiB for ") && message.contains("attempt 1 of 1"),
        "{message}"
    );
    let progress = stalled.download.unwrap().progress.unwrap();
    assert!(
        progress.stalled_seconds.is_some_and(|s| s >= 60),
        "{progress:?}"
    );
    assert_eq!(progress.summary, "stalled 256Ki/1.0Mi");
    env.wait_event("stuck", "DownloadStalled").await;
}

/// A download attempt that fails is retried by the Job: the failed attempt, with the
/// downloader's reason and message, shows in `status.download.retries`, with a
/// `DownloadRetried` Event, and the model still ends Ready.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_retried_download_shows_the_failed_attempt() {
    let data = model_bytes(6, 64 * 1024);
    let server = FileServer::start_with(vec![("/late.bin", data)], Pace::Full, 1);
    let env = real_env("real-retry").await;
    env.create(file_model(
        "late",
        &server.url("/late.bin"),
        None,
        serde_json::json!({"download": {"backoffLimit": 2}}),
    ))
    .await;
    let retrying = env
        .wait_until(
            "a retried attempt in status",
            Duration::from_secs(180),
            || async {
                let status = env.get("late").await.status?;
                let download = status.download.clone()?;
                (!download.retries.is_empty()).then_some(download)
            },
        )
        .await;
    let first = &retrying.retries[0];
    assert_eq!(
        (first.attempt, first.reason.as_str()),
        (1, "NotFound"),
        "{retrying:?}"
    );
    assert!(first.message.contains("404"), "{first:?}");
    let ready = env
        .wait_phase("late", Phase::Ready, Duration::from_secs(180))
        .await;
    assert!(ready.status.unwrap().download.unwrap().attempts >= Some(2));
    env.wait_event("late", "DownloadRetried").await;
}

/// Issue 17's end to end, on the real node: a TypeScript and a Python serve plugin, each made by
/// `plugins new` and built with its language's pinned tools, pass their golden cases (`plugins
/// test`), are pushed to the cluster's registry (`plugins push`), loaded by digest by a running
/// operator, selected by annotation, and each take a model to Ready: downloaded by a real Job,
/// served by the plugin's `hashicorp/http-echo` container (built from source, hack/node.sh),
/// answering through its Service with the text the plugin rendered.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn sdk_plugins_pushed_to_the_registry_serve_models_on_the_real_node() {
    use crate::common::scaffold::{
        new_project, ok, operator, py_component, sdk_tool, ts_component,
    };
    use crate::operator_process::Operator;
    const REGISTRY: &str = "localhost:23500";
    let node = sdk_tool("node").expect("the TypeScript SDK's tools (hack/sdk-plugins.sh tools)");
    let venv = sdk_tool("python").expect("the Python SDK's tools (hack/sdk-plugins.sh tools)");
    let parent = crate::support::tempdir::TempDir::new("sdk-registry");
    let tag = std::process::id();
    let mut pinned = Vec::new();
    for (lang, name) in [("ts", "echo-ts"), ("python", "echo-py")] {
        let dir = new_project(parent.path(), name, lang, "serve");
        let wasm = match lang {
            "ts" => ts_component(&dir, &node, "plugin.wasm"),
            _ => py_component(&dir, &venv, "plugin.wasm"),
        };
        let out = ok(
            &format!("plugins test {name}"),
            operator(&["plugins", "test"])
                .arg(&dir)
                .arg("--plugin")
                .arg(&wasm),
        );
        assert!(out.contains("passed, 0 failed"), "{out}");
        let out = ok(
            &format!("plugins push {name}"),
            operator(&["plugins", "push"])
                .arg(&wasm)
                .arg(format!("oci://{REGISTRY}/plugins/{name}:t{tag}"))
                .args(["--insecure-registry", REGISTRY]),
        );
        let reference = out.lines().next().unwrap_or_default().trim().to_string();
        assert!(
            reference.starts_with(&format!("oci://{REGISTRY}/plugins/{name}@sha256:")),
            "{out}"
        );
        pinned.push((name, reference));
    }

    let data = model_bytes(7, 64 * 1024);
    let sha = sha256_hex(&data);
    let server = FileServer::start(vec![("/model.bin", data)]);
    let env =
        Env::without_controller_meta("sdk-registry", common::RESTRICTED, common::REAL_NODE).await;
    let refs: Vec<&str> = pinned.iter().map(|(_, r)| r.as_str()).collect();
    let op = Operator::start(
        "sdk-registry",
        &[
            &format!("--namespace={}", env.ns),
            &format!("--plugin-ref={}", refs.join(",")),
            &format!("--insecure-registry={REGISTRY}"),
            &format!("--operator-image={}", common::operator_image()),
        ],
    );
    for (name, _) in &pinned {
        let mut model = file_model(
            &format!("by-{name}"),
            &server.url("/model.bin"),
            Some(&sha),
            serde_json::json!({}),
        );
        model.spec.framework = "echo".into();
        model.metadata.annotations = Some(std::collections::BTreeMap::from([(
            "mlmodel.dev/serve-plugin".to_string(),
            name.to_string(),
        )]));
        env.create(model).await;
    }
    for (name, reference) in &pinned {
        let model = format!("by-{name}");
        let ready = env
            .wait_phase(&model, Phase::Ready, Duration::from_secs(240))
            .await;
        let serve = ready.status.unwrap().plugins["serve"].clone();
        assert!(
            serve.starts_with(&format!("{name}@")) && serve.ends_with(reference.as_str()),
            "status.plugins.serve = {serve}, want {name} from {reference}"
        );
        // The plugin's container really runs on the real node and answers through the Service
        // with the text the plugin rendered.
        let pods = model_pods(&env, &model).await;
        let server_pod =
            pods.iter()
                .find(|p| {
                    p.metadata.labels.as_ref().is_some_and(|l| {
                        l.get("mlmodel.dev/step").map(String::as_str) == Some("serve")
                    })
                })
                .expect("a server pod");
        let spec = server_pod.spec.as_ref().unwrap();
        assert_eq!(
            spec.containers[0].image.as_deref(),
            Some("hashicorp/http-echo:1.0")
        );
        let node_name = spec.node_name.clone().unwrap_or_default();
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(env.client.clone());
        let labels = nodes.get(&node_name).await.unwrap().metadata.labels;
        assert!(
            labels.is_some_and(|l| l.contains_key(REAL_NODE_LABEL)),
            "{model}'s server runs on {node_name}, not the real node"
        );
        let ip = cluster_ip(&env, &model).await;
        let resp = get_when_routed(&format!("http://{ip}/")).await;
        assert_eq!(resp.status(), 200);
        let body = resp.text().await.unwrap();
        assert!(
            body.contains(&format!("model {model} revision")),
            "{model} answers {body:?}"
        );
    }
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.ns);
    assert_eq!(
        deployments
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    let log = op.log_text();
    for (_, reference) in &pinned {
        assert!(
            log.contains(reference.as_str()),
            "the loaded reference is logged"
        );
    }
}
