//! `hf://org/repo[@revision][/path]`: the Hugging Face Hub over its HTTP API.
//!
//! Files are listed with `GET {endpoint}/api/models/{repo}/tree/{revision}?recursive=true`
//! (paginated by `Link: rel="next"`) and downloaded from
//! `{endpoint}/{repo}/resolve/{revision}/{path}`, with `Authorization: Bearer $HF_TOKEN` when set.
//! `HF_ENDPOINT` replaces `https://huggingface.co` (mirrors, tests). LFS entries publish their
//! sha256, which every such file is verified against.
use reqwest::header::LINK;
use reqwest::{Client, Url};
use serde::Deserialize;

use crate::error::FetchError;
use crate::http::{redact, send, status_error};
use crate::place::check_rel;
use crate::remote::AttemptError;
use crate::retry::{Settings, with_retries};
use crate::source::percent_decode;

pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

#[derive(Debug)]
pub struct HfFile {
    /// Path relative to the result tree.
    pub rel: String,
    pub url: Url,
    pub size: Option<u64>,
    pub sha256: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TreeEntry {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    size: Option<u64>,
    lfs: Option<Lfs>,
}

#[derive(Debug, Deserialize)]
struct Lfs {
    oid: String,
}

pub fn endpoint() -> Result<Url, FetchError> {
    let raw = std::env::var("HF_ENDPOINT")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_ENDPOINT.into());
    Url::parse(&raw).map_err(|e| FetchError::InvalidUrl(format!("HF_ENDPOINT {raw:?}: {e}")))
}

pub fn token() -> Option<String> {
    ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"]
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
}

/// `endpoint` + path segments, each percent-encoded as needed.
fn url_with(endpoint: &Url, segments: &[&str]) -> Url {
    let mut url = endpoint.clone();
    url.path_segments_mut()
        .expect("http(s) endpoint")
        .pop_if_empty()
        .extend(segments);
    url
}

/// The files `path` names in `repo` at `revision`: one file, or every file under a directory.
pub async fn list(
    client: &Client,
    endpoint: &Url,
    repo: &str,
    revision: &str,
    path: &str,
    token: Option<&str>,
    settings: &Settings,
) -> Result<Vec<HfFile>, FetchError> {
    let revision = percent_decode(revision);
    let (org, name) = repo.split_once('/').unwrap_or(("", repo));
    let mut next = Some(url_with(
        endpoint,
        &["api", "models", org, name, "tree", &revision],
    ));
    if let Some(u) = next.as_mut() {
        u.query_pairs_mut().append_pair("recursive", "true");
    }
    let mut entries = Vec::new();
    while let Some(url) = next.take() {
        let (page, link): (Vec<TreeEntry>, Option<String>) =
            with_retries(settings, "listing the repository", || async {
                let mut req = client.get(url.clone());
                if let Some(t) = token {
                    req = req.bearer_auth(t);
                }
                let resp = send(req, &url, settings.stall).await?;
                if !resp.status().is_success() {
                    return Err(status_error(resp, &url, settings.stall).await);
                }
                let link = resp
                    .headers()
                    .get(LINK)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let body = resp
                    .bytes()
                    .await
                    .map_err(|e| crate::http::classify(&e, &url))?;
                let page = serde_json::from_slice(&body).map_err(|e| {
                    AttemptError::Fatal(FetchError::Http {
                        message: format!("unexpected listing from {}: {e}", redact(&url)),
                        status: 200,
                    })
                })?;
                Ok((page, link))
            })
            .await?;
        entries.extend(page);
        next = link.as_deref().and_then(next_link);
    }

    let prefix = format!("{path}/");
    let mut files = Vec::new();
    for e in entries.into_iter().filter(|e| e.kind == "file") {
        let rel = if path.is_empty() {
            e.path.clone()
        } else if e.path == path {
            e.path.rsplit('/').next().unwrap_or(&e.path).to_string()
        } else if let Some(rest) = e.path.strip_prefix(&prefix) {
            rest.to_string()
        } else {
            continue;
        };
        check_rel(&rel).map_err(|why| {
            FetchError::InvalidUrl(format!(
                "repository file {:?} cannot be placed: {why}",
                e.path
            ))
        })?;
        let mut segs = vec![org, name, "resolve", &revision];
        segs.extend(e.path.split('/'));
        files.push(HfFile {
            rel,
            url: url_with(endpoint, &segs),
            size: e.size,
            sha256: e.lfs.map(|l| l.oid.to_ascii_lowercase()),
        });
    }
    if files.is_empty() {
        let what = if path.is_empty() {
            String::new()
        } else {
            format!("/{path}")
        };
        return Err(FetchError::NotFound {
            message: format!("no file at hf://{repo}@{revision}{what}"),
            status: None,
        });
    }
    files.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(files)
}

/// `<url>; rel="next"` from a Link header.
fn next_link(header: &str) -> Option<Url> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"")
            .then(|| Url::parse(target.trim().trim_start_matches('<').trim_end_matches('>')).ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_decoding() {
        let h = r#"<https://hub/api/models/a/b/tree/main?cursor=x>; rel="next""#;
        assert_eq!(
            next_link(h).unwrap().as_str(),
            "https://hub/api/models/a/b/tree/main?cursor=x"
        );
        assert!(next_link(r#"<https://hub/x>; rel="prev""#).is_none());
    }

    #[test]
    fn resolve_urls_encode_segments() {
        let ep = Url::parse("https://mirror.example/hf/").unwrap();
        let u = url_with(&ep, &["org", "m", "resolve", "refs/pr/1", "dir", "a b.bin"]);
        assert_eq!(
            u.as_str(),
            "https://mirror.example/hf/org/m/resolve/refs%2Fpr%2F1/dir/a%20b.bin"
        );
    }
}
