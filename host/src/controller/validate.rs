//! `spec.validation`, the I/O: each new serving pod whose containers are ready is sent the
//! sample request, and the verdict is written on its readiness gate (a pod status condition),
//! which the kubelet turns into the pod's readiness. What is due and what an answer is worth
//! are decided in `crate::validation`.
use crate::api::Validation;
use crate::cached::CachedPod;
use crate::inference::Declared;
use crate::validation::{self, Verdict};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use std::sync::OnceLock;
use std::time::Duration;
use tracing::{info, warn};

/// One client for every sample request: pods are asked by IP, over plain HTTP, never through a
/// proxy.
fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("an HTTP client")
    })
}

/// What asking the pods found: the first pod that answered wrongly (name, why), and whether a
/// pod could not be asked yet (look again soon).
#[derive(Default)]
pub struct Asked {
    pub failed: Option<(String, String)>,
    pub retry: bool,
}

/// Asks every pod of `pods` that is due, records each verdict on the pod, and reports.
pub async fn ask_pods(
    client: &Client,
    ns: &str,
    v: &Validation,
    expected: Option<&Value>,
    pods: &[&CachedPod],
    port: Option<i64>,
    declared: Option<&Declared>,
) -> Result<Asked, kube::Error> {
    let digest = validation::digest(v);
    let path = validation::path(v, declared);
    let mut asked = Asked::default();
    for pod in pods {
        let outcome = match validation::verdict(pod, &digest) {
            Verdict::NotReady | Verdict::Passed => continue,
            Verdict::Failed(why) => {
                asked.failed.get_or_insert((pod.name_any(), why));
                continue;
            }
            Verdict::Due => {
                let ip = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref());
                match (ip, port) {
                    (_, None) => Err(
                        "has no container port named http to send the sample request to"
                            .to_string(),
                    ),
                    (None, _) => {
                        asked.retry = true;
                        continue;
                    }
                    (Some(ip), Some(port)) => match ask(ip, port, &path, v, expected).await {
                        Some(outcome) => outcome,
                        // Not reached: not an answer, so nothing is recorded; again soon.
                        None => {
                            asked.retry = true;
                            continue;
                        }
                    },
                }
            }
        };
        let name = pod.name_any();
        match &outcome {
            Ok(()) => {
                info!(pod = %name, namespace = %ns, %path, "pod answered the sample request as expected")
            }
            Err(why) => {
                warn!(pod = %name, namespace = %ns, %path, %why, "pod answered the sample request wrongly")
            }
        }
        record(client, ns, &name, &digest, &outcome).await?;
        if let Err(why) = outcome {
            asked.failed.get_or_insert((name, why));
        }
    }
    Ok(asked)
}

/// POSTs the sample request to the pod; `None` when the pod could not be reached at all.
async fn ask(
    ip: &str,
    port: i64,
    path: &str,
    v: &Validation,
    expected: Option<&Value>,
) -> Option<Result<(), String>> {
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    let url = format!("http://{host}:{port}{path}");
    let timeout = v
        .timeout_seconds
        .unwrap_or(validation::DEFAULT_TIMEOUT_SECONDS);
    let sent = client()
        .post(&url)
        .header(
            reqwest::header::CONTENT_TYPE,
            v.content_type.as_deref().unwrap_or("application/json"),
        )
        .body(v.request.clone())
        .timeout(Duration::from_secs(timeout.into()))
        .send()
        .await;
    let resp = match sent {
        Ok(resp) => resp,
        Err(e) if e.is_timeout() => {
            return Some(Err(format!(
                "did not answer the sample request within {timeout}s"
            )));
        }
        Err(e) => {
            warn!(%url, error = %e, "sample request not delivered; asking again");
            return None;
        }
    };
    let status = resp.status().as_u16();
    let body = read_bounded(resp).await;
    Some(validation::judge(status, &body, expected))
}

/// The body, at most [`validation::MAX_ANSWER_BYTES`] of it.
async fn read_bounded(mut resp: reqwest::Response) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() >= validation::MAX_ANSWER_BYTES {
            body.truncate(validation::MAX_ANSWER_BYTES);
            break;
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// Writes the verdict as the pod's readiness-gate condition.
async fn record(
    client: &Client,
    ns: &str,
    pod: &str,
    digest: &str,
    outcome: &Result<(), String>,
) -> Result<(), kube::Error> {
    let (status, reason) = match outcome {
        Ok(()) => ("True", "Answered"),
        Err(_) => ("False", "WrongAnswer"),
    };
    let now = k8s_openapi::jiff::Timestamp::now();
    let patch = json!({"status": {"conditions": [{
        "type": validation::GATE,
        "status": status,
        "reason": reason,
        "message": validation::condition_message(digest, outcome),
        "lastTransitionTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now),
    }]}});
    Api::<Pod>::namespaced(client.clone(), ns)
        .patch_status(pod, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .map(|_| ())
}
