//! Models that answer, on the real node: a scikit-learn model trained by the test itself is
//! downloaded by the real Job, loaded by a real Seldon MLServer (the image `hack/runtime-image.sh`
//! builds and the cluster's registry serves under its upstream name), and answers Open Inference
//! Protocol (V2) requests through its Service with the predictions the same model gives locally.
//! And TF Serving's layout: where `--model_base_path` points, a real `saved_model.pb` lies.
use crate::common::flow::{Env, repo_root};
use crate::real_node::{FileServer, chain, cluster_ip, http, json_merge, model_pods, real_env};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use mlmodel_operator::api::{MLModel, Phase};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The virtualenv with the image's scikit-learn, numpy and joblib (`hack/runtime/sklearn-venv.sh`,
/// cached), made once per test process.
fn venv_python() -> &'static PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let out = Command::new(repo_root().join("hack/runtime/sklearn-venv.sh"))
            .output()
            .expect("run hack/runtime/sklearn-venv.sh");
        assert!(
            out.status.success(),
            "sklearn-venv.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        PathBuf::from(stdout.lines().last().expect("the venv's python").trim())
    })
}

/// A model trained here (`hack/runtime/train_iris.py`): its file, the V2 request for a few
/// sample rows, and what it predicts for them locally.
struct Trained {
    bytes: Vec<u8>,
    request: Value,
    predictions: Value,
}

fn train(args: &[&str]) -> Trained {
    let dir = tempfile_dir(&args.join("-"));
    let out = Command::new(venv_python())
        .arg(repo_root().join("hack/runtime/train_iris.py"))
        .arg("--out")
        .arg(&dir)
        .args(args)
        .output()
        .expect("run train_iris.py");
    assert!(
        out.status.success(),
        "train_iris.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8(out.stdout).unwrap();
    let printed: Value = serde_json::from_str(line.lines().last().unwrap()).unwrap();
    let bytes = std::fs::read(dir.join("model.joblib")).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    Trained {
        bytes,
        request: printed["request"].clone(),
        predictions: printed["predictions"].clone(),
    }
}

fn tempfile_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "mlmodel-train-{tag}-{}-{:?}",
        std::process::id(),
        Instant::now()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A model served by the `mlserver` plugin (picked by `framework: sklearn`) from a claim of the
/// real node's StorageClass.
fn sklearn_model(name: &str, url: &str, extra: Value) -> MLModel {
    let mut config = json!({"download": {"storageClassName": "local-path", "backoffLimit": 0}});
    json_merge(&mut config, extra);
    serde_json::from_value(json!({
        "apiVersion": "mlmodel.dev/v1alpha1",
        "kind": "MLModel",
        "metadata": {"name": name},
        "spec": {
            "modelURL": url,
            "storageSize": "64Mi",
            "framework": "sklearn",
            "replicas": 1,
            "expose": true,
            "plugins": {"config": config},
        },
    }))
    .expect("a valid model")
}

/// The path of `status.inference.url`, posted to through the Service's ClusterIP (this machine
/// does not resolve cluster DNS names).
async fn infer_url(env: &Env, model: &MLModel) -> String {
    let inference = model
        .status
        .as_ref()
        .and_then(|s| s.inference.clone())
        .expect("status.inference");
    let url = inference.url.expect("status.inference.url");
    let path = &url[url.find("/v2/").expect("a V2 path")..];
    let ip = cluster_ip(env, model.metadata.name.as_deref().unwrap()).await;
    format!("http://{ip}{path}")
}

/// POSTs `request`; the first output's data, or why there is none.
async fn infer(client: &reqwest::Client, url: &str, request: &Value) -> Result<Value, String> {
    let resp = client
        .post(url)
        .json(request)
        .send()
        .await
        .map_err(|e| format!("request: {}", chain(&e)))?;
    let status = resp.status();
    let body = resp.text().await.map_err(|e| format!("body: {e}"))?;
    if !status.is_success() {
        return Err(format!("HTTP {status}: {body}"));
    }
    let answer: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    Ok(answer["outputs"][0]["data"].clone())
}

/// As [`infer`], retrying while a Service created a moment ago is not routed yet (20 s at most).
async fn infer_when_routed(url: &str, request: &Value) -> Value {
    let t0 = Instant::now();
    loop {
        match infer(&http(), url, request).await {
            Ok(data) => return data,
            Err(e) if e.starts_with("request:") && t0.elapsed() < Duration::from_secs(20) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("POST {url}: {e}"),
        }
    }
}

/// A scikit-learn model trained here answers through its Service with the predictions it gives
/// locally, value for value; a URL change to a retrained model rolls with no failed inference
/// request, and the answers become the new model's.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_sklearn_model_answers_through_its_service_and_rolls_to_a_retrained_one() {
    let (a, b) = (train(&["--variant", "a"]), train(&["--variant", "b"]));
    assert_ne!(
        a.predictions, b.predictions,
        "the two variants must answer differently for the test to tell them apart"
    );
    let server = FileServer::start(vec![
        ("/a/model.joblib", a.bytes.clone()),
        ("/b/model.joblib", b.bytes.clone()),
    ]);
    let env = real_env("real-infer").await;
    let t0 = Instant::now();
    env.create(sklearn_model(
        "iris",
        &server.url("/a/model.joblib"),
        json!({}),
    ))
    .await;
    let ready = env
        .wait_phase("iris", Phase::Ready, Duration::from_secs(300))
        .await;
    println!("iris Ready {:?} after kubectl apply", t0.elapsed());
    let status = ready.status.clone().unwrap();
    assert_eq!(
        status.download.as_ref().and_then(|d| d.format.as_deref()),
        Some("sklearn"),
        "the downloader's format: {status:?}"
    );
    assert!(
        status.plugins["serve"].starts_with("mlserver@"),
        "{:?}",
        status.plugins
    );
    let inference = status.inference.clone().expect("status.inference");
    assert_eq!(inference.protocol, "v2");
    let name = inference
        .model_name
        .clone()
        .expect("the server's model name");
    assert_eq!(
        inference.url.as_deref(),
        Some(
            format!(
                "http://iris.{}.svc.cluster.local:80/v2/models/{name}/infer",
                env.ns
            )
            .as_str()
        )
    );

    // The pod is Ready only through the model's own ready endpoint, on the real node.
    let pods = model_pods(&env, "iris").await;
    let server_pod = pods
        .iter()
        .find(|p| {
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("mlmodel.dev/step"))
                .map(String::as_str)
                == Some("serve")
        })
        .expect("a server pod");
    let probe = server_pod.spec.as_ref().unwrap().containers[0]
        .readiness_probe
        .clone()
        .and_then(|p| p.http_get)
        .expect("an HTTP readiness probe");
    assert_eq!(
        probe.path.as_deref(),
        Some(format!("/v2/models/{name}/ready").as_str())
    );

    let url = infer_url(&env, &ready).await;
    let answer = infer_when_routed(&url, &a.request).await;
    println!("POST {url} -> {answer}");
    assert_eq!(
        answer, a.predictions,
        "the served model's answer differs from the local one"
    );

    // Inference requests every 50 ms (4 minutes' worth at most) while the retrained model
    // downloads and the Deployment rolls, until the new answers were seen 20 times.
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let client = http();
    let (request, old, new) = (
        a.request.clone(),
        a.predictions.clone(),
        b.predictions.clone(),
    );
    let prober_url = url.clone();
    let prober = tokio::spawn(async move {
        let (mut ok_old, mut ok_new, mut errors) = (0u32, 0u32, Vec::new());
        for _ in 0..4800 {
            if stop_rx.try_recv().is_ok() {
                break;
            }
            match infer(&client, &prober_url, &request).await {
                Ok(data) if data == old => ok_old += 1,
                Ok(data) if data == new => ok_new += 1,
                Ok(data) => errors.push(format!("an answer of neither model: {data}")),
                Err(e) => errors.push(e),
            }
            if ok_new >= 20 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (ok_old, ok_new, errors)
    });
    let first_rev = status.revision.clone();
    env.merge_spec("iris", json!({"modelURL": server.url("/b/model.joblib")}))
        .await;
    env.wait_until(
        "the retrained model to be served and Ready",
        Duration::from_secs(300),
        || async {
            let m = env.get("iris").await;
            let st = m.status.clone()?;
            (st.phase == Some(Phase::Ready)
                && st.observed_generation == m.metadata.generation
                && st.revision != first_rev)
                .then_some(())
        },
    )
    .await;
    let (ok_old, ok_new, errors) = tokio::time::timeout(Duration::from_secs(60), prober)
        .await
        .map(|r| r.unwrap())
        .unwrap_or_else(|_| {
            let _ = stop_tx.send(());
            panic!("the prober never saw the retrained model's answers 20 times")
        });
    println!(
        "during the update: {ok_old} answers of the old model, {ok_new} of the retrained one, {} errors",
        errors.len()
    );
    assert!(
        errors.is_empty(),
        "failed inference requests during the update: {errors:?}"
    );
    assert!(ok_old > 0 && ok_new >= 20, "old {ok_old}, new {ok_new}");
    assert_eq!(
        infer(&http(), &url, &b.request).await,
        Ok(b.predictions.clone())
    );
}

/// A file the format detector takes for a scikit-learn pickle but the runtime cannot load: the
/// server exits with its own error, and the model fails with it (the runtime's words, from the
/// container's termination message), not at a deadline.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_model_the_runtime_cannot_load_fails_with_the_runtimes_reason() {
    let broken = train(&["--broken"]);
    let server = FileServer::start(vec![("/model.joblib", broken.bytes)]);
    let env = real_env("real-unloadable").await;
    let t0 = Instant::now();
    env.create(sklearn_model(
        "unloadable",
        &server.url("/model.joblib"),
        json!({}),
    ))
    .await;
    let failed = env
        .wait_phase("unloadable", Phase::Failed, Duration::from_secs(240))
        .await;
    println!("Failed {:?} after kubectl apply", t0.elapsed());
    let status = failed.status.unwrap();
    let message = status.message.clone().unwrap_or_default();
    assert_eq!(
        status.download.as_ref().and_then(|d| d.format.as_deref()),
        Some("sklearn"),
        "passes the format check, so the server starts: {status:?}"
    );
    assert_eq!(
        status.reason.as_deref(),
        Some("CrashLoopBackOff"),
        "{status:?}"
    );
    assert!(
        message.contains("No module named 'sklearn.no_such_module'"),
        "the runtime's own reason is in the message: {message}"
    );
}

/// TF Serving's layout, proven on the real node: a real SavedModel (made here) downloaded by the
/// real Job, then a pod with the TF Serving Deployment's exact volumes and mounts (only the
/// image and command swapped: `tensorflow/serving` cannot be had here) finds `saved_model.pb`
/// at `<--model_base_path>/<version>/`, where TF Serving looks.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn tensorflow_serving_finds_the_saved_model_where_it_looks() {
    // SavedModel { saved_model_schema_version: 1, meta_graphs { meta_info_def { tags: "serve" } } }
    let saved_model_pb = b"\x08\x01\x12\x09\x0a\x07\x22\x05serve".to_vec();
    let archive = tar_gz(&[
        ("saved_model.pb", &saved_model_pb),
        ("variables/variables.index", b""),
    ]);
    let server = FileServer::start(vec![("/half_plus_two.tar.gz", archive)]);
    let env = real_env("real-tfserving").await;
    let model: MLModel = serde_json::from_value(json!({
        "apiVersion": "mlmodel.dev/v1alpha1",
        "kind": "MLModel",
        "metadata": {"name": "half"},
        "spec": {
            "modelURL": server.url("/half_plus_two.tar.gz"),
            "storageSize": "64Mi",
            "framework": "tensorflow",
            "replicas": 1,
            "plugins": {"config": {"download": {"storageClassName": "local-path", "backoffLimit": 0}}},
        },
    }))
    .unwrap();
    env.create(model).await;
    // Downloaded, its format checked; the server itself cannot pull its image here.
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.ns);
    let dep = env
        .wait_until(
            "the TF Serving Deployment",
            Duration::from_secs(240),
            || async {
                let list = deployments.list(&Default::default()).await.ok()?;
                list.items.into_iter().next()
            },
        )
        .await;
    // The status write of the reconcile that applied the Deployment may come a moment later.
    let format = env
        .wait_until(
            "the downloaded format in status",
            Duration::from_secs(60),
            || async { env.get("half").await.status?.download?.format },
        )
        .await;
    assert_eq!(format, "saved-model");
    let mut spec = dep.spec.unwrap().template.spec.unwrap();
    let server = &mut spec.containers[0];
    assert_eq!(server.image.as_deref(), Some("tensorflow/serving:2.18.0"));
    let base = server
        .args
        .iter()
        .flatten()
        .find_map(|a| a.strip_prefix("--model_base_path="))
        .expect("--model_base_path")
        .to_string();
    // Only the image, the command and the probes change; volumes and mounts stay as rendered.
    server.image = Some("busybox:1.35".into());
    server.command = Some(vec!["/bin/busybox".into(), "sh".into(), "-c".into(),
        // TF Serving takes the highest numeric directory under the base path as the version.
        r#"set -e; v=$(ls "$0" | grep -E '^[0-9]+$' | sort -n | tail -1); test -f "$0/$v/saved_model.pb"; echo "found $0/$v/saved_model.pb""#.into(),
        base.clone()]);
    server.args = None;
    server.readiness_probe = None;
    server.liveness_probe = None;
    server.ports = None;
    spec.restart_policy = Some("Never".into());
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.ns);
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "layout-check"},
        "spec": spec,
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let phase = env
        .wait_until(
            "the layout check to end",
            Duration::from_secs(180),
            || async {
                let p = pods.get("layout-check").await.ok()?;
                let phase = p.status?.phase?;
                matches!(phase.as_str(), "Succeeded" | "Failed").then_some(phase)
            },
        )
        .await;
    let log = pods
        .logs("layout-check", &Default::default())
        .await
        .unwrap_or_default();
    assert_eq!(
        phase, "Succeeded",
        "no saved_model.pb under {base}/<version>: {log}"
    );
    assert!(log.contains("saved_model.pb"), "{log}");
}

/// A gzip tar of `files` (path, bytes).
fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, path, *bytes).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

/// `spec.validation`: each new serving pod must answer a sample request as expected before it
/// takes traffic. A URL change to a model that loads but answers otherwise fails the model with
/// the answer in the message, and the old revision keeps every request; once the expectation
/// is the new model's, the same pod is asked again and the update goes through.
#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn a_revision_that_answers_wrongly_never_takes_traffic() {
    let (a, b) = (train(&["--variant", "a"]), train(&["--variant", "b"]));
    let server = FileServer::start(vec![
        ("/a/model.joblib", a.bytes.clone()),
        ("/b/model.joblib", b.bytes.clone()),
    ]);
    let env = real_env("real-validate").await;
    let validation = |predictions: &Value| {
        json!({
            "request": a.request.to_string(),
            "expect": json!({"outputs": [{"data": predictions}]}).to_string(),
        })
    };
    let mut model = sklearn_model("checked", &server.url("/a/model.joblib"), json!({}));
    model.spec.validation = serde_json::from_value(validation(&a.predictions)).unwrap();
    env.create(model).await;
    let ready = env
        .wait_phase("checked", Phase::Ready, Duration::from_secs(300))
        .await;
    let pods = model_pods(&env, "checked").await;
    let gate = pods
        .iter()
        .filter_map(|p| p.status.as_ref()?.conditions.as_ref())
        .flatten()
        .find(|c| c.type_ == "mlmodel.dev/validated")
        .expect("the validated condition on the serving pod");
    assert_eq!(gate.status, "True", "{gate:?}");
    let url = infer_url(&env, &ready).await;
    assert_eq!(infer_when_routed(&url, &a.request).await, a.predictions);

    // The retrained model answers the sample otherwise: it never replaces the one serving.
    env.merge_spec(
        "checked",
        json!({"modelURL": server.url("/b/model.joblib")}),
    )
    .await;
    let failed = env
        .wait_reason("checked", "ValidationFailed", Duration::from_secs(300))
        .await;
    let message = failed.status.as_ref().unwrap().message.clone().unwrap();
    println!("{message}");
    let b_data = serde_json::to_string(&b.predictions).unwrap();
    assert!(
        message.contains(&b_data) && message.contains("keep serving"),
        "the wrong answer and what keeps serving are in the message: {message}"
    );
    assert_eq!(failed.status.as_ref().unwrap().phase, Some(Phase::Failed));
    for _ in 0..20 {
        assert_eq!(
            infer(&http(), &url, &a.request).await,
            Ok(a.predictions.clone()),
            "a request reached the revision that answered wrongly"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Expecting the retrained model's answer: asked again, it takes over.
    env.merge_spec("checked", json!({"validation": validation(&b.predictions)}))
        .await;
    env.wait_until(
        "the retrained model to pass and be served",
        Duration::from_secs(180),
        || async {
            let m = env.get("checked").await;
            let st = m.status.clone()?;
            (st.phase == Some(Phase::Ready)
                && st.observed_generation == m.metadata.generation
                && st.revision != ready.status.as_ref().unwrap().revision)
                .then_some(())
        },
    )
    .await;
    // Ready names the revision that answers: the pods of the one before are gone by then.
    for _ in 0..20 {
        assert_eq!(
            infer(&http(), &url, &a.request).await,
            Ok(b.predictions.clone()),
            "a request after Ready reached the revision before"
        );
    }
}
