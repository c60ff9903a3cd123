//! The integration tests that need no cluster, in one binary so wasmtime and the host link once:
//! plugin renders against the goldens, the sandbox, the registry, plugins from an OCI registry
//! (a local `docker-registry` per test), the CLI, the plugin projects of `plugins new` built with
//! each language's tools, the deploy/ files and the committed CRD.
#[path = "../deploy_support/mod.rs"]
mod deploy_support;
#[path = "../common/registry.rs"]
mod registry;
#[path = "../common/scaffold.rs"]
mod scaffold;
#[path = "../fixtures/support.rs"]
mod support;

mod crd_fresh;
mod deploy_files;
mod module_layers;
mod plugins_cli;
mod plugins_golden;
mod plugins_inputs;
mod plugins_oci;
mod plugins_registry;
mod plugins_sandbox;
mod plugins_scaffold;
mod plugins_sdk_vectors;
