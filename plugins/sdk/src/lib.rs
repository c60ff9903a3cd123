//! The guest side of the mlmodel-operator plugin contract (`wit/plugin.wit`).
//!
//! A plugin crate implements [`Plugin`] and calls [`export_plugin!`]; the SDK turns the JSON
//! strings of the WIT into a typed [`Model`] and [`Context`] and the returned
//! [`serde_json::Value`]s back into manifests.
//!
//! ```ignore
//! use mlmodel_plugin_sdk::{Context, Model, Plugin, Step, serde_json::json};
//! struct Hello;
//! impl Plugin for Hello {
//!     const NAME: &'static str = "hello";
//!     const DESCRIPTION: &'static str = "a ConfigMap saying hello";
//!     const STEPS: &'static [Step] = &[Step::Serve];
//!     fn render(model: &Model, ctx: &Context) -> Result<Vec<serde_json::Value>, String> {
//!         Ok(vec![json!({"apiVersion": "v1", "kind": "ConfigMap",
//!             "metadata": {"name": ctx.names.config}, "data": {"model": model.metadata.name}})])
//!     }
//! }
//! mlmodel_plugin_sdk::export_plugin!(Hello);
//! ```
mod config;
pub mod k8s;
mod types;

pub use config::Config;
pub use serde_json;
pub use types::{Context, Metadata, Model, Names, SecretRef, Spec};

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "plugin-with-inputs",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_world",
        default_bindings_module: "mlmodel_plugin_sdk::bindings",
    });
}

use bindings::exports::mlmodel::plugin::inputs;
use bindings::exports::mlmodel::plugin::renderer as wit;
pub use wit::Step;

/// What a plugin implements: who it is, and one pure function from the model to its objects.
pub trait Plugin {
    /// The name models select it by (a DNS label).
    const NAME: &'static str;
    /// One line for humans.
    const DESCRIPTION: &'static str;
    /// Steps this plugin renders.
    const STEPS: &'static [Step];
    /// The keys of its step config (`ctx.config`) the plugin reads. The host refuses a model
    /// whose step config has another key (`InvalidPluginConfig`, naming the key and these)
    /// without calling the plugin. `None`: any key is passed through unchecked.
    const CONFIG_KEYS: Option<&'static [&'static str]> = None;
    /// For a serve plugin: the model formats its server loads, as the downloader names them
    /// (`saved-model`, `keras-hdf5`, `onnx`, `safetensors`, `gguf`, `pytorch`, `sklearn`, `pickle`,
    /// `files`); files
    /// of another format fail the model with `ModelFormatMismatch`. Empty: any.
    const MODEL_FORMATS: &'static [&'static str] = &[];
    /// Render `ctx.step` of `model`. An `Err` is shown to the user as the plugin's error.
    fn render(model: &Model, ctx: &Context) -> Result<Vec<serde_json::Value>, String>;
}

#[doc(hidden)]
pub fn __info<P: Plugin>(version: &str) -> wit::PluginInfo {
    wit::PluginInfo {
        name: P::NAME.to_string(),
        version: version.to_string(),
        steps: P::STEPS.to_vec(),
        description: P::DESCRIPTION.to_string(),
    }
}

#[doc(hidden)]
pub fn __accepts<P: Plugin>() -> inputs::Accepted {
    let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect();
    inputs::Accepted {
        config_keys: P::CONFIG_KEYS.map(strings),
        model_formats: strings(P::MODEL_FORMATS),
    }
}

#[doc(hidden)]
pub fn __render<P: Plugin>(input: wit::RenderInput) -> Result<Vec<String>, wit::PluginError> {
    render_json::<P>(&input.model, &input.context).map_err(|message| wit::PluginError { message })
}

/// The whole guest-side render from the two JSON documents to manifests; also what a native
/// build of a plugin runs (tests, the benchmark's baseline).
pub fn render_json<P: Plugin>(model: &str, context: &str) -> Result<Vec<String>, String> {
    let model: Model =
        serde_json::from_str(model).map_err(|e| format!("cannot read the model: {e}"))?;
    let ctx: Context = serde_json::from_str(context)
        .map_err(|e| format!("cannot read the render context: {e}"))?;
    P::render(&model, &ctx)?
        .iter()
        .map(|o| serde_json::to_string(o).map_err(|e| e.to_string()))
        .collect()
}

/// Exports a [`Plugin`] implementation as the component's `mlmodel:plugin/renderer` and
/// `mlmodel:plugin/inputs`.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        // Only the wasm build exports: natively (benchmarks, tests) the crate is a plain library
        // and several plugins may be linked into one binary.
        #[cfg(target_arch = "wasm32")]
        const _: () = {
        struct __MlmodelPluginExport;
        impl $crate::bindings::exports::mlmodel::plugin::renderer::Guest for __MlmodelPluginExport {
            fn info() -> $crate::bindings::exports::mlmodel::plugin::renderer::PluginInfo {
                $crate::__info::<$plugin>(env!("CARGO_PKG_VERSION"))
            }
            fn render(
                input: $crate::bindings::exports::mlmodel::plugin::renderer::RenderInput,
            ) -> ::std::result::Result<
                ::std::vec::Vec<::std::string::String>,
                $crate::bindings::exports::mlmodel::plugin::renderer::PluginError,
            > {
                $crate::__render::<$plugin>(input)
            }
        }
        impl $crate::bindings::exports::mlmodel::plugin::inputs::Guest for __MlmodelPluginExport {
            fn accepts() -> $crate::bindings::exports::mlmodel::plugin::inputs::Accepted {
                $crate::__accepts::<$plugin>()
            }
        }
        $crate::bindings::__export_plugin_world!(__MlmodelPluginExport with_types_in $crate::bindings);
        };
    };
}
