//! Names, labels and the revision of the objects the host creates.
//!
//! Every name is a valid DNS-1035 label (<= 63 characters, lowercase alphanumerics and '-',
//! starting with a letter) whatever the model's own name (up to 253 characters, dots allowed),
//! and stable across reconciles: long names are cut and given a hashed suffix.
use crate::api::{LABEL_MANAGED_BY, LABEL_MODEL, MANAGER, MLModel, StorageMode};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

const MAX_LABEL: usize = 63;

fn short_hash(input: &str, len: usize) -> String {
    let digest = Sha256::digest(input.as_bytes());
    hex::encode(digest)[..len].to_string()
}

/// `model` turned into a DNS-1035 label with `suffix` appended (`<model>-<suffix>`), cut and
/// hashed when too long.
pub fn object_name(model: &str, suffix: &str) -> String {
    let mut base: String = model
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    if !base.starts_with(|c: char| c.is_ascii_lowercase()) {
        base.insert(0, 'm');
    }
    let tail = if suffix.is_empty() {
        String::new()
    } else {
        format!("-{suffix}")
    };
    let candidate = format!("{base}{tail}");
    if base == model && candidate.len() <= MAX_LABEL && !model.ends_with('-') {
        return candidate;
    }
    // Changed or too long: cut and add a hash of the original name, so `a.b` and `a-b`, or two
    // long names sharing a prefix, never collide.
    let hash = short_hash(model, 8);
    let room = MAX_LABEL - tail.len() - hash.len() - 1;
    let cut = base[..base.len().min(room)].trim_end_matches('-');
    format!("{cut}-{hash}{tail}")
}

/// A label value (<= 63 characters) that identifies the model; the name itself when it fits.
pub fn label_value(model: &str) -> String {
    let valid = model.len() <= MAX_LABEL
        && model
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && model.starts_with(|c: char| c.is_ascii_alphanumeric())
        && model.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        model.to_string()
    } else {
        object_name(model, "")
    }
}

/// What another model of the namespace must not share with `model`: its object names of every
/// suffix that does not depend on a revision, and the label value its pods are selected by.
/// Names are cut and hashed only when they must be, so a model literally named like another's
/// hashed form (`my-model-72da0a9e` beside `my.model`, or a 63-character name beside a longer
/// one) derives the same; the operator refuses the younger of two such models.
pub fn identity(model: &str) -> std::collections::BTreeSet<String> {
    ["", "server", "config"]
        .into_iter()
        .map(|suffix| format!("{suffix}:{}", object_name(model, suffix)))
        .chain([format!("label:{}", label_value(model))])
        .collect()
}

/// Whether every name of `model` is the model's name itself with its suffix (no cut, no hash):
/// two such models of different names never share one ([`identity`] need not be compared).
pub fn is_plain(model: &str) -> bool {
    model.len() + "-server".len() <= MAX_LABEL
        && model.starts_with(|c: char| c.is_ascii_lowercase())
        && !model.ends_with('-')
        && model
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The names a plugin is told to use, one per object it is expected to render.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Names {
    /// PersistentVolumeClaim holding this revision's files.
    pub volume: String,
    /// Download Job of this revision.
    pub job: String,
    /// Serving workload (Deployment); stable across revisions so an update is a rolling update.
    pub workload: String,
    /// Service.
    pub service: String,
    /// ConfigMap a plugin may add.
    pub config: String,
    /// Name of the model as the server knows it (TF Serving's model name).
    pub model: String,
}

impl Names {
    pub fn new(model: &str, revision: &str) -> Self {
        Names {
            volume: object_name(model, &format!("model-{revision}")),
            job: object_name(model, &format!("download-{revision}")),
            workload: object_name(model, "server"),
            service: object_name(model, ""),
            config: object_name(model, "config"),
            model: object_name(model, ""),
        }
    }
}

/// Labels that select the model's serving pods (the Deployment's selector and the Service's).
pub fn selector_labels(model: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MODEL.to_string(), label_value(model)),
        ("app.kubernetes.io/name".to_string(), "mlmodel".to_string()),
        ("app.kubernetes.io/instance".to_string(), label_value(model)),
    ])
}

/// Labels that identify every object of the model (for listing and pruning).
pub fn owned_labels(model: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MODEL.to_string(), label_value(model)),
        (LABEL_MANAGED_BY.to_string(), MANAGER.to_string()),
    ])
}

/// What the user asked to download: the inputs of the revision hash.
#[derive(Serialize)]
struct RevisionInputs<'a> {
    url: &'a str,
    sha256: Option<String>,
    credentials: Option<&'a str>,
    plugin: &'a str,
    config: &'a serde_json::Value,
    /// Only `PerPod` is written, so the revisions of shared claims stay as they were.
    #[serde(skip_serializing_if = "Option::is_none")]
    storage: Option<&'static str>,
}

/// A short hash of what the user asked to download (URL, sha256, credentials reference, download
/// plugin name and its config) and where it is stored (a per-pod revision is another set of
/// pods, and its shared claim is pruned once they serve). It deliberately ignores the plugin's
/// binary, so upgrading the operator or a plugin never downloads every model again.
pub fn revision(model: &MLModel, download_plugin: &str, storage: StorageMode) -> String {
    let spec = &model.spec;
    let config = model.spec.step_config("download");
    let inputs = RevisionInputs {
        url: &spec.model_url,
        sha256: spec.sha256.as_ref().map(|s| s.to_ascii_lowercase()),
        credentials: spec
            .credentials_secret_ref
            .as_ref()
            .map(|s| s.name.as_str()),
        plugin: download_plugin.split('@').next().unwrap_or(download_plugin),
        config: &config,
        storage: (storage == StorageMode::PerPod).then_some(storage.as_str()),
    };
    let json = serde_json::to_string(&inputs).expect("revision inputs serialise");
    short_hash(&json, 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_dns1035(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= 63
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    }

    #[test]
    fn short_names_are_kept() {
        assert_eq!(object_name("resnet", "server"), "resnet-server");
        assert_eq!(object_name("resnet", ""), "resnet");
        assert_eq!(label_value("resnet"), "resnet");
    }

    #[test]
    fn every_name_is_a_valid_stable_label() {
        let long = "a".repeat(253);
        let dotted = format!("{}.{}", "b".repeat(120), "c".repeat(120));
        for model in [
            "x",
            "9lives",
            "a.b",
            long.as_str(),
            dotted.as_str(),
            "a-",
            "UPPER",
        ] {
            for suffix in ["", "server", "download-0123456789", "model-0123456789"] {
                let n = object_name(model, suffix);
                assert!(is_dns1035(&n), "{model:?} + {suffix:?} -> {n:?}");
                assert_eq!(n, object_name(model, suffix), "stable");
            }
            let l = label_value(model);
            assert!(l.len() <= 63, "{l}");
        }
    }

    #[test]
    fn twins_by_derivation_are_found_and_plain_names_are_not_twins() {
        // `my.model` is cut and hashed; a model literally named like the result is its twin.
        let hashed = object_name("my.model", "");
        assert!(hashed.starts_with("my-model-"), "{hashed}");
        assert!(!identity("my.model").is_disjoint(&identity(&hashed)));
        // A 63-character name is its own label; a longer one sharing its start is hashed to a
        // label that a literal model name can equal.
        let long = format!("{}.x", "l".repeat(70));
        let twin = label_value(&long);
        assert!(!identity(&long).is_disjoint(&identity(&twin)));
        // Plain names: a Deployment `a-server` and a Service `a-server` are different kinds.
        assert!(is_plain("a") && is_plain("a-server"));
        assert!(identity("a").is_disjoint(&identity("a-server")));
        assert!(!is_plain("my.model") && !is_plain(&"p".repeat(60)));
    }

    #[test]
    fn distinct_models_get_distinct_names() {
        assert_ne!(object_name("a.b", "x"), object_name("a-b", "x"));
        let p = "p".repeat(100);
        assert_ne!(
            object_name(&format!("{p}1"), ""),
            object_name(&format!("{p}2"), "")
        );
    }
}
