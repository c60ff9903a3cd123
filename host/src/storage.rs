//! Where a model's serving pods read its files: the mode the model asks for, else the
//! operator's `--storage-mode`, else chosen from the model's replicas and its claim's access
//! modes.
use crate::api::{MLModel, StorageMode, StorageStatus};

/// The storage mode of `model`, and why. Chosen per model when neither the model nor the
/// operator names one: `Shared` for one replica (its claim outlives the pod: a restart
/// downloads nothing) or a `ReadWriteMany` claim (every node mounts it), else `PerPod`,
/// because a `ReadWriteOnce` or node-bound claim keeps every replica on one node (or, on block
/// storage, leaves the second replica waiting on a Multi-Attach error).
pub fn choose(model: &MLModel, operator_default: Option<StorageMode>) -> StorageStatus {
    if let Some(mode) = model.spec.storage_mode {
        return StorageStatus {
            mode,
            reason: "spec.storageMode".into(),
        };
    }
    if let Some(mode) = operator_default {
        return StorageStatus {
            mode,
            reason: "the operator's --storage-mode".into(),
        };
    }
    let replicas = model.spec.replicas;
    if replicas <= 1 {
        return StorageStatus {
            mode: StorageMode::Shared,
            reason: "one replica: one claim, kept when its pod restarts".into(),
        };
    }
    if claim_is_read_write_many(model) {
        return StorageStatus {
            mode: StorageMode::Shared,
            reason: format!(
                "{replicas} replicas on a ReadWriteMany claim (spec.plugins.config.download.accessModes): one download, mounted on every node"
            ),
        };
    }
    StorageStatus {
        mode: StorageMode::PerPod,
        reason: format!(
            "{replicas} replicas and a ReadWriteOnce claim, which would hold every replica on one node: each pod downloads its own copy and replicas spread over nodes (a ReadWriteMany claim, spec.plugins.config.download.accessModes, gives one shared download)"
        ),
    }
}

/// Whether the download step's claim is `ReadWriteMany`, as the model's download config asks.
fn claim_is_read_write_many(model: &MLModel) -> bool {
    model.spec.step_config("download")["accessModes"]
        .as_array()
        .is_some_and(|modes| modes.iter().any(|m| m == "ReadWriteMany"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(replicas: i32, extra: &str) -> MLModel {
        serde_json::from_str(&format!(
            r#"{{"apiVersion":"mlmodel.dev/v1alpha1","kind":"MLModel","metadata":{{"name":"m","namespace":"d"}},"spec":{{"modelURL":"https://e.x/m","replicas":{replicas}{extra}}}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn one_replica_shares_its_claim() {
        assert_eq!(choose(&model(1, ""), None).mode, StorageMode::Shared);
    }

    #[test]
    fn replicas_on_a_read_write_once_claim_download_per_pod() {
        let s = choose(&model(2, ""), None);
        assert_eq!(s.mode, StorageMode::PerPod);
        assert!(s.reason.contains("ReadWriteOnce"), "{}", s.reason);
    }

    #[test]
    fn a_read_write_many_claim_is_shared() {
        let rwx = r#","plugins":{"config":{"download":{"accessModes":["ReadWriteMany"]}}}"#;
        assert_eq!(choose(&model(3, rwx), None).mode, StorageMode::Shared);
    }

    #[test]
    fn the_model_then_the_operator_decide_before_the_rule() {
        let asked = model(1, r#","storageMode":"PerPod""#);
        let s = choose(&asked, Some(StorageMode::Shared));
        assert_eq!(
            (s.mode, s.reason.as_str()),
            (StorageMode::PerPod, "spec.storageMode")
        );
        let s = choose(&model(4, ""), Some(StorageMode::Shared));
        assert_eq!(s.mode, StorageMode::Shared);
        assert!(s.reason.contains("--storage-mode"));
    }
}
