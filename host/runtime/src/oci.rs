//! Plugins from OCI registries: `oci://REGISTRY/REPO@sha256:HEX` (or `:TAG`, resolved to a
//! digest), stored as CNCF Wasm OCI artifacts (a config of type
//! `application/vnd.wasm.config.v0+json` and one `application/wasm` layer, the component).
//!
//! - `reference`: the `oci://` references and the refs file;
//! - `credentials`: logins from a docker `config.json` (a mounted `dockerconfigjson` Secret);
//! - `blobs`: fetched manifests and components on disk by digest, re-checked at every read;
//! - `transfer`: the distribution protocol (oci-client): pull a verified plugin, push one;
//! - `sources`: the configured list, fetched off the caller's thread, re-read at each reload.
//!
//! `plugins push` (`mlmodel-plugin-author`) publishes through `transfer`.
mod blobs;
mod credentials;
mod reference;
pub(crate) mod sources;
pub mod transfer;

pub use reference::{OciRef, SCHEME};

use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// Media types of a Wasm component as an OCI artifact (the CNCF Wasm OCI artifact layout).
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
/// What `wasm-to-oci` and older tools push (oci-client's own constants): read, never written.
const LEGACY_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v1+json";
const LEGACY_LAYER_MEDIA_TYPE: &str = "application/vnd.wasm.content.layer.v1+wasm";

/// Where plugins from registries come from and how the registries are reached.
#[derive(Clone, Debug)]
pub struct OciOptions {
    /// References given on the command line, in order.
    pub refs: Vec<OciRef>,
    /// A file of references, one a line, read again at every reload (a mounted ConfigMap key).
    pub refs_file: Option<PathBuf>,
    pub registry: RegistryOptions,
    /// How often a reference by tag is resolved again.
    pub tag_interval: Duration,
}

impl Default for OciOptions {
    fn default() -> Self {
        OciOptions {
            refs: Vec::new(),
            refs_file: None,
            registry: RegistryOptions::default(),
            tag_interval: Duration::from_secs(DEFAULT_TAG_INTERVAL_SECS),
        }
    }
}

impl OciOptions {
    /// Whether any plugin comes from a registry (else nothing of this module runs).
    pub fn configured(&self) -> bool {
        !self.refs.is_empty() || self.refs_file.is_some()
    }
}

/// How registries are reached: credentials, plain-HTTP hosts, time bound.
#[derive(Clone, Debug)]
pub struct RegistryOptions {
    /// A docker `config.json` (`auths.<host>.auth` or `username`/`password`).
    pub config: Option<PathBuf>,
    /// Registries (`HOST:PORT`) spoken to over plain HTTP.
    pub insecure: Vec<String>,
    /// Bound of one fetch (connection, manifest and blob), and of each read of a push.
    pub timeout: Duration,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            config: None,
            insecure: Vec::new(),
            timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS),
        }
    }
}

const DEFAULT_TIMEOUT_SECS: u64 = 30;
const DEFAULT_TAG_INTERVAL_SECS: u64 = 300;

/// `--registry-config`, `--insecure-registry`, `--registry-timeout`: shared by the plugin
/// sources (`run`, `render`, `plugins`) and `plugins push`.
#[derive(Args, Debug, Clone)]
pub struct RegistryArgs {
    /// Registry credentials: a docker `config.json` (`auths.<host>.auth`, base64 `user:password`,
    /// or `username`/`password`), as a `kubernetes.io/dockerconfigjson` Secret mounts it.
    #[arg(long, value_name = "FILE", env = "MLMODEL_REGISTRY_CONFIG")]
    pub registry_config: Option<PathBuf>,
    /// Registry (`HOST:PORT`) reached over plain HTTP instead of HTTPS (repeatable or
    /// comma-separated).
    #[arg(
        long = "insecure-registry",
        value_name = "HOST:PORT",
        env = "MLMODEL_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure_registries: Vec<String>,
    /// Seconds one registry fetch may take (connection, manifest and blob); an unreachable
    /// registry fails its references after this, never the other plugins.
    #[arg(long, value_name = "SECONDS", env = "MLMODEL_REGISTRY_TIMEOUT", default_value_t = DEFAULT_TIMEOUT_SECS,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub registry_timeout: u64,
}

impl Default for RegistryArgs {
    fn default() -> Self {
        RegistryArgs {
            registry_config: None,
            insecure_registries: Vec::new(),
            registry_timeout: DEFAULT_TIMEOUT_SECS,
        }
    }
}

impl RegistryArgs {
    pub fn options(&self) -> RegistryOptions {
        RegistryOptions {
            config: self.registry_config.clone(),
            insecure: self.insecure_registries.clone(),
            timeout: Duration::from_secs(self.registry_timeout),
        }
    }
}

/// `--plugin-ref`, `--plugin-refs-file`, `--tag-resolve-interval` and the registry flags.
#[derive(Args, Debug, Clone)]
pub struct OciArgs {
    /// Plugin from an OCI registry: `oci://REGISTRY/REPO@sha256:HEX`, or `oci://REGISTRY/REPO:TAG`
    /// (resolved to a digest) (repeatable or comma-separated).
    #[arg(
        long = "plugin-ref",
        value_name = "REF",
        env = "MLMODEL_PLUGIN_REFS",
        value_delimiter = ','
    )]
    pub plugin_refs: Vec<OciRef>,
    /// File of plugin references, one a line (`#` comments), read again at every reload, so a
    /// mounted ConfigMap key changes the list without a restart.
    #[arg(long, value_name = "FILE", env = "MLMODEL_PLUGIN_REFS_FILE")]
    pub plugin_refs_file: Option<PathBuf>,
    /// Seconds between resolutions of a reference by tag (a digest is fetched once).
    #[arg(long, value_name = "SECONDS", env = "MLMODEL_TAG_RESOLVE_INTERVAL", default_value_t = DEFAULT_TAG_INTERVAL_SECS,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub tag_resolve_interval: u64,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

impl Default for OciArgs {
    fn default() -> Self {
        OciArgs {
            plugin_refs: Vec::new(),
            plugin_refs_file: None,
            tag_resolve_interval: DEFAULT_TAG_INTERVAL_SECS,
            registry: RegistryArgs::default(),
        }
    }
}

impl OciArgs {
    pub fn options(&self) -> OciOptions {
        OciOptions {
            refs: self.plugin_refs.clone(),
            refs_file: self.plugin_refs_file.clone(),
            registry: self.registry.options(),
            tag_interval: Duration::from_secs(self.tag_resolve_interval),
        }
    }
}

/// Why a plugin could not be fetched from a registry: one line, shown as its load error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OciError {
    #[error("cannot reach registry {registry}: {detail}")]
    Unreachable { registry: String, detail: String },
    #[error("registry {registry} did not answer within {limit:?}")]
    Timeout { registry: String, limit: Duration },
    #[error("registry {registry} refused access to {repository}: {detail}")]
    Unauthorized {
        registry: String,
        repository: String,
        detail: String,
    },
    #[error("{what} not found in registry {registry}: {detail}")]
    NotFound {
        registry: String,
        what: String,
        detail: String,
    },
    #[error("wrong digest: {what} should be {expected} but its content is {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("not a Wasm plugin artifact: {0}")]
    NotWasm(String),
    #[error("the component is {size} bytes; plugins may be at most {max}")]
    TooLarge { size: u64, max: u64 },
    #[error("registry credentials: {0}")]
    Credentials(String),
    #[error("registry {registry}: {detail}")]
    Registry { registry: String, detail: String },
}
