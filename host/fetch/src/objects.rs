//! `s3://` and `gs://` through the `object_store` crate, over our guarded reqwest client.
//!
//! Credentials come from the environment only. S3: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`
//! (+ `AWS_SESSION_TOKEN`), or web identity (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`);
//! `AWS_ENDPOINT_URL` and `AWS_REGION` select any S3-compatible store. GCS:
//! `GOOGLE_APPLICATION_CREDENTIALS` (or `GOOGLE_SERVICE_ACCOUNT`) or a bearer token in
//! `GOOGLE_OAUTH_ACCESS_TOKEN`. With none of these the request is anonymous (public buckets):
//! instance-metadata credentials live on link-local addresses, so they are only tried with
//! `--allow-link-local`.
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::client::{HttpClient, HttpConnector};
use object_store::gcp::{GcpCredential, GoogleCloudStorageBuilder};
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectMeta, ObjectStore, RetryConfig,
    StaticCredentialProvider,
};

use crate::error::{FetchError, chain};
use crate::netguard;
use crate::place::check_rel;
use crate::remote::{AttemptError, Opened, Remote, network_body};
use crate::retry::{Settings, with_retries};

/// Hands object_store the same guarded client as plain HTTP (link-local refusal, ring TLS).
#[derive(Debug)]
struct GuardedConnector {
    allow_link_local: bool,
}

impl HttpConnector for GuardedConnector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let client = crate::http::client(self.allow_link_local).map_err(|e| {
            object_store::Error::Generic {
                store: "fetch",
                source: Box::new(e),
            }
        })?;
        Ok(HttpClient::new(client))
    }
}

/// Retries are ours (retry.rs, transfer.rs), as for HTTP: object_store's own would resume a broken body
/// behind our back, without the validation and accounting done there.
fn retry_config(settings: &Settings) -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: settings.backoff_base,
            max_backoff: settings.backoff_max,
            base: 2.0,
        },
        max_retries: 0,
        retry_timeout: Duration::from_secs(300),
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

pub fn s3_store(
    bucket: &str,
    settings: &Settings,
    allow_link_local: bool,
) -> Result<Arc<dyn ObjectStore>, FetchError> {
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_retry(retry_config(settings))
        .with_http_connector(GuardedConnector { allow_link_local });
    if let Some(endpoint) = env("AWS_ENDPOINT_URL_S3").or_else(|| env("AWS_ENDPOINT_URL")) {
        b = b
            .with_allow_http(endpoint.starts_with("http://"))
            .with_endpoint(endpoint);
    }
    if env("AWS_REGION").is_none() {
        b = b.with_region(env("AWS_DEFAULT_REGION").unwrap_or_else(|| "us-east-1".into()));
    }
    let keys = env("AWS_ACCESS_KEY_ID").is_some() || env("AWS_WEB_IDENTITY_TOKEN_FILE").is_some();
    if !keys && !allow_link_local {
        b = b.with_skip_signature(true);
    }
    b.build()
        .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        .map_err(|e| FetchError::InvalidUrl(format!("s3://{bucket}: {}", chain(&e))))
}

pub fn gcs_store(
    bucket: &str,
    settings: &Settings,
    allow_link_local: bool,
) -> Result<Arc<dyn ObjectStore>, FetchError> {
    let mut b = GoogleCloudStorageBuilder::from_env()
        .with_bucket_name(bucket)
        .with_retry(retry_config(settings))
        .with_http_connector(GuardedConnector { allow_link_local });
    let file_creds = [
        "GOOGLE_APPLICATION_CREDENTIALS",
        "GOOGLE_SERVICE_ACCOUNT",
        "GOOGLE_SERVICE_ACCOUNT_PATH",
        "GOOGLE_SERVICE_ACCOUNT_KEY",
    ]
    .iter()
    .any(|n| env(n).is_some());
    if let Some(token) = env("GOOGLE_OAUTH_ACCESS_TOKEN") {
        b = b.with_credentials(Arc::new(StaticCredentialProvider::new(GcpCredential {
            bearer: token,
        })));
    } else if !file_creds && !allow_link_local {
        b = b.with_skip_signature(true);
    }
    b.build()
        .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        .map_err(|e| FetchError::InvalidUrl(format!("gs://{bucket}: {}", chain(&e))))
}

/// One object to download.
pub struct ObjectRemote {
    pub store: Arc<dyn ObjectStore>,
    pub path: ObjectPath,
    pub size: u64,
    /// `s3://bucket/key`, for logs.
    pub display: String,
}

/// The objects a key names: the object itself, or every object under it as a prefix.
/// Returns (path relative to the result tree, metadata).
pub async fn list(
    store: &Arc<dyn ObjectStore>,
    scheme_bucket: &str,
    key: &str,
    settings: &Settings,
) -> Result<Vec<(String, ObjectMeta)>, FetchError> {
    let display = format!("{scheme_bucket}/{key}");
    if !key.is_empty() {
        let path = ObjectPath::from(key);
        let head = with_retries(settings, "looking up the object", || async {
            with_stall(settings.stall, &display, store.head(&path))
                .await
                .map_err(|e| classify(e, &display))
        })
        .await;
        match head {
            Ok(meta) => {
                let name = key.rsplit('/').next().unwrap_or(key).to_string();
                return Ok(vec![(name, meta)]);
            }
            Err(FetchError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let prefix = (!key.is_empty()).then(|| ObjectPath::from(key));
    let metas = with_retries(settings, "listing the prefix", || async {
        let listing = store.list(prefix.as_ref()).try_collect::<Vec<_>>();
        with_stall(
            Duration::from_secs(300).max(settings.stall),
            &display,
            listing,
        )
        .await
        .map_err(|e| classify(e, &display))
    })
    .await?;
    let strip = if key.is_empty() {
        String::new()
    } else {
        format!("{key}/")
    };
    let mut out = Vec::new();
    for meta in metas {
        let full = meta.location.to_string();
        let Some(rel) = full.strip_prefix(&strip) else {
            continue;
        };
        // Zero-byte "folder" placeholders some tools create.
        if rel.ends_with('/') || (meta.size == 0 && full.ends_with("/")) {
            continue;
        }
        check_rel(rel).map_err(|why| {
            FetchError::InvalidUrl(format!(
                "object {scheme_bucket}/{full} cannot be placed: {why}"
            ))
        })?;
        out.push((rel.to_string(), meta));
    }
    if out.is_empty() {
        return Err(FetchError::NotFound {
            message: format!("no object at {display} nor under it"),
            status: Some(404),
        });
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

async fn with_stall<T>(
    limit: Duration,
    what: &str,
    fut: impl Future<Output = object_store::Result<T>>,
) -> object_store::Result<T> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => Err(object_store::Error::Generic {
            store: "fetch",
            source: format!("no response for {what} within {}s", limit.as_secs_f64()).into(),
        }),
    }
}

impl Remote for ObjectRemote {
    fn open<'a>(
        &'a self,
        offset: u64,
        validator: Option<&'a str>,
        stall: Duration,
    ) -> BoxFuture<'a, Result<Opened, AttemptError>> {
        Box::pin(self.get(offset, validator, stall))
    }

    fn describe(&self) -> String {
        self.display.clone()
    }
}

impl ObjectRemote {
    /// One GET from `offset` (with `If-Match` against `validator`).
    async fn get(
        &self,
        offset: u64,
        validator: Option<&str>,
        stall: Duration,
    ) -> Result<Opened, AttemptError> {
        if offset > 0 && offset == self.size {
            // Nothing left to read; a Range past the end would be refused, so check the object
            // is still the one the kept bytes came from.
            let meta = with_stall(stall, &self.display, self.store.head(&self.path))
                .await
                .map_err(|e| classify(e, &self.display))?;
            if meta.e_tag.as_deref() == validator && meta.size == offset {
                return Ok(Opened {
                    body: futures::stream::empty().boxed(),
                    start: offset,
                    total: Some(offset),
                    validator: meta.e_tag,
                });
            }
            return Err(AttemptError::Restart("the object changed".into()));
        }
        let opts = GetOptions {
            range: (offset > 0).then_some(GetRange::Offset(offset)),
            // A changed object answers 412 (Precondition), handled as a restart.
            if_match: if offset > 0 {
                validator.map(str::to_string)
            } else {
                None
            },
            ..Default::default()
        };
        let res = match tokio::time::timeout(stall, self.store.get_opts(&self.path, opts)).await {
            Err(_) => {
                return Err(AttemptError::retry(FetchError::Timeout(format!(
                    "no response from {} within {}s",
                    self.display,
                    stall.as_secs_f64()
                ))));
            }
            Ok(r) => r.map_err(|e| classify(e, &self.display))?,
        };
        let start = res.range.start;
        let total = Some(res.meta.size);
        let validator = res.meta.e_tag.clone();
        let body = network_body(res.into_stream(), self.display.clone());
        Ok(Opened {
            body,
            start,
            total,
            validator,
        })
    }
}

/// An object_store error as an attempt outcome, sorted like HTTP statuses in http.rs.
fn classify(e: object_store::Error, what: &str) -> AttemptError {
    let text = format!("{what}: {}", chain(&e));
    if let Some(f) = netguard::find_forbidden(&e) {
        return AttemptError::Fatal(FetchError::ForbiddenAddress(f.to_string()));
    }
    let not_found = |status| FetchError::NotFound {
        message: text.clone(),
        status,
    };
    let auth = |status| FetchError::AuthFailed {
        message: text.clone(),
        status: Some(status),
    };
    match e {
        object_store::Error::Precondition { .. } | object_store::Error::NotModified { .. } => {
            AttemptError::Restart(format!("{what} changed since the kept bytes were fetched"))
        }
        object_store::Error::NotFound { .. } => AttemptError::Fatal(not_found(Some(404))),
        object_store::Error::PermissionDenied { .. } => AttemptError::Fatal(auth(403)),
        object_store::Error::Unauthenticated { .. } => AttemptError::Fatal(auth(401)),
        _ => match status_in(&text) {
            Some(404) => AttemptError::Fatal(not_found(Some(404))),
            Some(status @ (401 | 403)) => AttemptError::Fatal(auth(status)),
            Some(status @ (408 | 425 | 429 | 500..=599)) => AttemptError::retry(FetchError::Http {
                message: text,
                status,
            }),
            Some(status) => AttemptError::Fatal(FetchError::Http {
                message: text,
                status,
            }),
            None if text.contains("no response") => AttemptError::retry(FetchError::Timeout(text)),
            // No status: the request did not get an answer (connect, reset, TLS).
            None => AttemptError::retry(FetchError::Network(text)),
        },
    }
}

/// object_store keeps its status codes private; its message says "status code: 503 ...".
fn status_in(text: &str) -> Option<u16> {
    let at = text.find("status code: ")? + "status code: ".len();
    text.get(at..at + 3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_from_message() {
        assert_eq!(
            status_in("x: Server returned non-2xx status code: 503 Service Unavailable: y"),
            Some(503)
        );
        assert_eq!(status_in("connection refused"), None);
    }
}
