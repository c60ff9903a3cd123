//! The committed CRD is exactly what the Rust types generate (`make crd` rewrites it).
#[test]
fn committed_crd_matches_the_types() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/crd/mlmodel.dev_mlmodels.yaml");
    let committed = std::fs::read_to_string(&path).expect("deploy/crd/mlmodel.dev_mlmodels.yaml");
    let generated = mlmodel_operator::crd::yaml().unwrap();
    assert!(
        committed == generated,
        "{} is stale: run `make crd`",
        path.display()
    );
}
