//! The install files, checked without a cluster or a container engine: the Dockerfile builds
//! the crate's binary with a new-enough Rust and the wasm target and runs it as non-root; the
//! Deployment in deploy/ is the restricted one the README describes; the copies of the CRD and
//! of the RBAC rules agree. (deploy_install.rs renders and applies them on the local cluster.)

use crate::deploy_support::*;
use serde_json::{Value, json};

/// One Dockerfile instruction: keyword (upper case) and its arguments, continuations joined.
#[derive(Debug)]
struct Instr {
    keyword: String,
    args: String,
}

fn dockerfile() -> Vec<Instr> {
    let text = read("Dockerfile");
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(body) = trimmed.strip_suffix('\\') {
            current.push_str(body);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (keyword, args) = current.split_once(' ').unwrap_or((&current, ""));
        out.push(Instr {
            keyword: keyword.to_ascii_uppercase(),
            args: args.trim().to_string(),
        });
        current.clear();
    }
    out
}

/// The stages: (FROM arguments, instructions).
fn stages(instrs: &[Instr]) -> Vec<(String, Vec<&Instr>)> {
    let mut stages: Vec<(String, Vec<&Instr>)> = Vec::new();
    for i in instrs {
        if i.keyword == "FROM" {
            stages.push((i.args.clone(), Vec::new()));
        } else if let Some(last) = stages.last_mut() {
            last.1.push(i);
        }
    }
    stages
}

/// `[flags] src... dest` of a COPY: (flags, sources, destination).
fn copy_parts(args: &str) -> (Vec<&str>, Vec<&str>, &str) {
    let words: Vec<&str> = args.split_whitespace().collect();
    let flags: Vec<&str> = words
        .iter()
        .copied()
        .take_while(|w| w.starts_with("--"))
        .collect();
    let rest = &words[flags.len()..];
    let (dest, srcs) = rest.split_last().expect("COPY has a destination");
    (flags, srcs.to_vec(), dest)
}

/// `key = "value"` of a TOML section (the workspace files are simple enough for that).
fn toml_value(text: &str, section: &str, key: &str) -> Option<String> {
    let mut in_section = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_section = line == section;
            continue;
        }
        if in_section
            && let Some((k, v)) = line.split_once('=')
            && k.trim() == key
        {
            return Some(v.trim().trim_matches('"').to_string());
        }
    }
    None
}

fn version(v: &str) -> Vec<u32> {
    v.split('.')
        .map(|p| p.parse().expect("numeric version"))
        .collect()
}

#[test]
fn dockerfile_builds_the_crates_binary_with_the_wasm_target_and_runs_it_as_non_root() {
    let instrs = dockerfile();
    let stages = stages(&instrs);
    assert!(stages.len() >= 2, "a multi-stage build: {stages:?}");
    let workspace = read("Cargo.toml");
    let host = read("host/Cargo.toml");
    let bin = toml_value(&host, "[[bin]]", "name").expect("host/Cargo.toml has a [[bin]] name");

    // The builder: the official Rust image, at least the workspace's rust-version.
    let (builder_from, builder) = &stages[0];
    let image = builder_from.split_whitespace().next().unwrap();
    let tag = image
        .strip_prefix("docker.io/library/rust:")
        .or_else(|| image.strip_prefix("rust:"))
        .unwrap_or_else(|| panic!("the builder is not the official Rust image: {image}"));
    let image_rust = tag.split('-').next().unwrap();
    let wanted = toml_value(&workspace, "[workspace.package]", "rust-version").unwrap();
    let (have, want) = (version(image_rust), version(&wanted));
    assert!(
        have[..2] >= want[..2],
        "the builder's Rust {image_rust} is older than rust-version {wanted}"
    );
    let builder_stage = builder_from
        .split_whitespace()
        .skip_while(|w| !w.eq_ignore_ascii_case("AS"))
        .nth(1)
        .expect("the builder stage is named");

    let runs: Vec<&str> = builder
        .iter()
        .filter(|i| i.keyword == "RUN")
        .map(|i| i.args.as_str())
        .collect();
    assert!(
        runs.iter()
            .any(|r| r.contains("rustup target add wasm32-wasip2")),
        "host/runtime/build.rs needs the wasm32-wasip2 target: {runs:?}"
    );
    let build = runs
        .iter()
        .find(|r| r.contains("cargo build"))
        .expect("a cargo build");
    assert!(build.contains("--release"), "{build}");
    assert!(build.contains("-p mlmodel-operator"), "{build}");
    assert!(build.contains("--locked"), "{build}");
    let built = format!("target/release/{bin}");
    assert!(
        build.contains(&built),
        "the build step must pick up {built}: {build}"
    );

    // Every COPY source exists and is not excluded by .dockerignore; every workspace member
    // (the plugins host/runtime/build.rs builds) is in the context.
    let ignore = read(".dockerignore");
    let included: Vec<&str> = ignore
        .lines()
        .filter_map(|l| l.trim().strip_prefix('!'))
        .map(|l| l.trim_end_matches('/'))
        .collect();
    assert!(
        ignore.lines().any(|l| l.trim() == "*"),
        ".dockerignore excludes by default"
    );
    let mut copied = Vec::new();
    for i in builder.iter().filter(|i| i.keyword == "COPY") {
        let (flags, srcs, _) = copy_parts(&i.args);
        assert!(flags.is_empty(), "{i:?}");
        for src in srcs {
            let src = src.trim_end_matches('/');
            assert!(repo().join(src).exists(), "COPY {src}: no such path");
            assert!(
                included.contains(&src),
                "COPY {src}: excluded by .dockerignore"
            );
            copied.push(src.to_string());
        }
    }
    for file in ["Cargo.toml", "Cargo.lock", "host", "plugins", "wit"] {
        assert!(copied.iter().any(|c| c == file), "{file} is not copied");
    }
    let members = workspace
        .split_once("members = [")
        .unwrap()
        .1
        .split_once(']')
        .unwrap()
        .0;
    for member in members
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty())
    {
        assert!(
            copied
                .iter()
                .any(|c| member == c || member.starts_with(&format!("{c}/"))),
            "workspace member {member} is not in the build"
        );
    }

    // The runtime: the binary from the builder, on PATH under its own name (the download Jobs
    // run `mlmodel-operator fetch`), as the entry point, as a non-root user.
    let (runtime_from, runtime) = stages.last().unwrap();
    assert!(
        runtime_from.contains("distroless") && runtime_from.contains("nonroot"),
        "a minimal non-root base: {runtime_from}"
    );
    let copy = runtime
        .iter()
        .find(|i| i.keyword == "COPY")
        .expect("the binary is copied into the runtime");
    let (flags, srcs, dest) = copy_parts(&copy.args);
    assert_eq!(flags, [format!("--from={builder_stage}")], "{copy:?}");
    assert_eq!(srcs.len(), 1);
    assert!(
        build.contains(srcs[0]),
        "the runtime copies {} which the build step does not produce: {build}",
        srcs[0]
    );
    assert_eq!(
        dest,
        format!("/usr/local/bin/{bin}"),
        "on PATH under its name"
    );
    let entrypoint = runtime
        .iter()
        .find(|i| i.keyword == "ENTRYPOINT")
        .expect("ENTRYPOINT");
    let entrypoint: Vec<String> = serde_json::from_str(&entrypoint.args).expect("exec form");
    assert_eq!(entrypoint, [dest.to_string()]);
    let user = runtime
        .iter()
        .rev()
        .find(|i| i.keyword == "USER")
        .expect("USER");
    let uid = user.args.split(':').next().unwrap();
    assert!(
        uid.parse::<u32>().is_ok_and(|u| u != 0),
        "numeric non-root user (runAsNonRoot can check it): {}",
        user.args
    );
}

#[test]
fn operator_deployment_is_restricted_and_runs_the_documented_command() {
    let d = docs(&read("deploy/operator/deployment.yaml"));
    let deploy = find(&d, "Deployment", "mlmodel-operator");
    assert_eq!(deploy["metadata"]["namespace"], "mlmodel-system");
    assert_eq!(deploy["spec"]["replicas"], 1);
    assert_eq!(
        operator_args(deploy),
        [
            "run",
            "--leader-elect",
            "--plugin-dir=/plugins",
            "--plugin-refs-file=/etc/mlmodel-operator/plugin-refs/refs",
            "--registry-config=/etc/mlmodel-operator/registry/config.json",
            "--metrics-bind-address=0.0.0.0:8080",
            "--log-format=json"
        ]
    );
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "mlmodel-operator");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let c = operator_container(deploy);
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    for (kind, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(c[kind]["httpGet"]["path"], path, "{kind}");
        assert_eq!(c[kind]["httpGet"]["port"], "metrics", "{kind}");
    }
    assert_eq!(
        c["ports"],
        json!([{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}])
    );
    for r in ["requests", "limits"] {
        for what in ["cpu", "memory"] {
            assert!(c["resources"][r][what].is_string(), "resources.{r}.{what}");
        }
    }

    // The download Jobs run the operator's own image.
    assert_eq!(
        env_value(deploy, "MLMODEL_OPERATOR_IMAGE")["value"],
        c["image"]
    );
    assert_eq!(
        env_value(deploy, "POD_NAME")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    assert_eq!(
        env_value(deploy, "POD_NAMESPACE")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );

    // The plugin cache is a writable emptyDir, the plugins ConfigMap optional at /plugins.
    let cache = env_value(deploy, "MLMODEL_PLUGIN_CACHE")["value"]
        .as_str()
        .unwrap();
    let mounts = c["volumeMounts"].as_array().unwrap();
    let volumes = pod["volumes"].as_array().unwrap();
    let volume_at = |path: &str| -> &Value {
        let m = mounts
            .iter()
            .find(|m| m["mountPath"] == path)
            .unwrap_or_else(|| panic!("nothing mounted at {path}"));
        volumes
            .iter()
            .find(|v| v["name"] == m["name"])
            .expect("the mount's volume")
    };
    assert!(volume_at(cache)["emptyDir"].is_object());
    let plugins = volume_at("/plugins");
    assert_eq!(plugins["configMap"]["name"], "mlmodel-operator-plugins");
    assert_eq!(plugins["configMap"]["optional"], true);
    // The registry references' list and the registry logins: optional, read as files (no RBAC
    // on Secrets), mounted as directories so that updates reach the operator.
    let refs = volume_at("/etc/mlmodel-operator/plugin-refs");
    assert_eq!(refs["configMap"]["name"], "mlmodel-operator-plugin-refs");
    assert_eq!(refs["configMap"]["optional"], true);
    let logins = volume_at("/etc/mlmodel-operator/registry");
    assert_eq!(logins["secret"]["secretName"], "mlmodel-operator-registry");
    assert_eq!(logins["secret"]["optional"], true);
    assert_eq!(
        logins["secret"]["items"],
        json!([{"key": ".dockerconfigjson", "path": "config.json"}])
    );
    assert!(mounts.iter().all(|m| m.get("subPath").is_none()));
    let refs_cm = docs(&read("deploy/operator/plugin-refs-configmap.yaml"));
    let refs_cm = find(&refs_cm, "ConfigMap", "mlmodel-operator-plugin-refs");
    assert!(
        refs_cm.get("data").is_none(),
        "shipped without keys: re-applying keeps the list"
    );
    let cm = docs(&read("deploy/operator/plugins-configmap.yaml"));
    let cm = find(&cm, "ConfigMap", "mlmodel-operator-plugins");
    assert_eq!(cm["metadata"]["namespace"], "mlmodel-system");

    let ns = docs(&read("deploy/operator/namespace.yaml"));
    let ns = find(&ns, "Namespace", "mlmodel-system");
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
}

#[test]
fn rbac_rules_are_the_same_in_every_copy() {
    let rules = cluster_role_rules();
    let namespaced = docs(&read("deploy/namespaced/watched-namespace-role.yaml"));
    assert_eq!(
        find(&namespaced, "Role", "mlmodel-operator")["rules"],
        rules
    );
    // The Helm chart's copy is compared after `helm template` in deploy_install.rs.
}

#[test]
fn helm_chart_admission_policy_is_the_one_in_deploy() {
    assert!(
        read("deploy/helm/mlmodel-operator/files/model-author-rights.yaml")
            == read("deploy/admission/model-author-rights.yaml"),
        "deploy/helm/mlmodel-operator/files/ is stale: run `make manifests`"
    );
}

#[test]
fn helm_chart_crd_is_the_generated_one() {
    assert!(
        read("deploy/helm/mlmodel-operator/crds/mlmodel.dev_mlmodels.yaml")
            == read("deploy/crd/mlmodel.dev_mlmodels.yaml"),
        "deploy/helm/mlmodel-operator/crds/ is stale: run `make manifests`"
    );
}
