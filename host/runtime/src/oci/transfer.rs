//! The distribution protocol through oci-client: pull a plugin (manifest by digest or tag, the
//! one Wasm layer, both verified) and push one. Everything fetched is checked against its
//! digest before anything else reads it; a layer's `urls` are never followed.
use futures::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};
use oci_client::manifest::{IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE, OciDescriptor};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::blobs::{BlobCache, Kind};
use super::credentials;
use super::{
    LEGACY_CONFIG_MEDIA_TYPE, LEGACY_LAYER_MEDIA_TYPE, OciError, OciRef, RegistryOptions,
    WASM_CONFIG_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE,
};
use crate::artifact::{MAX_PLUGIN_BYTES, sha256_hex};

/// Largest manifest read from the cache: one of a plugin is well under 1 KiB.
const MAX_MANIFEST_BYTES: u64 = 4 << 20;
const USER_AGENT: &str = concat!("mlmodel-operator/", env!("CARGO_PKG_VERSION"));
/// Connecting takes at most this long (within the fetch's own bound).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A plugin fetched and verified: the component's bytes match the manifest's layer digest, and
/// the manifest matches the digest it was asked for (or the registry gave for the tag).
#[derive(Debug)]
pub(crate) struct Fetched {
    /// `sha256:<hex>` of the manifest.
    pub(crate) manifest_digest: String,
    /// The component (the layer): its sha256 is the plugin's, as plugins are keyed everywhere.
    pub(crate) bytes: Arc<[u8]>,
}

/// What `push` published.
#[derive(Debug)]
pub struct Pushed {
    pub manifest_digest: String,
    pub layer_digest: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: String,
    digest: String,
    size: u64,
}

/// Just the media type, to tell an index from a manifest before reading either.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Versioned {
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
}

/// The manifest's one Wasm layer: digest (`sha256:<hex>`), its hex, its size.
struct Layer {
    digest: String,
    hex: String,
    size: u64,
    media_type: String,
}

/// The Wasm layer a plugin's manifest must have: a Wasm config, exactly one `application/wasm`
/// layer (or the older `wasm-to-oci` types), a sha256 digest, within the size bound.
fn wasm_layer(manifest: &[u8]) -> Result<Layer, OciError> {
    let versioned: Versioned = serde_json::from_slice(manifest)
        .map_err(|e| OciError::NotWasm(format!("the manifest is not JSON ({e})")))?;
    if versioned.manifests.is_some() {
        return Err(OciError::NotWasm(format!(
            "it is an image index ({}), not the manifest of one component",
            versioned.media_type.as_deref().unwrap_or("no media type")
        )));
    }
    let m: Manifest = serde_json::from_slice(manifest)
        .map_err(|e| OciError::NotWasm(format!("the manifest cannot be read ({e})")))?;
    if ![WASM_CONFIG_MEDIA_TYPE, LEGACY_CONFIG_MEDIA_TYPE].contains(&m.config.media_type.as_str()) {
        return Err(OciError::NotWasm(format!(
            "its config is of type {:?}, not {WASM_CONFIG_MEDIA_TYPE:?}",
            m.config.media_type
        )));
    }
    let [layer] = &m.layers[..] else {
        return Err(OciError::NotWasm(format!(
            "it has {} layers; a plugin is one {WASM_LAYER_MEDIA_TYPE:?} layer",
            m.layers.len()
        )));
    };
    if ![WASM_LAYER_MEDIA_TYPE, LEGACY_LAYER_MEDIA_TYPE].contains(&layer.media_type.as_str()) {
        return Err(OciError::NotWasm(format!(
            "its layer is of type {:?}, not {WASM_LAYER_MEDIA_TYPE:?}",
            layer.media_type
        )));
    }
    let hex = layer
        .digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| {
            OciError::NotWasm(format!(
                "its layer's digest {:?} is not sha256:<hex>",
                layer.digest
            ))
        })?
        .to_ascii_lowercase();
    if layer.size > MAX_PLUGIN_BYTES {
        return Err(OciError::TooLarge {
            size: layer.size,
            max: MAX_PLUGIN_BYTES,
        });
    }
    Ok(Layer {
        digest: format!("sha256:{hex}"),
        hex,
        size: layer.size,
        media_type: layer.media_type.clone(),
    })
}

/// The plugin `reference` names: from the cache when a digest names what is there (no network),
/// else from the registry; whatever is fetched is cached.
pub(super) async fn pull(
    reference: &OciRef,
    opts: &RegistryOptions,
    cache: Option<&BlobCache>,
) -> Result<Fetched, OciError> {
    let mut conn: Option<Connection> = None;
    let cached_manifest = reference
        .digest
        .as_deref()
        .and_then(|d| cache?.read(hex_of(d), Kind::Manifest, MAX_MANIFEST_BYTES));
    let (manifest, manifest_digest) = match cached_manifest {
        Some(bytes) => (bytes, reference.digest.clone().unwrap_or_default()),
        None => {
            let c = conn.insert(Connection::open(reference, opts)?);
            let (bytes, digest) = c.manifest(reference).await?;
            if let Some(cache) = cache {
                cache.write(hex_of(&digest), Kind::Manifest, &bytes);
            }
            (bytes, digest)
        }
    };
    let layer = wasm_layer(&manifest)?;
    let cached = cache.and_then(|c| c.read(&layer.hex, Kind::Component, MAX_PLUGIN_BYTES));
    let bytes = match cached {
        Some(bytes) => bytes,
        None => {
            let c = match conn {
                Some(c) => c,
                None => Connection::open(reference, opts)?,
            };
            let bytes = c.blob(reference, &layer).await?;
            if let Some(cache) = cache {
                cache.write(&layer.hex, Kind::Component, &bytes);
            }
            bytes
        }
    };
    Ok(Fetched {
        manifest_digest,
        bytes: bytes.into(),
    })
}

/// The digest the registry gives for `reference`'s tag now (a HEAD request).
pub(super) async fn resolve(
    reference: &OciRef,
    opts: &RegistryOptions,
) -> Result<String, OciError> {
    let conn = Connection::open(reference, opts)?;
    let image = reference.client_ref();
    let digest = conn
        .client
        .fetch_manifest_digest(&image, &conn.auth)
        .await
        .map_err(|e| conn.classify(e, "manifest"))?;
    check_digest_form(&digest)?;
    Ok(digest)
}

/// Publishes `component` as a Wasm artifact at `reference` (a tag): the layer, the config,
/// then the manifest, serialized here so that its digest is that of the bytes sent. The same
/// file and annotations always give the same manifest digest (no timestamp in it).
pub async fn push(
    reference: &OciRef,
    component: &[u8],
    config: &[u8],
    annotations: BTreeMap<String, String>,
    opts: &RegistryOptions,
) -> Result<Pushed, OciError> {
    let conn = Connection::open(reference, opts)?;
    let image = reference.client_ref();
    let classify = |e| conn.classify(e, "repository");
    conn.client
        .auth(&image, &conn.auth, RegistryOperation::Push)
        .await
        .map_err(classify)?;
    let layer_digest = format!("sha256:{}", sha256_hex(component));
    let config_digest = format!("sha256:{}", sha256_hex(config));
    conn.client
        .push_blob(&image, component, &layer_digest)
        .await
        .map_err(classify)?;
    conn.client
        .push_blob(&image, config, &config_digest)
        .await
        .map_err(classify)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(OCI_IMAGE_MEDIA_TYPE.into()),
        config: Descriptor {
            media_type: WASM_CONFIG_MEDIA_TYPE.into(),
            digest: config_digest,
            size: config.len() as u64,
        },
        layers: vec![Descriptor {
            media_type: WASM_LAYER_MEDIA_TYPE.into(),
            digest: layer_digest.clone(),
            size: component.len() as u64,
        }],
        annotations,
    };
    let body = serde_json::to_vec(&manifest).expect("a manifest serializes");
    let manifest_digest = format!("sha256:{}", sha256_hex(&body));
    conn.client
        .push_manifest_raw(
            &image,
            body,
            reqwest::header::HeaderValue::from_static(OCI_IMAGE_MEDIA_TYPE),
        )
        .await
        .map_err(classify)?;
    Ok(Pushed {
        manifest_digest,
        layer_digest,
    })
}

fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

fn check_digest_form(digest: &str) -> Result<(), OciError> {
    let hex = hex_of(digest);
    if digest.starts_with("sha256:")
        && hex.len() == 64
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
    {
        Ok(())
    } else {
        Err(OciError::NotWasm(format!(
            "the registry gave the digest {digest:?}; plugins are addressed by sha256"
        )))
    }
}

/// A client for one repository, with the login the registry config holds for its registry.
struct Connection {
    client: Client,
    auth: RegistryAuth,
    reference: OciRef,
    /// Where the login came from, if any: said when the registry refuses it.
    login: Login,
    timeout: Duration,
}

enum Login {
    None,
    Missing(String),
    NotInConfig(String),
    FromConfig(String),
}

impl Connection {
    fn open(reference: &OciRef, opts: &RegistryOptions) -> Result<Connection, OciError> {
        // reqwest is built without a default TLS provider (as in the downloader): ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (auth, login) = match &opts.config {
            None => (RegistryAuth::Anonymous, Login::None),
            Some(path) => match credentials::login_for(path, &reference.registry)? {
                Some(auth) => (auth, Login::FromConfig(path.display().to_string())),
                None if !path.exists() => (
                    RegistryAuth::Anonymous,
                    Login::Missing(path.display().to_string()),
                ),
                None => (
                    RegistryAuth::Anonymous,
                    Login::NotInConfig(path.display().to_string()),
                ),
            },
        };
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(opts.insecure.clone()),
            connect_timeout: Some(CONNECT_TIMEOUT.min(opts.timeout)),
            read_timeout: Some(opts.timeout),
            // A plugin is one manifest, never an index to choose a platform from.
            platform_resolver: None,
            user_agent: USER_AGENT,
            ..ClientConfig::default()
        };
        let client = Client::try_from(config).map_err(|e| OciError::Registry {
            registry: reference.registry.clone(),
            detail: format!("cannot set up the HTTP client: {e}"),
        })?;
        Ok(Connection {
            client,
            auth,
            reference: reference.clone(),
            login,
            timeout: opts.timeout,
        })
    }

    /// The manifest's bytes and digest, verified against the reference's digest if it has one.
    async fn manifest(&self, reference: &OciRef) -> Result<(Vec<u8>, String), OciError> {
        let image = reference.client_ref();
        let (bytes, digest) = self
            .client
            .pull_manifest_raw(
                &image,
                &self.auth,
                &[OCI_IMAGE_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE],
            )
            .await
            .map_err(|e| self.classify(e, "manifest"))?;
        check_digest_form(&digest)?;
        // oci-client checked the body against the digest asked for; so does the host, since
        // the compile cache and every pin trust it.
        let actual = format!("sha256:{}", sha256_hex(&bytes));
        let expected = reference.digest.as_deref().unwrap_or(&digest);
        if actual != expected || actual != digest {
            return Err(OciError::DigestMismatch {
                what: format!("the manifest of {reference}"),
                expected: expected.to_string(),
                actual,
            });
        }
        Ok((bytes, digest))
    }

    /// The layer's bytes, at most its declared size (itself bounded), verified.
    async fn blob(&self, reference: &OciRef, layer: &Layer) -> Result<Vec<u8>, OciError> {
        let image = reference.client_ref();
        // Only what the host checked: no `urls` (a manifest could send the request elsewhere).
        let descriptor = OciDescriptor {
            media_type: layer.media_type.clone(),
            digest: layer.digest.clone(),
            size: layer.size as i64,
            urls: None,
            annotations: None,
        };
        let mut stream = self
            .client
            .pull_blob_stream(&image, &descriptor)
            .await
            .map_err(|e| self.classify(e, "component blob"))?;
        let mut bytes = Vec::with_capacity(layer.size.min(MAX_PLUGIN_BYTES) as usize);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.classify_io(e, layer))?;
            if (bytes.len() + chunk.len()) as u64 > layer.size {
                return Err(OciError::DigestMismatch {
                    what: format!("the component of {reference}"),
                    expected: format!("{} ({} bytes)", layer.digest, layer.size),
                    actual: "more bytes than the manifest says".into(),
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        let actual = sha256_hex(&bytes);
        if actual != layer.hex {
            return Err(OciError::DigestMismatch {
                what: format!("the component of {reference}"),
                expected: layer.digest.clone(),
                actual: format!("sha256:{actual}"),
            });
        }
        Ok(bytes)
    }

    fn registry(&self) -> String {
        self.reference.registry.clone()
    }

    /// One clear error for what oci-client reports.
    fn classify(&self, e: OciDistributionError, what: &str) -> OciError {
        let reference = &self.reference;
        let not_found = |detail: String| OciError::NotFound {
            registry: self.registry(),
            what: format!("{what} of {reference}"),
            detail,
        };
        match e {
            OciDistributionError::RequestError(e) => self.classify_request(&e),
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => self.unauthorized(),
            OciDistributionError::RegistryError { envelope, .. } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                let detail = envelope
                    .errors
                    .iter()
                    .map(|e| e.message.clone())
                    .collect::<Vec<_>>()
                    .join("; ");
                if codes.iter().any(|c| {
                    matches!(
                        c,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::BlobUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::NotFound
                    )
                }) {
                    not_found(detail)
                } else if codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
                {
                    self.unauthorized()
                } else {
                    OciError::Registry {
                        registry: self.registry(),
                        detail,
                    }
                }
            }
            OciDistributionError::ServerError { code: 404, .. } => not_found("HTTP 404".into()),
            OciDistributionError::ServerError {
                code: 401 | 403, ..
            } => self.unauthorized(),
            OciDistributionError::DigestError(DigestError::VerificationError {
                expected,
                actual,
            }) => OciError::DigestMismatch {
                what: format!("the {what} of {reference}"),
                expected,
                actual,
            },
            OciDistributionError::UnsupportedMediaTypeError(t)
            | OciDistributionError::IncompatibleLayerMediaTypeError(t) => {
                OciError::NotWasm(format!("the registry answered with media type {t:?}"))
            }
            other => OciError::Registry {
                registry: self.registry(),
                detail: one_line(&other),
            },
        }
    }

    fn classify_request(&self, e: &reqwest::Error) -> OciError {
        if e.is_timeout() {
            OciError::Timeout {
                registry: self.registry(),
                limit: self.timeout,
            }
        } else if e.is_connect() {
            OciError::Unreachable {
                registry: self.registry(),
                detail: root_cause(e),
            }
        } else {
            OciError::Registry {
                registry: self.registry(),
                detail: one_line(e),
            }
        }
    }

    /// A failure while reading the blob: a digest oci-client found wrong, or the network.
    fn classify_io(&self, e: std::io::Error, layer: &Layer) -> OciError {
        if let Some(DigestError::VerificationError { actual, .. }) = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<DigestError>())
        {
            return OciError::DigestMismatch {
                what: format!("the component of {}", self.reference),
                expected: layer.digest.clone(),
                actual: actual.clone(),
            };
        }
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<reqwest::Error>())
        {
            Some(e) => self.classify_request(e),
            None => OciError::Registry {
                registry: self.registry(),
                detail: one_line(&e),
            },
        }
    }

    fn unauthorized(&self) -> OciError {
        let registry = self.registry();
        let detail = match &self.login {
            Login::None => "no login given (--registry-config)".to_string(),
            Login::Missing(path) => format!("no login given ({path} does not exist)"),
            Login::NotInConfig(path) => format!("{path} has no login for {registry}"),
            Login::FromConfig(path) => format!("the login for {registry} in {path} was refused"),
        };
        OciError::Unauthorized {
            registry,
            repository: self.reference.repository.clone(),
            detail,
        }
    }
}

/// The innermost cause: `Connection refused (os error 111)`, `failed to lookup address ...`.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// The error and its causes on one line.
fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cause = c.source();
    }
    parts.join(": ").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(config_type: &str, layers: &[(&str, &str, u64)]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_IMAGE_MEDIA_TYPE,
            "config": {"mediaType": config_type, "digest": format!("sha256:{}", "c".repeat(64)), "size": 2},
            "layers": layers.iter().map(|(t, d, s)| serde_json::json!({"mediaType": t, "digest": d, "size": s})).collect::<Vec<_>>(),
        }))
        .unwrap()
    }

    #[test]
    fn only_a_manifest_of_one_wasm_layer_is_a_plugin() {
        let digest = format!("sha256:{}", "A".repeat(64));
        let ok = wasm_layer(&manifest(
            WASM_CONFIG_MEDIA_TYPE,
            &[(WASM_LAYER_MEDIA_TYPE, &digest, 10)],
        ))
        .unwrap();
        assert_eq!((ok.hex.as_str(), ok.size), (&*"a".repeat(64), 10));
        let legacy = manifest(
            LEGACY_CONFIG_MEDIA_TYPE,
            &[(LEGACY_LAYER_MEDIA_TYPE, &digest, 10)],
        );
        assert!(wasm_layer(&legacy).is_ok());

        let err = |m: Vec<u8>| wasm_layer(&m).err().unwrap().to_string();
        let image = manifest(
            "application/vnd.oci.image.config.v1+json",
            &[(WASM_LAYER_MEDIA_TYPE, &digest, 10)],
        );
        assert!(
            err(image)
                .contains("its config is of type \"application/vnd.oci.image.config.v1+json\"")
        );
        let tar = manifest(
            WASM_CONFIG_MEDIA_TYPE,
            &[("application/vnd.oci.image.layer.v1.tar", &digest, 10)],
        );
        assert_eq!(
            err(tar),
            "not a Wasm plugin artifact: its layer is of type \"application/vnd.oci.image.layer.v1.tar\", not \"application/wasm\""
        );
        let two = manifest(
            WASM_CONFIG_MEDIA_TYPE,
            &[
                (WASM_LAYER_MEDIA_TYPE, &digest, 10),
                (WASM_LAYER_MEDIA_TYPE, &digest, 10),
            ],
        );
        assert!(err(two).contains("it has 2 layers"));
        let huge = manifest(
            WASM_CONFIG_MEDIA_TYPE,
            &[(WASM_LAYER_MEDIA_TYPE, &digest, MAX_PLUGIN_BYTES + 1)],
        );
        assert!(err(huge).contains("plugins may be at most 67108864"));
        let md5 = manifest(
            WASM_CONFIG_MEDIA_TYPE,
            &[(WASM_LAYER_MEDIA_TYPE, "md5:abc", 10)],
        );
        assert!(err(md5).contains("not sha256:<hex>"));
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        assert!(
            wasm_layer(index)
                .err()
                .unwrap()
                .to_string()
                .contains("image index")
        );
    }
}
