//! Render latency of each default plugin through the real path (fresh `Store`, instantiate from
//! `InstancePre`, call, parse, policy, host additions) beside a native build of the same plugin
//! code through the same input and policy. Prints p50 and the wasm/native ratio per plugin, and
//! the cold-compile and cached-load times of the built-in plugins. Asserts nothing about time.
use criterion::Criterion;
use mlmodel_operator::api::MLModel;
use mlmodel_operator::names;
use mlmodel_operator::plugins::{Runtime, RuntimeOptions, Step};
use mlmodel_plugin_sdk::{Plugin, render_json};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

type Native = fn(&str, &str) -> Result<Vec<String>, String>;

const PLUGINS: &[(&str, Step, Native)] = &[
    (
        "download-job",
        Step::Download,
        render_json::<download_job::DownloadJob>,
    ),
    (
        "tensorflow-serving",
        Step::Serve,
        render_json::<tensorflow_serving::TensorflowServing>,
    ),
    (
        "echo-server",
        Step::Serve,
        render_json::<echo_server::EchoServer>,
    ),
    ("service", Step::Expose, render_json::<service::Service>),
];

fn model() -> MLModel {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/samples/tensorflow-model.yaml");
    let mut model: MLModel = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    model.metadata.namespace = Some("models".into());
    model.metadata.uid = Some("00000000-0000-0000-0000-000000000001".into());
    model
}

fn runtime(cache: Option<PathBuf>) -> Runtime {
    Runtime::new(RuntimeOptions {
        cache_dir: cache,
        ..RuntimeOptions::default()
    })
    .unwrap()
}

fn bench(c: &mut Criterion, rt: &Runtime, model: &MLModel, revision: &str) {
    for (name, step, native) in PLUGINS {
        let plugin = rt.get(name).unwrap();
        // Same output both ways, or the comparison means nothing.
        let wasm_out = rt.render(&plugin, model, *step, revision).unwrap();
        let native_out = rt
            .render_native(name, model, *step, revision, native)
            .unwrap();
        assert_eq!(
            serde_json::to_value(&wasm_out).unwrap(),
            serde_json::to_value(&native_out).unwrap(),
            "{name}"
        );

        let mut group = c.benchmark_group(*name);
        group.bench_function("wasm", |b| {
            b.iter(|| black_box(rt.render(&plugin, model, *step, revision).unwrap()))
        });
        group.bench_function("native", |b| {
            b.iter(|| {
                black_box(
                    rt.render_native(name, model, *step, revision, native)
                        .unwrap(),
                )
            })
        });
        group.finish();
    }
}

/// p50 and p99 of 3000 calls (after 200 warm-up calls).
fn percentiles(mut f: impl FnMut()) -> (Duration, Duration) {
    for _ in 0..200 {
        f();
    }
    let mut samples: Vec<Duration> = (0..3000)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    samples.sort();
    (
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    )
}

fn summary(rt: &Runtime, model: &MLModel, revision: &str) {
    println!("\nplugin render p50 and p99 (3000 calls each)");
    println!(
        "{:<20} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9}",
        "plugin", "wasm p50", "wasm p99", "nat. p50", "nat. p99", "ratio p50", "ratio p99"
    );
    let us = |d: Duration| format!("{:.1} us", d.as_secs_f64() * 1e6);
    let mut worst: Option<(&str, f64, f64)> = None;
    for (name, step, native) in PLUGINS {
        let plugin = rt.get(name).unwrap();
        let (wasm50, wasm99) = percentiles(|| {
            black_box(rt.render(&plugin, model, *step, revision).unwrap());
        });
        let (nat50, nat99) = percentiles(|| {
            black_box(
                rt.render_native(name, model, *step, revision, native)
                    .unwrap(),
            );
        });
        let r50 = wasm50.as_secs_f64() / nat50.as_secs_f64();
        let r99 = wasm99.as_secs_f64() / nat99.as_secs_f64();
        println!(
            "{name:<20} {:>10} {:>10} {:>10} {:>10} {:>8.2}x {:>8.2}x",
            us(wasm50),
            us(wasm99),
            us(nat50),
            us(nat99),
            r50,
            r99
        );
        if worst.is_none_or(|(_, w, _)| r50 > w) {
            worst = Some((name, r50, r99));
        }
    }

    let cache = std::env::temp_dir().join(format!("mlmodel-bench-cache-{}", std::process::id()));
    let t = Instant::now();
    drop(runtime(None));
    let cold = t.elapsed();
    drop(runtime(Some(cache.clone())));
    let t = Instant::now();
    drop(runtime(Some(cache.clone())));
    let cached = t.elapsed();
    let _ = std::fs::remove_dir_all(&cache);
    let n = PLUGINS.len() as f64;
    println!(
        "\nstart with {} built-in plugins: cold compile {:.0} ms ({:.0} ms each), from the cache {:.1} ms ({:.2} ms each)",
        PLUGINS.len(),
        cold.as_secs_f64() * 1e3,
        cold.as_secs_f64() * 1e3 / n,
        cached.as_secs_f64() * 1e3,
        cached.as_secs_f64() * 1e3 / n
    );
    if let Some((name, r50, r99)) = worst {
        println!(
            "render ratio wasm/native p50={r50:.2}x p99={r99:.2}x (worst plugin: {name}; \
             same input, output policy and host additions)"
        );
    }
}

fn main() {
    let rt = runtime(None);
    let model = model();
    let revision = names::revision(
        &model,
        "download-job",
        mlmodel_operator::api::StorageMode::Shared,
    );
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    bench(&mut c, &rt, &model, &revision);
    c.final_summary();
    summary(&rt, &model, &revision);
    // Keep the plugin type in use so a rename shows up here.
    let _ = <echo_server::EchoServer as Plugin>::NAME;
}
