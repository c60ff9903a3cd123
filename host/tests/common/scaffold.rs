//! Plugin projects of `mlmodel-operator plugins new`, built into components with each language's
//! pinned tools (`hack/sdk-plugins.sh tools`, in `$MLMODEL_CACHE/sdk-tools`): shared by the
//! offline scaffold tests and the cluster test that ships TypeScript and Python plugins through
//! the registry.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd`, panicking with its output when it fails; returns the output.
pub fn ok(what: &str, cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    let text = text(&out);
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

/// The operator's binary with `args`, its compile cache in the target directory.
pub fn operator(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mlmodel-operator"));
    cmd.args(args)
        .env(
            "MLMODEL_CACHE",
            workspace().join("target").join("plugin-test-cache-cli"),
        )
        .env_remove("MLMODEL_OPERATOR_IMAGE")
        .env_remove("MLMODEL_PLUGIN_DIRS")
        .env_remove("CARGO_TARGET_DIR");
    cmd
}

/// `plugins new NAME --lang LANG --step STEP` into `parent/NAME`; returns the project.
pub fn new_project(parent: &Path, name: &str, lang: &str, step: &str) -> PathBuf {
    let dir = parent.join(name);
    let out = ok(
        &format!("plugins new {name} --lang {lang} --step {step}"),
        operator(&[
            "plugins", "new", name, "--lang", lang, "--step", step, "--dir",
        ])
        .arg(&dir),
    );
    assert!(
        out.contains(&format!("created the {step} plugin {name}")),
        "{out}"
    );
    for file in ["README.md", "model.yaml", "wit/plugin.wit"] {
        assert!(dir.join(file).is_file(), "{lang} {step}: no {file}");
    }
    dir
}

/// The tools `hack/sdk-plugins.sh tools` installed: a folder `<prefix>-<hash>` whose install
/// completed (`node` or `python`).
pub fn sdk_tool(prefix: &str) -> Option<PathBuf> {
    let cache = std::env::var_os("MLMODEL_CACHE")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/mlmodel-operator")
        });
    std::fs::read_dir(cache.join("sdk-tools"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{prefix}-")))
                && p.join(".complete").is_file()
        })
}

/// The TypeScript SDK's `build.mjs COMMAND src/plugin.ts` in the project `dir`.
pub fn ts_build(dir: &Path, tools: &Path, command: &str) -> Command {
    let mut cmd = Command::new("node");
    cmd.current_dir(dir)
        .args(["sdk/ts/build.mjs", command, "src/plugin.ts", "--modules"])
        .arg(tools.join("node_modules"));
    cmd
}

/// `python -m MODULE ARGS` of the Python SDK in the project `dir`, with the pinned venv.
pub fn py_module(dir: &Path, venv: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(venv.join("bin/python"));
    cmd.current_dir(dir)
        .env("PYTHONPATH", "sdk/python")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("VIRTUAL_ENV")
        .arg("-m")
        .args(args);
    cmd
}

/// The project's component, built as its README says, at `dir/dist/FILE`.
pub fn ts_component(dir: &Path, tools: &Path, file: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("dist")).unwrap();
    let out = dir.join("dist").join(file);
    ok(
        "build.mjs build",
        ts_build(dir, tools, "build").arg("-o").arg(&out),
    );
    out
}

/// The project's component, built as its README says, at `dir/dist/FILE`.
pub fn py_component(dir: &Path, venv: &Path, file: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("dist")).unwrap();
    let out = dir.join("dist").join(file);
    ok(
        "mlmodel_plugin.build",
        py_module(dir, venv, &["mlmodel_plugin.build", "src", "-o"]).arg(&out),
    );
    out
}
