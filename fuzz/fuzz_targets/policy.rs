//! The plugin output policy (`plugins::policy::check`, with `plugins/podsecurity.rs`) on
//! arbitrary plugin output.
//!
//! Input: one flag byte, then UTF-8 text (invalid bytes replaced), split on `\n---\n` into the
//! manifests a plugin returned. Flag bits 0-1: the step (0 download, 1 and 3 serve, 2 expose);
//! bit 2: the admin allows other ServiceAccounts; bit 3: downloader overrides; bit 4: Services
//! of type LoadBalancer.
//!
//! Properties: `check` never panics; whatever it accepts holds to the policy as the API server
//! would read it (each accepted object is decoded again into the typed k8s-openapi struct, the
//! way the apiserver decodes it, and checked by rules written here independently of
//! `podsecurity.rs`): a kind allowed for the step, the model's namespace, the host's owner
//! reference and labels, a valid unique name, restricted pods, ClusterIP Services without
//! external IPs, claims that bind no existing volume.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    Capabilities, PersistentVolumeClaim, Pod, PodSecurityContext, PodSpec, SecurityContext, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use libfuzzer_sys::fuzz_target;
use mlmodel_operator::plugins::Step;
use mlmodel_operator::plugins::policy::{
    self, Allowances, ENDPOINT_VARIABLES, GUARD_FLAGS, HostAdditions,
};

const NAMESPACE: &str = "models";
const MAX_BYTES: usize = 1 << 20;
const SEPARATOR: &str = "\n---\n";

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let step = match flags & 3 {
        0 => Step::Download,
        2 => Step::Expose,
        _ => Step::Serve,
    };
    let allow = Allowances {
        service_accounts: flags & 4 != 0,
        downloader_overrides: flags & 8 != 0,
        service_types: if flags & 16 != 0 {
            vec!["LoadBalancer".into()]
        } else {
            Vec::new()
        },
        secrets: flags & 32 != 0,
        images: if flags & 64 != 0 {
            vec!["registry.example/".into()]
        } else {
            Vec::new()
        },
        ..Allowances::default()
    };
    let text = String::from_utf8_lossy(rest);
    let manifests: Vec<String> = text.split(SEPARATOR).map(str::to_string).collect();
    let labels = BTreeMap::from([
        ("mlmodel.dev/model".to_string(), "m".to_string()),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "mlmodel-operator".to_string(),
        ),
    ]);
    let owner = OwnerReference {
        api_version: "mlmodel.dev/v1alpha1".into(),
        kind: "MLModel".into(),
        name: "m".into(),
        uid: "00000000-0000-0000-0000-000000000001".into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let selector = BTreeMap::from([("app.kubernetes.io/instance".to_string(), "m".to_string())]);
    let host = HostAdditions {
        selector: &selector,
        images: HOST_IMAGES,
        namespace: NAMESPACE,
        labels: &labels,
        owner: Some(owner.clone()),
        readiness_gate: None,
        credentials_secret: Some(CREDENTIALS),
    };
    let Ok(objects) = policy::check("fuzz", step, &manifests, MAX_BYTES, &host, &allow) else {
        return;
    };

    assert!(objects.len() <= 64, "{} objects accepted", objects.len());
    assert_eq!(objects.len(), manifests.len(), "an object was dropped");
    let mut seen = BTreeSet::new();
    for object in &objects {
        let value = serde_json::to_value(object).expect("an accepted object serialises");
        let api_version = value["apiVersion"].as_str().unwrap_or_default();
        let kind = value["kind"].as_str().unwrap_or_default();
        let name = value["metadata"]["name"].as_str().unwrap_or_default();
        assert!(
            policy::allowed_kinds(step).contains(&(api_version, kind)),
            "{kind} ({api_version}) accepted for step {step:?}"
        );
        assert!(is_dns_subdomain(name), "name {name:?} accepted");
        assert!(
            seen.insert((kind.to_string(), name.to_string())),
            "{kind}/{name} accepted twice"
        );
        let meta = &object.metadata;
        assert_eq!(meta.namespace.as_deref(), Some(NAMESPACE));
        assert_eq!(meta.owner_references.as_deref(), Some(&[owner.clone()][..]));
        let got = meta.labels.as_ref().expect("host labels");
        for (k, v) in &labels {
            assert_eq!(got.get(k), Some(v), "label {k}");
        }
        // The object as the apiserver decodes it (unknown fields dropped, wrong types refused:
        // an object k8s-openapi cannot decode would not be admitted either).
        match kind {
            "Deployment" => {
                if let Ok(d) = serde_json::from_value::<Deployment>(value.clone()) {
                    let pod = d.spec.and_then(|s| s.template.spec);
                    check_pod(pod.as_ref().expect("a Deployment's pod"), &allow);
                }
            }
            "Job" => {
                if let Ok(j) = serde_json::from_value::<Job>(value.clone()) {
                    let pod = j.spec.and_then(|s| s.template.spec);
                    check_pod(pod.as_ref().expect("a Job's pod"), &allow);
                }
            }
            "Pod" => {
                if let Ok(p) = serde_json::from_value::<Pod>(value.clone())
                    && let Some(spec) = &p.spec
                {
                    check_pod(spec, &allow);
                }
            }
            "Service" => {
                if let Ok(s) = serde_json::from_value::<Service>(value.clone())
                    && let Some(spec) = &s.spec
                {
                    let t = spec.type_.as_deref().unwrap_or("ClusterIP");
                    assert!(
                        t == "ClusterIP" || allow.service_types.iter().any(|a| a == t),
                        "Service type {t:?} accepted"
                    );
                    assert!(
                        spec.external_ips.as_ref().is_none_or(Vec::is_empty),
                        "externalIPs accepted"
                    );
                }
            }
            "PersistentVolumeClaim" => {
                if let Ok(c) = serde_json::from_value::<PersistentVolumeClaim>(value.clone())
                    && let Some(spec) = &c.spec
                {
                    assert!(spec.volume_name.is_none(), "volumeName accepted");
                    assert!(spec.data_source.is_none(), "dataSource accepted");
                    assert!(spec.data_source_ref.is_none(), "dataSourceRef accepted");
                }
            }
            _ => {}
        }
    }
});

/// Whether the apiserver would refuse `pod` whatever its security: no containers, or a profile
/// without its required `type` (k8s-openapi decodes a missing required string as "").
fn refused_anyway(pod: &PodSpec) -> bool {
    let psc = pod.security_context.as_ref();
    let mut types: Vec<Option<&str>> = vec![
        psc.and_then(|s| s.seccomp_profile.as_ref())
            .map(|p| p.type_.as_str()),
        psc.and_then(|s| s.app_armor_profile.as_ref())
            .map(|p| p.type_.as_str()),
    ];
    let contexts = pod
        .init_containers
        .iter()
        .flatten()
        .chain(&pod.containers)
        .filter_map(|c| c.security_context.as_ref())
        .chain(
            pod.ephemeral_containers
                .iter()
                .flatten()
                .filter_map(|c| c.security_context.as_ref()),
        );
    for sc in contexts {
        types.push(sc.seccomp_profile.as_ref().map(|p| p.type_.as_str()));
        types.push(sc.app_armor_profile.as_ref().map(|p| p.type_.as_str()));
    }
    pod.containers.is_empty() || types.contains(&Some(""))
}

/// The restricted Pod Security Standard and the host's own pod rules, on the typed pod spec.
/// The one Secret the policy may let through without the `secrets` allowance.
const CREDENTIALS: &str = "model-credentials";
/// The images the host allows every plugin here (the operator's and the seeds').
const HOST_IMAGES: &[String] = &[];

/// Whether the policy may run `image`: the host's images, or the allowance's prefix.
fn image_ok(image: &str, allow: &Allowances) -> bool {
    HOST_IMAGES.iter().any(|i| i == image)
        || allow.images.iter().any(|p| image.starts_with(p.as_str()))
}

fn check_pod(pod: &PodSpec, allow: &Allowances) {
    if refused_anyway(pod) {
        return;
    }
    let containers = pod.containers.iter().map(|c| c.image.as_deref());
    let inits = pod.init_containers.iter().flatten().map(|c| c.image.as_deref());
    let ephemeral = pod.ephemeral_containers.iter().flatten().map(|c| c.image.as_deref());
    for image in containers.chain(inits).chain(ephemeral) {
        let image = image.unwrap_or_default();
        assert!(image_ok(image, allow), "the image {image:?} runs unallowed");
    }
    // No allowance opens scheduling here: only a bounded lost-node toleration passes.
    for t in pod.tolerations.iter().flatten() {
        let key = t.key.as_deref().unwrap_or_default();
        assert!(
            matches!(key, "node.kubernetes.io/not-ready" | "node.kubernetes.io/unreachable")
                && t.effect.as_deref() == Some("NoExecute")
                && t.toleration_seconds.is_some(),
            "the toleration {t:?} was accepted"
        );
    }
    for (what, name) in [
        ("priorityClassName", &pod.priority_class_name),
        ("runtimeClassName", &pod.runtime_class_name),
    ] {
        assert!(name.as_deref().unwrap_or_default().is_empty(), "{what} {name:?} accepted");
    }
    assert!(
        matches!(pod.scheduler_name.as_deref(), None | Some("") | Some("default-scheduler")),
        "schedulerName {:?} accepted",
        pod.scheduler_name
    );
    if !allow.secrets {
        // Every Secret name anywhere in the pod spec: only the model's credentials may be one.
        let v = serde_json::to_value(pod).unwrap();
        let mut names = Vec::new();
        secret_names(&v, &mut names);
        for name in names {
            assert_eq!(name, CREDENTIALS, "the Secret {name:?} is reachable");
        }
    }
    for (what, on) in [
        ("hostNetwork", pod.host_network),
        ("hostPID", pod.host_pid),
        ("hostIPC", pod.host_ipc),
    ] {
        assert_ne!(on, Some(true), "{what} accepted");
    }
    assert!(
        pod.node_name.as_deref().unwrap_or_default().is_empty(),
        "nodeName accepted"
    );
    if !allow.service_accounts {
        for sa in [&pod.service_account_name, &pod.service_account] {
            let sa = sa.as_deref().unwrap_or_default();
            assert!(sa.is_empty() || sa == "default", "ServiceAccount {sa:?}");
        }
    }
    for volume in pod.volumes.iter().flatten() {
        let v = serde_json::to_value(volume).unwrap();
        for key in v.as_object().unwrap().keys() {
            assert!(
                [
                    "name",
                    "configMap",
                    "csi",
                    "downwardAPI",
                    "emptyDir",
                    "ephemeral",
                    "persistentVolumeClaim",
                    "projected",
                    "secret",
                ]
                .contains(&key.as_str()),
                "volume type {key} accepted"
            );
        }
    }
    let default_sc = PodSecurityContext::default();
    let psc = pod.security_context.as_ref().unwrap_or(&default_sc);
    assert_ne!(psc.run_as_non_root, Some(false), "pod runAsNonRoot=false");
    assert_ne!(psc.run_as_user, Some(0), "pod runAsUser=0");
    let pod_seccomp = psc.seccomp_profile.as_ref().map(|p| p.type_.as_str());
    if let Some(t) = pod_seccomp {
        assert!(allowed_profile(t), "pod seccomp {t:?}");
    }
    if let Some(t) = psc.app_armor_profile.as_ref().map(|p| p.type_.as_str()) {
        assert!(allowed_profile(t), "pod appArmor {t:?}");
    }
    check_selinux(psc.se_linux_options.as_ref());
    assert_ne!(
        psc.windows_options.as_ref().and_then(|w| w.host_process),
        Some(true),
        "pod hostProcess"
    );
    for sysctl in psc.sysctls.iter().flatten() {
        assert!(
            [
                "kernel.shm_rmid_forced",
                "net.ipv4.ip_local_port_range",
                "net.ipv4.ip_unprivileged_port_start",
                "net.ipv4.tcp_syncookies",
                "net.ipv4.ping_group_range",
                "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time",
                "net.ipv4.tcp_fin_timeout",
                "net.ipv4.tcp_keepalive_intvl",
                "net.ipv4.tcp_keepalive_probes",
            ]
            .contains(&sysctl.name.as_str()),
            "sysctl {} accepted",
            sysctl.name
        );
    }

    // Every container of every kind, as (security context, ports, command words, env names).
    let mut containers: Vec<ContainerView<'_>> = Vec::new();
    for c in pod.init_containers.iter().flatten().chain(&pod.containers) {
        containers.push((
            c.security_context.as_ref(),
            c.ports
                .iter()
                .flatten()
                .filter_map(|p| p.host_port)
                .collect(),
            c.command
                .iter()
                .chain(&c.args)
                .flatten()
                .map(String::as_str)
                .collect(),
            c.env.iter().flatten().map(|e| e.name.as_str()).collect(),
        ));
    }
    for c in pod.ephemeral_containers.iter().flatten() {
        containers.push((
            c.security_context.as_ref(),
            c.ports
                .iter()
                .flatten()
                .filter_map(|p| p.host_port)
                .collect(),
            c.command
                .iter()
                .chain(&c.args)
                .flatten()
                .map(String::as_str)
                .collect(),
            c.env.iter().flatten().map(|e| e.name.as_str()).collect(),
        ));
    }
    let default_csc = SecurityContext::default();
    for (sc, host_ports, words, env) in containers {
        let sc = sc.unwrap_or(&default_csc);
        assert_ne!(sc.privileged, Some(true), "privileged accepted");
        assert_eq!(
            sc.allow_privilege_escalation,
            Some(false),
            "allowPrivilegeEscalation not false"
        );
        let no_caps = Capabilities::default();
        let caps = sc.capabilities.as_ref().unwrap_or(&no_caps);
        assert!(
            caps.drop.iter().flatten().any(|c| c == "ALL"),
            "capabilities not dropped"
        );
        for cap in caps.add.iter().flatten() {
            assert_eq!(cap, "NET_BIND_SERVICE", "capability added");
        }
        assert_eq!(
            sc.run_as_non_root.or(psc.run_as_non_root),
            Some(true),
            "may run as root"
        );
        assert_ne!(sc.run_as_user, Some(0), "runAsUser=0");
        let seccomp = sc.seccomp_profile.as_ref().map(|p| p.type_.as_str());
        assert!(
            seccomp.or(pod_seccomp).is_some_and(allowed_profile),
            "seccomp {seccomp:?} / pod {pod_seccomp:?}"
        );
        if let Some(t) = sc.app_armor_profile.as_ref().map(|p| p.type_.as_str()) {
            assert!(allowed_profile(t), "appArmor {t:?}");
        }
        check_selinux(sc.se_linux_options.as_ref());
        assert!(
            sc.proc_mount.as_deref().is_none_or(|p| p == "Default"),
            "procMount"
        );
        assert_ne!(
            sc.windows_options.as_ref().and_then(|w| w.host_process),
            Some(true),
            "hostProcess"
        );
        assert!(host_ports.iter().all(|p| *p == 0), "hostPort accepted");
        if !allow.downloader_overrides {
            for w in words {
                assert!(
                    !GUARD_FLAGS
                        .iter()
                        .any(|f| w == *f || w.starts_with(&format!("{f}="))),
                    "guard flag {w:?} accepted"
                );
            }
            for e in env {
                assert!(!ENDPOINT_VARIABLES.contains(&e), "variable {e} accepted");
            }
        }
    }
}

/// A container's security context, host ports, command words and environment variable names.
type ContainerView<'a> = (
    Option<&'a SecurityContext>,
    Vec<i32>,
    Vec<&'a str>,
    Vec<&'a str>,
);

fn allowed_profile(t: &str) -> bool {
    matches!(t, "RuntimeDefault" | "Localhost")
}

fn check_selinux(opts: Option<&k8s_openapi::api::core::v1::SELinuxOptions>) {
    let Some(o) = opts else { return };
    let t = o.type_.as_deref().unwrap_or_default();
    assert!(
        [
            "",
            "container_t",
            "container_init_t",
            "container_kvm_t",
            "container_engine_t"
        ]
        .contains(&t),
        "seLinux type {t:?}"
    );
    assert!(
        o.user.as_deref().unwrap_or_default().is_empty(),
        "seLinux user"
    );
    assert!(
        o.role.as_deref().unwrap_or_default().is_empty(),
        "seLinux role"
    );
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

/// Names under the keys that name a Secret in a pod spec (`secretName`, `secretRef`,
/// `secretKeyRef`, `nodePublishSecretRef`, a projected `secret`, `imagePullSecrets`).
fn secret_names(v: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            for (k, val) in map {
                match (k.as_str(), val) {
                    ("secretName", Value::String(n)) => out.push(n.clone()),
                    ("secretRef" | "secretKeyRef" | "nodePublishSecretRef" | "secret", Value::Object(o)) => {
                        if let Some(Value::String(n)) = o.get("name") {
                            out.push(n.clone());
                        }
                        secret_names(val, out);
                    }
                    ("imagePullSecrets", Value::Array(list)) => {
                        for item in list {
                            if let Some(Value::String(n)) = item.get("name") {
                                out.push(n.clone());
                            }
                        }
                    }
                    _ => secret_names(val, out),
                }
            }
        }
        Value::Array(list) => list.iter().for_each(|x| secret_names(x, out)),
        _ => {}
    }
}
