//! One file's transfer: retries with backoff, Range resume, stall detection, streaming sha256.
//!
//! The body is hashed and written on a blocking thread fed by a bounded channel, so hashing
//! overlaps with receiving; the hasher state carries across attempts, and across process restarts
//! the kept partial prefix is hashed again before resuming.
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::error::{self, FetchError};
use crate::place::{PartMeta, Staging};
use crate::progress::Progress;
use crate::remote::{AttemptError, Remote};
use crate::retry::{Settings, backoff};

/// One file to download into the staging tree.
pub struct FileJob {
    /// Path relative to the result tree (already checked by `place::check_rel`).
    pub rel: String,
    pub remote: Box<dyn Remote>,
    pub size: Option<u64>,
    /// Digest published by the source for this file (e.g. a Hugging Face LFS oid).
    pub expected_sha256: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Done {
    pub rel: String,
    pub bytes: u64,
    pub sha256: String,
}

/// Downloads one file into `staging`, resuming what an earlier attempt or run left there.
pub async fn download(
    job: &FileJob,
    staging: &Staging,
    settings: &Settings,
    progress: &Progress,
) -> Result<Done, FetchError> {
    let path = staging.data_path(&job.rel);
    let mut meta = staging.read_meta(&job.rel).unwrap_or_default();
    let mut offset = existing_len(&path);
    // A partial prefix is only worth keeping when a later request can prove it is still valid.
    let resumable = meta.validator.is_some() && meta.total.is_none_or(|t| offset <= t);
    if offset > 0 && !resumable {
        offset = 0;
        meta = PartMeta::default();
    }
    let hasher = prefix_hash(path.clone(), offset).await?;
    if offset > 0 {
        info!(file = %job.rel, bytes = offset, "resuming from the partial data of an earlier run");
    }
    // A size learnt only from the response is counted when the first response arrives.
    let known = job.size.or(meta.total);
    if known.is_some() {
        progress.add_expected(known);
    }
    let counted = known.is_some();
    progress.kept(offset);
    let mut t = Transfer {
        job,
        path,
        staging,
        settings,
        progress,
        meta,
        offset,
        hasher,
        counted,
    };
    if t.meta.complete && t.meta.total == Some(t.offset) {
        return finish(job, t.offset, t.hasher);
    }
    t.run().await?;
    finish(job, t.offset, t.hasher)
}

struct Transfer<'a> {
    job: &'a FileJob,
    path: PathBuf,
    staging: &'a Staging,
    settings: &'a Settings,
    progress: &'a Progress,
    meta: PartMeta,
    /// Bytes on disk, all hashed into `hasher`.
    offset: u64,
    hasher: Sha256,
    /// Whether this file's size is already in the progress total.
    counted: bool,
}

impl Transfer<'_> {
    async fn run(&mut self) -> Result<(), FetchError> {
        let mut failures = 0u32;
        loop {
            let before = self.offset;
            let (error, after) = match self.attempt().await {
                Ok(()) => break,
                Err(AttemptError::Fatal(e)) => return Err(e),
                Err(AttemptError::Restart(why)) => {
                    warn!(file = %self.job.rel, "{why}; starting this file again from byte 0");
                    self.reset();
                    continue;
                }
                Err(AttemptError::Retry { error, after }) => (error, after),
            };
            // An attempt that moved forward is not a failure in a row: a flaky link that keeps
            // making progress eventually finishes.
            failures = if self.offset > before {
                1
            } else {
                failures + 1
            };
            if failures > self.settings.retries {
                return Err(error);
            }
            let delay = backoff(self.settings, failures, after);
            warn!(file = %self.job.rel, from = %self.job.remote.describe(), at_byte = self.offset,
                retry_in = ?delay, "{error}; retrying");
            tokio::time::sleep(delay).await;
        }
        self.meta.complete = true;
        self.staging.write_meta(&self.job.rel, &self.meta)
    }

    fn reset(&mut self) {
        self.progress.sub_done(self.offset);
        self.offset = 0;
        self.hasher = Sha256::new();
        self.meta.validator = None;
    }

    async fn attempt(&mut self) -> Result<(), AttemptError> {
        let validator = if self.offset > 0 {
            self.meta.validator.clone()
        } else {
            None
        };
        let opened = self
            .job
            .remote
            .open(self.offset, validator.as_deref(), self.settings.stall)
            .await?;
        if opened.start != self.offset {
            if opened.start != 0 {
                return Err(AttemptError::Restart(format!(
                    "server sent bytes from {} when asked for {}",
                    opened.start, self.offset
                )));
            }
            info!(file = %self.job.rel, kept = self.offset,
                "server sent the whole file instead of the rest; discarding the kept bytes");
            self.reset();
        }
        if let Some(total) = opened.total
            && self.offset > total
        {
            return Err(AttemptError::Restart(format!(
                "kept {} bytes but the object now has {total}",
                self.offset
            )));
        }
        // A size the server states is checked against the volume before a byte is written:
        // a download that cannot fit fails at once, and leaves no partial file filling the
        // volume for the next attempt (seen on a real node: hack/chaos.py, `real-node`).
        if let Some(total) = opened.total
            && let Some((free, _)) = error::fs_space(&self.path)
            && total - self.offset > free
        {
            let needed = total - self.offset;
            return Err(AttemptError::Fatal(FetchError::DiskFull(format!(
                "{} needs {} ({needed} bytes) more; {}",
                self.job.rel,
                error::human_bytes(needed),
                error::describe_space(&self.path)
            ))));
        }
        if !self.counted {
            self.progress.add_expected(opened.total);
            self.counted = true;
        }
        self.meta.validator = opened.validator.clone();
        self.meta.total = opened.total;
        self.meta.complete = false;
        self.staging
            .write_meta(&self.job.rel, &self.meta)
            .map_err(AttemptError::Fatal)?;

        let hasher = std::mem::take(&mut self.hasher);
        let writer = Writer::start(self.path.clone(), hasher, self.offset)
            .await
            .map_err(AttemptError::Fatal)?;
        let received = pump(opened.body, &writer, self.settings.stall, self.progress).await;
        let total = opened
            .total
            .map_or("unknown".to_string(), |t| t.to_string());
        let (hasher, written) = writer.finish().await.map_err(|(e, written)| {
            AttemptError::Fatal(FetchError::io(
                format!("writing {} after {written} of {total} bytes", self.job.rel),
                &self.path,
                e,
            ))
        })?;
        self.hasher = hasher;
        self.offset = written;
        received?;
        match opened.total {
            Some(total) if written < total => Err(AttemptError::retry(FetchError::Network(
                format!("connection closed after {written} of {total} bytes"),
            ))),
            Some(total) if written > total => Err(AttemptError::Restart(format!(
                "received {written} bytes of an object of {total}"
            ))),
            _ => Ok(()),
        }
    }
}

fn finish(job: &FileJob, bytes: u64, hasher: Sha256) -> Result<Done, FetchError> {
    let sha256 = hex::encode(hasher.finalize());
    if let Some(expected) = &job.expected_sha256
        && !expected.eq_ignore_ascii_case(&sha256)
    {
        return Err(FetchError::ChecksumMismatch {
            what: job.rel.clone(),
            expected: expected.to_ascii_lowercase(),
            actual: sha256,
        });
    }
    Ok(Done {
        rel: job.rel.clone(),
        bytes,
        sha256,
    })
}

/// Moves the body into the writer until it ends, stalls or fails.
async fn pump(
    mut body: BoxStream<'static, Result<Bytes, FetchError>>,
    writer: &Writer,
    stall: Duration,
    progress: &Progress,
) -> Result<(), AttemptError> {
    // One timer re-armed only when it fires: resetting a timer per chunk costs throughput.
    let mut last = Instant::now();
    let sleep = tokio::time::sleep(stall);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            biased;
            chunk = body.next() => match chunk {
                None => return Ok(()),
                Some(Err(e)) => return Err(AttemptError::retry(e)),
                Some(Ok(bytes)) => {
                    last = Instant::now();
                    let n = bytes.len() as u64;
                    if writer.tx.send(bytes).await.is_err() {
                        // The writer stopped on an error; `finish` reports it.
                        return Ok(());
                    }
                    progress.add_done(n);
                }
            },
            () = &mut sleep => {
                if last.elapsed() >= stall {
                    return Err(AttemptError::retry(FetchError::Timeout(format!(
                        "no data received for {}s",
                        stall.as_secs_f64()
                    ))));
                }
                sleep.as_mut().reset(last + stall);
            }
        }
    }
}

fn existing_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Hashes the first `len` bytes of `path` (the kept prefix) and truncates the rest.
async fn prefix_hash(path: PathBuf, len: u64) -> Result<Sha256, FetchError> {
    tokio::task::spawn_blocking(move || {
        let mut hasher = Sha256::new();
        if len == 0 {
            return Ok(hasher);
        }
        let ctx = |e| FetchError::io(format!("re-reading {}", path.display()), &path, e);
        let mut f = File::open(&path).map_err(ctx)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut left = len;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = f.read(&mut buf[..want]).map_err(ctx)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            left -= n as u64;
        }
        Ok(hasher)
    })
    .await
    .expect("hashing task panicked")
}

/// Bytes between two writeback kicks.
const WRITEBACK_STEP: u64 = 32 << 20;

/// Starts (without waiting) writeback of a range just written, so the fsync that makes the file
/// durable before the completion marker finds little left to do instead of the whole file.
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid open descriptor; the call only schedules I/O and has no memory effects.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// Hashes and writes chunks on a blocking thread.
struct Writer {
    tx: tokio::sync::mpsc::Sender<Bytes>,
    handle: tokio::task::JoinHandle<Result<(Sha256, u64), (std::io::Error, u64)>>,
}

impl Writer {
    async fn start(path: PathBuf, mut hasher: Sha256, offset: u64) -> Result<Self, FetchError> {
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| FetchError::io(format!("creating {}", dir.display()), dir, e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| FetchError::io(format!("opening {}", path.display()), &path, e))?;
        // Drop whatever lies past the validated prefix (a torn write from a crash).
        file.set_len(offset)
            .map_err(|e| FetchError::io(format!("truncating {}", path.display()), &path, e))?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(64);
        let handle = tokio::task::spawn_blocking(move || {
            let mut file = file;
            let fail = |e, n| Err((e, n));
            if let Err(e) = std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(offset)) {
                return fail(e, offset);
            }
            let mut out = BufWriter::with_capacity(1 << 20, file);
            let mut written = offset;
            let mut kicked = offset;
            while let Some(chunk) = rx.blocking_recv() {
                hasher.update(&chunk);
                if let Err(e) = out.write_all(&chunk) {
                    // The hasher no longer matches the disk: this attempt's error is final.
                    return fail(e, written);
                }
                written += chunk.len() as u64;
                if written - kicked >= WRITEBACK_STEP {
                    start_writeback(out.get_ref(), kicked, written - kicked);
                    kicked = written;
                }
            }
            if let Err(e) = out.flush().and_then(|()| out.get_ref().sync_data()) {
                return fail(e, written);
            }
            Ok((hasher, written))
        });
        Ok(Self { tx, handle })
    }

    async fn finish(self) -> Result<(Sha256, u64), (std::io::Error, u64)> {
        drop(self.tx);
        self.handle.await.expect("writer thread panicked")
    }
}
