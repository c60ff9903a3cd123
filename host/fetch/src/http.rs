//! HTTP(S) sources: the shared client, one GET with Range/If-Range, and status classification.
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use futures::future::BoxFuture;
use reqwest::header::{
    ACCEPT_ENCODING, CONTENT_RANGE, ETAG, HeaderMap, IF_RANGE, LAST_MODIFIED, RANGE, RETRY_AFTER,
};
use reqwest::{Client, StatusCode, Url};

use crate::error::{FetchError, chain};
use crate::netguard;
use crate::remote::{AttemptError, Opened, Remote, network_body};

/// The one HTTP client of a run (connection pool shared by listing and downloads).
pub fn client(allow_link_local: bool) -> Result<Client, FetchError> {
    // reqwest is built without a default provider; kube uses ring too, so install that one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let builder = Client::builder()
        .user_agent(concat!("mlmodel-operator/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        .tcp_keepalive(Duration::from_secs(30));
    netguard::guard(builder, allow_link_local)
        .build()
        .map_err(|e| FetchError::Network(format!("building the HTTP client: {}", chain(&e))))
}

/// One URL, optionally with a bearer token.
pub struct HttpRemote {
    pub client: Client,
    pub url: Url,
    pub bearer: Option<String>,
    pub allow_link_local: bool,
}

impl Remote for HttpRemote {
    fn open<'a>(
        &'a self,
        offset: u64,
        validator: Option<&'a str>,
        stall: Duration,
    ) -> BoxFuture<'a, Result<Opened, AttemptError>> {
        Box::pin(self.get(offset, validator, stall))
    }

    fn describe(&self) -> String {
        redact(&self.url)
    }
}

impl HttpRemote {
    /// One GET from `offset` (with `Range`, and `If-Range` against `validator`).
    async fn get(
        &self,
        offset: u64,
        validator: Option<&str>,
        stall: Duration,
    ) -> Result<Opened, AttemptError> {
        netguard::check_url(&self.url, self.allow_link_local)
            .map_err(|f| AttemptError::Fatal(FetchError::ForbiddenAddress(f.to_string())))?;
        // identity: a compressed transfer would make byte offsets meaningless for Range.
        let mut req = self
            .client
            .get(self.url.clone())
            .header(ACCEPT_ENCODING, "identity");
        if let Some(token) = &self.bearer {
            req = req.bearer_auth(token);
        }
        if offset > 0 {
            req = req.header(RANGE, format!("bytes={offset}-"));
            if let Some(v) = validator {
                req = req.header(IF_RANGE, v);
            }
        }
        let resp = send(req, &self.url, stall).await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let new_validator = validator_of(&headers);
        let (start, total) = match status {
            StatusCode::OK => (0, resp.content_length()),
            StatusCode::PARTIAL_CONTENT => {
                let range = headers
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_content_range);
                match range {
                    Some((start, total)) => (start, total),
                    None => {
                        return Err(AttemptError::Restart(
                            "206 without a usable Content-Range".into(),
                        ));
                    }
                }
            }
            StatusCode::RANGE_NOT_SATISFIABLE if offset > 0 => {
                // "bytes */N": everything was already received when N == offset.
                let total = headers
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes */"))
                    .and_then(|n| n.trim().parse::<u64>().ok());
                if total == Some(offset) {
                    return Ok(Opened {
                        body: futures::stream::empty().boxed(),
                        start: offset,
                        total,
                        // A 416 may carry no validator; the one sent is still good.
                        validator: new_validator.or_else(|| validator.map(str::to_string)),
                    });
                }
                return Err(AttemptError::Restart(format!(
                    "server refused to resume at byte {offset}"
                )));
            }
            _ => return Err(status_error(resp, &self.url, stall).await),
        };
        let body = network_body(resp.bytes_stream(), redact(&self.url));
        Ok(Opened {
            body,
            start,
            total,
            validator: new_validator,
        })
    }
}

/// Sends a request, bounded by the stall timeout until the response headers arrive.
pub async fn send(
    req: reqwest::RequestBuilder,
    url: &Url,
    stall: Duration,
) -> Result<reqwest::Response, AttemptError> {
    match tokio::time::timeout(stall, req.send()).await {
        Err(_) => Err(AttemptError::retry(FetchError::Timeout(format!(
            "no response from {} within {}s",
            redact(url),
            stall.as_secs_f64()
        )))),
        Ok(Err(e)) => Err(classify(&e, url)),
        Ok(Ok(resp)) => Ok(resp),
    }
}

/// A reqwest error (no HTTP status) as an attempt outcome.
pub fn classify(e: &reqwest::Error, url: &Url) -> AttemptError {
    if let Some(f) = netguard::find_forbidden(e) {
        return AttemptError::Fatal(FetchError::ForbiddenAddress(f.to_string()));
    }
    let msg = format!("{}: {}", redact(url), chain(e));
    if e.is_builder() {
        AttemptError::Fatal(FetchError::InvalidUrl(msg))
    } else if e.is_redirect() {
        AttemptError::Fatal(FetchError::Network(msg))
    } else if e.is_timeout() {
        AttemptError::retry(FetchError::Timeout(msg))
    } else {
        AttemptError::retry(FetchError::Network(msg))
    }
}

/// A non-success status as an attempt outcome: auth and not-found fail at once, overload and
/// server errors are retried (honouring Retry-After), other client errors fail at once.
pub async fn status_error(resp: reqwest::Response, url: &Url, stall: Duration) -> AttemptError {
    let status = resp.status();
    let headers = resp.headers().clone();
    let retry_after = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    // The Hugging Face Hub explains its 401/404 answers in these headers.
    let hub_code = header_str(&headers, "x-error-code");
    let mut detail = header_str(&headers, "x-error-message").unwrap_or_default();
    if detail.is_empty() {
        detail = body_snippet(resp, stall).await;
    }
    let mut message = format!("HTTP {status} from {}", redact(url));
    if !detail.is_empty() {
        message += &format!(": {detail}");
    }
    let code = Some(status.as_u16());
    match (status.as_u16(), hub_code.as_deref()) {
        (_, Some("RepoNotFound" | "EntryNotFound" | "RevisionNotFound")) | (404 | 410, _) => {
            AttemptError::Fatal(FetchError::NotFound {
                message,
                status: code,
            })
        }
        (401 | 403, _) | (_, Some("GatedRepo")) => AttemptError::Fatal(FetchError::AuthFailed {
            message,
            status: code,
        }),
        (408 | 425 | 429 | 500..=599, _) => AttemptError::Retry {
            error: FetchError::Http {
                message,
                status: status.as_u16(),
            },
            after: retry_after,
        },
        _ => AttemptError::Fatal(FetchError::Http {
            message,
            status: status.as_u16(),
        }),
    }
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The first bytes of an error body, on one line (S3-style XML errors say what went wrong).
async fn body_snippet(resp: reqwest::Response, stall: Duration) -> String {
    const MAX: usize = 300;
    let mut body = resp.bytes_stream();
    let mut buf = Vec::new();
    let read = async {
        while let Some(Ok(chunk)) = body.next().await {
            buf.extend_from_slice(&chunk);
            if buf.len() >= MAX {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(stall.min(Duration::from_secs(5)), read).await;
    let text = String::from_utf8_lossy(&buf[..buf.len().min(MAX)]);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A strong ETag, else Last-Modified: what `If-Range` accepts (weak ETags are not allowed there).
fn validator_of(headers: &HeaderMap) -> Option<String> {
    let etag = header_str(headers, ETAG.as_str()).filter(|e| !e.starts_with("W/"));
    etag.or_else(|| header_str(headers, LAST_MODIFIED.as_str()))
}

/// `bytes START-END/TOTAL` (TOTAL may be `*`) -> (START, TOTAL).
pub fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        n => Some(n.parse().ok()?),
    };
    Some((start.trim().parse().ok()?, total))
}

/// `Retry-After`: delay-seconds or an HTTP date.
pub fn parse_retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(now).unwrap_or_default())
}

/// A URL fit for logs and status: no user info, no query (signed URLs carry credentials there).
pub fn redact(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    if u.query().is_some() {
        u.set_query(Some("..."));
    }
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some((100, Some(200)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("bytes */200"), None);
        assert_eq!(parse_content_range("items 1-2/3"), None);
    }

    #[test]
    fn retry_after_seconds_and_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn redaction_hides_secrets() {
        let u = Url::parse("https://user:pw@h.example/a/b?X-Amz-Signature=s").unwrap();
        assert_eq!(redact(&u), "https://h.example/a/b?...");
    }
}
