//! The operator as a process (`mlmodel-operator run`, the binary users run) on the local
//! cluster: leader election between two replicas, the `/metrics` families, health endpoints,
//! and plugins from a ConfigMap reloaded without a restart.
use crate::common;
use crate::support;

use crate::common::flow::Env;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use mlmodel_operator::api::Phase;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One `mlmodel-operator run` process, killed on drop; its log is kept in a file and printed
/// when a test fails.
pub(crate) struct Operator {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Operator {
    pub(crate) fn start(name: &str, args: &[&str]) -> Operator {
        let port = free_port();
        let log = std::env::temp_dir().join(format!(
            "mlmodel-operator-test-{}-{name}-{port}.log",
            std::process::id()
        ));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_mlmodel-operator"))
            .arg("run")
            .arg(format!("--metrics-bind-address=127.0.0.1:{port}"))
            .args(args)
            .env("KUBECONFIG", common::kubeconfig_path())
            .env(
                "MLMODEL_PLUGIN_CACHE",
                std::env::temp_dir().join("mlmodel-test-wasm-cache"),
            )
            .env("MLMODEL_LOG", "info")
            .env_remove("POD_NAMESPACE")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start mlmodel-operator");
        Operator { child, port, log }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let resp = reqwest::get(&url).await.ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.text().await.ok()?))
    }

    /// The parsed `/metrics`, or None while the process is not serving yet.
    async fn metrics(&self) -> Option<Metrics> {
        match self.get("/metrics").await? {
            (200, text) => Some(Metrics::parse(&text)),
            _ => None,
        }
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "---- log of operator pid {} ----\n{}",
                self.child.id(),
                self.log_text()
            );
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One sample of the OpenMetrics text: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// `/metrics` parsed: the `# TYPE` of each family and every sample.
#[derive(Debug)]
struct Metrics {
    types: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

impl Metrics {
    fn parse(text: &str) -> Metrics {
        let mut types = BTreeMap::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE line");
                types.insert(name.to_string(), kind.to_string());
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("value in {line:?}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').expect("closing brace");
                    let labels = body
                        .split("\",")
                        .filter(|kv| !kv.is_empty())
                        .map(|kv| {
                            let (k, v) = kv.split_once("=\"").expect("label");
                            (k.to_string(), v.trim_end_matches('"').to_string())
                        })
                        .collect();
                    (name.to_string(), labels)
                }
                None => (series.to_string(), BTreeMap::new()),
            };
            samples.push(Sample {
                name,
                labels,
                value,
            });
        }
        Metrics { types, samples }
    }

    /// Sum of the samples of `name` whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<&Sample> {
        self.samples.iter().find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }
}

async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn is_leader(op: &Operator) -> Option<bool> {
    op.metrics()
        .await
        .map(|m| m.sum("mlmodel_leader", &[]) == 1.0)
}

fn reconciles(m: &Metrics) -> f64 {
    m.sum("mlmodel_reconciles_total", &[])
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn leader_election_one_replica_reconciles_and_a_standby_takes_over() {
    let env = Env::without_controller("leader", &[]).await;
    let lease_seconds = 6;
    let args = [
        "--leader-elect".to_string(),
        format!("--leader-election-namespace={}", env.ns),
        format!("--lease-duration-seconds={lease_seconds}"),
        format!("--namespace={}", env.ns),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut a = Operator::start("a", &args);
    let mut b = Operator::start("b", &args);

    // Exactly one leads; the other is ready and idle.
    let a_leads = wait_for("one leader", Duration::from_secs(60), || async {
        match (is_leader(&a).await?, is_leader(&b).await?) {
            (true, false) => Some(true),
            (false, true) => Some(false),
            _ => None,
        }
    })
    .await;
    let (leader, standby) = if a_leads {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    assert_eq!(
        standby.get("/readyz").await.map(|r| r.0),
        Some(200),
        "a standby is ready"
    );
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &env.ns);
    let holder = leases
        .get("mlmodel-operator")
        .await
        .expect("the Lease exists")
        .spec
        .and_then(|s| s.holder_identity)
        .unwrap_or_default();
    assert!(
        holder.ends_with(&format!("_{}", leader.pid())),
        "the Lease holder {holder:?} is the leading process {}",
        leader.pid()
    );

    let mut model = common::flow::sample_model("echo-model.yaml");
    model.metadata.name = Some("first".into());
    env.create(model).await;
    env.wait_phase("first", Phase::Ready, Duration::from_secs(60))
        .await;
    let lm = leader.metrics().await.expect("leader metrics");
    assert!(reconciles(&lm) > 0.0, "the leader reconciled");
    let sm = standby.metrics().await.expect("standby metrics");
    assert_eq!(reconciles(&sm), 0.0, "the standby reconciled nothing");
    assert_eq!(sm.sum("mlmodel_leader", &[]), 0.0);

    // The leader dies without releasing the lease: the standby waits for it to expire, then leads.
    let killed = Instant::now();
    leader.kill();
    wait_for(
        "the standby to take over",
        Duration::from_secs(lease_seconds * 4),
        || async { is_leader(standby).await.filter(|l| *l) },
    )
    .await;
    let took = killed.elapsed();
    eprintln!("takeover after the leader was killed: {took:?} (lease {lease_seconds} s)");
    assert!(standby.alive());

    let mut model = common::flow::sample_model("echo-model.yaml");
    model.metadata.name = Some("second".into());
    env.create(model).await;
    env.wait_phase("second", Phase::Ready, Duration::from_secs(60))
        .await;
    let sm = standby.metrics().await.expect("new leader metrics");
    assert!(reconciles(&sm) > 0.0, "the new leader reconciles");
    let holder = leases
        .get("mlmodel-operator")
        .await
        .unwrap()
        .spec
        .and_then(|s| s.holder_identity)
        .unwrap_or_default();
    assert!(holder.ends_with(&format!("_{}", standby.pid())));
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn metrics_and_health_endpoints_report_what_happened() {
    let env = Env::without_controller("metrics", &[]).await;
    let plugins = support::plugin_dir(&["panic"]);
    let op = Operator::start(
        "metrics",
        &[
            &format!("--namespace={}", env.ns),
            &format!("--plugin-dir={}", plugins.path().display()),
        ],
    );
    wait_for("/readyz", Duration::from_secs(60), || async {
        op.get("/readyz").await.filter(|r| r.0 == 200)
    })
    .await;
    assert_eq!(op.get("/healthz").await.map(|r| r.0), Some(200));

    let mut ok = common::flow::sample_model("echo-model.yaml");
    ok.metadata.name = Some("ok".into());
    env.create(ok).await;
    let mut trapping = common::flow::sample_model("echo-model.yaml");
    trapping.metadata.name = Some("trapping".into());
    trapping
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert("mlmodel.dev/serve-plugin".into(), "panic".into());
    env.create(trapping).await;
    env.wait_phase("ok", Phase::Ready, Duration::from_secs(60))
        .await;
    let failed = env
        .wait_phase("trapping", Phase::Failed, Duration::from_secs(60))
        .await;
    let reason = failed.status.unwrap().reason.unwrap();

    let m = wait_for("models by phase", Duration::from_secs(30), || async {
        let m = op.metrics().await?;
        (m.sum("mlmodel_models", &[("phase", "Ready")]) == 1.0
            && m.sum("mlmodel_models", &[("phase", "Failed")]) == 1.0)
            .then_some(m)
    })
    .await;
    for (family, kind) in [
        ("mlmodel_reconciles", "counter"),
        ("mlmodel_reconcile_errors", "counter"),
        ("mlmodel_reconcile_duration_seconds", "histogram"),
        ("mlmodel_models", "gauge"),
        ("mlmodel_plugin_renders", "counter"),
        ("mlmodel_plugin_render_errors", "counter"),
        ("mlmodel_plugin_render_duration_seconds", "histogram"),
        ("mlmodel_plugins_loaded", "gauge"),
        ("mlmodel_downloads", "counter"),
        ("mlmodel_download_duration_seconds", "histogram"),
        ("mlmodel_leader", "gauge"),
    ] {
        assert_eq!(
            m.types.get(family).map(String::as_str),
            Some(kind),
            "family {family}"
        );
    }
    assert!(m.sum("mlmodel_reconciles_total", &[("result", "ok")]) >= 2.0);
    assert!(
        m.sum(
            "mlmodel_reconcile_duration_seconds_count",
            &[("result", "ok")]
        ) >= 2.0
    );
    assert!(
        m.sum(
            "mlmodel_plugin_renders_total",
            &[("plugin", "echo-server"), ("step", "serve")]
        ) >= 1.0
    );
    assert!(
        m.sum(
            "mlmodel_plugin_render_duration_seconds_count",
            &[("plugin", "download-job"), ("step", "download")]
        ) >= 1.0
    );
    assert!(
        m.sum(
            "mlmodel_plugin_render_errors_total",
            &[("plugin", "panic"), ("step", "serve"), ("reason", &reason)]
        ) >= 1.0,
        "a trapping plugin is counted under its status reason {reason}"
    );
    // Both models downloaded (the trapping plugin only serves).
    assert_eq!(
        m.sum("mlmodel_downloads_total", &[("result", "succeeded")]),
        2.0
    );
    let echo = m
        .find(
            "mlmodel_plugins_loaded",
            &[("name", "echo-server"), ("source", "builtin")],
        )
        .expect("the built-in echo-server is listed");
    assert_eq!(echo.labels["sha256"].len(), 64);
    assert!(
        m.find("mlmodel_plugins_loaded", &[("name", "panic")])
            .is_some_and(|s| s.labels["source"].ends_with("panic.wasm")),
        "the directory plugin is listed with its file"
    );
    assert_eq!(m.sum("mlmodel_leader", &[]), 1.0);
    assert_eq!(m.sum("mlmodel_plugin_load_errors", &[]), 0.0);
}

/// Writes `files` into `dir` the way the kubelet projects a ConfigMap volume: the data in a
/// fresh hidden directory, `..data` swapped to it by one rename, and one symlink per key.
fn project(dir: &Path, files: &BTreeMap<String, Vec<u8>>, generation: u32) {
    use std::os::unix::fs::symlink;
    let ts = format!("..2026_11_28_00_00_{generation:02}.{}", std::process::id());
    std::fs::create_dir_all(dir.join(&ts)).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.join(&ts).join(name), bytes).unwrap();
    }
    let old = std::fs::read_link(dir.join("..data")).ok();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(&ts, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("..") && !files.contains_key(&name) {
            std::fs::remove_file(&path).unwrap();
        }
    }
    for name in files.keys() {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new("..data").join(name), &link).unwrap();
        }
    }
    if let Some(old) = old {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
}

/// Sets the ConfigMap's `binaryData` to `files`, then projects what the API server holds into
/// `mount`, as the kubelet would.
async fn publish_plugins(
    api: &Api<ConfigMap>,
    name: &str,
    files: serde_json::Value,
    mount: &Path,
    generation: u32,
) {
    api.patch(
        name,
        &PatchParams::apply("mlmodel-tests").force(),
        &Patch::Apply(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "binaryData": files,
        })),
    )
    .await
    .unwrap();
    project(mount, &configmap_files(api, name).await, generation);
}

async fn configmap_files(api: &Api<ConfigMap>, name: &str) -> BTreeMap<String, Vec<u8>> {
    let cm = api.get(name).await.expect("the plugins ConfigMap");
    cm.binary_data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect()
}

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_plugin_configmap_update_is_reloaded_without_restart() {
    let env = Env::without_controller("plugin-cm", &[]).await;
    let mount = support::tempdir::TempDir::new("plugin-mount");
    let configmaps: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.ns);
    let cm_name = "mlmodel-operator-plugins";
    configmaps
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": cm_name},
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    project(
        mount.path(),
        &configmap_files(&configmaps, cm_name).await,
        1,
    );
    let mut op = Operator::start(
        "plugin-cm",
        &[
            &format!("--namespace={}", env.ns),
            &format!("--plugin-dir={}", mount.path().display()),
            "--replace-builtin=echo-server",
            // The replacement runs its own image: the admin allows it.
            "--plugin-allow=echo-server:image=registry.example/alt-echo",
        ],
    );
    let pid = op.pid();

    let mut model = common::flow::sample_model("echo-model.yaml");
    model.metadata.name = Some("swap".into());
    env.create(model).await;
    env.wait_phase("swap", Phase::Ready, Duration::from_secs(60))
        .await;
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.ns);
    let find_image = || async {
        let list = deployments.list(&Default::default()).await.ok()?;
        list.items.first().map(common::flow::first_image)
    };
    let default_image = find_image().await.expect("the echo Deployment");
    assert!(!default_image.contains("alt-echo"));

    // The ConfigMap gets a replacement echo-server; the kubelet projects it; no restart.
    let alt = std::fs::read(support::fixture("echo-alt")).unwrap();
    let alt_sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&alt))
    };
    publish_plugins(
        &configmaps,
        cm_name,
        serde_json::json!({"echo-server.wasm": ByteString(alt.clone())}),
        mount.path(),
        2,
    )
    .await;
    wait_for(
        "the Deployment re-rendered by the new plugin",
        Duration::from_secs(60),
        || async {
            find_image()
                .await
                .filter(|i| i == "registry.example/alt-echo:2.0")
        },
    )
    .await;
    assert!(op.alive(), "no restart");
    assert_eq!(op.pid(), pid);
    let m = op.metrics().await.unwrap();
    let loaded = m
        .find(
            "mlmodel_plugins_loaded",
            &[("name", "echo-server"), ("active", "true")],
        )
        .expect("the active echo-server");
    assert_eq!(loaded.labels["sha256"], alt_sha);
    assert!(loaded.labels["source"].ends_with("echo-server.wasm"));
    let log = op.log_text();
    assert!(
        log.contains(&alt_sha) && log.contains("plugins reloaded"),
        "the reload and the new plugin's digest are logged"
    );
    // `mlmodel-operator plugins` shows the same set from the same directory.
    let out = Command::new(env!("CARGO_BIN_EXE_mlmodel-operator"))
        .args(["plugins", "--replace-builtin=echo-server", "--plugin-dir"])
        .arg(mount.path())
        .env(
            "MLMODEL_PLUGIN_CACHE",
            std::env::temp_dir().join("mlmodel-test-wasm-cache"),
        )
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains(&alt_sha[..12]) || table.contains(&alt_sha),
        "{table}"
    );

    // The key removed: back to the built-in plugin.
    publish_plugins(&configmaps, cm_name, serde_json::json!({}), mount.path(), 3).await;
    wait_for(
        "the built-in plugin back",
        Duration::from_secs(60),
        || async { find_image().await.filter(|i| *i == default_image) },
    )
    .await;
    env.wait_phase("swap", Phase::Ready, Duration::from_secs(60))
        .await;
    assert!(op.alive());
}
