//! `spec.validation`, the pure part: the readiness gate the host puts on serving pods, which
//! pods are waiting for their sample request, and whether an answer is the one expected. The
//! request itself and the pod status patch are the controller's (`controller/validate.rs`).
//!
//! A pod of a model with `spec.validation` carries the readiness gate [`GATE`]: the kubelet
//! counts it Ready only once the operator has set the pod condition of that type to `True`, so
//! until then the Service sends it nothing and a rolling update (never below the wanted count)
//! keeps the old revision's pods. The condition's message starts with the digest of the
//! validation it answered ([`digest`]), so a changed `spec.validation` is asked again.
use crate::api::Validation;
use crate::cached::CachedPod;
use crate::inference::{self, Declared};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The pod condition type of the readiness gate.
pub use crate::conditions::VALIDATED_GATE as GATE;
/// Seconds a pod has to answer by default.
pub const DEFAULT_TIMEOUT_SECONDS: u32 = 10;
/// Bytes of an answer read (and quoted at most in a status message).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
pub const MAX_QUOTED_BYTES: usize = 1024;

/// A short digest of what a pod is asked and what it must answer.
pub fn digest(v: &Validation) -> String {
    let doc = serde_json::to_vec(v).expect("a validation serialises");
    hex::encode(&Sha256::digest(&doc)[..6])
}

/// Where the sample request goes: the spec's path, else the declared protocol's inference path.
pub fn path(v: &Validation, declared: Option<&Declared>) -> String {
    if let Some(path) = &v.path {
        return path.clone();
    }
    let declared = declared.cloned().unwrap_or_default();
    let url = inference::status(&declared, Some(""))
        .url
        .unwrap_or_default();
    if url.is_empty() { "/".into() } else { url }
}

/// `expect` as JSON, or why it is not.
pub fn expected(v: &Validation) -> Result<Option<Value>, String> {
    v.expect
        .as_deref()
        .map(|e| {
            serde_json::from_str(e)
                .map_err(|err| format!("spec.validation.expect is not JSON: {err}"))
        })
        .transpose()
}

/// Whether `actual` holds everything in `expected`: objects key by key (other keys allowed),
/// arrays element by element and of the same length, numbers by value (`1` is `1.0`), anything
/// else equal.
pub fn contains(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(want), Value::Object(got)) => want
            .iter()
            .all(|(k, w)| got.get(k).is_some_and(|g| contains(w, g))),
        (Value::Array(want), Value::Array(got)) => {
            want.len() == got.len() && want.iter().zip(got).all(|(w, g)| contains(w, g))
        }
        (Value::Number(w), Value::Number(g)) => w.as_f64() == g.as_f64(),
        (w, g) => w == g,
    }
}

/// The verdict on an answer: `Ok` when it is a 2xx that holds what is expected, else why not
/// (with the answer quoted, cut to [`MAX_QUOTED_BYTES`]).
pub fn judge(status: u16, body: &str, expected: Option<&Value>) -> Result<(), String> {
    let quoted = || crate::text::truncate(body.trim().to_string(), MAX_QUOTED_BYTES);
    if !(200..300).contains(&status) {
        return Err(format!("answered HTTP {status}: {}", quoted()));
    }
    let Some(expected) = expected else {
        return Ok(());
    };
    match serde_json::from_str::<Value>(body) {
        Ok(answer) if contains(expected, &answer) => Ok(()),
        Ok(_) => Err(format!(
            "answered {} where {expected} was expected",
            quoted()
        )),
        Err(_) => Err(format!("answered what is not JSON: {}", quoted())),
    }
}

/// Where a pod stands with the validation of digest `digest`.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Its containers are not ready yet: nothing to ask.
    NotReady,
    /// Ready to be asked, and not asked this validation yet.
    Due,
    Passed,
    /// It answered wrongly: the condition's message.
    Failed(String),
}

pub fn verdict(pod: &CachedPod, digest: &str) -> Verdict {
    let conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let of = |t: &str| conditions.iter().find(|c| c.type_ == t);
    if let Some(c) = of(GATE) {
        let message = c.message.as_deref().unwrap_or_default();
        if let Some(rest) = message
            .strip_prefix(digest)
            .and_then(|m| m.strip_prefix(": "))
        {
            return if c.status == "True" {
                Verdict::Passed
            } else {
                Verdict::Failed(rest.to_string())
            };
        }
    }
    match of("ContainersReady") {
        Some(c) if c.status == "True" => Verdict::Due,
        _ => Verdict::NotReady,
    }
}

/// The condition message recording a verdict on validation `digest`.
pub fn condition_message(digest: &str, outcome: &Result<(), String>) -> String {
    match outcome {
        Ok(()) => format!("{digest}: answered as expected"),
        Err(why) => format!("{digest}: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use serde_json::json;

    fn validation(expect: Option<&str>) -> Validation {
        Validation {
            path: None,
            request: r#"{"inputs": []}"#.into(),
            content_type: None,
            expect: expect.map(str::to_string),
            timeout_seconds: None,
        }
    }

    #[test]
    fn containment_is_by_key_and_by_element() {
        let answer = json!({"model_name": "m", "outputs": [{"name": "predict", "datatype": "INT64", "data": [0, 2, 1]}]});
        for (want, holds) in [
            (json!({"outputs": [{"data": [0, 2, 1]}]}), true),
            (json!({"outputs": [{"data": [0.0, 2.0, 1.0]}]}), true),
            (json!({}), true),
            (json!({"outputs": [{"data": [0, 2]}]}), false),
            (json!({"outputs": [{"data": [0, 1, 2]}]}), false),
            (json!({"outputs": [{"data": [0, 2, 1]}, {}]}), false),
            (json!({"model_name": "other"}), false),
            (json!({"missing": null}), false),
        ] {
            assert_eq!(contains(&want, &answer), holds, "{want}");
        }
    }

    #[test]
    fn answers_are_judged_by_status_then_content() {
        let want = json!({"outputs": [{"data": [1]}]});
        assert_eq!(
            judge(200, r#"{"outputs":[{"data":[1]}]}"#, Some(&want)),
            Ok(())
        );
        assert_eq!(judge(204, "", None), Ok(()));
        let wrong = judge(200, r#"{"outputs":[{"data":[2]}]}"#, Some(&want)).unwrap_err();
        assert!(
            wrong.contains(r#"[{"data":[2]}]"#) && wrong.contains("expected"),
            "{wrong}"
        );
        let refused = judge(500, "boom", None).unwrap_err();
        assert_eq!(refused, "answered HTTP 500: boom");
        assert!(
            judge(200, "<html>", Some(&want))
                .unwrap_err()
                .contains("not JSON")
        );
        let long = judge(400, &"x".repeat(10_000), None).unwrap_err();
        assert!(long.len() < MAX_QUOTED_BYTES + 100, "{}", long.len());
    }

    #[test]
    fn the_path_comes_from_the_spec_or_the_protocol() {
        let v2 = Declared {
            protocol: "v2".into(),
            model: Some("iris".into()),
        };
        assert_eq!(path(&validation(None), Some(&v2)), "/v2/models/iris/infer");
        assert_eq!(path(&validation(None), None), "/");
        let mut own = validation(None);
        own.path = Some("/predict".into());
        assert_eq!(path(&own, Some(&v2)), "/predict");
    }

    #[test]
    fn expect_must_be_json() {
        assert_eq!(expected(&validation(None)), Ok(None));
        assert_eq!(expected(&validation(Some("[1]"))), Ok(Some(json!([1]))));
        assert!(
            expected(&validation(Some("{oops")))
                .unwrap_err()
                .contains("not JSON")
        );
    }

    fn pod(conditions: &[(&str, &str, &str)]) -> CachedPod {
        let status = Some(PodStatus {
            conditions: Some(
                conditions
                    .iter()
                    .map(|(t, s, m)| PodCondition {
                        type_: t.to_string(),
                        status: s.to_string(),
                        message: Some(m.to_string()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        });
        CachedPod::new(Default::default(), None, status)
    }

    #[test]
    fn a_pod_is_asked_once_per_validation() {
        let d = digest(&validation(None));
        assert_eq!(verdict(&pod(&[]), &d), Verdict::NotReady);
        assert_eq!(
            verdict(&pod(&[("ContainersReady", "False", "")]), &d),
            Verdict::NotReady
        );
        assert_eq!(
            verdict(&pod(&[("ContainersReady", "True", "")]), &d),
            Verdict::Due
        );
        let passed = condition_message(&d, &Ok(()));
        assert_eq!(
            verdict(
                &pod(&[("ContainersReady", "True", ""), (GATE, "True", &passed)]),
                &d
            ),
            Verdict::Passed
        );
        let failed = condition_message(&d, &Err("answered HTTP 500: x".into()));
        assert_eq!(
            verdict(
                &pod(&[("ContainersReady", "True", ""), (GATE, "False", &failed)]),
                &d
            ),
            Verdict::Failed("answered HTTP 500: x".into())
        );
        // Another validation since: asked again.
        let other = digest(&validation(Some("{}")));
        assert_ne!(other, d);
        assert_eq!(
            verdict(
                &pod(&[("ContainersReady", "True", ""), (GATE, "False", &failed)]),
                &other
            ),
            Verdict::Due
        );
    }
}
