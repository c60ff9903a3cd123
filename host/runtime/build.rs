//! Builds the default plugins (`plugins/*`) for `wasm32-wasip2` so the operator can embed them
//! with `include_bytes!`; their paths reach the crate as `MLMODEL_PLUGIN_WASM_<NAME>`. (The
//! files `plugins new` copies are listed by `host/author/build.rs`.)
//!
//! The nested cargo uses its own target directory (`target/wasm-plugins/<checkout>`): the outer build holds
//! the lock of its own target directory while this script runs, so sharing it would deadlock.
//! The outer build's environment (flags, wrappers such as clippy-driver, target selection) is
//! cleared so that it neither breaks nor needlessly rebuilds the wasm build.
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// (crate, env var suffix) of each default plugin.
const PLUGINS: &[(&str, &str)] = &[
    ("download-job", "DOWNLOAD_JOB"),
    ("tensorflow-serving", "TENSORFLOW_SERVING"),
    ("echo-server", "ECHO_SERVER"),
    ("file-server", "FILE_SERVER"),
    ("mlserver", "MLSERVER"),
    ("service", "SERVICE"),
];
const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest_dir
        .ancestors()
        .nth(2)
        .expect("host/runtime/ sits in the workspace")
        .to_path_buf();
    // Cargo.toml: the plugin profile (opt-level, lto) lives there.
    for path in ["plugins", "wit", "Cargo.lock", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", workspace.join(path).display());
    }
    println!("cargo:rerun-if-env-changed=MLMODEL_PLUGIN_TARGET_DIR");
    println!("cargo:rerun-if-env-changed=MLMODEL_PLUGIN_TOOLCHAIN");

    // One nested target directory per checkout: `target/` may be shared by several (clean clones
    // in CI, worktrees), and cargo copies a crate's `.wasm` to the shared file name only when it
    // rebuilds it, so a shared one could hold another checkout's plugins.
    let target_dir = env::var_os("MLMODEL_PLUGIN_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            workspace
                .join("target")
                .join("wasm-plugins")
                .join(path_key(&workspace))
        });
    build_plugins(&workspace, &target_dir);
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));

    // Each build embeds its own copies, in this build script's OUT_DIR, which nothing else
    // writes: a rebuild of the host never picks up plugins built since by another build.
    for (krate, var) in PLUGINS {
        let file = format!("{}.wasm", krate.replace('-', "_"));
        let wasm = target_dir.join(TARGET).join("plugin").join(&file);
        assert!(wasm.is_file(), "plugin build left no {}", wasm.display());
        let own = out_dir.join(&file);
        std::fs::copy(&wasm, &own)
            .unwrap_or_else(|e| panic!("copying {} to {}: {e}", wasm.display(), own.display()));
        println!(
            "cargo:rustc-env=MLMODEL_PLUGIN_WASM_{var}={}",
            own.display()
        );
    }
}

/// A short stable name for a checkout's path (FNV-1a, hex).
fn path_key(path: &Path) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in path.as_os_str().as_encoded_bytes() {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

fn build_plugins(workspace: &Path, target_dir: &Path) {
    // `MLMODEL_PLUGIN_TOOLCHAIN` (a rustup toolchain) builds the plugins with another toolchain
    // than the host's: `make fuzz` builds the host with a nightly that may lack wasm32-wasip2.
    let mut cmd = match env::var("MLMODEL_PLUGIN_TOOLCHAIN") {
        Ok(toolchain) if !toolchain.is_empty() => {
            let mut cmd = Command::new("rustup");
            cmd.args(["run", &toolchain, "cargo"]);
            cmd
        }
        _ => Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into())),
    };
    cmd.current_dir(workspace)
        .args([
            "build",
            "--quiet",
            "--target",
            TARGET,
            "--profile",
            "plugin",
            "--target-dir",
        ])
        .arg(target_dir);
    for (krate, _) in PLUGINS {
        cmd.args(["-p", krate]);
    }
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        let keep = matches!(key.as_ref(), "CARGO_HOME" | "CARGO_MAKEFLAGS")
            || key.starts_with("CARGO_REGISTRIES_")
            || key.starts_with("CARGO_HTTP_")
            || key.starts_with("CARGO_NET_");
        let outer = key.starts_with("CARGO_")
            || key.starts_with("RUSTC")
            || key.starts_with("RUSTDOC")
            || key.starts_with("DEP_")
            || matches!(
                key.as_ref(),
                "RUSTFLAGS"
                    | "TARGET"
                    | "HOST"
                    | "PROFILE"
                    | "OUT_DIR"
                    | "OPT_LEVEL"
                    | "DEBUG"
                    | "NUM_JOBS"
            );
        if outer && !keep {
            cmd.env_remove(key.as_ref());
        }
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build the plugins: {e}"));
    if !status.success() {
        let installed = Command::new("rustup")
            .args(["target", "list", "--installed"])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l.trim() == TARGET)
            })
            .unwrap_or(true);
        if !installed {
            panic!(
                "the Rust target {TARGET} is missing: run `hack/setup.sh` (or `rustup target add {TARGET}`)"
            );
        }
        panic!("building the plugins for {TARGET} failed (see the errors above)");
    }
}
