//! `mlmodel-operator plugins new`: a plugin project that builds and renders out of the box, in
//! Rust, TypeScript or Python, for one step.
//!
//! Everything comes from this operator's own sources, embedded at build time (host/author/build.rs):
//! the SDK of the language and the WIT (so the project builds against exactly the contract this
//! operator loads), the step's template, which is a built-in plugin or its port to the language
//! (`echo-server`, `download-job`, `service`; their `-ts`/`-py` twins render the same), and that
//! plugin's golden cases (`plugins/test-vectors*`), which the template passes as written. A Rust
//! project also gets a `Cargo.lock` pinning the versions this operator's SDK was built with.
//!
//! Layout: `src/` (the plugin), `sdk/<lang>/` (the SDK, which finds the WIT at `../../wit`),
//! `wit/`, `tests/` (see [`crate::golden`]), `model.yaml` (a model selecting the plugin, for
//! `render`), `README.md` (the commands), `.gitignore`.
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::project::{DIST_DIR, Lang, PY_APP_DIR, PY_ENTRY, TESTS_DIR, TS_ENTRY};
use mlmodel_plugin_runtime::Step;

/// (path in the workspace, contents) of every file a project may get, sorted by path.
static FILES: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/scaffold_files.rs"));

/// Where a step's template comes from, per language: the file and the line naming the plugin
/// (replaced by the new plugin's name).
struct Template {
    step: Step,
    rust: (&'static str, &'static str),
    ts: (&'static str, &'static str),
    python: (&'static str, &'static str),
    /// The golden cases its output matches.
    vectors: &'static str,
}

const TEMPLATES: [Template; 3] = [
    Template {
        step: Step::Download,
        rust: (
            "plugins/download-job/src/lib.rs",
            r#"const NAME: &'static str = "download-job";"#,
        ),
        ts: (
            "plugins/download-job-ts/plugin.ts",
            r#"name: "download-job-ts","#,
        ),
        python: (
            "plugins/download-job-py/app.py",
            r#"NAME = "download-job-py""#,
        ),
        vectors: "plugins/test-vectors-download",
    },
    Template {
        step: Step::Serve,
        rust: (
            "plugins/echo-server/src/lib.rs",
            r#"const NAME: &'static str = "echo-server";"#,
        ),
        ts: (
            "plugins/echo-server-ts/plugin.ts",
            r#"name: "echo-server-ts","#,
        ),
        python: (
            "plugins/echo-server-py/app.py",
            r#"NAME = "echo-server-py""#,
        ),
        vectors: "plugins/test-vectors",
    },
    Template {
        step: Step::Expose,
        rust: (
            "plugins/service/src/lib.rs",
            r#"const NAME: &'static str = "service";"#,
        ),
        ts: ("plugins/service-ts/plugin.ts", r#"name: "service-ts","#),
        python: ("plugins/service-py/app.py", r#"NAME = "service-py""#),
        vectors: "plugins/test-vectors-expose",
    },
];

/// The crate whose dependencies a Rust project's `Cargo.lock` pins.
const SDK_CRATE: &str = "mlmodel-plugin-sdk";
/// The new project's own version.
const PROJECT_VERSION: &str = "0.1.0";

#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error(
        "{0:?} is not a valid plugin name: a DNS label (a-z, 0-9 and -, starting with a letter, at most 63)"
    )]
    Name(String),
    #[error("{0} exists and is not empty: choose another --dir")]
    NotEmpty(PathBuf),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("this operator's Cargo.lock: {0}")]
    Lock(String),
}

/// What to create.
#[derive(Clone, Debug)]
pub struct NewProject {
    pub name: String,
    pub lang: Lang,
    pub step: Step,
    pub dir: PathBuf,
}

/// Writes the project; returns the files written, relative to its directory.
pub fn create(project: &NewProject) -> Result<Vec<PathBuf>, ScaffoldError> {
    if !is_plugin_name(&project.name) {
        return Err(ScaffoldError::Name(project.name.clone()));
    }
    let dir = &project.dir;
    if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(ScaffoldError::NotEmpty(dir.clone()));
    }
    let files = project_files(project)?;
    for (path, contents) in &files {
        let full = dir.join(path);
        let write = || {
            std::fs::create_dir_all(full.parent().expect("a file in the project"))?;
            std::fs::write(&full, contents)
        };
        write().map_err(|source| ScaffoldError::Write {
            path: full.clone(),
            source,
        })?;
    }
    tracing::debug!(dir = %dir.display(), files = files.len(), "plugin project written");
    Ok(files.into_iter().map(|(p, _)| p).collect())
}

/// Whether `name` can name a plugin (what the registry checks of `info()`).
pub fn is_plugin_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
}

/// Every file of the project: (path relative to it, contents).
fn project_files(p: &NewProject) -> Result<Vec<(PathBuf, Vec<u8>)>, ScaffoldError> {
    let template = TEMPLATES
        .iter()
        .find(|t| t.step == p.step)
        .expect("a template per step");
    let mut files = Vec::new();
    let mut copy_tree = |from: &str, to: &str, skip: &[&str]| {
        for (path, contents) in embedded_under(from) {
            let rel = &path[from.len() + 1..];
            if !skip.contains(&rel) {
                files.push((Path::new(to).join(rel), contents.to_vec()));
            }
        }
    };
    copy_tree("wit", "wit", &[]);
    // The vectors' README describes the repository's vectors; the project's README covers them.
    copy_tree(template.vectors, TESTS_DIR, &["README.md"]);
    let snake = p.name.replace('-', "_");
    let (source, name_line, entry) = match p.lang {
        Lang::Rust => {
            copy_tree("plugins/sdk", "sdk/rust", &[]);
            files.push(("Cargo.toml".into(), cargo_toml(&p.name).into_bytes()));
            files.push(("Cargo.lock".into(), cargo_lock(&p.name)?.into_bytes()));
            (template.rust.0, template.rust.1, "src/lib.rs")
        }
        Lang::Ts => {
            copy_tree("plugins/sdk-ts", "sdk/ts", &[]);
            (template.ts.0, template.ts.1, TS_ENTRY)
        }
        Lang::Python => {
            copy_tree("plugins/sdk-python", "sdk/python", &[]);
            (template.python.0, template.python.1, PY_ENTRY)
        }
    };
    let code = String::from_utf8_lossy(embedded(source)).into_owned();
    let renamed = name_line.replace(
        name_line
            .split('"')
            .nth(1)
            .expect("the name line quotes the name"),
        &p.name,
    );
    let comment = if p.lang == Lang::Python { "#" } else { "//" };
    let header = format!(
        "{comment} Plugin `{}`, made by `mlmodel-operator plugins new` from {source} of mlmodel-operator {}:\n\
         {comment} a starting point. Build, test and render: see README.md.\n",
        p.name,
        env!("CARGO_PKG_VERSION")
    );
    files.push((
        entry.into(),
        format!("{header}{}", code.replacen(name_line, &renamed, 1)).into_bytes(),
    ));
    files.push(("README.md".into(), readme(p, &snake).into_bytes()));
    files.push(("model.yaml".into(), example_model(p).into_bytes()));
    files.push((".gitignore".into(), gitignore(p.lang).into()));
    Ok(files)
}

fn embedded(path: &str) -> &'static [u8] {
    FILES
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, c)| *c)
        .unwrap_or_else(|| panic!("{path} is embedded by host/author/build.rs (SCAFFOLD_SOURCES)"))
}

fn embedded_under(dir: &str) -> impl Iterator<Item = (&'static str, &'static [u8])> {
    let prefix = format!("{dir}/");
    FILES
        .iter()
        .filter(move |(p, _)| p.starts_with(&prefix))
        .copied()
}

fn cargo_toml(name: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "{PROJECT_VERSION}"
edition = "2024"
rust-version = "1.95"
publish = false

# A WebAssembly component: `cargo build --release --target wasm32-wasip2`.
[lib]
crate-type = ["cdylib"]

[dependencies]
# The SDK of mlmodel-operator {operator}, with the plugin contract in wit/.
{SDK_CRATE} = {{ path = "sdk/rust" }}

# A small component (a few hundred KB) that names functions in traps.
[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = "debuginfo"
panic = "abort"

# A workspace of its own, wherever the project is put.
[workspace]
"#,
        operator = env!("CARGO_PKG_VERSION")
    )
}

#[derive(Deserialize)]
struct Lock {
    version: Option<u32>,
    package: Vec<LockPackage>,
}

#[derive(Clone, Deserialize)]
struct LockPackage {
    name: String,
    version: String,
    source: Option<String>,
    checksum: Option<String>,
    #[serde(default)]
    dependencies: Vec<String>,
}

/// A `Cargo.lock` for project `name`: the SDK and what it depends on, at the versions of this
/// operator's own lock (built and tested together, and in the cargo cache of whoever built it).
/// Other crates the author adds are resolved by cargo as usual; the first build drops the few
/// entries only this workspace's features pull in (a lock is not feature-specific).
fn cargo_lock(name: &str) -> Result<String, ScaffoldError> {
    let text = String::from_utf8_lossy(embedded("Cargo.lock"));
    let lock: Lock = toml::from_str(&text).map_err(|e| ScaffoldError::Lock(e.to_string()))?;
    // `name`, `name version` or `name version (source)`, as a lock names a dependency.
    let find = |dep: &str| {
        let mut words = dep.split(' ');
        let (n, v) = (words.next(), words.next());
        lock.package
            .iter()
            .position(|p| Some(p.name.as_str()) == n && v.is_none_or(|v| p.version == v))
            .ok_or_else(|| ScaffoldError::Lock(format!("no package {dep:?}")))
    };
    let mut keep = BTreeSet::new();
    let mut todo = vec![find(SDK_CRATE)?];
    while let Some(i) = todo.pop() {
        if keep.insert(i) {
            for dep in &lock.package[i].dependencies {
                todo.push(find(dep)?);
            }
        }
    }
    let mut packages: Vec<LockPackage> = Vec::with_capacity(keep.len() + 1);
    for i in keep {
        let mut p = lock.package[i].clone();
        p.dependencies = p
            .dependencies
            .iter()
            .map(|d| {
                find(d)
                    .map(|j| &lock.package[j])
                    .map(|d| (d.name.clone(), d.version.clone()))
            })
            .map(|d| d.map(|(n, v)| format!("{n} {v}")))
            .collect::<Result<_, _>>()?;
        packages.push(p);
    }
    packages.push(LockPackage {
        name: name.to_string(),
        version: PROJECT_VERSION.into(),
        source: None,
        checksum: None,
        dependencies: vec![format!(
            "{SDK_CRATE} {}",
            lock.package[find(SDK_CRATE)?].version
        )],
    });
    packages.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
    // Cargo writes a dependency's version only where the lock holds several of that name.
    let several = |n: &str| packages.iter().filter(|p| p.name == n).count() > 1;
    let mut out = format!(
        "# This file is automatically @generated by Cargo.\n# It is not intended for manual editing.\nversion = {}\n",
        lock.version.unwrap_or(4)
    );
    for p in &packages {
        out.push_str(&format!(
            "\n[[package]]\nname = {:?}\nversion = {:?}\n",
            p.name, p.version
        ));
        if let Some(source) = &p.source {
            out.push_str(&format!("source = {source:?}\n"));
        }
        if let Some(checksum) = &p.checksum {
            out.push_str(&format!("checksum = {checksum:?}\n"));
        }
        if !p.dependencies.is_empty() {
            let mut deps: Vec<String> = p
                .dependencies
                .iter()
                .map(|d| {
                    let (n, _) = d.split_once(' ').expect("name version");
                    if several(n) { d.clone() } else { n.to_string() }
                })
                .collect();
            deps.sort();
            out.push_str("dependencies = [\n");
            for d in deps {
                out.push_str(&format!(" {d:?},\n"));
            }
            out.push_str("]\n");
        }
    }
    Ok(out)
}

/// A model that selects the plugin for its step, for `render`.
fn example_model(p: &NewProject) -> String {
    let expose = if p.step == Step::Expose {
        "\n  expose: true"
    } else {
        ""
    };
    format!(
        "# A model that selects the plugin: mlmodel-operator render -f model.yaml --plugin-dir {dir} --step {step}\n\
         apiVersion: mlmodel.dev/v1alpha1\n\
         kind: MLModel\n\
         metadata:\n  name: example\n  annotations:\n    {annotation}: {name}\n\
         spec:\n  modelURL: https://example.com/models/example.tar.gz\n  framework: echo{expose}\n",
        dir = output_dir(p.lang),
        step = p.step,
        annotation = p.step.annotation(),
        name = p.name,
    )
}

/// The folder the language's build writes the component to.
fn output_dir(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "target/wasm32-wasip2/release",
        Lang::Ts | Lang::Python => DIST_DIR,
    }
}

fn gitignore(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "/target\n",
        Lang::Ts => "/dist\nnode_modules/\n",
        Lang::Python => "/dist\n/.venv\n__pycache__/\n",
    }
}

fn readme(p: &NewProject, snake: &str) -> String {
    let NewProject {
        name, lang, step, ..
    } = p;
    let out = output_dir(*lang);
    let wasm = format!("{out}/{snake}.wasm");
    let (layout, build) = match lang {
        Lang::Rust => (
            "`src/lib.rs` (the plugin), `sdk/rust/` (the SDK crate `mlmodel-plugin-sdk`), `Cargo.lock` \
             (the versions the operator's SDK was built with)",
            format!(
                "rustup target add wasm32-wasip2                  # once\n\
                 cargo build --release --target wasm32-wasip2     # -> {wasm}\n\
                 cargo test                                       # your own unit tests, natively"
            ),
        ),
        Lang::Ts => (
            "`src/plugin.ts` (the plugin), `sdk/ts/` (the SDK, imported as `mlmodel-plugin-sdk`, and \
             its build script `build.mjs`; Node 20 or later)",
            format!(
                "(cd sdk/ts && npm ci)                                     # once: the pinned build tools\n\
                 node sdk/ts/build.mjs test {TS_ENTRY} --vectors {TESTS_DIR}    # natively in node, no wasm: the quick loop\n\
                 mkdir -p {DIST_DIR} && node sdk/ts/build.mjs build {TS_ENTRY} -o {wasm}"
            ),
        ),
        Lang::Python => (
            "`src/app.py` (the plugin; the component holds `src/`, the SDK and the standard library), \
             `sdk/python/` (the SDK package `mlmodel_plugin`)",
            format!(
                "python3 -m venv .venv && .venv/bin/pip install -r sdk/python/requirements.txt   # once: componentize-py\n\
                 PYTHONPATH=sdk/python python3 -m mlmodel_plugin.testing {PY_ENTRY} --vectors {TESTS_DIR}   # natively, no wasm\n\
                 mkdir -p {DIST_DIR} && PYTHONPATH=sdk/python .venv/bin/python -m mlmodel_plugin.build {PY_APP_DIR} -o {wasm}"
            ),
        ),
    };
    let install = match lang {
        Lang::Rust => format!(
            "Put the component in the operator's plugin ConfigMap (the operator picks it up while it runs):\n\n\
             ```sh\n\
             kubectl -n mlmodel-system create configmap mlmodel-operator-plugins \\\n  \
             --from-file={wasm} --dry-run=client -o yaml | kubectl apply -f -\n\
             ```"
        ),
        Lang::Ts | Lang::Python => {
            "The component carries a language runtime (12 to 19 MB): more than a ConfigMap holds \
             (1 MiB). Mount a volume holding it at one of the operator's `--plugin-dir`s."
                .to_string()
        }
    };
    format!(
        "# {name}\n\n\
         A `{step}` plugin for [mlmodel-operator](https://example.invalid/mlmodel-operator), in {lang}, made by\n\
         `mlmodel-operator plugins new`. It starts as a copy of a built-in plugin; change it at will.\n\n\
         Layout: {layout}; `wit/` (the plugin contract the SDK builds against); `{TESTS_DIR}/` (golden cases:\n\
         `model.yaml`, the `input.json` the operator builds from it, the `expected.json` the plugin\n\
         returns); `model.yaml` (a model selecting this plugin).\n\n\
         ## Build\n\n```sh\n{build}\n```\n\n\
         ## Test\n\n\
         `plugins test` loads the component into the operator's own runtime (sandbox, limits, output\n\
         policy) and renders every case of `{TESTS_DIR}/`: a case passes when the plugin returns its\n\
         `expected.json` (a diff otherwise) and the output policy accepts it.\n\n\
         ```sh\n\
         mlmodel-operator plugins test .              # builds nothing: build first\n\
         mlmodel-operator plugins test . --update     # after a change you meant: rewrite input.json and expected.json\n\
         ```\n\n\
         A new case is a folder in `{TESTS_DIR}/` with a `model.yaml`; `--update` writes its other two files.\n\n\
         ## Render\n\n\
         ```sh\n\
         mlmodel-operator plugins --plugin-dir {out}   # loaded? its digest, steps, config keys\n\
         mlmodel-operator render -f model.yaml --plugin-dir {out} --step {step}\n\
         ```\n\n\
         Models select it with the annotation `{annotation}: {name}` (or `{name}@sha256:<digest>`).\n\n\
         ## Install\n\n{install}\n",
        annotation = step.annotation(),
        lang = match lang {
            Lang::Rust => "Rust",
            Lang::Ts => "TypeScript",
            Lang::Python => "Python",
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(lang: Lang, step: Step) -> Vec<(PathBuf, Vec<u8>)> {
        project_files(&NewProject {
            name: "my-plugin".into(),
            lang,
            step,
            dir: PathBuf::new(),
        })
        .unwrap()
    }

    fn text<'a>(files: &'a [(PathBuf, Vec<u8>)], path: &str) -> &'a str {
        let (_, c) = files
            .iter()
            .find(|(p, _)| p == Path::new(path))
            .unwrap_or_else(|| panic!("no {path}"));
        std::str::from_utf8(c).unwrap()
    }

    #[test]
    fn each_template_names_its_plugin_once_and_has_cases() {
        for t in &TEMPLATES {
            for (source, line) in [t.rust, t.ts, t.python] {
                let code = String::from_utf8_lossy(embedded(source));
                assert_eq!(code.matches(line).count(), 1, "{source}: {line}");
            }
            assert!(
                embedded_under(t.vectors).any(|(p, _)| p.ends_with("/expected.json")),
                "{}",
                t.vectors
            );
        }
    }

    #[test]
    fn projects_hold_the_sdk_the_wit_the_renamed_template_and_the_cases() {
        for lang in Lang::ALL {
            for step in Step::ALL {
                let files = files(lang, step);
                let paths: BTreeSet<String> = files
                    .iter()
                    .map(|(p, _)| p.to_string_lossy().into_owned())
                    .collect();
                for want in ["wit/plugin.wit", "README.md", "model.yaml", ".gitignore"] {
                    assert!(paths.contains(want), "{lang} {step}: {want}");
                }
                assert!(
                    paths
                        .iter()
                        .any(|p| p.starts_with("tests/") && p.ends_with("/expected.json")),
                    "{lang} {step}"
                );
                assert!(!paths.contains("tests/README.md"));
                let (entry, sdk, name) = match lang {
                    Lang::Rust => ("src/lib.rs", "sdk/rust/src/lib.rs", "\"my-plugin\";"),
                    Lang::Ts => (TS_ENTRY, "sdk/ts/build.mjs", "name: \"my-plugin\","),
                    Lang::Python => (
                        PY_ENTRY,
                        "sdk/python/mlmodel_plugin/build.py",
                        "NAME = \"my-plugin\"",
                    ),
                };
                assert!(paths.contains(sdk), "{lang}: {sdk}");
                assert!(text(&files, entry).contains(name), "{lang} {step}");
                assert!(
                    !paths
                        .iter()
                        .any(|p| p.contains("node_modules") || p.contains("__pycache__")),
                    "{lang}"
                );
                let model = text(&files, "model.yaml");
                assert!(
                    model.contains(&format!("mlmodel.dev/{step}-plugin: my-plugin")),
                    "{model}"
                );
                let readme = text(&files, "README.md");
                assert!(
                    readme.contains("mlmodel-operator plugins test .")
                        && readme.contains(&format!("--step {step}")),
                    "{readme}"
                );
            }
        }
        let rust = files(Lang::Rust, Step::Serve);
        let manifest = text(&rust, "Cargo.toml");
        assert!(manifest.contains("name = \"my-plugin\"") && manifest.contains("[workspace]"));
        assert!(text(&rust, "README.md").contains("target/wasm32-wasip2/release/my_plugin.wasm"));
    }

    #[test]
    fn the_sdk_crate_stands_alone_with_the_workspaces_versions() {
        let raw = std::str::from_utf8(embedded("plugins/sdk/Cargo.toml")).unwrap();
        let sdk: toml::Table = toml::from_str(raw).unwrap();
        let workspace: toml::Table = toml::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../Cargo.toml"
        )))
        .unwrap();
        assert!(
            !raw.contains(".workspace") && !raw.contains("workspace = true"),
            "inherits from a workspace:\n{raw}"
        );
        let ws_deps = workspace["workspace"]["dependencies"].as_table().unwrap();
        let deps = sdk["dependencies"].as_table().unwrap();
        for (name, req) in deps {
            assert_eq!(
                Some(req),
                ws_deps.get(name),
                "{name}: the SDK's and the workspace's"
            );
        }
        assert_eq!(
            sdk["package"]["version"].as_str(),
            workspace["workspace"]["package"]["version"].as_str()
        );
    }

    #[test]
    fn the_lock_pins_the_sdk_closure_at_the_operators_versions() {
        let lock = cargo_lock("my-plugin").unwrap();
        let parsed: Lock = toml::from_str(&lock).unwrap();
        let names: Vec<&str> = parsed.package.iter().map(|p| p.name.as_str()).collect();
        for want in ["my-plugin", SDK_CRATE, "wit-bindgen", "serde", "serde_json"] {
            assert!(names.contains(&want), "{want} missing:\n{lock}");
        }
        // Only the SDK's closure: nothing of the host's.
        for host_only in ["wasmtime", "kube", "tokio"] {
            assert!(!names.contains(&host_only), "{host_only} in:\n{lock}");
        }
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        let me = parsed
            .package
            .iter()
            .find(|p| p.name == "my-plugin")
            .unwrap();
        assert_eq!(me.dependencies, [SDK_CRATE]);
        // Every dependency resolves inside the file.
        for p in &parsed.package {
            for d in &p.dependencies {
                let n = d.split(' ').next().unwrap();
                assert!(names.contains(&n), "{} -> {d}", p.name);
            }
        }
        let workspace = String::from_utf8_lossy(embedded("Cargo.lock"));
        let wit_bindgen = parsed
            .package
            .iter()
            .find(|p| p.name == "wit-bindgen")
            .unwrap();
        assert!(workspace.contains(&format!(
            "name = \"wit-bindgen\"\nversion = \"{}\"",
            wit_bindgen.version
        )));
    }

    #[test]
    fn names_and_directories_are_checked() {
        for bad in ["", "My-Plugin", "-x", "x-", "1x", "a_b", &"a".repeat(64)] {
            assert!(!is_plugin_name(bad), "{bad}");
        }
        assert!(is_plugin_name("hello-server2"));
        let dir = std::env::temp_dir().join(format!("mlmodel-scaffold-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("keep"), "mine").unwrap();
        let new = NewProject {
            name: "hello".into(),
            lang: Lang::Python,
            step: Step::Serve,
            dir: dir.clone(),
        };
        assert!(matches!(create(&new), Err(ScaffoldError::NotEmpty(_))));
        let bad = NewProject {
            name: "Hello".into(),
            ..new.clone()
        };
        assert!(matches!(create(&bad), Err(ScaffoldError::Name(_))));
        std::fs::remove_dir_all(&dir).unwrap();
        let written = create(&new).unwrap();
        assert!(dir.join("src/app.py").is_file() && written.contains(&PathBuf::from("src/app.py")));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
