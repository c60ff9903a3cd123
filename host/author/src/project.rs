//! What a plugin project looks like (as `plugins new` writes it and `plugins test` reads it):
//! its language, where its build puts the component, where its golden cases are.
//!
//! | language | recognised by | component |
//! |---|---|---|
//! | rust | `Cargo.toml` | `target/wasm32-wasip2/release/<crate name, _ for ->.wasm` (`$CARGO_TARGET_DIR` honoured) |
//! | ts | `src/plugin.ts` | the one `dist/*.wasm` |
//! | python | `src/app.py` | the one `dist/*.wasm` |
//!
//! and the cases in `tests/` (see [`crate::golden`]).
use std::path::{Path, PathBuf};

/// The folder of golden cases in a project.
pub const TESTS_DIR: &str = "tests";
/// Where the TypeScript and Python builds put the component.
pub const DIST_DIR: &str = "dist";
pub const TS_ENTRY: &str = "src/plugin.ts";
pub const PY_APP_DIR: &str = "src";
pub const PY_ENTRY: &str = "src/app.py";

/// A language a plugin project can be written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    #[value(alias = "typescript", alias = "js")]
    Ts,
    #[value(alias = "py")]
    Python,
}

impl Lang {
    pub const ALL: [Lang; 3] = [Lang::Rust, Lang::Ts, Lang::Python];

    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Ts => "ts",
            Lang::Python => "python",
        }
    }

    /// The language of the project in `dir`, from the file that marks it.
    pub fn detect(dir: &Path) -> Option<Lang> {
        [
            (Lang::Rust, "Cargo.toml"),
            (Lang::Ts, TS_ENTRY),
            (Lang::Python, PY_ENTRY),
        ]
        .into_iter()
        .find(|(_, marker)| dir.join(marker).is_file())
        .map(|(lang, _)| lang)
    }
}

impl std::fmt::Display for Lang {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error(
        "{0} is not a plugin project: no Cargo.toml, src/plugin.ts or src/app.py (pass --plugin FILE.wasm to test a component built elsewhere)"
    )]
    Unknown(PathBuf),
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no [package] name: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error("{0} is not built yet: build the project (see its README), or pass --plugin FILE.wasm")]
    NotBuilt(PathBuf),
    #[error("several components in {dir}: {files}; pass --plugin FILE.wasm")]
    Ambiguous { dir: PathBuf, files: String },
}

/// The component the project in `dir` builds, where its language's build puts it.
pub fn built_component(dir: &Path) -> Result<PathBuf, ProjectError> {
    match Lang::detect(dir).ok_or_else(|| ProjectError::Unknown(dir.to_path_buf()))? {
        Lang::Rust => {
            let name = crate_name(&dir.join("Cargo.toml"))?;
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .filter(|t| !t.is_empty())
                .map(|t| dir.join(t))
                .unwrap_or_else(|| dir.join("target"));
            let wasm = target
                .join("wasm32-wasip2/release")
                .join(format!("{}.wasm", name.replace('-', "_")));
            if wasm.is_file() {
                Ok(wasm)
            } else {
                Err(ProjectError::NotBuilt(wasm))
            }
        }
        Lang::Ts | Lang::Python => {
            let dist = dir.join(DIST_DIR);
            let mut found: Vec<PathBuf> = std::fs::read_dir(&dist)
                .map(|entries| {
                    entries
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
                        .collect()
                })
                .unwrap_or_default();
            found.sort();
            match found.len() {
                0 => Err(ProjectError::NotBuilt(dist.join("*.wasm"))),
                1 => Ok(found.remove(0)),
                _ => Err(ProjectError::Ambiguous {
                    files: found
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    dir: dist,
                }),
            }
        }
    }
}

/// `[package] name` of a Cargo manifest.
fn crate_name(path: &Path) -> Result<String, ProjectError> {
    #[derive(serde::Deserialize)]
    struct Manifest {
        package: Package,
    }
    #[derive(serde::Deserialize)]
    struct Package {
        name: String,
    }
    let text = std::fs::read_to_string(path).map_err(|source| ProjectError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str::<Manifest>(&text)
        .map(|m| m.package.name)
        .map_err(|e| ProjectError::Manifest {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(files: &[(&str, &str)]) -> PathBuf {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("mlmodel-project-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (path, text) in files {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    #[test]
    fn the_component_is_where_the_languages_build_puts_it() {
        let rust = project(&[(
            "Cargo.toml",
            "[package]\nname = \"my-plugin\"\nversion = \"0.1.0\"\n",
        )]);
        assert_eq!(Lang::detect(&rust), Some(Lang::Rust));
        let err = built_component(&rust).unwrap_err().to_string();
        assert!(
            err.contains("target/wasm32-wasip2/release/my_plugin.wasm")
                && err.contains("not built"),
            "{err}"
        );
        let wasm = rust.join("target/wasm32-wasip2/release/my_plugin.wasm");
        std::fs::create_dir_all(wasm.parent().unwrap()).unwrap();
        std::fs::write(&wasm, b"").unwrap();
        if std::env::var_os("CARGO_TARGET_DIR").is_none() {
            assert_eq!(built_component(&rust).unwrap(), wasm);
        }

        let ts = project(&[("src/plugin.ts", "")]);
        assert_eq!(Lang::detect(&ts), Some(Lang::Ts));
        assert!(matches!(
            built_component(&ts),
            Err(ProjectError::NotBuilt(_))
        ));
        std::fs::create_dir_all(ts.join("dist")).unwrap();
        std::fs::write(ts.join("dist/a.wasm"), b"").unwrap();
        assert_eq!(built_component(&ts).unwrap(), ts.join("dist/a.wasm"));
        std::fs::write(ts.join("dist/b.wasm"), b"").unwrap();
        assert!(matches!(
            built_component(&ts),
            Err(ProjectError::Ambiguous { .. })
        ));

        let py = project(&[("src/app.py", "")]);
        assert_eq!(Lang::detect(&py), Some(Lang::Python));
        let none = project(&[("README.md", "")]);
        assert!(matches!(
            built_component(&none),
            Err(ProjectError::Unknown(_))
        ));
        let bad = project(&[("Cargo.toml", "[workspace]\n")]);
        assert!(matches!(
            built_component(&bad),
            Err(ProjectError::Manifest { .. })
        ));
        for dir in [rust, ts, py, none, bad] {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }
}
