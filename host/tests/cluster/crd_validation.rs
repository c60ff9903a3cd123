//! The CRD refuses bad specs at `kubectl apply` time, with a message that says what is wrong.

use crate::common::flow::{Env, kubectl_path, repo_root};

#[tokio::test]
#[ignore = "needs the local cluster: make test"]
async fn invalid_specs_are_refused_by_kubectl_apply() {
    let env = Env::start("invalid", &[]).await;
    let kubectl = kubectl_path();
    let apply = |path: std::path::PathBuf| {
        std::process::Command::new(&kubectl)
            .args(["apply", "-n", &env.ns, "-f"])
            .arg(path)
            .output()
            .expect("run kubectl")
    };
    // The valid samples go through, so a refusal below is about the spec, not the setup.
    for sample in [
        "echo-model.yaml",
        "tensorflow-model.yaml",
        "sklearn-model.yaml",
    ] {
        let out = apply(repo_root().join("deploy/samples").join(sample));
        assert!(
            out.status.success(),
            "{sample}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dir = repo_root().join("host/tests/invalid-specs");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 30, "the corpus has {} specs", files.len());
    for file in files {
        let out = apply(file.clone());
        let stderr = String::from_utf8_lossy(&out.stderr);
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        assert!(!out.status.success(), "{name} was accepted");
        assert!(
            stderr.contains("is invalid")
                || stderr.contains("Invalid value")
                || stderr.contains("Required value"),
            "{name}: unclear refusal: {stderr}"
        );
        println!("{name}: {}", stderr.trim());
    }
}
