//! The plugins the configuration names in registries, as the runtime sees them at each reload.
//!
//! The list (the `--plugin-ref` flags, then the refs file, read again at each reload) is kept
//! by reference: a new one is fetched, an unchanged one kept as it is (nothing is downloaded
//! again), a removed one dropped. Fetches run on a thread of their own (`oci-fetch`, its own
//! small Tokio runtime), each bounded by the registry timeout: a reload never waits for a
//! registry, it takes what has arrived; only the first load waits, at most that bound. A
//! reference by tag is resolved again every `tag_interval` (a HEAD request; the new digest is
//! fetched only when it changed); one that failed is tried again every minute.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::blobs::BlobCache;
use super::reference::parse_refs_file;
use super::transfer::{self, Fetched};
use super::{OciError, OciOptions, OciRef, RegistryOptions};

/// A reference that failed is tried again after this long.
const RETRY_FAILED: Duration = Duration::from_secs(60);
/// Largest refs file read.
const MAX_REFS_FILE_BYTES: u64 = 1 << 20;

/// One configured reference as the registry loads it.
pub(crate) enum Item {
    Ready {
        reference: OciRef,
        fetched: Arc<Fetched>,
    },
    Failed {
        reference: OciRef,
        error: OciError,
    },
}

/// What the runtime loads from registries now: the references in order (those still being
/// fetched for the first time left out) and the lines of the refs file that are not references.
#[derive(Default)]
pub(crate) struct View {
    pub(crate) items: Vec<Item>,
    pub(crate) errors: Vec<(PathBuf, String)>,
}

pub(crate) struct OciSources {
    opts: OciOptions,
    cache: Option<Arc<BlobCache>>,
    fetcher: Fetcher,
    done_tx: mpsc::Sender<Done>,
    state: Mutex<State>,
}

struct State {
    done_rx: mpsc::Receiver<Done>,
    /// Keys (the reference as written) in configured order, each once.
    order: Vec<String>,
    entries: HashMap<String, Entry>,
    list_errors: Vec<(PathBuf, String)>,
    /// Numbers the fetches, so that one started for a reference since removed is ignored.
    serial: u64,
}

struct Entry {
    reference: OciRef,
    serial: u64,
    busy: bool,
    /// `None` until the first fetch ends.
    outcome: Option<Result<Arc<Fetched>, OciError>>,
    /// When to resolve the tag again, or retry a failure.
    next_check: Option<Instant>,
}

struct Done {
    key: String,
    serial: u64,
    outcome: Outcome,
}

enum Outcome {
    Fetched(Result<Fetched, OciError>),
    /// The tag still names the digest loaded.
    Unchanged,
    /// The tag could not be resolved again: the digest loaded stays.
    ResolveFailed(OciError),
}

impl OciSources {
    /// Sources for `opts`, blobs cached under `cache_dir` (none: in memory only). Nothing is
    /// fetched before the first [`OciSources::refresh`].
    pub(crate) fn new(opts: OciOptions, cache_dir: Option<&Path>) -> anyhow::Result<OciSources> {
        let (done_tx, done_rx) = mpsc::channel();
        Ok(OciSources {
            cache: cache_dir.map(|d| Arc::new(BlobCache::new(d))),
            fetcher: Fetcher::start()?,
            opts,
            done_tx,
            state: Mutex::new(State {
                done_rx,
                order: Vec::new(),
                entries: HashMap::new(),
                list_errors: Vec::new(),
                serial: 0,
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the list again, starts what is new or due, takes in what has arrived; never waits
    /// for a registry. Whether what [`OciSources::view`] shows changed.
    pub(crate) fn refresh(&self) -> bool {
        let (refs, list_errors) = self.wanted();
        let mut state = self.state();
        let mut keys: Vec<String> = Vec::new();
        let mut changed = list_errors != state.list_errors;
        for reference in refs {
            let key = reference.to_string();
            if keys.contains(&key) {
                continue;
            }
            if !state.entries.contains_key(&key) {
                state.serial += 1;
                let serial = state.serial;
                self.spawn(&key, &reference, serial, None);
                let entry = Entry {
                    reference,
                    serial,
                    busy: true,
                    outcome: None,
                    next_check: None,
                };
                state.entries.insert(key.clone(), entry);
            }
            keys.push(key);
        }
        state.entries.retain(|key, _| keys.contains(key));
        changed |= keys != state.order;
        state.order = keys;
        state.list_errors = list_errors;
        while let Ok(done) = state.done_rx.try_recv() {
            changed |= state.take(done, self.opts.tag_interval);
        }
        self.start_due(&mut state);
        changed
    }

    /// Waits (at most `limit`) until every reference has been fetched once; whether anything
    /// arrived.
    pub(crate) fn wait_first(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut state = self.state();
        let mut changed = false;
        while state.entries.values().any(|e| e.outcome.is_none()) {
            let left = deadline.saturating_duration_since(Instant::now());
            match state.done_rx.recv_timeout(left) {
                Ok(done) => changed |= state.take(done, self.opts.tag_interval),
                Err(_) => break,
            }
        }
        changed
    }

    pub(crate) fn view(&self) -> View {
        let state = self.state();
        let items = state
            .order
            .iter()
            .filter_map(|key| {
                let entry = state.entries.get(key)?;
                let reference = entry.reference.clone();
                Some(match entry.outcome.as_ref()? {
                    Ok(fetched) => Item::Ready {
                        reference,
                        fetched: fetched.clone(),
                    },
                    Err(error) => Item::Failed {
                        reference,
                        error: error.clone(),
                    },
                })
            })
            .collect();
        View {
            items,
            errors: state.list_errors.clone(),
        }
    }

    /// The flags' references, then the refs file's; what cannot be read, by file.
    fn wanted(&self) -> (Vec<OciRef>, Vec<(PathBuf, String)>) {
        let mut refs = self.opts.refs.clone();
        let mut errors = Vec::new();
        let Some(file) = &self.opts.refs_file else {
            return (refs, errors);
        };
        match read_bounded(file) {
            Ok(text) => {
                let (more, bad) = parse_refs_file(&text);
                refs.extend(more);
                errors.extend(bad.into_iter().map(|e| (file.clone(), e)));
            }
            // An optional ConfigMap that is not there: no references.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errors.push((
                file.clone(),
                format!("cannot read the plugin refs file: {e}"),
            )),
        }
        (refs, errors)
    }

    /// Resolves the tags whose time has come, and retries what failed.
    fn start_due(&self, state: &mut State) {
        let now = Instant::now();
        let State {
            entries, serial, ..
        } = state;
        for (key, entry) in entries.iter_mut() {
            if entry.busy || entry.next_check.is_none_or(|t| t > now) {
                continue;
            }
            *serial += 1;
            entry.serial = *serial;
            entry.busy = true;
            let loaded = match &entry.outcome {
                Some(Ok(f)) => Some(f.manifest_digest.clone()),
                _ => None,
            };
            self.spawn(key, &entry.reference, entry.serial, loaded);
        }
    }

    /// Fetches `reference` on the fetcher's thread; with `loaded`, resolves its tag first and
    /// fetches only a digest other than that one.
    fn spawn(&self, key: &str, reference: &OciRef, serial: u64, loaded: Option<String>) {
        let (key, reference) = (key.to_string(), reference.clone());
        let (opts, cache, done) = (
            self.opts.registry.clone(),
            self.cache.clone(),
            self.done_tx.clone(),
        );
        self.fetcher.handle.spawn(async move {
            let pull = |r: OciRef| {
                let (opts, cache) = (opts.clone(), cache.clone());
                async move { bounded(&opts, &r, transfer::pull(&r, &opts, cache.as_deref())).await }
            };
            let outcome = match loaded {
                None => Outcome::Fetched(pull(reference).await),
                Some(loaded) => {
                    match bounded(&opts, &reference, transfer::resolve(&reference, &opts)).await {
                        Ok(digest) if digest == loaded => Outcome::Unchanged,
                        Ok(digest) => Outcome::Fetched(pull(reference.at_digest(&digest)).await),
                        Err(e) => Outcome::ResolveFailed(e),
                    }
                }
            };
            // The sources are gone when the runtime is: nothing to tell.
            let _ = done.send(Done {
                key,
                serial,
                outcome,
            });
        });
    }
}

impl State {
    /// Takes in a finished fetch; whether the view changed.
    fn take(&mut self, done: Done, tag_interval: Duration) -> bool {
        let Some(entry) = self.entries.get_mut(&done.key) else {
            return false;
        };
        if entry.serial != done.serial {
            return false;
        }
        entry.busy = false;
        let now = Instant::now();
        let by_tag = entry.reference.digest.is_none();
        let key = &done.key;
        match done.outcome {
            Outcome::Fetched(Ok(fetched)) => {
                entry.next_check = by_tag.then(|| now + tag_interval);
                let same = matches!(&entry.outcome, Some(Ok(old)) if old.manifest_digest == fetched.manifest_digest);
                if let Some(Ok(old)) = &entry.outcome
                    && !same
                {
                    tracing::info!(reference = %key, from = %old.manifest_digest, to = %fetched.manifest_digest, "plugin tag moved; fetched the new digest");
                }
                entry.outcome = Some(Ok(Arc::new(fetched)));
                !same
            }
            Outcome::Fetched(Err(error)) => {
                if matches!(entry.outcome, Some(Ok(_))) {
                    // The tag moved but its new digest cannot be fetched: keep what works.
                    tracing::warn!(reference = %key, %error, "plugin tag moved, but fetching its new digest failed; the digest loaded stays");
                    entry.next_check = Some(now + tag_interval);
                    return false;
                }
                entry.next_check = Some(now + RETRY_FAILED);
                let same = matches!(&entry.outcome, Some(Err(old)) if *old == error);
                entry.outcome = Some(Err(error));
                !same
            }
            Outcome::Unchanged => {
                entry.next_check = Some(now + tag_interval);
                false
            }
            Outcome::ResolveFailed(error) => {
                tracing::warn!(reference = %key, %error, "cannot resolve the plugin tag again; the digest loaded stays");
                entry.next_check = Some(now + tag_interval);
                false
            }
        }
    }
}

async fn bounded<T>(
    opts: &RegistryOptions,
    reference: &OciRef,
    f: impl Future<Output = Result<T, OciError>>,
) -> Result<T, OciError> {
    tokio::time::timeout(opts.timeout, f)
        .await
        .unwrap_or_else(|_| {
            Err(OciError::Timeout {
                registry: reference.registry.clone(),
                limit: opts.timeout,
            })
        })
}

fn read_bounded(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_REFS_FILE_BYTES)
        .read_to_string(&mut text)?;
    Ok(text)
}

/// A thread running a small Tokio runtime for the fetches, stopped when dropped.
struct Fetcher {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Fetcher {
    fn start() -> anyhow::Result<Fetcher> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("oci-fetch".into())
            .spawn(move || {
                rt.block_on(async {
                    let _ = stopped.await;
                });
                // A fetch still waiting on a registry is dropped, not waited for.
                rt.shutdown_background();
            })?;
        Ok(Fetcher {
            handle,
            stop: Some(stop),
        })
    }
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
