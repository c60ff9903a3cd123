//! Reads the progress of running downloads from their pods' logs (`pods/log`, the last lines of
//! the `fetch` container) into the [`Tracker`], and asks for a reconcile of a model whose shown
//! progress changed: the reconcile writes it to status like anything else it observes.
//!
//! The API load is fixed, whatever the number of downloads: one [`Pacer`] for the whole process
//! allows at most `reads_per_second` log reads (each a GET through the API server to the
//! kubelet), one at a time; the status writes they cause are at most as many. Every running
//! download gets its turn: the one read longest ago goes next, and none more often than every
//! [`MIN_INTERVAL`] (the downloader logs every 5 s). With N downloads each is at most
//! `max(MIN_INTERVAL, N / reads_per_second)` behind.
use crate::api::{LABEL_REVISION, LABEL_STEP, MLModel};
use crate::apply::ANNOTATION_MODEL_NAME;
use crate::cached::CachedPod;
use crate::plugins::Step;
use crate::progress::{Key, Tracker};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use mlmodel_fetch::Figures;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// No download's log is read more often than this.
pub const MIN_INTERVAL: Duration = Duration::from_secs(5);
/// Log reads per second for the whole operator, by default.
pub const READS_PER_SECOND: f64 = 10.0;
/// How much of the log's end is read: a few progress lines.
const TAIL_BYTES: i64 = 2048;
/// A log read that takes longer is given up (the next turn tries again).
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Spaces calls evenly: at most one per `every`, shared by every caller in the process.
pub struct Pacer {
    every: Duration,
    next: tokio::sync::Mutex<tokio::time::Instant>,
}

impl Pacer {
    pub fn per_second(rate: f64) -> Pacer {
        Pacer {
            every: Duration::from_secs_f64(1.0 / rate.max(0.01)),
            next: tokio::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }

    /// Waits for the next turn.
    pub async fn turn(&self) {
        let mut next = self.next.lock().await;
        let now = tokio::time::Instant::now();
        if *next > now {
            tokio::time::sleep_until(*next).await;
        }
        *next = (*next).max(now) + self.every;
    }
}

/// A download pod that is running: whose log to read, and for which model and revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Running {
    pub pod: String,
    pub key: Key,
}

/// The running download pods in `pods`.
pub fn running_downloads(pods: &[std::sync::Arc<CachedPod>]) -> Vec<Running> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter(|p| p.labels().get(LABEL_STEP).map(String::as_str) == Some(Step::Download.as_str()))
        .filter_map(|p| {
            Some(Running {
                pod: p.name_any(),
                key: Key {
                    namespace: p.namespace()?,
                    model: p.annotations().get(ANNOTATION_MODEL_NAME)?.clone(),
                    revision: p.labels().get(LABEL_REVISION)?.clone(),
                },
            })
        })
        .collect()
}

/// Which download to read next: the one read longest ago, if its last read is at least
/// [`MIN_INTERVAL`] old. A download seen running for the first time counts as read then: the
/// downloader logs its figures every [`MIN_INTERVAL`], so there is nothing to read sooner, and a
/// download over within that time costs no read at all. `read_at` forgets pods that no longer
/// run.
pub fn next_turn<'a>(
    running: &'a [Running],
    read_at: &mut HashMap<(String, String), Instant>,
    now: Instant,
) -> Option<&'a Running> {
    let live: HashSet<(&str, &str)> = running
        .iter()
        .map(|r| (r.key.namespace.as_str(), r.pod.as_str()))
        .collect();
    read_at.retain(|(ns, pod), _| live.contains(&(ns.as_str(), pod.as_str())));
    for r in running {
        read_at
            .entry((r.key.namespace.clone(), r.pod.clone()))
            .or_insert(now);
    }
    running
        .iter()
        .map(|r| (r, read_at[&(r.key.namespace.clone(), r.pod.clone())]))
        .filter(|(_, at)| now.saturating_duration_since(*at) >= MIN_INTERVAL)
        .min_by_key(|(r, at)| (*at, &r.key.namespace, &r.pod))
        .map(|(r, _)| r)
}

/// Reads the logs of the running downloads in `pods` for ever, at the `pacer`'s pace; sends the
/// model of each download whose shown progress changed to `changed`.
pub async fn follow(
    client: Client,
    pods: Store<CachedPod>,
    tracker: Tracker,
    pacer: std::sync::Arc<Pacer>,
    changed: mpsc::Sender<ObjectRef<MLModel>>,
) {
    let mut read_at: HashMap<(String, String), Instant> = HashMap::new();
    loop {
        pacer.turn().await;
        let running = running_downloads(&pods.state());
        let keys: HashSet<&Key> = running.iter().map(|r| &r.key).collect();
        tracker.retain(|k| keys.contains(k));
        let now = Instant::now();
        let Some(turn) = next_turn(&running, &mut read_at, now).cloned() else {
            continue;
        };
        read_at.insert((turn.key.namespace.clone(), turn.pod.clone()), now);
        let api: Api<Pod> = Api::namespaced(client.clone(), &turn.key.namespace);
        let params = LogParams {
            limit_bytes: Some(TAIL_BYTES),
            tail_lines: Some(8),
            ..LogParams::default()
        };
        let log = match tokio::time::timeout(READ_TIMEOUT, api.logs(&turn.pod, &params)).await {
            Ok(Ok(log)) => log,
            Ok(Err(e)) => {
                tracing::debug!(pod = %turn.pod, namespace = %turn.key.namespace, error = %e, "cannot read the download's log");
                continue;
            }
            Err(_) => continue,
        };
        let Some(figures) = Figures::parse_log(&log) else {
            continue;
        };
        let model = ObjectRef::new(&turn.key.model).within(&turn.key.namespace);
        if tracker.record(turn.key, figures, Instant::now()) && changed.send(model).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(ns: &str, pod: &str) -> Running {
        Running {
            pod: pod.into(),
            key: Key {
                namespace: ns.into(),
                model: pod.into(),
                revision: "r".into(),
            },
        }
    }

    /// A download is first read MIN_INTERVAL after it is first seen; then every download gets
    /// its turn in order, none twice within MIN_INTERVAL, and a pod that stopped running is
    /// forgotten.
    #[test]
    fn turns_are_fair_and_spaced() {
        let all: Vec<Running> = (0..4).map(|i| running("ns", &format!("p{i}"))).collect();
        let mut read_at = HashMap::new();
        let t0 = Instant::now();
        assert!(
            next_turn(&all, &mut read_at, t0).is_none(),
            "nothing logged yet"
        );
        let t1 = t0 + MIN_INTERVAL;
        let mut order = Vec::new();
        for i in 0..4 {
            let now = t1 + Duration::from_millis(100 * i);
            let turn = next_turn(&all, &mut read_at, now).unwrap().clone();
            read_at.insert((turn.key.namespace.clone(), turn.pod.clone()), now);
            order.push(turn.pod);
        }
        assert_eq!(order, ["p0", "p1", "p2", "p3"]);
        // All read just now: nobody's turn until MIN_INTERVAL passed.
        assert!(next_turn(&all, &mut read_at, t1 + Duration::from_secs(1)).is_none());
        let later = t1 + MIN_INTERVAL + Duration::from_millis(50);
        assert_eq!(next_turn(&all, &mut read_at, later).unwrap().pod, "p0");
        // p0 ended: forgotten; a new pod waits its first MIN_INTERVAL.
        let now_running = vec![running("ns", "new"), running("ns", "p1")];
        let t2 = t1 + MIN_INTERVAL + Duration::from_millis(200);
        assert_eq!(next_turn(&now_running, &mut read_at, t2).unwrap().pod, "p1");
        assert_eq!(read_at.len(), 2, "{read_at:?}");
        read_at.insert(("ns".into(), "p1".into()), t2);
        let almost = t2 + MIN_INTERVAL - Duration::from_millis(1);
        assert!(next_turn(&now_running, &mut read_at, almost).is_none());
        let t3 = t2 + MIN_INTERVAL;
        assert_eq!(
            next_turn(&now_running, &mut read_at, t3).unwrap().pod,
            "new"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_pacer_holds_a_fixed_rate_for_every_caller() {
        let pacer = std::sync::Arc::new(Pacer::per_second(10.0));
        let start = tokio::time::Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let pacer = pacer.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..10 {
                    pacer.turn().await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // 30 turns at 10 per second: the first at once, the last 2.9 s later.
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(2900) && took < Duration::from_millis(3000),
            "{took:?}"
        );
    }
}
