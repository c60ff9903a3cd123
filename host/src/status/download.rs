//! `status.download`: what the downloader reported for a revision, its failed attempts and the
//! running download's figures.
use crate::api::{DownloadProgress, DownloadRetry, DownloadStatus, MLModelStatus};
use crate::interpret::DownloadState;
use crate::progress;
use crate::redact;

/// Failed attempts listed in `status.download.retries` (the latest).
const MAX_RETRIES_SHOWN: usize = 5;
const MAX_RETRY_MESSAGE_BYTES: usize = 512;

pub(super) fn download_status(
    rev: &str,
    state: &DownloadState,
    previous: Option<&MLModelStatus>,
) -> DownloadStatus {
    let mut d = DownloadStatus {
        revision: rev.to_string(),
        ..Default::default()
    };
    match state {
        DownloadState::NotStarted => {}
        DownloadState::Running {
            attempts,
            started,
            retried,
            ..
        } => {
            d.attempts = Some(*attempts);
            d.started_at = started.clone();
            let skip = retried.len().saturating_sub(MAX_RETRIES_SHOWN);
            let first = skip as i32 + 1;
            d.retries = retried
                .iter()
                .skip(skip)
                .zip(first..)
                .map(|(f, attempt)| DownloadRetry {
                    attempt,
                    reason: f.reason.clone(),
                    message: redact::urls_in(&crate::plugins::truncate(
                        f.message.clone(),
                        MAX_RETRY_MESSAGE_BYTES,
                    )),
                    finished_at: f.finished.clone(),
                })
                .collect();
        }
        DownloadState::Succeeded {
            report,
            started,
            finished,
            attempts,
        } => {
            d.attempts = Some(*attempts);
            d.started_at = started.clone();
            d.finished_at = finished.clone();
            if let Some(r) = report {
                d.bytes = r.bytes;
                d.sha256 = r.sha256.clone();
                d.format = r.format.clone();
                d.files = r.files;
                d.largest_file = r
                    .largest
                    .as_ref()
                    .and_then(|l| l.first())
                    .map(|f| f.path.clone());
            }
        }
        DownloadState::Failed { attempts, .. } => d.attempts = Some(*attempts),
    }
    // The Job of a served revision may be pruned later; keep what was learnt about it.
    if let Some(prev) = previous
        .and_then(|p| p.download.as_ref())
        .filter(|p| p.revision == rev)
    {
        d.bytes = d.bytes.or(prev.bytes);
        d.sha256 = d.sha256.clone().or(prev.sha256.clone());
        d.format = d.format.clone().or(prev.format.clone());
        d.files = d.files.or(prev.files);
        d.largest_file = d.largest_file.clone().or(prev.largest_file.clone());
        d.started_at = d.started_at.clone().or(prev.started_at.clone());
        d.finished_at = d.finished_at.clone().or(prev.finished_at.clone());
    }
    d
}

pub(super) fn progress_status(sample: &progress::Sample) -> DownloadProgress {
    let f = &sample.figures;
    DownloadProgress {
        bytes_done: f.done,
        bytes_total: f.total,
        bytes_per_second: f.rate,
        percent: f.percent().map(|p| p.floor() as u8),
        eta_seconds: f.eta_seconds().filter(|_| sample.stalled_for.is_none()),
        stalled_seconds: sample.stalled_for.map(|d| d.as_secs()),
        summary: sample.summary(),
    }
}
