//! `mlmodel-operator render`, `plugins` and `fetch` through the real binary.
use crate::support;

use crate::support::{plugin_dir, workspace};
use std::process::{Command, Output};

fn run(args: &[&str]) -> (Output, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mlmodel-operator"))
        .args(args)
        .current_dir(workspace())
        .env(
            "MLMODEL_CACHE",
            workspace().join("target").join("plugin-test-cache-cli"),
        )
        .env_remove("MLMODEL_OPERATOR_IMAGE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    (out, stdout, stderr)
}

fn kinds(yaml: &str) -> Vec<String> {
    yaml.lines()
        .filter_map(|l| l.strip_prefix("kind: "))
        .map(str::to_string)
        .collect()
}

#[test]
fn render_prints_every_step_of_each_sample() {
    let (out, stdout, stderr) = run(&["render", "-f", "deploy/samples/echo-model.yaml"]);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        kinds(&stdout),
        ["PersistentVolumeClaim", "Job", "Deployment", "Service"]
    );
    assert!(
        stdout.contains("image: hashicorp/http-echo:1.0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("mlmodel.dev/step: serve") && stdout.contains("namespace: default"),
        "{stdout}"
    );

    let (out, stdout, stderr) = run(&[
        "render",
        "-f",
        "deploy/samples/tensorflow-model.yaml",
        "--step",
        "serve",
    ]);
    assert!(out.status.success(), "{stderr}");
    // Two replicas: a disruption budget, and each pod downloads its own copy (no claim).
    assert_eq!(kinds(&stdout), ["Deployment", "PodDisruptionBudget"]);
    assert!(stdout.contains("tensorflow/serving:"), "{stdout}");
    assert!(
        stdout.contains("initContainers:") && stdout.contains("emptyDir:"),
        "{stdout}"
    );
}

#[test]
fn replacement_plugin_in_a_directory_changes_the_output_without_rebuilding() {
    let dir = plugin_dir(&["echo-alt"]);
    let dir_arg = dir.path().to_str().unwrap();
    let (out, stdout, stderr) = run(&[
        "render",
        "-f",
        "deploy/samples/echo-model.yaml",
        "--plugin-dir",
        dir_arg,
        "--replace-builtin",
        "echo-server",
        "--step",
        "serve",
    ]);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("image: registry.example/alt-echo:2.0"),
        "{stdout}"
    );
    assert!(!stdout.contains("hashicorp/http-echo"), "{stdout}");
}

#[test]
fn render_fails_with_the_plugins_error() {
    let dir = plugin_dir(&["panic"]);
    let model = dir.path().join("model.yaml");
    std::fs::write(
        &model,
        "apiVersion: mlmodel.dev/v1alpha1\nkind: MLModel\nmetadata:\n  name: boom\n  annotations: {mlmodel.dev/serve-plugin: panic}\nspec:\n  modelURL: https://example.com/m\n",
    )
    .unwrap();
    let (out, _, stderr) = run(&[
        "render",
        "-f",
        model.to_str().unwrap(),
        "--plugin-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(stderr.contains("plugin panic crashed"), "{stderr}");
    assert!(
        stderr.contains("the fixture panics on purpose for model boom"),
        "{stderr}"
    );
}

#[test]
fn render_refuses_a_config_out_of_bounds() {
    let dir = plugin_dir(&[]);
    let model = dir.path().join("deep.json");
    let config = format!("{}1{}", r#"{"a":"#.repeat(40), "}".repeat(40));
    std::fs::write(
        &model,
        format!(
            r#"{{"apiVersion":"mlmodel.dev/v1alpha1","kind":"MLModel","metadata":{{"name":"deep"}},"spec":{{"modelURL":"https://example.com/m","framework":"echo","plugins":{{"config":{config}}}}}}}"#
        ),
    )
    .unwrap();
    let (out, stdout, stderr) = run(&["render", "-f", model.to_str().unwrap()]);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("spec.plugins.config nests 40 levels deep; at most 32 are allowed"),
        "{stderr}"
    );
}

#[test]
fn plugins_lists_builtins_directory_plugins_and_load_errors() {
    let dir = plugin_dir(&["echo-alt", "wit-v2"]);
    let (out, stdout, _) = run(&[
        "plugins",
        "--plugin-dir",
        dir.path().to_str().unwrap(),
        "--replace-builtin=echo-server",
    ]);
    assert!(!out.status.success(), "a load error fails the command");
    let header = stdout.lines().next().unwrap();
    assert!(
        header.starts_with("NAME") && header.contains("SHA256") && header.contains("SOURCE"),
        "{stdout}"
    );
    for name in ["download-job", "tensorflow-serving", "service"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(name) && l.contains("builtin")),
            "{name}: {stdout}"
        );
    }
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("echo-server") && l.contains("builtin (replaced)")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("echo-server") && l.contains("echo-alt.wasm")),
        "{stdout}"
    );
    assert!(
        stdout.contains("Not loaded:") && stdout.contains("wit-v2.wasm"),
        "{stdout}"
    );

    let (out, stdout, stderr) = run(&["plugins"]);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.lines().count(), 7, "{stdout}");
    // What each plugin accepts: the formats, then the config keys.
    let tf = stdout
        .lines()
        .find(|l| l.starts_with("tensorflow-serving"))
        .unwrap();
    assert!(
        tf.contains(" saved-model ") && tf.ends_with("modelVersion,extraArgs"),
        "{stdout}"
    );
    let echo = stdout
        .lines()
        .find(|l| l.starts_with("echo-server"))
        .unwrap();
    assert!(
        echo.contains(" any ") && echo.ends_with(",text"),
        "{stdout}"
    );
}

/// The `fetch` subcommand reaches the downloader (`mlmodel-fetch`, whose own tests cover it):
/// arguments parsed, exit code 1 and the reason on the termination log.
#[test]
fn fetch_runs_the_downloader_and_writes_the_termination_log() {
    let dir = support::tempdir::TempDir::new("fetch-cli");
    let dest = dir.path().join("dest");
    let term = dir.path().join("termination-log");
    // Nothing listens on the discard port: connection refused, then NetworkError.
    let (out, _, stderr) = run(&[
        "fetch",
        "--url",
        "http://127.0.0.1:9/m.bin",
        "--dest",
        dest.to_str().unwrap(),
        "--termination-log",
        term.to_str().unwrap(),
        "--retries",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let line = std::fs::read_to_string(&term).unwrap();
    let report: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(report["reason"], "NetworkError", "{line}");
    assert!(stderr.contains("download failed"), "{stderr}");
}

/// A plain (core) module in a plugin directory: one report, on stdout, that says how to build a
/// component; and every plugin's digest in full, so it can be pinned as printed.
#[test]
fn plugins_reports_a_core_module_once_with_the_fix_and_full_digests() {
    let dir = plugin_dir(&[]);
    std::fs::write(dir.path().join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let (out, stdout, stderr) = run(&["plugins", "--plugin-dir", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let all = format!("{stdout}{stderr}");
    assert_eq!(all.matches("core WebAssembly module").count(), 1, "{all}");
    assert!(stdout.contains("`wasm32-wasip2`"), "{stdout}");
    let echo = stdout
        .lines()
        .find(|l| l.starts_with("echo-server"))
        .unwrap();
    assert!(
        echo.split_whitespace()
            .any(|w| w.len() == 64 && w.chars().all(|c| c.is_ascii_hexdigit())),
        "{echo}"
    );
}

/// A model whose serve plugin returns `objects` (the `mirror` fixture), rendered by the binary.
fn render_mirrored(objects: &str) -> (Output, String, String) {
    let dir = plugin_dir(&["mirror"]);
    let model = dir.path().join("model.yaml");
    std::fs::write(
        &model,
        format!(
            "apiVersion: mlmodel.dev/v1alpha1\nkind: MLModel\nmetadata:\n  name: shapes\n  annotations: {{mlmodel.dev/serve-plugin: mirror}}\nspec:\n  modelURL: https://example.com/m\n  plugins:\n    config:\n      serve:\n        objects: {objects}\n"
        ),
    )
    .unwrap();
    run(&[
        "render",
        "-f",
        model.to_str().unwrap(),
        "--plugin-dir",
        dir.path().to_str().unwrap(),
        "--step",
        "serve",
    ])
}

/// Output of a known kind that the Kubernetes types refuse is refused by the output policy,
/// naming the field: `render` fails as the operator would (InvalidPluginOutput), where it used
/// to print it and leave the API server to refuse it at apply time.
#[test]
fn render_refuses_objects_that_break_their_kubernetes_type() {
    let pod = r#"{"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}}, "containers": CONTAINERS}"#;
    let container = r#"{"name": "c", "image": "i", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}"#;
    let deployment = |replicas: &str, containers: &str| {
        format!(
            r#"[{{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {{"name": "d"}}, "spec": {{"replicas": {replicas}, "template": {{"spec": {}}}}}}}]"#,
            pod.replace("CONTAINERS", containers)
        )
    };
    let (out, stdout, stderr) = render_mirrored(&deployment("2", &format!("[{container}]")));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("replicas: 2"), "{stdout}");

    for (objects, want) in [
        (
            deployment(r#""two""#, &format!("[{container}]")),
            r#"Deployment/d: spec.replicas: invalid type: string "two", expected an integer (int32)"#,
        ),
        (
            deployment("2", container),
            "Deployment/d: spec.template.spec.containers: invalid type: map, expected a list",
        ),
    ] {
        let (out, stdout, stderr) = render_mirrored(&objects);
        assert!(!out.status.success(), "{objects}: {stdout}");
        assert!(stdout.is_empty(), "{stdout}");
        assert!(
            stderr.contains("plugin mirror returned invalid output") && stderr.contains(want),
            "{want}: {stderr}"
        );
    }
}

#[test]
fn plugins_list_is_plugins_alone() {
    let (out, alone, stderr) = run(&["plugins"]);
    assert!(out.status.success(), "{stderr}");
    let (out, list, stderr) = run(&["plugins", "list"]);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(alone, list);
    let dir = plugin_dir(&["wit-v2"]);
    let (out, stdout, _) = run(&[
        "plugins",
        "list",
        "--plugin-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(
        !out.status.success() && stdout.contains("wit-v2.wasm"),
        "{stdout}"
    );
}

/// `plugins test` on a project of cases (models of the shared vectors) and a component (a
/// fixture): cases without files fail; `--update` writes them (the input as the vectors have it);
/// then they pass; a changed expectation fails with a diff of it; a component whose output the
/// policy refuses fails naming the refusal.
#[test]
fn plugins_test_passes_diffs_updates_and_reports_refusals() {
    let project = support::tempdir::TempDir::new("plugins-test-cli");
    let tests = project.path().join("tests");
    let cases = ["01-defaults", "03-config-keys", "06-error-text-not-string"];
    for case in cases {
        std::fs::create_dir_all(tests.join(case)).unwrap();
        std::fs::copy(
            workspace()
                .join("plugins/test-vectors")
                .join(case)
                .join("model.yaml"),
            tests.join(case).join("model.yaml"),
        )
        .unwrap();
    }
    let echo = support::fixture("echo-alt");
    let dir = project.path().to_str().unwrap();
    let plugin = echo.to_str().unwrap();
    let (out, stdout, _) = run(&["plugins", "test", dir, "--plugin", plugin]);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("FAIL    01-defaults")
            && stdout.contains("input.json is missing or not JSON (--update writes it)")
            && stdout.contains("3 cases: 0 passed, 3 failed"),
        "{stdout}"
    );

    let (out, stdout, stderr) = run(&["plugins", "test", dir, "--plugin", plugin, "--update"]);
    assert!(out.status.success(), "{stdout}{stderr}");
    for case in cases {
        assert!(stdout.contains(&format!("UPDATED {case}")), "{stdout}");
        let vector = workspace()
            .join("plugins/test-vectors")
            .join(case)
            .join("input.json");
        assert_eq!(
            std::fs::read_to_string(tests.join(case).join("input.json")).unwrap(),
            std::fs::read_to_string(vector).unwrap(),
            "{case}: the host's input, written as the vectors have it"
        );
    }
    let (out, stdout, stderr) = run(&["plugins", "test", dir, "--plugin", plugin]);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.starts_with("plugin echo-server "), "{stdout}");
    for case in cases {
        assert!(stdout.contains(&format!("PASS    {case}")), "{stdout}");
    }
    assert!(stdout.contains("3 cases: 3 passed, 0 failed"), "{stdout}");

    // An expectation that no longer holds: a diff, exit 1.
    let expected = tests.join("01-defaults/expected.json");
    let good = std::fs::read_to_string(&expected).unwrap();
    assert!(good.contains("registry.example/alt-echo:2.0"), "{good}");
    std::fs::write(
        &expected,
        good.replace("registry.example/alt-echo:2.0", "old/image:0.9"),
    )
    .unwrap();
    let (out, stdout, _) = run(&["plugins", "test", dir, "--plugin", plugin]);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("FAIL    01-defaults"), "{stdout}");
    assert!(
        stdout.contains("the plugin's output differs from expected.json")
            && stdout.contains("--- expected.json")
            && stdout.contains("-")
            && stdout.contains("\"old/image:0.9\"")
            && stdout.contains("\"registry.example/alt-echo:2.0\""),
        "{stdout}"
    );
    assert!(stdout.contains("3 cases: 2 passed, 1 failed"), "{stdout}");

    // A plugin whose output the policy refuses: the case fails with the refusal, even when its
    // output is what expected.json says.
    let mirror = support::fixture("mirror");
    let bad = support::tempdir::TempDir::new("plugins-test-refused");
    std::fs::create_dir_all(bad.path().join("tests/01")).unwrap();
    std::fs::write(
        bad.path().join("tests/01/model.yaml"),
        "apiVersion: mlmodel.dev/v1alpha1\nkind: MLModel\nmetadata:\n  name: m\nspec:\n  modelURL: https://example.com/m\n  plugins:\n    config:\n      serve:\n        objects: [{apiVersion: v1, kind: ConfigMap, metadata: {name: c}, data: {n: 1}}]\n",
    )
    .unwrap();
    let bad_dir = bad.path().to_str().unwrap();
    let args = [
        "plugins",
        "test",
        bad_dir,
        "--plugin",
        mirror.to_str().unwrap(),
        "--step",
        "serve",
    ];
    let (out, stdout, _) = run(&[&args[..], &["--update"]].concat());
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("FAIL    01")
            && stdout.contains("the output policy refuses the output")
            && stdout.contains("data.n: invalid type: integer `1`, expected a string"),
        "{stdout}"
    );
    // Several steps and no --step: it says so.
    let (out, _, stderr) = run(&args[..5]);
    assert!(!out.status.success());
    assert!(
        stderr.contains("renders several steps (download, serve, expose): pass --step"),
        "{stderr}"
    );
}

/// The operator's compiler process (`compile-plugin`, run by `mlmodel-operator run` for every
/// plugin missing from the cache): a component in, an artifact out; a core module refused with
/// the message an in-process compile gives, and nothing written.
#[test]
fn the_compiler_process_writes_an_artifact_or_says_why_not() {
    use std::io::Write as _;
    let dir = support::tempdir::TempDir::new("compile-plugin");
    let compile = |bytes: &[u8], out: &std::path::Path| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mlmodel-operator"))
            .args([
                "compile-plugin",
                "--memory-bytes",
                "67108864",
                "--max-concurrent",
                "32",
                "--out",
            ])
            .arg(out)
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(bytes).unwrap();
        child.wait_with_output().unwrap()
    };

    let component = std::fs::read(support::fixture("echo-alt")).unwrap();
    let out = dir.path().join("echo.cwasm");
    let done = compile(&component, &out);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let artifact = std::fs::read(&out).unwrap();
    assert!(
        artifact.starts_with(b"\x7fELF"),
        "a wasmtime artifact is an ELF image"
    );

    // A core module (the header of one is enough): refused, exit 3, nothing written.
    let out = dir.path().join("core.cwasm");
    let refused = compile(b"\0asm\x01\0\0\0", &out);
    assert_eq!(refused.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("wasm32-wasip2"), "{stderr}");
    assert!(!out.exists());
}
