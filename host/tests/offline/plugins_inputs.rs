//! What plugins accept (the contract's optional `inputs` export, 0.1.1): the config keys each
//! built-in reads and the model formats it loads, the refusal of a config key the plugin does not
//! read, and plugins of the 0.1.0 contract, which accept anything.

use crate::support::{model, plugin_dir, workspace};
use mlmodel_operator::conditions::Reason;
use mlmodel_operator::plugins::{Accepts, PluginError, Runtime, RuntimeOptions, Step};
use mlmodel_operator::selection::select;
use std::collections::BTreeSet;

fn runtime_with(fixtures: &[&str]) -> (Runtime, crate::support::tempdir::TempDir) {
    let dir = plugin_dir(fixtures);
    let rt = Runtime::new(RuntimeOptions {
        plugin_dirs: vec![dir.path().to_path_buf()],
        ..RuntimeOptions::default()
    })
    .unwrap();
    (rt, dir)
}

/// The config keys a plugin's source reads: `config.<accessor>("key"` and, when it uses
/// `PodSettings::from_config`, the pod settings' keys.
fn keys_read_by(source: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for (i, _) in source.match_indices("config.") {
        let rest = &source[i + "config.".len()..];
        let Some(open) = rest.find("(\"") else {
            continue;
        };
        let accessor = &rest[..open];
        if accessor.is_empty() || !accessor.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            continue;
        }
        let key = &rest[open + 2..];
        keys.insert(key[..key.find('"').unwrap()].to_string());
    }
    if source.contains("PodSettings::from_config") {
        let sdk = std::fs::read_to_string(workspace().join("plugins/sdk/src/k8s.rs")).unwrap();
        let body = &sdk[sdk.find("pub fn from_config").unwrap()..];
        let body = &body[..body.find("\n    }\n").unwrap()];
        keys.extend(keys_read_by(body));
    }
    keys
}

/// Each built-in declares exactly the keys its source reads: a key read but not declared would
/// be refused before the plugin ever saw it; a key declared but not read would be accepted and
/// silently ignored.
#[test]
fn builtins_declare_exactly_the_config_keys_they_read() {
    let rt = Runtime::new(RuntimeOptions::default()).unwrap();
    for plugin in rt.plugins() {
        let source = workspace()
            .join("plugins")
            .join(&plugin.name)
            .join("src/lib.rs");
        let read = keys_read_by(&std::fs::read_to_string(&source).unwrap());
        let declared: BTreeSet<String> = plugin
            .accepts
            .config_keys
            .clone()
            .unwrap_or_else(|| panic!("{} declares no config keys", plugin.name))
            .into_iter()
            .collect();
        assert!(!read.is_empty(), "{}: the scan found no key", plugin.name);
        assert_eq!(declared, read, "{}", plugin.name);
    }
}

#[test]
fn only_tensorflow_serving_restricts_the_model_format() {
    let rt = Runtime::new(RuntimeOptions::default()).unwrap();
    let tf = rt.get("tensorflow-serving").unwrap();
    assert_eq!(tf.accepts.model_formats, ["saved-model"]);
    assert!(tf.accepts.loads_format("saved-model"));
    assert!(!tf.accepts.loads_format("keras-hdf5"));
    for name in ["echo-server", "file-server"] {
        let p = rt.get(name).unwrap();
        assert!(p.accepts.model_formats.is_empty(), "{name}");
        assert!(p.accepts.loads_format("gguf") && p.accepts.loads_format("files"));
    }
}

#[test]
fn a_config_key_the_plugin_does_not_read_fails_the_model_before_it_renders() {
    let rt = Runtime::new(RuntimeOptions::default()).unwrap();
    let mut m = model("m", "echo", &[]);
    let config =
        serde_json::json!({"serve": {"text": "hi", "imag": "x"}, "expose": {"grpc": true}});
    m.spec.plugins = Some(serde_json::from_value(serde_json::json!({"config": config})).unwrap());
    let echo = select(&rt, Step::Serve, &m).unwrap();
    let err = rt.render(&echo, &m, Step::Serve, "rev1").unwrap_err();
    assert!(
        matches!(&err, PluginError::UnknownConfigKeys { keys, .. } if keys == &["imag"]),
        "{err:?}"
    );
    assert_eq!(err.reason(), Reason::InvalidPluginConfig);
    let message = err.message();
    assert!(
        message.contains("spec.plugins.config.serve has the key \"imag\"")
            && message.contains("echo-server")
            && message.contains("image"),
        "{message}"
    );
    // The other steps' keys are theirs: the Service renders.
    let service = select(&rt, Step::Expose, &m).unwrap();
    assert!(rt.render(&service, &m, Step::Expose, "rev1").is_ok());
    // The same refusal on the controller's path.
    let rendered = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(rt.render_async(echo, &m, Step::Serve, "rev1"));
    assert_eq!(rendered.unwrap_err().reason(), Reason::InvalidPluginConfig);
}

/// A plugin built against contract 0.1.0 (or a later 0.1.x without `inputs`) still loads and
/// accepts any key and any format.
#[test]
fn a_plugin_without_inputs_accepts_anything() {
    let (rt, _dir) = runtime_with(&["wit-compatible"]);
    let p = rt.get("wit-compatible").unwrap();
    assert_eq!(p.accepts, Accepts::default());
    let mut m = model(
        "m",
        "echo",
        &[("mlmodel.dev/serve-plugin", "wit-compatible")],
    );
    m.spec.plugins = Some(
        serde_json::from_value(serde_json::json!({"config": {"serve": {"anything": 1}}})).unwrap(),
    );
    assert!(rt.render(&p, &m, Step::Serve, "rev1").is_ok());
}

#[test]
fn a_plugin_declaring_too_much_is_not_loaded() {
    let (rt, _dir) = runtime_with(&["accepts-huge"]);
    assert!(rt.get("accepts-huge").is_none());
    let errors = rt.load_errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].1.contains("accepts() lists 100000 config keys"),
        "{errors:?}"
    );
}
