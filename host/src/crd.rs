//! `mlmodel-operator crd`: the CustomResourceDefinition generated from the Rust types.
use crate::api::MLModel;
use anyhow::Result;
use kube::CustomResourceExt;

/// The CRD as YAML, exactly as committed in `deploy/crd/mlmodel.dev_mlmodels.yaml`.
pub fn yaml() -> Result<String> {
    Ok(serde_yaml::to_string(&MLModel::crd())?)
}

pub fn print() -> Result<()> {
    print!("{}", yaml()?);
    Ok(())
}
