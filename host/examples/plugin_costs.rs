//! What a plugin costs in each language the SDKs serve (`make bench-plugins`): the Rust
//! `echo-server` built into the operator, and its TypeScript and Python ports (the SDKs'
//! templates, built by `hack/sdk-plugins.sh build`), on the same input
//! (`plugins/test-vectors/03-config-keys`). For each:
//!
//! - the `.wasm` size;
//! - the cold compile: the operator's compiler process (`mlmodel-operator compile-plugin`) on
//!   the file, its wall time and peak RSS (what compiling costs, none of which stays in the
//!   operator);
//! - the cached load: a runtime loading the file with the artifact in its cache (mapped), then
//!   `info()` and `accepts()` (median of 5);
//! - render p50/p99 through the real path (a fresh instance from the pooling allocator, whose
//!   linear memory starts as a copy-on-write map of the component's pre-initialised image;
//!   the call; the output policy), 500 renders after 50 warm-ups;
//! - the smallest memory limit a render passes under (64 KiB steps), what one instance needs.
//!
//! Prints a table and the ratios to Rust; asserts nothing about time.
use mlmodel_operator::api::MLModel;
use mlmodel_operator::names;
use mlmodel_operator::plugins::{Limits, Runtime, RuntimeOptions, Step};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RENDERS: usize = 500;
const WARMUP: usize = 50;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn cache() -> PathBuf {
    std::env::var_os("MLMODEL_CACHE")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/mlmodel-operator")
        })
}

fn model() -> MLModel {
    let path = workspace().join("plugins/test-vectors/03-config-keys/model.yaml");
    let mut model: MLModel =
        serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    model.metadata.namespace = Some("models".into());
    model.metadata.uid = Some("00000000-0000-0000-0000-000000000001".into());
    model
}

fn runtime(cache_dir: &Path, limits: Limits) -> Runtime {
    Runtime::new(RuntimeOptions {
        cache_dir: Some(cache_dir.to_path_buf()),
        limits,
        ..RuntimeOptions::default()
    })
    .unwrap()
}

/// The operator's compiler process on `wasm`: wall time and peak RSS (KiB).
// The child is reaped by wait4, which std cannot do but which gives its own peak RSS.
#[allow(clippy::zombie_processes)]
fn compile_in_child(operator: &Path, wasm: &Path, out: &Path) -> (Duration, i64) {
    let limits = Limits::default();
    let started = Instant::now();
    let mut child = Command::new(operator)
        .arg("compile-plugin")
        .arg("--out")
        .arg(out)
        .args(["--memory-bytes", &limits.memory_bytes.to_string()])
        .args(["--max-concurrent", &limits.max_concurrent.to_string()])
        .stdin(Stdio::piped())
        .spawn()
        .expect("the operator's binary (cargo build --release)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(wasm).unwrap())
        .unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for this child, which std has not
    // waited for.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32, "wait4");
    assert_eq!(status, 0, "compile-plugin failed on {}", wasm.display());
    (started.elapsed(), usage.ru_maxrss)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// Whether one render passes with linear memory bounded by `bytes`.
fn renders_within(wasm: &Path, dir: &Path, model: &MLModel, revision: &str, bytes: usize) -> bool {
    let rt = runtime(
        dir,
        Limits {
            memory_bytes: bytes,
            ..Limits::default()
        },
    );
    let Ok(plugin) = rt.load_file(wasm) else {
        return false;
    };
    rt.render(&plugin, model, Step::Serve, revision).is_ok()
}

struct Row {
    name: &'static str,
    size: u64,
    compile: Duration,
    compile_rss_kib: i64,
    load: Duration,
    p50: Duration,
    p99: Duration,
    memory: usize,
}

fn measure(name: &'static str, wasm: &Path, operator: &Path) -> Row {
    let scratch = std::env::temp_dir().join(format!("plugin-costs-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    let (compile, compile_rss_kib) = compile_in_child(operator, wasm, &scratch.join("cold.cwasm"));

    let cache_dir = scratch.join("cache");
    let model = model();
    let revision = names::revision(
        &model,
        "download-job",
        mlmodel_operator::api::StorageMode::Shared,
    );
    // The first load compiles into the cache; the next ones load the artifact.
    runtime(&cache_dir, Limits::default())
        .load_file(wasm)
        .unwrap();
    let load = median(
        (0..5)
            .map(|_| {
                let rt = runtime(&cache_dir, Limits::default());
                let t = Instant::now();
                rt.load_file(wasm).unwrap();
                t.elapsed()
            })
            .collect(),
    );

    let rt = runtime(&cache_dir, Limits::default());
    let plugin = rt.load_file(wasm).unwrap();
    for _ in 0..WARMUP {
        rt.render(&plugin, &model, Step::Serve, &revision).unwrap();
    }
    let mut times: Vec<Duration> = (0..RENDERS)
        .map(|_| {
            let t = Instant::now();
            rt.render(&plugin, &model, Step::Serve, &revision).unwrap();
            t.elapsed()
        })
        .collect();
    times.sort();

    // The smallest limit, in wasm pages (64 KiB), under which a render passes.
    let (mut lo, mut hi) = (1usize, Limits::default().memory_bytes / 65536);
    let probe_dir = scratch.join("probe");
    while lo < hi {
        let mid = (lo + hi) / 2;
        if renders_within(wasm, &probe_dir, &model, &revision, mid * 65536) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Row {
        name,
        size: std::fs::metadata(wasm).unwrap().len(),
        compile,
        compile_rss_kib,
        load,
        p50: percentile(&times, 0.50),
        p99: percentile(&times, 0.99),
        memory: lo * 65536,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let exe = std::env::current_exe().unwrap();
    // target/release/examples/plugin_costs -> target/release/mlmodel-operator
    let operator = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("mlmodel-operator");
    let sdk = std::env::var_os("MLMODEL_SDK_PLUGINS")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache().join("sdk-plugins"));
    // The built-in as the operator embeds it, in a file like the others.
    let rust = std::env::temp_dir().join("mlmodel-plugin-costs-echo_server.wasm");
    std::fs::write(
        &rust,
        mlmodel_operator::plugins::builtin_bytes("echo-server").expect("a built-in"),
    )
    .expect("writing the built-in echo-server");
    let plugins: [(&str, PathBuf); 3] = [
        ("Rust echo-server", rust),
        ("TypeScript echo-server-ts", sdk.join("echo_server_ts.wasm")),
        ("Python echo-server-py", sdk.join("echo_server_py.wasm")),
    ];
    let rows: Vec<Row> = plugins
        .iter()
        .map(|(name, wasm)| {
            assert!(
                wasm.is_file(),
                "{} missing: hack/sdk-plugins.sh build",
                wasm.display()
            );
            eprintln!("plugin-costs: {name}");
            measure(name, wasm, &operator)
        })
        .collect();
    println!(
        "| plugin | .wasm | cold compile (compiler process) | its peak RSS | cached load | render p50 | render p99 | memory per instance |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in &rows {
        println!(
            "| {} | {:.1} MB | {:.2} s | {} MiB | {} | {} | {} | {:.2} MiB |",
            r.name,
            r.size as f64 / 1e6,
            r.compile.as_secs_f64(),
            r.compile_rss_kib / 1024,
            ms(r.load),
            ms(r.p50),
            ms(r.p99),
            r.memory as f64 / 1048576.0
        );
    }
    let rust = &rows[0];
    for r in &rows[1..] {
        println!(
            "{} / Rust: render p50 {:.1}x, p99 {:.1}x, size {:.0}x, memory {:.1}x",
            r.name,
            r.p50.as_secs_f64() / rust.p50.as_secs_f64(),
            r.p99.as_secs_f64() / rust.p99.as_secs_f64(),
            r.size as f64 / rust.size as f64,
            r.memory as f64 / rust.memory as f64
        );
    }
}
