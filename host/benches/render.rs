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

fn p50(mut f: impl FnMut()) -> Duration {
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
    samples[samples.len() / 2]
}

fn summary(rt: &Runtime, model: &MLModel, revision: &str) {
    println!("\nplugin render p50 (3000 calls each)");
    println!(
        "{:<20} {:>10} {:>10} {:>7}",
        "plugin", "wasm", "native", "ratio"
    );
    for (name, step, native) in PLUGINS {
        let plugin = rt.get(name).unwrap();
        let wasm = p50(|| {
            black_box(rt.render(&plugin, model, *step, revision).unwrap());
        });
        let base = p50(|| {
            black_box(
                rt.render_native(name, model, *step, revision, native)
                    .unwrap(),
            );
        });
        let us = |d: Duration| format!("{:.1} us", d.as_secs_f64() * 1e6);
        println!(
            "{name:<20} {:>10} {:>10} {:>6.2}x",
            us(wasm),
            us(base),
            wasm.as_secs_f64() / base.as_secs_f64()
        );
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
}

fn main() {
    let rt = runtime(None);
    let model = model();
    let revision = names::revision(&model, "download-job");
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
