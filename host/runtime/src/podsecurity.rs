//! The `restricted` Pod Security Standard (Kubernetes 1.34), checked by the host on every pod
//! template a plugin returns, so that a plugin's output holds to it whatever the namespace's
//! `pod-security.kubernetes.io` labels say. The rules are the apiserver's
//! (k8s.io/pod-security-admission, policy/check_*.go), baseline and restricted levels together;
//! each violation is named the way the apiserver names it.
use serde_json::Value;

/// Capabilities a restricted container may add.
const ADDABLE_CAPABILITIES: &[&str] = &["NET_BIND_SERVICE"];
/// Volume types the restricted level allows.
const ALLOWED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];
/// Sysctls the baseline level allows.
const SAFE_SYSCTLS: &[&str] = &[
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
];
const SELINUX_TYPES: &[&str] = &[
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

/// Every way `pod_spec` breaks the restricted standard, as sentences; empty when it meets it.
pub fn restricted_violations(pod_spec: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let flag = |key: &str| pod_spec.get(key).and_then(Value::as_bool) == Some(true);
    for key in ["hostNetwork", "hostPID", "hostIPC"] {
        if flag(key) {
            out.push(format!("host namespaces: {key}=true"));
        }
    }
    let pod_sc = pod_spec.get("securityContext").unwrap_or(&Value::Null);
    if pod_sc
        .pointer("/windowsOptions/hostProcess")
        .and_then(Value::as_bool)
        == Some(true)
    {
        out.push("hostProcess: pod".into());
    }
    for sysctl in pod_sc
        .get("sysctls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = sysctl
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !SAFE_SYSCTLS.contains(&name) {
            out.push(format!("forbidden sysctls: {name}"));
        }
    }
    check_selinux(pod_sc, "pod", &mut out);
    check_apparmor(pod_sc, "pod", &mut out);
    for volume in pod_spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = volume.get("name").and_then(Value::as_str).unwrap_or("?");
        if let Some(map) = volume.as_object() {
            for kind in map.keys().filter(|k| *k != "name") {
                if !ALLOWED_VOLUMES.contains(&kind.as_str()) {
                    out.push(format!(
                        "restricted volume types: volume {name:?} uses {kind}"
                    ));
                }
            }
        }
    }
    let pod_non_root = pod_sc.get("runAsNonRoot").and_then(Value::as_bool);
    let pod_user = pod_sc.get("runAsUser").and_then(Value::as_i64);
    let pod_seccomp = seccomp_type(pod_sc);
    if pod_non_root == Some(false) {
        out.push("runAsNonRoot != true: pod must not set runAsNonRoot=false".into());
    }
    if pod_user == Some(0) {
        out.push("runAsUser=0: pod must not run as root".into());
    }
    if let Some(t) = pod_seccomp
        && !matches!(t, "RuntimeDefault" | "Localhost")
    {
        out.push(format!("seccompProfile: pod must not set type {t:?}"));
    }

    for (field, containers) in ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .filter_map(|f| Some((*f, pod_spec.get(*f)?.as_array()?)))
    {
        for c in containers {
            let name = c.get("name").and_then(Value::as_str).unwrap_or("?");
            let who = format!("{field} {name:?}");
            let sc = c.get("securityContext").unwrap_or(&Value::Null);
            if sc.get("privileged").and_then(Value::as_bool) == Some(true) {
                out.push(format!("privileged: {who} must not set privileged=true"));
            }
            if sc.get("allowPrivilegeEscalation").and_then(Value::as_bool) != Some(false) {
                out.push(format!(
                    "allowPrivilegeEscalation != false: {who} must set securityContext.allowPrivilegeEscalation=false"
                ));
            }
            let caps = sc.get("capabilities").unwrap_or(&Value::Null);
            let drops_all = caps
                .get("drop")
                .and_then(Value::as_array)
                .is_some_and(|d| d.iter().any(|c| c.as_str() == Some("ALL")));
            if !drops_all {
                out.push(format!(
                    "unrestricted capabilities: {who} must set securityContext.capabilities.drop=[\"ALL\"]"
                ));
            }
            for cap in caps
                .get("add")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let cap = cap.as_str().unwrap_or_default();
                if !ADDABLE_CAPABILITIES.contains(&cap) {
                    out.push(format!(
                        "unrestricted capabilities: {who} must not add {cap}"
                    ));
                }
            }
            match sc.get("runAsNonRoot").and_then(Value::as_bool) {
                Some(false) => out.push(format!(
                    "runAsNonRoot != true: {who} sets runAsNonRoot=false"
                )),
                None if pod_non_root != Some(true) => out.push(format!(
                    "runAsNonRoot != true: pod or {who} must set securityContext.runAsNonRoot=true"
                )),
                _ => {}
            }
            if sc.get("runAsUser").and_then(Value::as_i64) == Some(0) {
                out.push(format!("runAsUser=0: {who} must not run as root"));
            }
            match seccomp_type(sc) {
                Some(t) if !matches!(t, "RuntimeDefault" | "Localhost") => {
                    out.push(format!("seccompProfile: {who} must not set type {t:?}"))
                }
                None if pod_seccomp.is_none() => out.push(format!(
                    "seccompProfile: pod or {who} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\""
                )),
                _ => {}
            }
            if sc
                .get("procMount")
                .and_then(Value::as_str)
                .is_some_and(|p| p != "Default")
            {
                out.push(format!("procMount: {who} must not set procMount"));
            }
            if sc
                .pointer("/windowsOptions/hostProcess")
                .and_then(Value::as_bool)
                == Some(true)
            {
                out.push(format!("hostProcess: {who}"));
            }
            check_selinux(sc, &who, &mut out);
            check_apparmor(sc, &who, &mut out);
            for port in c
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if port.get("hostPort").and_then(Value::as_i64).unwrap_or(0) != 0 {
                    out.push(format!("hostPort: {who} must not use hostPort"));
                }
            }
        }
    }
    out
}

fn seccomp_type(sc: &Value) -> Option<&str> {
    sc.pointer("/seccompProfile/type").and_then(Value::as_str)
}

fn check_selinux(sc: &Value, who: &str, out: &mut Vec<String>) {
    let Some(opts) = sc.get("seLinuxOptions") else {
        return;
    };
    let t = opts.get("type").and_then(Value::as_str).unwrap_or_default();
    if !SELINUX_TYPES.contains(&t) {
        out.push(format!("seLinuxOptions: {who} must not set type {t:?}"));
    }
    for key in ["user", "role"] {
        if opts
            .get(key)
            .and_then(Value::as_str)
            .is_some_and(|v| !v.is_empty())
        {
            out.push(format!("seLinuxOptions: {who} must not set {key}"));
        }
    }
}

/// AppArmor by the annotations the kubelet still reads
/// (`container.apparmor.security.beta.kubernetes.io/<container>`): `runtime/default` or a
/// `localhost/` profile, as the restricted standard says; never `unconfined`.
pub fn restricted_annotation_violations(annotations: Option<&Value>) -> Vec<String> {
    const PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";
    let mut out = Vec::new();
    for (key, value) in annotations.and_then(Value::as_object).into_iter().flatten() {
        if !key.starts_with(PREFIX) {
            continue;
        }
        let v = value.as_str().unwrap_or_default();
        if v != "runtime/default" && !v.starts_with("localhost/") {
            out.push(format!(
                "violates the restricted Pod Security Standard: annotation {key}={v:?} (runtime/default or localhost/<profile> only)"
            ));
        }
    }
    out
}

fn check_apparmor(sc: &Value, who: &str, out: &mut Vec<String>) {
    if let Some(t) = sc.pointer("/appArmorProfile/type").and_then(Value::as_str)
        && !matches!(t, "RuntimeDefault" | "Localhost")
    {
        out.push(format!("appArmorProfile: {who} must not set type {t:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn good() -> Value {
        json!({
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "image": "i", "securityContext": {
                "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}],
            "volumes": [{"name": "m", "persistentVolumeClaim": {"claimName": "x"}}],
        })
    }

    #[test]
    fn a_restricted_pod_passes() {
        assert_eq!(restricted_violations(&good()), Vec::<String>::new());
    }

    #[test]
    fn container_level_settings_count_like_pod_level_ones() {
        let spec = json!({"containers": [{"name": "c", "securityContext": {
            "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
            "runAsNonRoot": true, "seccompProfile": {"type": "Localhost", "localhostProfile": "p"}}}]});
        assert_eq!(restricted_violations(&spec), Vec::<String>::new());
    }

    #[test]
    fn each_rule_is_named() {
        type Mutation = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("hostNetwork", Box::new(|s| s["hostNetwork"] = json!(true))),
            ("hostPID", Box::new(|s| s["hostPID"] = json!(true))),
            (
                "privileged",
                Box::new(|s| s["containers"][0]["securityContext"]["privileged"] = json!(true)),
            ),
            (
                "hostPath",
                Box::new(|s| s["volumes"][0] = json!({"name": "h", "hostPath": {"path": "/"}})),
            ),
            (
                "must not add SYS_ADMIN",
                Box::new(|s| {
                    s["containers"][0]["securityContext"]["capabilities"]["add"] =
                        json!(["SYS_ADMIN"])
                }),
            ),
            (
                "runAsUser=0",
                Box::new(|s| s["securityContext"]["runAsUser"] = json!(0)),
            ),
            (
                "seccompProfile",
                Box::new(|s| s["securityContext"]["seccompProfile"]["type"] = json!("Unconfined")),
            ),
            (
                "hostPort",
                Box::new(|s| {
                    s["containers"][0]["ports"] = json!([{"containerPort": 80, "hostPort": 80}])
                }),
            ),
            (
                "forbidden sysctls",
                Box::new(|s| {
                    s["securityContext"]["sysctls"] =
                        json!([{"name": "kernel.msgmax", "value": "1"}])
                }),
            ),
            (
                "allowPrivilegeEscalation",
                Box::new(|s| {
                    s["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = json!(true)
                }),
            ),
        ];
        for (rule, mutate) in cases {
            let mut spec = good();
            mutate(&mut spec);
            let found = restricted_violations(&spec);
            assert!(found.iter().any(|v| v.contains(rule)), "{rule}: {found:?}");
        }
    }
}
