//! The sandbox: misbehaving plugins (built from `tests/fixtures/`) yield their specific error
//! within a bounded time, and a healthy plugin in the same runtime still renders afterwards.

use crate::support::{model, plugin_dir, tempdir::TempDir};
use mlmodel_operator::plugins::{CONTRACT, Limits, PluginError, Runtime, RuntimeOptions, Step};
use mlmodel_operator::selection::select;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const FIXTURES: &[&str] = &[
    "loop",
    "hog",
    "panic",
    "failing",
    "not-json",
    "cluster-role",
    "other-namespace",
    "wit-compatible",
    "wit-v2",
    "wit-changed",
    "sleep",
];

fn runtime() -> &'static Runtime {
    static RT: OnceLock<(Runtime, TempDir)> = OnceLock::new();
    &RT.get_or_init(|| {
        let dir = plugin_dir(FIXTURES);
        let opts = RuntimeOptions {
            plugin_dirs: vec![dir.path().to_path_buf()],
            ..RuntimeOptions::default()
        };
        (Runtime::new(opts).expect("runtime"), dir)
    })
    .0
}

/// A runtime of its own with the fixtures `names` and a call deadline of `timeout`.
fn runtime_with(names: &[&str], timeout: Duration) -> (Runtime, TempDir) {
    let dir = plugin_dir(names);
    let opts = RuntimeOptions {
        plugin_dirs: vec![dir.path().to_path_buf()],
        limits: Limits {
            timeout,
            render_threads: 2,
            ..Limits::default()
        },
        ..RuntimeOptions::default()
    };
    (Runtime::new(opts).expect("runtime"), dir)
}

/// Renders the serve step with the plugin named `name`, timing it.
fn render_with(name: &str) -> (Result<usize, PluginError>, Duration) {
    let rt = runtime();
    let m = model("m", "echo", &[("mlmodel.dev/serve-plugin", name)]);
    let plugin = select(rt, Step::Serve, &m).expect("fixture loaded");
    let started = Instant::now();
    let result = rt
        .render(&plugin, &m, Step::Serve, "rev1")
        .map(|objects| objects.len());
    (result, started.elapsed())
}

fn assert_healthy_still_renders() {
    let (result, _) = render_with("echo-server");
    assert_eq!(result.expect("echo-server renders"), 1);
}

#[test]
fn infinite_loop_times_out() {
    let (result, took) = render_with("loop");
    let err = result.unwrap_err();
    assert!(matches!(err, PluginError::Timeout { .. }), "{err:?}");
    assert_eq!(err.reason().as_str(), "PluginTimeout");
    assert!(
        err.to_string()
            .starts_with("plugin loop did not finish within 1s"),
        "{err}"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_healthy_still_renders();
}

/// A guest that sleeps blocks inside a host call, where the epoch deadline cannot reach it: the
/// host refuses the wait at once instead of holding the thread for a minute.
#[test]
fn a_sleeping_plugin_is_refused_at_once() {
    let (result, took) = render_with("sleep");
    let err = result.unwrap_err();
    assert_eq!(err.reason().as_str(), "PluginTrapped", "{err:?}");
    assert!(err.to_string().contains("plugins may not wait"), "{err}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_healthy_still_renders();
}

#[test]
fn huge_allocation_is_out_of_memory() {
    let (result, took) = render_with("hog");
    let err = result.unwrap_err();
    assert!(matches!(err, PluginError::OutOfMemory { .. }), "{err:?}");
    assert_eq!(err.reason().as_str(), "PluginOutOfMemory");
    assert!(
        err.to_string()
            .contains("plugin hog needed more than its 64 MiB"),
        "{err}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_healthy_still_renders();
}

#[test]
fn panic_is_a_trap_with_the_panic_message() {
    let (result, took) = render_with("panic");
    let err = result.unwrap_err();
    assert!(matches!(err, PluginError::Trap { .. }), "{err:?}");
    assert_eq!(err.reason().as_str(), "PluginTrapped");
    let text = err.to_string();
    assert!(text.starts_with("plugin panic crashed"), "{text}");
    assert!(
        text.contains("the fixture panics on purpose for model m"),
        "stderr attached: {text}"
    );
    assert!(!text.contains('\n'), "one line: {text}");
    assert!(!text.contains("wasm backtrace"), "{text}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_healthy_still_renders();
}

#[test]
fn plugin_error_is_failed_with_stderr() {
    let (result, _) = render_with("failing");
    let err = result.unwrap_err();
    assert_eq!(err.reason().as_str(), "PluginFailed");
    assert_eq!(
        err.to_string(),
        "plugin failing failed: plugin config key `answer` is required (stderr: debug: looked for config key answer)"
    );
    assert_healthy_still_renders();
}

#[test]
fn output_that_is_not_json_is_invalid() {
    let (result, _) = render_with("not-json");
    let err = result.unwrap_err();
    assert_eq!(err.reason().as_str(), "InvalidPluginOutput");
    assert!(
        err.to_string()
            .starts_with("plugin not-json returned invalid output: object #1: not JSON"),
        "{err}"
    );
    assert_healthy_still_renders();
}

#[test]
fn cluster_role_is_forbidden() {
    let (result, _) = render_with("cluster-role");
    let err = result.unwrap_err();
    assert_eq!(err.reason().as_str(), "ForbiddenPluginOutput");
    let text = err.to_string();
    assert!(
        text.contains("plugin cluster-role returned ClusterRole/take-over"),
        "{text}"
    );
    assert!(text.contains("cluster-scoped"), "{text}");
    assert_healthy_still_renders();
}

#[test]
fn object_in_another_namespace_is_forbidden() {
    let (result, _) = render_with("other-namespace");
    let err = result.unwrap_err();
    assert_eq!(err.reason().as_str(), "ForbiddenPluginOutput");
    let text = err.to_string();
    assert!(
        text.contains("ConfigMap/m-config")
            && text.contains("\"ns\"")
            && text.contains("kube-system"),
        "{text}"
    );
    assert_healthy_still_renders();
}

#[test]
fn plugin_built_against_a_compatible_contract_loads() {
    let (result, _) = render_with("wit-compatible");
    assert_eq!(result.expect("0.1.3 is compatible with 0.1.0"), 1);
    let summary = runtime()
        .plugins()
        .into_iter()
        .find(|p| p.name == "wit-compatible")
        .unwrap();
    assert_eq!(summary.version, "0.1.3");
}

#[test]
fn plugins_with_an_incompatible_contract_are_refused_clearly() {
    let errors = runtime().load_errors();
    // The host's contract is 0.1.1; the fixtures: 0.2.0, and 0.1.0 with a changed signature.
    assert_eq!(CONTRACT, "mlmodel:plugin/renderer@0.1.1");
    for (file, words) in [
        ("wit-v2.wasm", format!("does not export `{CONTRACT}`")),
        (
            "wit-changed.wasm",
            format!("does not export `{CONTRACT}` with the expected types"),
        ),
    ] {
        let (_, message) = errors
            .iter()
            .find(|(path, _)| path.ends_with(file))
            .unwrap_or_else(|| panic!("{file} should be refused; errors: {errors:?}"));
        assert!(message.contains(&words), "{file}: {message}");
        assert!(!message.contains('\n'), "one line: {message}");
    }
    assert_eq!(errors.len(), 2, "{errors:?}");
    let names: Vec<String> = runtime().plugins().into_iter().map(|p| p.name).collect();
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("wit-v2") || n == "wit-changed"),
        "{names:?}"
    );
    assert_healthy_still_renders();
}

#[test]
fn trapping_plugin_inside_async_runtimes_does_not_panic_the_host() {
    // The panic fixture writes to stderr, whose WASI host functions use Tokio internally.
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = current.block_on(async { render_with("panic").0.unwrap_err() });
    assert_eq!(err.reason().as_str(), "PluginTrapped");
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let err = multi.block_on(async {
        tokio::spawn(async { render_with("panic").0.unwrap_err() })
            .await
            .unwrap()
    });
    assert_eq!(err.reason().as_str(), "PluginTrapped");
    let ok = multi.block_on(async {
        tokio::task::spawn_blocking(|| render_with("echo-server").0)
            .await
            .unwrap()
    });
    assert_eq!(ok.unwrap(), 1);
}

#[test]
fn renders_run_in_parallel_from_many_threads() {
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..25 {
                    assert_eq!(render_with("echo-server").0.unwrap(), 1);
                }
            });
        }
    });
}

/// The controller's renders run off its thread: kube-runtime polls every reconcile of a
/// controller from one task, so a render on that thread held up every other model. Here one
/// thread drives two models' reconciles, polling the slow one first: the fast model renders all
/// its steps while the slow plugin is still looping towards its (long) deadline, and the slow
/// one then fails alone, with PluginTimeout.
#[test]
fn a_slow_render_holds_up_no_other_model() {
    let (rt, _dir) = runtime_with(&["loop"], Duration::from_secs(4));
    let driver = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    driver.block_on(async {
        let slow_model = model("slow", "echo", &[("mlmodel.dev/serve-plugin", "loop")]);
        let fast_model = model("fast", "echo", &[]);
        let slow_plugin = select(&rt, Step::Serve, &slow_model).expect("fixture loaded");
        let started = Instant::now();
        let slow = rt.render_async(slow_plugin, &slow_model, Step::Serve, "rev1");
        let fast = async {
            let mut objects = 0;
            for step in Step::ALL {
                let plugin = select(&rt, step, &fast_model).expect("built-in");
                objects += rt
                    .render_async(plugin, &fast_model, step, "rev1")
                    .await
                    .expect("the fast model renders")
                    .len();
            }
            objects
        };
        tokio::pin!(slow, fast);
        let objects = tokio::select! {
            biased;
            r = &mut slow => panic!("the slow render ended before the fast model's: {r:?}"),
            n = &mut fast => n,
        };
        let fast_took = started.elapsed();
        assert!(objects >= 3, "{objects}");
        let err = slow.await.unwrap_err();
        let slow_took = started.elapsed();
        assert_eq!(err.reason().as_str(), "PluginTimeout", "{err:?}");
        assert!(
            err.to_string()
                .starts_with("plugin loop did not finish within 4s"),
            "{err}"
        );
        eprintln!("fast model's 3 renders: {fast_took:?}; slow render failed after {slow_took:?}");
    });
}

/// The async path keeps the sync path's results: errors with their reasons, and a healthy render.
#[test]
fn async_renders_give_the_same_errors() {
    let driver = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    driver.block_on(async {
        for (name, reason) in [
            ("loop", Some("PluginTimeout")),
            ("panic", Some("PluginTrapped")),
            ("failing", Some("PluginFailed")),
            ("cluster-role", Some("ForbiddenPluginOutput")),
            ("echo-server", None),
        ] {
            let m = model("m", "echo", &[("mlmodel.dev/serve-plugin", name)]);
            let plugin = select(runtime(), Step::Serve, &m).expect("fixture loaded");
            let sync = runtime().render(&plugin, &m, Step::Serve, "rev1");
            let r#async = runtime()
                .render_async(plugin, &m, Step::Serve, "rev1")
                .await;
            assert_eq!(
                r#async
                    .as_ref()
                    .err()
                    .map(|e| e.reason().as_str().to_string())
                    .as_deref(),
                reason,
                "{name}"
            );
            assert_eq!(
                r#async.map_err(|e| e.to_string()).map(|o| o.len()),
                sync.map_err(|e| e.to_string()).map(|o| o.len()),
                "{name}"
            );
        }
    });
}

/// `info()` runs at load with the same bounds as a render: a plugin whose `info()` loops is
/// stopped at the deadline and refused with a load error, one that sleeps is refused at once;
/// the other plugins load and render.
#[test]
fn a_plugin_whose_info_loops_or_sleeps_is_refused_at_load() {
    let (rt, _dir) = runtime_with(&["info-loop", "info-sleep"], Duration::from_secs(1));
    let errors = rt.load_errors();
    for (file, words) in [
        (
            "info-loop.wasm",
            "info() did not return within 1s and was stopped; a plugin must answer info() at once",
        ),
        ("info-sleep.wasm", "info() failed: plugins may not wait"),
    ] {
        let (_, message) = errors
            .iter()
            .find(|(path, _)| path.ends_with(file))
            .unwrap_or_else(|| panic!("{file} should be refused; errors: {errors:?}"));
        assert!(message.contains(words), "{file}: {message}");
    }
    assert_eq!(errors.len(), 2, "{errors:?}");
    let m = model("m", "echo", &[]);
    let plugin = select(&rt, Step::Serve, &m).expect("built-ins load");
    assert_eq!(
        rt.render(&plugin, &m, Step::Serve, "rev1").unwrap().len(),
        1
    );
}
