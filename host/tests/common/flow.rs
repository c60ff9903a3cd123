//! Support for controller tests: a namespace with its own in-process controller, and waits on
//! the models in it.
#![allow(dead_code)]

use futures::StreamExt;
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, CustomResourceExt, ResourceExt};
use mlmodel_operator::api::{MLModel, Phase};
use mlmodel_operator::apply::api_resource;
use mlmodel_operator::conditions::ConditionType;
use mlmodel_operator::controller;
use mlmodel_operator::metrics::Metrics;
use mlmodel_operator::plugins::{Runtime, RuntimeOptions};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;

static CRD: OnceCell<()> = OnceCell::const_new();

/// Installs the MLModel CRD once per test binary and waits until it is served.
pub async fn ensure_crd(client: &Client) {
    CRD.get_or_init(|| async {
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        crds.patch(
            "mlmodels.mlmodel.dev",
            &PatchParams::apply("mlmodel-tests").force(),
            &Patch::Apply(MLModel::crd()),
        )
        .await
        .expect("apply the CRD");
        let models: Api<MLModel> = Api::all(client.clone());
        for _ in 0..100 {
            if models.list(&ListParams::default().limit(1)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the MLModel CRD was not served in time");
    })
    .await;
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The image of a Deployment's first container.
pub fn first_image(d: &k8s_openapi::api::apps::v1::Deployment) -> String {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

/// A sample from `deploy/samples/`.
pub fn sample_model(file: &str) -> MLModel {
    let text =
        std::fs::read_to_string(repo_root().join("deploy/samples").join(file)).expect("sample");
    serde_yaml::from_str(&text).expect("sample parses")
}

/// Sets `spec.plugins.config`.
pub fn set_config(model: &mut MLModel, config: serde_json::Value) {
    model.spec.plugins = Some(mlmodel_operator::api::PluginsSpec {
        config: Some(config.into()),
    });
}

/// The phases seen first to last must follow the flow's order and end Ready. Steps on the way
/// may be coalesced: a model's first status is written once it is 2 s old, so a model that walks
/// to Ready faster shows Ready first. Only such a model may skip storage and download.
pub fn assert_flow_order(seen: &[Phase], ready: &MLModel) {
    let order = [
        Phase::Pending,
        Phase::CreatingStorage,
        Phase::Downloading,
        Phase::Deploying,
        Phase::Ready,
    ];
    let idx: Vec<usize> = seen
        .iter()
        .map(|p| {
            order
                .iter()
                .position(|o| o == p)
                .unwrap_or_else(|| panic!("unexpected phase {p} in {seen:?}"))
        })
        .collect();
    assert!(
        idx.windows(2).all(|w| w[0] <= w[1]),
        "phases out of order: {seen:?}"
    );
    assert!(seen.last() == Some(&Phase::Ready), "{seen:?}");
    if !(seen.contains(&Phase::Downloading) || seen.contains(&Phase::CreatingStorage)) {
        let created = ready
            .metadata
            .creation_timestamp
            .as_ref()
            .expect("created")
            .0;
        let st = ready.status.as_ref().expect("status");
        let at = st
            .condition(ConditionType::Ready)
            .map(|c| c.last_transition_time.0)
            .expect("Ready condition");
        let took = at.duration_since(created).as_secs_f64();
        // Timestamps have whole seconds: 2 s window plus rounding.
        assert!(
            took <= 4.0,
            "no storage/download phase seen ({seen:?}), yet Ready took {took} s"
        );
    }
}

pub struct Env {
    pub client: Client,
    pub ns: String,
    controller: Option<JoinHandle<()>>,
    /// What the in-process controller's plugin runtime is built with (a cache dir is added).
    opts: RuntimeOptions,
    _namespace: super::TestNamespace,
}

pub struct PhaseRecorder {
    handle: JoinHandle<Vec<Phase>>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl PhaseRecorder {
    /// The phases seen once the watch has delivered `Ready` (polling can see it first), or
    /// after 30 s, whichever comes first.
    pub async fn stop(self) -> Vec<Phase> {
        let mut handle = self.handle;
        match tokio::time::timeout(Duration::from_secs(30), &mut handle).await {
            Ok(seen) => seen.expect("recorder"),
            Err(_) => {
                let _ = self.stop.send(());
                handle.await.expect("recorder")
            }
        }
    }
}

impl Env {
    /// A fresh namespace (with `labels`) and a controller watching only it.
    pub async fn start(prefix: &str, labels: &[(&str, &str)]) -> Env {
        Self::start_with(prefix, labels, &[], RuntimeOptions::default()).await
    }

    /// A fresh namespace (with `labels` and `annotations`) and a controller watching only it,
    /// whose plugin runtime is built from `opts`.
    pub async fn start_with(
        prefix: &str,
        labels: &[(&str, &str)],
        annotations: &[(&str, &str)],
        opts: RuntimeOptions,
    ) -> Env {
        let client = super::client().await;
        ensure_crd(&client).await;
        let namespace = super::TestNamespace::with_meta(&client, prefix, labels, annotations).await;
        let mut env = Env {
            client,
            ns: namespace.name().to_string(),
            controller: None,
            opts,
            _namespace: namespace,
        };
        env.start_controller();
        env
    }

    /// A fresh namespace with no controller (for tests that run the operator as a process).
    pub async fn without_controller(prefix: &str, labels: &[(&str, &str)]) -> Env {
        Self::without_controller_meta(prefix, labels, &[]).await
    }

    /// Same, with namespace annotations too (e.g. [`super::REAL_NODE`]).
    pub async fn without_controller_meta(
        prefix: &str,
        labels: &[(&str, &str)],
        annotations: &[(&str, &str)],
    ) -> Env {
        let client = super::client().await;
        ensure_crd(&client).await;
        let namespace = super::TestNamespace::with_meta(&client, prefix, labels, annotations).await;
        Env {
            client,
            ns: namespace.name().to_string(),
            controller: None,
            opts: RuntimeOptions::default(),
            _namespace: namespace,
        }
    }

    pub fn start_controller(&mut self) {
        let (client, ns) = (self.client.clone(), self.ns.clone());
        let opts = RuntimeOptions {
            cache_dir: Some(std::env::temp_dir().join("mlmodel-test-wasm-cache")),
            ..self.opts.clone()
        };
        let runtime = Runtime::new(opts).expect("plugin runtime");
        self.controller = Some(tokio::spawn(async move {
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
        }));
    }

    pub fn stop_controller(&mut self) {
        if let Some(h) = self.controller.take() {
            h.abort();
        }
    }

    pub fn models(&self) -> Api<MLModel> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub async fn create(&self, mut model: MLModel) {
        model.metadata.namespace = Some(self.ns.clone());
        self.models()
            .create(&PostParams::default(), &model)
            .await
            .expect("create model");
    }

    /// Creates a model from its JSON text, sent as given (the reply is not decoded).
    pub async fn create_raw(&self, json: String) {
        let url = format!("/apis/mlmodel.dev/v1alpha1/namespaces/{}/mlmodels", self.ns);
        let request = kube::core::Request::new(url)
            .create(&PostParams::default(), json.into_bytes())
            .expect("build the create request");
        self.client
            .request_text(request)
            .await
            .expect("create model from JSON");
    }

    pub async fn get(&self, name: &str) -> MLModel {
        self.models().get(name).await.expect("get model")
    }

    pub async fn merge_spec(&self, name: &str, spec: serde_json::Value) {
        self.models()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "spec": spec })),
            )
            .await
            .expect("patch spec");
    }

    /// Records every phase the model's status goes through, as a watch sees it.
    pub fn record_phases(&self, name: &str) -> PhaseRecorder {
        let api = self.models();
        let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let handle = tokio::spawn(async move {
            let mut seen: Vec<Phase> = Vec::new();
            let mut stream = watcher(api, cfg).applied_objects().boxed();
            loop {
                tokio::select! {
                    _ = &mut stopped => return seen,
                    ev = stream.next() => match ev {
                        Some(Ok(m)) => {
                            if let Some(p) = m.status.and_then(|s| s.phase)
                                && seen.last() != Some(&p)
                            {
                                seen.push(p);
                                if p == Phase::Ready {
                                    return seen;
                                }
                            }
                        }
                        Some(Err(_)) => continue,
                        None => return seen,
                    }
                }
            }
        });
        PhaseRecorder { handle, stop }
    }

    /// Polls `f` until it yields, or panics naming `what` and the namespace's models.
    pub async fn wait_until<T, F, Fut>(&self, what: &str, timeout: Duration, mut f: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(v) = f().await {
                return v;
            }
            if tokio::time::Instant::now() > deadline {
                let models = self
                    .models()
                    .list(&ListParams::default())
                    .await
                    .map(|l| l.items)
                    .unwrap_or_default();
                let states: Vec<String> = models
                    .iter()
                    .map(|m| {
                        let st = m.status.clone().unwrap_or_default();
                        format!(
                            "{}: {:?} {:?} {:?}",
                            m.name_any(),
                            st.phase,
                            st.reason,
                            st.message
                        )
                    })
                    .collect();
                panic!(
                    "timed out waiting for {what} in {}; models: {states:#?}",
                    self.ns
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn wait_phase(&self, name: &str, phase: Phase, timeout: Duration) -> MLModel {
        self.wait_until(&format!("{name} to be {phase}"), timeout, || async {
            let m = self.models().get(name).await.ok()?;
            let st = m.status.as_ref()?;
            (st.phase == Some(phase) && st.observed_generation == m.metadata.generation)
                .then_some(m)
        })
        .await
    }

    pub async fn wait_reason(&self, name: &str, reason: &str, timeout: Duration) -> MLModel {
        self.wait_until(&format!("{name} to report {reason}"), timeout, || async {
            let m = self.models().get(name).await.ok()?;
            (m.status.as_ref()?.reason.as_deref() == Some(reason)).then_some(m)
        })
        .await
    }

    /// Every object of the kinds the host applies that the model owns, as (kind, metadata).
    pub async fn owned_objects(&self, model: &MLModel) -> Vec<(String, ObjectMeta)> {
        let uid = model.uid().unwrap();
        self.all_objects()
            .await
            .into_iter()
            .filter(|(_, m)| m.owner_references.iter().flatten().any(|o| o.uid == uid))
            .collect()
    }

    /// Every object labelled as the model's, owned or not (to find orphans).
    pub async fn labelled_objects(&self, name: &str) -> Vec<(String, ObjectMeta)> {
        self.all_objects()
            .await
            .into_iter()
            .filter(|(_, m)| {
                m.labels
                    .as_ref()
                    .and_then(|l| l.get("mlmodel.dev/model"))
                    .map(String::as_str)
                    == Some(name)
            })
            .collect()
    }

    async fn all_objects(&self) -> Vec<(String, ObjectMeta)> {
        let mut out = Vec::new();
        for kind in [
            "PersistentVolumeClaim",
            "Job",
            "Deployment",
            "Service",
            "ConfigMap",
            "PodDisruptionBudget",
            "Pod",
        ] {
            let ar = api_resource(kind).unwrap();
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &self.ns, &ar);
            for o in api.list(&ListParams::default()).await.expect("list").items {
                if o.metadata.deletion_timestamp.is_none() || kind != "Pod" {
                    out.push((kind.to_string(), o.metadata));
                }
            }
        }
        out
    }

    /// Waits (20 s at most) for an Event of `reason` about model `name`: the operator publishes it
    /// just after the status it explains, so a status seen is no proof the Event is there yet.
    pub async fn wait_event(&self, name: &str, reason: &str) {
        self.wait_until(
            &format!("a {reason} Event of {name}"),
            Duration::from_secs(20),
            || async {
                self.event_reasons(name)
                    .await
                    .iter()
                    .any(|r| r == reason)
                    .then_some(())
            },
        )
        .await;
    }

    pub async fn event_reasons(&self, name: &str) -> Vec<String> {
        self.events_of(name)
            .await
            .into_iter()
            .map(|(r, _)| r)
            .collect()
    }

    /// The Events of `name`: reason and message.
    pub async fn events_of(&self, name: &str) -> Vec<(String, String)> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.ns);
        let lp = ListParams::default().fields(&format!("involvedObject.name={name}"));
        events
            .list(&lp)
            .await
            .expect("events")
            .items
            .into_iter()
            .filter_map(|e| Some((e.reason?, e.message.unwrap_or_default())))
            .collect()
    }

    /// `kubectl wait --for=condition=Ready` returns for the model.
    pub async fn kubectl_wait_ready(&self, name: &str) {
        let kubectl = kubectl_path();
        let out = std::process::Command::new(&kubectl)
            .args([
                "wait",
                "--for=condition=Ready",
                &format!("mlmodel/{name}"),
                "-n",
                &self.ns,
                "--timeout=60s",
            ])
            .output()
            .expect("run kubectl");
        assert!(
            out.status.success(),
            "kubectl wait failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // The controller goes first, then the namespace (TestNamespace's own drop).
        self.stop_controller();
    }
}

/// The kubectl built with the control plane (same version as the apiserver), else PATH's.
pub fn kubectl_path() -> PathBuf {
    let out = std::process::Command::new(repo_root().join("hack/build-tools.sh")).output();
    if let Ok(out) = out {
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let p = PathBuf::from(dir).join("kubectl");
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("kubectl")
}
