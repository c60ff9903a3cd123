//! Helpers shared by every test that runs against the local cluster (`hack/cluster.sh`, started
//! by `make test` or `make cluster-up`). Such a test is marked
//! `#[ignore = "needs the local cluster: make test"]`, so a plain `cargo test` skips it and
//! `make test` runs it with `--ignored` once the cluster is up.
//!
//! ```ignore
//! mod common;
//! let client = common::client().await;
//! let ns = common::TestNamespace::new(&client, "my-test").await;
//! let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
//! let pod = common::wait_for_object(&pods, "p", "pod p Running", Duration::from_secs(60), |p| {
//!     p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
//! }).await;
//! ```
#![allow(dead_code)] // each test binary uses its own subset

/// The controller tests' own support (an in-process controller per namespace).
pub mod flow;
/// Plugin projects of `plugins new`, built with each language's pinned tools.
pub mod scaffold;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, Resource};
use serde::de::DeserializeOwned;

/// Labels that make PodSecurity admission enforce the `restricted` standard in a namespace.
/// The operator image `make test` built and pushed (hack/operator-image.sh), by digest: a tag
/// would let the real node's containerd keep running an older image of the same tag.
pub fn operator_image() -> String {
    std::env::var("MLMODEL_TEST_OPERATOR_IMAGE")
        .ok()
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| "localhost:23500/mlmodel-operator:dev".into())
}

pub const RESTRICTED: &[(&str, &str)] = &[("pod-security.kubernetes.io/enforce", "restricted")];

/// Namespace annotations that send every pod of the namespace to the local cluster's real node
/// (admission plugins PodNodeSelector and PodTolerationRestriction; see hack/node.sh).
pub const REAL_NODE: &[(&str, &str)] = &[
    (
        "scheduler.alpha.kubernetes.io/node-selector",
        "mlmodel.dev/real-node=true",
    ),
    (
        "scheduler.alpha.kubernetes.io/defaultTolerations",
        r#"[{"key":"mlmodel.dev/real-node","operator":"Exists","effect":"NoSchedule"}]"#,
    ),
];

/// The kubeconfig the tests use: `$KUBECONFIG` when set, else the local cluster's
/// (`$MLMODEL_CACHE/cluster/kubeconfig`, default `~/.cache/mlmodel-operator/cluster/kubeconfig`).
/// Never `~/.kube/config`: a test must not land on a real cluster by accident.
pub fn kubeconfig_path() -> PathBuf {
    if let Some(p) = std::env::var_os("KUBECONFIG").filter(|p| !p.is_empty()) {
        // kubectl accepts a list; the tests use its first file.
        let first = std::env::split_paths(&p).next().unwrap_or_default();
        return first;
    }
    let cache = std::env::var_os("MLMODEL_CACHE")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME is not set");
            PathBuf::from(home).join(".cache/mlmodel-operator")
        });
    cache.join("cluster/kubeconfig")
}

/// The client's configuration, for tests that need to change it (impersonation, timeouts).
pub async fn config() -> Config {
    let path = kubeconfig_path();
    let kubeconfig = Kubeconfig::read_from(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the kubeconfig {}: {e}\nstart the local cluster with `make cluster-up`",
            path.display()
        )
    });
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("bad kubeconfig {}: {e}", path.display()))
}

/// A client for the local cluster with admin rights. Panics with a hint when the cluster is not
/// reachable, so a test never fails later with an obscure connection error.
pub async fn client() -> Client {
    checked_client(config().await).await
}

/// A client that impersonates `user` (and `groups`), e.g. a service account as
/// `system:serviceaccount:<namespace>:<name>`: RBAC then judges every request by that identity.
/// A service account's groups (`system:serviceaccounts`, `system:serviceaccounts:<namespace>`,
/// `system:authenticated`) must be given too when the rules bind them.
pub async fn client_as(user: &str, groups: &[&str]) -> Client {
    let mut config = config().await;
    config.auth_info.impersonate = Some(user.to_string());
    config.auth_info.impersonate_groups =
        (!groups.is_empty()).then(|| groups.iter().map(|g| g.to_string()).collect());
    checked_client(config).await
}

async fn checked_client(config: Config) -> Client {
    let url = config.cluster_url.clone();
    let client = Client::try_from(config).expect("cannot build a kube client");
    if let Err(e) = client.apiserver_version().await {
        panic!("the cluster at {url} is not reachable: {e}\nstart it with `make cluster-up`");
    }
    client
}

/// A name unique across tests, processes and runs: `<prefix>-<pid>-<n>-<time>`, at most 63
/// characters, lower case (a valid namespace or object name).
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let suffix = format!("-{:x}-{n:x}-{:x}", std::process::id(), millis % 0xfff_ffff);
    let prefix: String = prefix
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(63 - suffix.len())
        .collect();
    format!("{}{suffix}", prefix.trim_matches('-'))
}

/// A namespace of its own for one test, with a unique name.
///
/// It is deleted on drop, so also when the test panics on a failed assertion: an explicit async
/// cleanup would be skipped exactly then, and leftovers pile up on a cluster kept running with
/// `make cluster-up`. Drop cannot await, and the test's runtime is blocked while drop runs, so
/// the delete request goes from a short-lived thread with its own runtime and client; drop waits
/// for that request (a few ms), not for the namespace controller to finish deleting the contents.
/// Set `MLMODEL_KEEP_NAMESPACES=1` to keep the namespaces for debugging.
pub struct TestNamespace {
    name: String,
}

impl TestNamespace {
    /// Creates `<prefix>-<unique suffix>` and waits until its `default` ServiceAccount exists
    /// (pods cannot be created before that).
    pub async fn new(client: &Client, prefix: &str) -> Self {
        Self::with_labels(client, prefix, &[]).await
    }

    /// Same, with namespace labels, e.g. [`RESTRICTED`].
    pub async fn with_labels(client: &Client, prefix: &str, labels: &[(&str, &str)]) -> Self {
        Self::with_meta(client, prefix, labels, &[]).await
    }

    /// Same, with labels and annotations (e.g. [`REAL_NODE`]).
    pub async fn with_meta(
        client: &Client,
        prefix: &str,
        labels: &[(&str, &str)],
        annotations: &[(&str, &str)],
    ) -> Self {
        let name = unique_name(prefix);
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(map(labels)),
                annotations: Some(map(annotations)),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("cannot create namespace {name}: {e}"));
        let this = Self { name };
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &this.name);
        wait_until(
            &format!("the default ServiceAccount in {}", this.name),
            Duration::from_secs(30),
            || async { sas.get_opt("default").await.ok().flatten() },
        )
        .await;
        this
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::env::var_os("MLMODEL_KEEP_NAMESPACES").is_some_and(|v| !v.is_empty() && v != "0") {
            eprintln!("keeping namespace {} (MLMODEL_KEEP_NAMESPACES)", self.name);
            return;
        }
        let name = self.name.clone();
        let deleted = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let kubeconfig = Kubeconfig::read_from(kubeconfig_path())?;
                let config =
                    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                        .await?;
                let client = Client::try_from(config)?;
                Api::<Namespace>::all(client)
                    .delete(&name, &DeleteParams::default())
                    .await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
            .map_err(|e| std::io::Error::other(e.to_string()))
        })
        .join();
        // Never panic in drop: it may run while the test is already panicking.
        match deleted {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: cannot delete namespace {}: {e}", self.name),
            Err(_) => eprintln!("warning: deleting namespace {} panicked", self.name),
        }
    }
}

/// Polls `f` until it returns `Some`, and returns that value; panics after `timeout`, naming
/// `what`. The delay between calls starts at 50 ms and grows to 500 ms, which keeps a local
/// cluster responsive while many tests poll at once.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    let mut delay = Duration::from_millis(50);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

/// Polls the object `name` until `done` holds for it, and returns it. On timeout the panic shows
/// the object as last seen (or that it did not exist), which is usually the diagnosis.
pub async fn wait_for_object<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    timeout: Duration,
    mut done: impl FnMut(&K) -> bool,
) -> K
where
    K: Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let start = Instant::now();
    let mut delay = Duration::from_millis(50);
    loop {
        let last = api.get_opt(name).await;
        if let Ok(Some(obj)) = &last
            && done(obj)
        {
            return obj.clone();
        }
        if start.elapsed() >= timeout {
            let seen = match last {
                Ok(Some(obj)) => serde_json::to_string_pretty(&obj).unwrap_or_default(),
                Ok(None) => "it does not exist".to_string(),
                Err(e) => format!("error: {e}"),
            };
            panic!("timed out after {timeout:?} waiting for {what}; last seen: {seen}");
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

/// Polls until the object `name` no longer exists (e.g. deleted by the garbage collector).
pub async fn wait_for_deletion<K>(api: &Api<K>, name: &str, what: &str, timeout: Duration)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    wait_until(what, timeout, || async {
        matches!(api.get_opt(name).await, Ok(None)).then_some(())
    })
    .await
}

/// An HTTP client for pods and Services of the local cluster: 5 s timeout, never a proxy.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .expect("an HTTP client")
}
