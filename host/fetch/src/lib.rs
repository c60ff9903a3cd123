//! `mlmodel-fetch`: the downloader the default download Job runs (`mlmodel-operator fetch`, which
//! calls [`run`]).
//!
//! What DEST holds afterwards (the serving plugins mount it read-only):
//! - a single file, not unpacked: `DEST/<name>`, where `<name>` is `--filename` or the last
//!   segment of the URL path / object key / repository path;
//! - an archive (`--extract auto` recognises `.tar`, `.tar.gz`/`.tgz`, `.zip` by name, or by
//!   content when the name has no known model extension): its entries directly under DEST, so an
//!   archive of `1/saved_model.pb` gives `DEST/1/saved_model.pb` (TensorFlow Serving's version
//!   directories); the archive itself is not kept;
//! - a prefix (`s3://b/models/resnet`) or a repository (`hf://org/repo`): every file at its path
//!   relative to the prefix or repository path;
//! - always `DEST/.mlmodel-complete.json`, written last (see [`place::Marker`]); and during a
//!   download `DEST/.mlmodel-partial/` (staging, removed once placed).
//!
//! Credentials come from the environment (see [`objects`] and [`hf`]); nothing is passed on a
//! command line, which is visible to anyone who can list pods.
//!
//! Modules, none importing one that imports it back: `error`, `source`, `netguard`, `place`,
//! `progress` at the bottom; `remote` (a source of one file: [`remote::Remote`], `Opened`,
//! `AttemptError`) and `retry` (settings, backoff) above them; the sources `http`, `objects`
//! (S3, GCS) and `hf` implement `remote`, and `transfer` (one file, any `Remote`) uses it, neither
//! knowing the other; `checksum`, `extract`, `format` (what landed: the model format from content,
//! the largest files) and `report` finish; this file wires them together.
mod checksum;
mod error;
mod extract;
pub mod format;
mod hf;
mod http;
mod netguard;
mod objects;
mod place;
mod progress;
mod remote;
mod report;
mod retry;
mod source;
mod transfer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use futures::{StreamExt, TryStreamExt};
use tracing::{error, info};

pub use error::{FetchError, human_bytes};
/// The archive extractor for the fuzz targets (`fuzz/`, feature `fuzzing`); not an API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::extract::{Format, detect, extract};
}
use place::{Inputs, Marker, Staging};
pub use progress::Figures;
pub use report::{FetchReport, PlacedFile};
use retry::Settings;
use source::Location;
use transfer::FileJob;

#[derive(Args, Debug, Clone)]
pub struct FetchArgs {
    /// What to download: https://, http://, s3://BUCKET/KEY-OR-PREFIX, gs://BUCKET/KEY-OR-PREFIX
    /// or hf://ORG/REPO[@REVISION][/PATH].
    #[arg(long)]
    pub url: String,
    /// Directory that receives the result (created if missing).
    #[arg(long)]
    pub dest: PathBuf,
    /// Expected sha256 (64 hex digits) of the file, the archive, or for several files of their
    /// `sha256sum`-style manifest sorted by path.
    #[arg(long)]
    pub sha256: Option<String>,
    /// Unpack archives: `auto` by name or content, `none`, or force a format.
    #[arg(long, value_enum, default_value_t = ExtractMode::Auto)]
    pub extract: ExtractMode,
    /// Name of the downloaded file in DEST (single-file downloads only).
    #[arg(long)]
    pub filename: Option<String>,
    /// Where the one-line JSON result goes (read by the kubelet).
    #[arg(long, default_value = "/dev/termination-log")]
    pub termination_log: PathBuf,
    /// Allow link-local and cloud metadata addresses (169.254.0.0/16, fd00:ec2::254, fe80::/10),
    /// and instance-metadata credentials for s3:// and gs://.
    #[arg(long)]
    pub allow_link_local: bool,
    /// Seconds without receiving a byte before an attempt is abandoned and retried.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub stall_timeout: u64,
    /// Failed attempts in a row (without progress) retried before giving up.
    #[arg(long, default_value_t = 8)]
    pub retries: u32,
    /// Files downloaded at the same time (prefixes and repositories).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub concurrency: u64,
    /// Seconds between progress log lines.
    #[arg(long, default_value_t = 5, hide = true)]
    pub progress_interval: u64,
    /// First retry delay in milliseconds (doubles each time, up to 60 s).
    #[arg(long, default_value_t = 1000, hide = true)]
    pub retry_base_ms: u64,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtractMode {
    Auto,
    None,
    Tar,
    #[value(name = "tar.gz", alias = "tgz")]
    TarGz,
    Zip,
}

impl ExtractMode {
    fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::None => "none",
            Self::Tar => "tar",
            Self::TarGz => "tar.gz",
            Self::Zip => "zip",
        }
    }
}

/// The exit code of a failure that another attempt might not meet (a network error, a server
/// error, a missing file that may appear).
pub const EXIT_FAILED: i32 = 1;
/// The exit code of a failure that another attempt would meet again ([`FetchError::is_permanent`]);
/// the download Job's `podFailurePolicy` fails the Job on it (clap's usage errors exit 2 too).
pub const EXIT_PERMANENT: i32 = 2;

/// Runs the download and returns the process exit code (0 done, [`EXIT_FAILED`] or
/// [`EXIT_PERMANENT`]).
pub fn run(args: FetchArgs) -> i32 {
    let started = Instant::now();
    let termination_log = args.termination_log.clone();
    let dest = args.dest.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(fetch(args)),
        Err(e) => Err(FetchError::Io {
            context: "starting the async runtime".into(),
            source: e,
        }),
    };
    let seconds = started.elapsed().as_secs_f64();
    match result {
        Ok((marker, cached)) => {
            let inventory = format::inspect(&dest, &marker.entries);
            info!(bytes = marker.bytes, sha256 = %marker.sha256, files = marker.files,
                format = inventory.format, total_bytes = inventory.total_bytes,
                seconds = format!("{seconds:.1}"), cached, "download complete");
            report::write(
                &termination_log,
                &report::success(&marker, seconds, cached, &inventory),
            );
            0
        }
        Err(e) => {
            error!(reason = e.reason(), "download failed: {e}");
            report::write(&termination_log, &report::failure(&e));
            if e.is_permanent() {
                EXIT_PERMANENT
            } else {
                EXIT_FAILED
            }
        }
    }
}

/// Returns the marker of the finished download and whether it was already there.
async fn fetch(args: FetchArgs) -> Result<(Marker, bool), FetchError> {
    let expected = args
        .sha256
        .as_deref()
        .map(checksum::parse_expected)
        .transpose()?;
    if let Some(name) = &args.filename
        && (name.contains('/') || place::check_rel(name).is_err())
    {
        return Err(FetchError::InvalidArgument(format!(
            "--filename {name:?} must be a plain file name"
        )));
    }
    let location = source::parse(&args.url)?;
    let dest = &args.dest;
    std::fs::create_dir_all(dest)
        .map_err(|e| FetchError::io(format!("creating {}", dest.display()), dest, e))?;
    let inputs = Inputs {
        url: args.url.clone(),
        sha256: expected.clone(),
        extract: args.extract.as_str().into(),
        filename: args.filename.clone(),
    };
    if let Some(marker) = place::completed(dest, &inputs) {
        info!(dest = %dest.display(), "already downloaded; nothing to do");
        return Ok((marker, true));
    }
    place::clear_previous(dest)?;
    let staging = Staging::prepare(dest, &inputs)?;
    let settings = Settings {
        retries: args.retries,
        stall: Duration::from_secs(args.stall_timeout),
        backoff_base: Duration::from_millis(args.retry_base_ms),
        backoff_max: Duration::from_secs(60),
    };
    info!(url = %redacted(&args.url), dest = %dest.display(), "fetching");
    let jobs = plan(&args, &location, &settings).await?;
    check_space(dest, &jobs, &staging)?;

    let progress = Arc::new(progress::Progress::default());
    let logger = progress::spawn_logger(
        progress.clone(),
        Duration::from_secs(args.progress_interval.max(1)),
    );
    let done = futures::stream::iter(jobs.iter())
        .map(|job| transfer::download(job, &staging, &settings, &progress))
        .buffer_unordered(args.concurrency as usize)
        .try_collect::<Vec<_>>()
        .await;
    logger.abort();
    let done = match done {
        Err(e @ FetchError::ChecksumMismatch { .. }) => {
            // Complete but wrong: a rerun must download again, not trust these bytes.
            let _ = place::remove_path(&dest.join(place::STAGING));
            return Err(e);
        }
        other => other?,
    };
    info!("progress: {}", progress.line());

    let digest = checksum::digest_of(&done);
    let what = if done.len() == 1 {
        done[0].rel.clone()
    } else {
        format!("{} files", done.len())
    };
    if let Err(e) = checksum::verify(expected.as_deref(), &digest, &what) {
        // Complete but wrong: a rerun must download again, not trust these bytes.
        let _ = place::remove_path(&dest.join(place::STAGING));
        return Err(e);
    }
    let bytes = done.iter().map(|d| d.bytes).sum();

    let (tree, files) = match single_archive(&args, &done, &staging)? {
        Some((archive, format)) => {
            let tree = staging.fresh_tree_dir()?;
            info!(archive = %done[0].rel, ?format, "unpacking");
            let into = tree.clone();
            let files =
                tokio::task::spawn_blocking(move || extract::extract(&archive, format, &into))
                    .await
                    .expect("unpacking task panicked")?;
            (tree, files)
        }
        None => (staging.data_dir(), done.len() as u64),
    };
    let marker = Marker {
        url: args.url.clone(),
        sha256: digest,
        bytes,
        files,
        extract: args.extract.as_str().into(),
        filename: args.filename.clone(),
        entries: Vec::new(),
    };
    Ok((staging.place(&tree, marker)?, false))
}

/// The files to download, with where each lands in the tree.
async fn plan(
    args: &FetchArgs,
    location: &Location,
    settings: &Settings,
) -> Result<Vec<FileJob>, FetchError> {
    let allow = args.allow_link_local;
    let single = |mut jobs: Vec<FileJob>| {
        if let (Some(name), [job]) = (&args.filename, jobs.as_mut_slice()) {
            job.rel = name.clone();
        } else if args.filename.is_some() {
            return Err(FetchError::InvalidArgument(
                "--filename applies to single-file downloads only".into(),
            ));
        }
        Ok(jobs)
    };
    match location {
        Location::Http(url) => single(vec![FileJob {
            rel: file_name_of(url.path()),
            remote: Box::new(http::HttpRemote {
                client: http::client(allow)?,
                url: url.clone(),
                bearer: None,
                allow_link_local: allow,
            }),
            size: None,
            expected_sha256: None,
        }]),
        Location::S3 { bucket, key } | Location::Gs { bucket, key } => {
            let (scheme, store) = match location {
                Location::S3 { .. } => ("s3", objects::s3_store(bucket, settings, allow)?),
                _ => ("gs", objects::gcs_store(bucket, settings, allow)?),
            };
            let base = format!("{scheme}://{bucket}");
            let listed = objects::list(&store, &base, key, settings).await?;
            info!(objects = listed.len(), "listed {base}/{key}");
            single(
                listed
                    .into_iter()
                    .map(|(rel, meta)| FileJob {
                        rel,
                        size: Some(meta.size),
                        remote: Box::new(objects::ObjectRemote {
                            store: store.clone(),
                            display: format!("{base}/{}", meta.location),
                            path: meta.location,
                            size: meta.size,
                        }),
                        expected_sha256: None,
                    })
                    .collect(),
            )
        }
        Location::Hf {
            repo,
            revision,
            path,
        } => {
            let client = http::client(allow)?;
            let endpoint = hf::endpoint()?;
            let token = hf::token();
            let files = hf::list(
                &client,
                &endpoint,
                repo,
                revision,
                path,
                token.as_deref(),
                settings,
            )
            .await?;
            info!(files = files.len(), "listed hf://{repo}@{revision}");
            single(
                files
                    .into_iter()
                    .map(|f| FileJob {
                        rel: f.rel,
                        size: f.size,
                        expected_sha256: f.sha256,
                        remote: Box::new(http::HttpRemote {
                            client: client.clone(),
                            url: f.url,
                            bearer: token.clone(),
                            allow_link_local: allow,
                        }),
                    })
                    .collect(),
            )
        }
    }
}

/// The last path segment, decoded, or `model` when there is none usable.
fn file_name_of(url_path: &str) -> String {
    let last = url_path.rsplit('/').next().unwrap_or_default();
    let decoded = source::percent_decode(last);
    [decoded, last.to_string()]
        .into_iter()
        .find(|n| !n.contains('/') && place::check_rel(n).is_ok())
        .unwrap_or_else(|| "model".into())
}

/// Fails early when the sizes are known and cannot fit.
fn check_space(dest: &Path, jobs: &[FileJob], staging: &Staging) -> Result<(), FetchError> {
    let Some(total) = jobs.iter().map(|j| j.size).sum::<Option<u64>>() else {
        return Ok(());
    };
    let kept: u64 = jobs
        .iter()
        .filter_map(|j| std::fs::metadata(staging.data_path(&j.rel)).ok())
        .map(|m| m.len())
        .sum();
    let needed = total.saturating_sub(kept);
    if let Some((free, _)) = error::fs_space(dest)
        && needed > free
    {
        return Err(FetchError::DiskFull(format!(
            "the download needs {} ({needed} bytes) more; {}",
            error::human_bytes(needed),
            error::describe_space(dest)
        )));
    }
    Ok(())
}

/// The archive to unpack, when the download is one file and unpacking is asked for.
fn single_archive(
    args: &FetchArgs,
    done: &[transfer::Done],
    staging: &Staging,
) -> Result<Option<(PathBuf, extract::Format)>, FetchError> {
    let [one] = done else {
        return Ok(None);
    };
    let path = staging.data_path(&one.rel);
    let format = match args.extract {
        ExtractMode::None => None,
        ExtractMode::Tar => Some(extract::Format::Tar),
        ExtractMode::TarGz => Some(extract::Format::TarGz),
        ExtractMode::Zip => Some(extract::Format::Zip),
        ExtractMode::Auto => extract::detect(&one.rel, &path)
            .map_err(|e| FetchError::io(format!("reading {}", one.rel), &path, e))?,
    };
    Ok(format.map(|f| (path, f)))
}

fn redacted(url: &str) -> String {
    reqwest::Url::parse(url)
        .map(|u| http::redact(&u))
        .unwrap_or_else(|_| url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_urls() {
        assert_eq!(file_name_of("/models/resnet.tar.gz"), "resnet.tar.gz");
        assert_eq!(file_name_of("/a/my%20model.bin"), "my model.bin");
        assert_eq!(file_name_of("/a/x%2Fy"), "x%2Fy");
        assert_eq!(file_name_of("/"), "model");
        assert_eq!(file_name_of("/a/.."), "model");
    }
}
