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
    assert_eq!(kinds(&stdout), ["Deployment"]);
    assert!(stdout.contains("tensorflow/serving:"), "{stdout}");
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
    assert_eq!(stdout.lines().count(), 6, "{stdout}");
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
