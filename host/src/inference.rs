//! How clients call a served model: what its serve plugin declares on the workload (the
//! `mlmodel.dev/inference-protocol` and `mlmodel.dev/inference-model` annotations), turned into
//! `status.inference` with the URL a client posts to.
use crate::api::InferenceStatus;
use std::collections::BTreeMap;

pub const PROTOCOL_ANNOTATION: &str = "mlmodel.dev/inference-protocol";
pub const MODEL_ANNOTATION: &str = "mlmodel.dev/inference-model";

/// The protocols the host knows the request path of.
pub const V2: &str = "v2";
pub const TFSERVING_REST: &str = "tfserving-rest";
pub const HTTP: &str = "http";

/// What a serve plugin declared; a workload that declares nothing is a plain HTTP server.
#[derive(Clone, Debug, PartialEq)]
pub struct Declared {
    pub protocol: String,
    pub model: Option<String>,
}

impl Default for Declared {
    fn default() -> Self {
        Declared {
            protocol: HTTP.into(),
            model: None,
        }
    }
}

/// The declaration in a workload's annotations. A plugin's value reaches status and a URL
/// path, so one that is not a short token is ignored (the workload then declares nothing).
pub fn declared(annotations: Option<&BTreeMap<String, String>>) -> Option<Declared> {
    let annotations = annotations?;
    let protocol = annotations.get(PROTOCOL_ANNOTATION)?;
    let token = |s: &str, max: usize| {
        !s.is_empty()
            && s.len() <= max
            && !s.starts_with('.')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    if !token(protocol, 32) {
        return None;
    }
    let model = match annotations.get(MODEL_ANNOTATION) {
        Some(m) if token(m, 253) => Some(m.clone()),
        Some(_) => return None,
        None => None,
    };
    Some(Declared {
        protocol: protocol.clone(),
        model,
    })
}

/// `status.inference` for a model served under `declared`, exposed at `service_url`
/// (`http://host:port`) if it is.
pub fn status(declared: &Declared, service_url: Option<&str>) -> InferenceStatus {
    let path = match (declared.protocol.as_str(), declared.model.as_deref()) {
        (V2, Some(model)) => format!("/v2/models/{model}/infer"),
        (TFSERVING_REST, Some(model)) => format!("/v1/models/{model}:predict"),
        _ => "/".to_string(),
    };
    InferenceStatus {
        protocol: declared.protocol.clone(),
        url: service_url.map(|base| format!("{}{path}", base.trim_end_matches('/'))),
        model_name: declared.model.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn each_protocol_has_its_request_url() {
        let url = Some("http://m.ns.svc.cluster.local:80");
        let v2 = Declared {
            protocol: V2.into(),
            model: Some("iris".into()),
        };
        assert_eq!(
            status(&v2, url).url.as_deref(),
            Some("http://m.ns.svc.cluster.local:80/v2/models/iris/infer")
        );
        let tf = Declared {
            protocol: TFSERVING_REST.into(),
            model: Some("resnet".into()),
        };
        assert_eq!(
            status(&tf, url).url.as_deref(),
            Some("http://m.ns.svc.cluster.local:80/v1/models/resnet:predict")
        );
        let plain = status(&Declared::default(), url);
        assert_eq!(plain.protocol, "http");
        assert_eq!(
            plain.url.as_deref(),
            Some("http://m.ns.svc.cluster.local:80/")
        );
        assert_eq!(plain.model_name, None);
        // Not exposed: no URL, the rest still says how to call it.
        let unexposed = status(&v2, None);
        assert_eq!(unexposed.url, None);
        assert_eq!(unexposed.model_name.as_deref(), Some("iris"));
    }

    #[test]
    fn only_short_tokens_are_taken_from_a_plugin() {
        let ok = annotations(&[(PROTOCOL_ANNOTATION, "v2"), (MODEL_ANNOTATION, "iris-1")]);
        assert_eq!(
            declared(Some(&ok)),
            Some(Declared {
                protocol: "v2".into(),
                model: Some("iris-1".into())
            })
        );
        assert_eq!(declared(None), None);
        assert_eq!(
            declared(Some(&annotations(&[(MODEL_ANNOTATION, "x")]))),
            None
        );
        for (protocol, model) in [
            ("v2", "../../admin"),
            ("v2", "a b"),
            ("v2", ".."),
            ("v2?x=1", "m"),
            ("", "m"),
            (&"p".repeat(33), "m"),
        ] {
            let a = annotations(&[(PROTOCOL_ANNOTATION, protocol), (MODEL_ANNOTATION, model)]);
            assert_eq!(declared(Some(&a)), None, "{protocol} {model}");
        }
    }
}
