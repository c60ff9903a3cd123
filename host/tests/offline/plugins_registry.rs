//! Plugin selection (annotation > operator default > framework, digest pins), plugin
//! directories (replacement, broken files) and reload while running.
use crate::support;
use mlmodel_operator::selection::{Selection, select};

use crate::support::{model, plugin_dir, workspace};
use mlmodel_operator::plugins::{BUILTIN_SOURCE, Runtime, RuntimeOptions, Step};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// Built-ins compile once for the whole suite thanks to the on-disk cache.
fn options() -> RuntimeOptions {
    RuntimeOptions {
        cache_dir: Some(workspace().join("target").join("plugin-test-cache")),
        ..RuntimeOptions::default()
    }
}

fn builtins() -> Runtime {
    Runtime::new(options()).unwrap()
}

fn selected(
    rt: &Runtime,
    step: Step,
    framework: &str,
    annotations: &[(&str, &str)],
) -> Result<String, String> {
    selected_by(&Selection::default(), rt, step, framework, annotations)
}

fn selected_by(
    selection: &Selection,
    rt: &Runtime,
    step: Step,
    framework: &str,
    annotations: &[(&str, &str)],
) -> Result<String, String> {
    selection
        .select(rt, step, &model("m", framework, annotations))
        .map(|p| p.name.clone())
        .map_err(|e| format!("{}: {e}", e.reason()))
}

#[test]
fn framework_picks_the_default_plugins() {
    let rt = builtins();
    assert_eq!(
        selected(&rt, Step::Serve, "tensorflow", &[]).unwrap(),
        "tensorflow-serving"
    );
    assert_eq!(
        selected(&rt, Step::Serve, "echo", &[]).unwrap(),
        "echo-server"
    );
    assert_eq!(
        selected(&rt, Step::Download, "echo", &[]).unwrap(),
        "download-job"
    );
    assert_eq!(
        selected(&rt, Step::Expose, "tensorflow", &[]).unwrap(),
        "service"
    );
    let err = selected(&rt, Step::Serve, "onnx", &[]).unwrap_err();
    assert!(
        err.starts_with(
            "PluginNotFound: no plugin named \"onnx\" for step serve (chosen by framework \"onnx\")"
        ),
        "{err}"
    );
    assert!(err.contains("echo-server"), "lists what is loaded: {err}");
}

#[test]
fn annotation_beats_operator_default_beats_framework() {
    let sel = Selection::new(BTreeMap::from([(Step::Serve, "echo-server".to_string())]));
    let rt = Runtime::new(options()).unwrap();
    let selected = |rt: &Runtime, step, framework, annotations: &[(&str, &str)]| {
        selected_by(&sel, rt, step, framework, annotations)
    };
    assert_eq!(
        selected(&rt, Step::Serve, "tensorflow", &[]).unwrap(),
        "echo-server",
        "flag over framework"
    );
    let annotated = [("mlmodel.dev/serve-plugin", "tensorflow-serving")];
    assert_eq!(
        selected(&rt, Step::Serve, "echo", &annotated).unwrap(),
        "tensorflow-serving",
        "annotation over flag"
    );
    let err = selected(
        &rt,
        Step::Serve,
        "echo",
        &[("mlmodel.dev/serve-plugin", "nope")],
    )
    .unwrap_err();
    assert!(err.contains("no plugin named \"nope\" for step serve (chosen by annotation mlmodel.dev/serve-plugin)"), "{err}");
    let err = selected(
        &rt,
        Step::Download,
        "echo",
        &[("mlmodel.dev/download-plugin", "service")],
    )
    .unwrap_err();
    assert_eq!(
        err,
        "PluginWrongStep: plugin service does not render step download (it renders: expose)"
    );
}

#[test]
fn digest_pins_are_checked() {
    let rt = builtins();
    let echo = rt.get("echo-server").unwrap();
    let pin = format!("echo-server@sha256:{}", echo.sha256);
    assert_eq!(
        selected(
            &rt,
            Step::Serve,
            "echo",
            &[("mlmodel.dev/serve-plugin", &pin)]
        )
        .unwrap(),
        "echo-server"
    );
    let upper = format!("echo-server@sha256:{}", echo.sha256.to_uppercase());
    assert!(
        selected(
            &rt,
            Step::Serve,
            "echo",
            &[("mlmodel.dev/serve-plugin", &upper)]
        )
        .is_ok()
    );
    let wrong = format!("echo-server@sha256:{}", "0".repeat(64));
    let err = selected(
        &rt,
        Step::Serve,
        "echo",
        &[("mlmodel.dev/serve-plugin", &wrong)],
    )
    .unwrap_err();
    assert!(
        err.starts_with("PluginDigestMismatch: plugin echo-server has digest sha256:"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "annotation mlmodel.dev/serve-plugin pins sha256:{}",
            "0".repeat(64)
        )),
        "{err}"
    );
    let err = selected(
        &rt,
        Step::Serve,
        "echo",
        &[("mlmodel.dev/serve-plugin", "echo-server@md5:abc")],
    )
    .unwrap_err();
    assert!(err.starts_with("PluginDigestMismatch"), "{err}");
}

#[test]
fn builtins_are_listed_with_digest_and_source() {
    let rt = builtins();
    let plugins = rt.plugins();
    let names: Vec<&str> = plugins.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "download-job",
            "tensorflow-serving",
            "echo-server",
            "file-server",
            "mlserver",
            "service"
        ]
    );
    for p in &plugins {
        assert_eq!(p.source, BUILTIN_SOURCE);
        assert_eq!(p.sha256.len(), 64);
        assert!(
            p.active && !p.version.is_empty() && !p.description.is_empty(),
            "{p:?}"
        );
    }
    assert!(rt.load_errors().is_empty());
}

#[test]
fn directory_plugin_replaces_builtin_and_reload_follows_the_files() {
    let dir = plugin_dir(&[]);
    std::fs::write(dir.path().join("broken.wasm"), b"\0asm not really").unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"ignored").unwrap();
    let opts = RuntimeOptions {
        plugin_dirs: vec![dir.path().to_path_buf()],
        replace_builtins: BTreeSet::from(["echo-server".to_string()]),
        // The replacement runs its own image: the admin allows it.
        allowances: [(
            "echo-server".to_string(),
            mlmodel_operator::plugins::policy::Allowances {
                images: vec!["registry.example/alt-echo".into()],
                ..Default::default()
            },
        )]
        .into(),
        ..options()
    };
    let rt = Runtime::new(opts).unwrap();
    let m = model("m", "echo", &[]);
    let errors = rt.load_errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].0.ends_with("broken.wasm")
            && errors[0].1.contains("not a valid WebAssembly component"),
        "{errors:?}"
    );
    assert_eq!(select(&rt, Step::Serve, &m).unwrap().source, BUILTIN_SOURCE);
    assert!(!rt.reload(), "nothing changed");

    // A replacement echo-server appears: picked up by reload, renders its own image.
    let file = dir.path().join("echo.wasm");
    std::fs::copy(support::fixture("echo-alt"), &file).unwrap();
    assert!(rt.reload());
    let alt = select(&rt, Step::Serve, &m).unwrap();
    assert_eq!(PathBuf::from(&alt.source), file);
    let image = |p: &mlmodel_operator::plugins::LoadedPlugin| {
        let objects = rt.render(p, &m, Step::Serve, "r1").unwrap();
        objects[0].data["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(image(&alt), "registry.example/alt-echo:2.0");
    let summaries = rt.plugins();
    let builtin_echo = summaries
        .iter()
        .find(|p| p.name == "echo-server" && p.source == BUILTIN_SOURCE)
        .unwrap();
    assert!(!builtin_echo.active, "the builtin is replaced");

    // Removed again: the builtin comes back, and a render holding the old plugin still works.
    std::fs::remove_file(&file).unwrap();
    assert!(rt.reload());
    let builtin = select(&rt, Step::Serve, &m).unwrap();
    assert_eq!(builtin.source, BUILTIN_SOURCE);
    assert_eq!(image(&builtin), "hashicorp/http-echo:1.0");
    assert_eq!(
        image(&alt),
        "registry.example/alt-echo:2.0",
        "in-flight plugin stays usable"
    );
}

#[test]
fn watcher_picks_up_new_files() {
    let dir = plugin_dir(&[]);
    let opts = RuntimeOptions {
        plugin_dirs: vec![dir.path().to_path_buf()],
        reload_interval: std::time::Duration::from_millis(50),
        ..options()
    };
    let rt = Runtime::new(opts).unwrap();
    rt.watch_plugin_dirs().unwrap();
    std::fs::copy(support::fixture("failing"), dir.path().join("failing.wasm")).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while rt.get("failing").is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the watcher did not load the new plugin"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `--plugin-allow`: what the admin allows one plugin (here a LoadBalancer Service) passes the
/// output policy for that plugin only; every other plugin is still refused it.
#[test]
fn allowances_widen_the_output_policy_for_one_plugin_only() {
    use mlmodel_operator::plugins::policy::Allowances;
    let (name, allow) = Allowances::parse_flag("lb-service:service-type=LoadBalancer").unwrap();
    let rt = Runtime::new(RuntimeOptions {
        allowances: BTreeMap::from([(name, allow)]),
        ..options()
    })
    .unwrap();
    let m = model("m", "echo", &[]);
    let lb = |_: &str, _: &str| {
        Ok(vec![
            serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "m"},
                "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}})
            .to_string(),
        ])
    };
    assert!(
        rt.render_native("lb-service", &m, Step::Expose, "r1", lb)
            .is_ok()
    );
    let refused = rt
        .render_native("service", &m, Step::Expose, "r1", lb)
        .unwrap_err();
    assert_eq!(refused.reason().as_str(), "ForbiddenPluginOutput");
    assert!(refused.to_string().contains("LoadBalancer"), "{refused}");
}

/// A plugin dropped into a directory under a built-in's name is refused unless the admin allows
/// replacing that built-in: the built-in stays active and the refusal is a load error.
#[test]
fn directory_plugin_may_not_replace_a_builtin_unless_the_admin_allows_it() {
    let dir = plugin_dir(&["echo-alt"]);
    let rt = Runtime::new(RuntimeOptions {
        plugin_dirs: vec![dir.path().to_path_buf()],
        ..options()
    })
    .unwrap();
    let m = model("m", "echo", &[]);
    assert_eq!(select(&rt, Step::Serve, &m).unwrap().source, BUILTIN_SOURCE);
    let errors = rt.load_errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].0.ends_with("echo-alt.wasm")
            && errors[0].1.contains("would replace the built-in")
            && errors[0].1.contains("--replace-builtin echo-server"),
        "{errors:?}"
    );
    assert!(
        rt.plugins()
            .iter()
            .all(|p| p.source == BUILTIN_SOURCE && p.active)
    );

    // Allowed for another built-in only: still refused.
    let rt = Runtime::new(RuntimeOptions {
        plugin_dirs: vec![dir.path().to_path_buf()],
        replace_builtins: BTreeSet::from(["service".to_string()]),
        ..options()
    })
    .unwrap();
    assert_eq!(select(&rt, Step::Serve, &m).unwrap().source, BUILTIN_SOURCE);
    assert_eq!(rt.load_errors().len(), 1);
}
