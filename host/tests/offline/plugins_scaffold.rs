//! `mlmodel-operator plugins new` for each language, built with that language's real tools and
//! tested with `plugins test` through the binary: what a plugin author gets works as its README
//! says, outside this repository.
//!
//! - Rust: a project per step, `cargo build --release --target wasm32-wasip2 --offline` (the
//!   crates its `Cargo.lock` pins are this workspace's, so in the cargo cache; the target
//!   directory is `target/scaffold-rust`, kept between runs), then `plugins test` and `render`.
//! - TypeScript and Python: a project per step run natively on its cases by the SDK's runner
//!   (`build.mjs test`, `mlmodel_plugin.testing`), which checks the `-ts`/`-py` templates against
//!   the vectors; the serve project also built into a component with the pinned tools of
//!   `hack/sdk-plugins.sh tools` (in `$MLMODEL_CACHE/sdk-tools`, installed by `make test`'s
//!   setup), then `plugins test` and `render`. Without those tools these two tests say so and
//!   skip.
use crate::scaffold::{
    new_project, ok, operator, py_component, py_module, sdk_tool, ts_build, ts_component,
};
use crate::support::{tempdir::TempDir, workspace};
use std::path::Path;
use std::process::Command;

const STEPS: [&str; 3] = ["download", "serve", "expose"];

/// `plugins test` on the project (its component where its README's build puts it, unless
/// `target` says where cargo put it), then `render` of its example model.
fn test_and_render(dir: &Path, step: &str, cases: usize, plugin_dir: &Path, target: Option<&Path>) {
    let mut test = operator(&["plugins", "test"]);
    test.arg(dir);
    if let Some(target) = target {
        test.env("CARGO_TARGET_DIR", target);
    }
    let out = ok(&format!("plugins test {}", dir.display()), &mut test);
    assert!(
        out.contains(&format!("(step {step})"))
            && out.contains(&format!("{cases} cases: {cases} passed, 0 failed")),
        "{out}"
    );
    let out = ok(
        "render",
        operator(&["render", "-f"])
            .arg(dir.join("model.yaml"))
            .arg("--plugin-dir")
            .arg(plugin_dir)
            .args(["--step", step]),
    );
    let kind = match step {
        "download" => "kind: Job",
        "serve" => "kind: Deployment",
        _ => "kind: Service",
    };
    assert!(out.contains(kind), "{out}");
}

fn cases(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("tests"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("model.yaml").is_file())
        .count()
}

#[test]
fn rust_projects_build_offline_and_pass_their_tests() {
    let parent = TempDir::new("scaffold-rust");
    let target = workspace().join("target").join("scaffold-rust");
    for step in STEPS {
        let name = format!("my-{step}");
        let dir = new_project(parent.path(), &name, "rust", step);
        let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        build
            .args([
                "build",
                "--quiet",
                "--release",
                "--offline",
                "--target",
                "wasm32-wasip2",
            ])
            .current_dir(&dir);
        // This test's own cargo settings are not the project's.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().to_string();
            if (key.starts_with("CARGO_") && key != "CARGO_HOME")
                || key.starts_with("RUSTC")
                || key == "RUSTFLAGS"
            {
                build.env_remove(key);
            }
        }
        build.env("CARGO_TARGET_DIR", &target);
        ok(&format!("cargo build of {name}"), &mut build);
        let release = target.join("wasm32-wasip2/release");
        assert!(release.join(format!("my_{step}.wasm")).is_file());
        let only = TempDir::new("scaffold-rust-plugin");
        std::fs::copy(
            release.join(format!("my_{step}.wasm")),
            only.path().join(format!("my_{step}.wasm")),
        )
        .unwrap();
        test_and_render(&dir, step, cases(&dir), only.path(), Some(&target));
    }
}

fn skip(lang: &str) {
    eprintln!(
        "SKIPPED: the {lang} scaffold check needs the pinned SDK tools: run `hack/sdk-plugins.sh tools` (make test's setup does)"
    );
}

#[test]
fn ts_projects_pass_their_tests_natively_and_as_a_component() {
    let Some(tools) = sdk_tool("node") else {
        return skip("TypeScript");
    };
    let parent = TempDir::new("scaffold-ts");
    for step in STEPS {
        let dir = new_project(parent.path(), &format!("ts-{step}"), "ts", step);
        let out = ok(
            &format!("build.mjs test ({step})"),
            ts_build(&dir, &tools, "test").args(["--vectors", "tests"]),
        );
        let n = cases(&dir);
        assert!(
            out.contains(&format!("vectors: {n} passed, 0 failed")),
            "{out}"
        );
        if step == "serve" {
            ts_component(&dir, &tools, "ts_serve.wasm");
            test_and_render(&dir, step, n, &dir.join("dist"), None);
        }
    }
}

#[test]
fn python_projects_pass_their_tests_natively_and_as_a_component() {
    let Some(venv) = sdk_tool("python") else {
        return skip("Python");
    };
    let parent = TempDir::new("scaffold-py");
    for step in STEPS {
        let dir = new_project(parent.path(), &format!("py-{step}"), "python", step);
        let out = ok(
            &format!("mlmodel_plugin.testing ({step})"),
            &mut py_module(
                &dir,
                &venv,
                &["mlmodel_plugin.testing", "src/app.py", "--vectors", "tests"],
            ),
        );
        let n = cases(&dir);
        assert!(
            out.contains(&format!("vectors: {n} passed, 0 failed")),
            "{out}"
        );
        if step == "serve" {
            py_component(&dir, &venv, "py_serve.wasm");
            test_and_render(&dir, step, n, &dir.join("dist"), None);
        }
    }
}
