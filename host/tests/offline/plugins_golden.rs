//! Golden renders: every default plugin for every sample in `deploy/samples/`, with the host's
//! additions, compared to `tests/golden/<sample>/<plugin>.yaml`. `UPDATE_GOLDEN=1` rewrites them.

use crate::support::{sample, workspace};
use mlmodel_operator::names;
use mlmodel_operator::plugins::{Runtime, RuntimeOptions, Step};

const PLUGINS: &[(&str, Step)] = &[
    ("download-job", Step::Download),
    ("tensorflow-serving", Step::Serve),
    ("echo-server", Step::Serve),
    ("file-server", Step::Serve),
    ("mlserver", Step::Serve),
    ("service", Step::Expose),
];

#[test]
fn default_plugins_render_the_samples_as_committed() {
    let rt = Runtime::new(RuntimeOptions {
        operator_image: "mlmodel-operator:golden".into(),
        cache_dir: Some(workspace().join("target").join("plugin-test-cache")),
        ..RuntimeOptions::default()
    })
    .unwrap();
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let samples_dir = workspace().join("deploy/samples");
    let mut samples: Vec<String> = std::fs::read_dir(&samples_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|f| f.ends_with(".yaml") && f != "kustomization.yaml")
        .collect();
    samples.sort();
    assert!(samples.len() >= 2, "{samples:?}");

    let mut stale = Vec::new();
    for file in &samples {
        let mut model = sample(file);
        // As the cluster would hand it over: namespace and uid, so the owner reference shows.
        model.metadata.namespace = Some("models".into());
        model.metadata.uid = Some("00000000-0000-0000-0000-000000000001".into());
        let revision = names::revision(
            &model,
            "download-job",
            mlmodel_operator::api::StorageMode::Shared,
        );
        for (plugin, step) in PLUGINS {
            let loaded = rt.get(plugin).unwrap();
            let objects = rt
                .render(&loaded, &model, *step, &revision)
                .unwrap_or_else(|e| panic!("{file} {plugin}: {e}"));
            let got: String = objects
                .iter()
                .map(|o| format!("---\n{}", serde_yaml::to_string(o).unwrap()))
                .collect();
            let path = workspace()
                .join("host/tests/golden")
                .join(file.trim_end_matches(".yaml"))
                .join(format!("{plugin}.yaml"));
            if update {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &got).unwrap();
            } else if std::fs::read_to_string(&path).ok().as_deref() != Some(got.as_str()) {
                stale.push(format!("{}:\n{got}", path.display()));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "renders differ from the snapshots (UPDATE_GOLDEN=1 rewrites them):\n{}",
        stale.join("\n")
    );
}
