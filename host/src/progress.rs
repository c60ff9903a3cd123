//! Download progress as the operator learns it from the download pods' logs (see
//! `controller::progress` for the reading): the last figures of each running download, and how
//! long they have not moved. Pure apart from the shared map: the caller gives the time.
use mlmodel_fetch::Figures;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A download whose bytes have not moved for this long is reported as stalled.
pub const STALL_AFTER: Duration = Duration::from_secs(60);
/// How finely a stall's duration is shown: each change of what status shows is a write.
const STALL_STEP: Duration = Duration::from_secs(30);

/// One running download: the model and the revision being downloaded.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct Key {
    pub namespace: String,
    pub model: String,
    pub revision: String,
}

/// What status shows of a running download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub figures: Figures,
    /// How long the bytes have not moved, once that is [`STALL_AFTER`] or more (in steps of
    /// 30 s).
    pub stalled_for: Option<Duration>,
}

impl Sample {
    /// For a printer column: `42% 1.2Gi/2.8Gi 35Mi/s`, `1.2Gi 35Mi/s` without a total,
    /// `stalled 1.2Gi/2.8Gi` when stalled.
    pub fn summary(&self) -> String {
        let f = &self.figures;
        let bytes = match f.total {
            Some(total) => format!("{}/{}", short_bytes(f.done), short_bytes(total)),
            None => short_bytes(f.done),
        };
        if self.stalled_for.is_some() {
            return format!("stalled {bytes}");
        }
        let percent = f
            .percent()
            .map(|p| format!("{}% ", p.floor() as u64))
            .unwrap_or_default();
        format!("{percent}{bytes} {}/s", short_bytes(f.rate))
    }
}

/// Bytes in the units of Kubernetes quantities: `512`, `3.5Ki`, `1.2Gi`.
fn short_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["", "Ki", "Mi", "Gi", "Ti", "Pi"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        n.to_string()
    } else if v >= 100.0 {
        format!("{v:.0}{}", UNITS[unit])
    } else {
        format!("{v:.1}{}", UNITS[unit])
    }
}

struct Entry {
    figures: Figures,
    /// When `figures.done` last changed (or was first seen).
    moved_at: Instant,
    shown: Sample,
}

/// The figures of every running download, shared by the log reader and the reconciles.
#[derive(Clone, Default)]
pub struct Tracker {
    entries: Arc<Mutex<HashMap<Key, Entry>>>,
}

impl Tracker {
    /// Records figures read at `now`; true when what status shows of `key` changed.
    pub fn record(&self, key: Key, figures: Figures, now: Instant) -> bool {
        let mut entries = self.entries.lock().expect("progress map lock");
        let moved_at = match entries.get(&key) {
            Some(e) if e.figures.done == figures.done => e.moved_at,
            _ => now,
        };
        let shown = sample(figures, moved_at, now);
        let changed = entries.get(&key).is_none_or(|e| e.shown != shown);
        entries.insert(
            key,
            Entry {
                figures,
                moved_at,
                shown,
            },
        );
        changed
    }

    /// What status shows of `key` (as last recorded).
    pub fn sample(&self, key: &Key) -> Option<Sample> {
        let entries = self.entries.lock().expect("progress map lock");
        entries.get(key).map(|e| e.shown.clone())
    }

    /// Forgets the downloads `keep` says no longer run.
    pub fn retain(&self, mut keep: impl FnMut(&Key) -> bool) {
        let mut entries = self.entries.lock().expect("progress map lock");
        entries.retain(|k, _| keep(k));
    }

    /// Downloads tracked.
    pub fn len(&self) -> usize {
        self.entries.lock().expect("progress map lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn sample(figures: Figures, moved_at: Instant, now: Instant) -> Sample {
    let still = now.saturating_duration_since(moved_at);
    let stalled_for = (still >= STALL_AFTER).then(|| {
        let steps = still.as_secs() / STALL_STEP.as_secs();
        Duration::from_secs(steps * STALL_STEP.as_secs())
    });
    Sample {
        figures,
        stalled_for,
    }
}

/// A duration as `5m0s`, `1h2m0s`, `45s`.
pub fn duration_text(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m{}s", s / 3600, (s % 3600) / 60, s % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key {
            namespace: "ns".into(),
            model: "m".into(),
            revision: "r1".into(),
        }
    }

    fn figures(done: u64) -> Figures {
        Figures {
            done,
            total: Some(3 << 30),
            rate: 35 << 20,
        }
    }

    #[test]
    fn moving_figures_change_what_status_shows() {
        let t = Tracker::default();
        let t0 = Instant::now();
        assert!(t.record(key(), figures(1 << 30), t0));
        assert!(!t.record(key(), figures(1 << 30), t0 + Duration::from_secs(5)));
        assert!(t.record(key(), figures(2 << 30), t0 + Duration::from_secs(10)));
        let s = t.sample(&key()).unwrap();
        assert_eq!(s.stalled_for, None);
        assert_eq!(s.summary(), "66% 2.0Gi/3.0Gi 35.0Mi/s");
    }

    #[test]
    fn bytes_that_do_not_move_for_a_minute_are_a_stall() {
        let t = Tracker::default();
        let t0 = Instant::now();
        t.record(key(), figures(1 << 30), t0);
        // Still within the limit: nothing new to show.
        assert!(!t.record(key(), figures(1 << 30), t0 + Duration::from_secs(59)));
        assert!(t.record(key(), figures(1 << 30), t0 + Duration::from_secs(61)));
        let s = t.sample(&key()).unwrap();
        assert_eq!(s.stalled_for, Some(Duration::from_secs(60)));
        assert_eq!(s.summary(), "stalled 1.0Gi/3.0Gi");
        // The shown duration moves in steps of 30 s, so a stall costs few writes.
        assert!(!t.record(key(), figures(1 << 30), t0 + Duration::from_secs(80)));
        assert!(t.record(key(), figures(1 << 30), t0 + Duration::from_secs(300)));
        assert_eq!(
            t.sample(&key()).unwrap().stalled_for,
            Some(Duration::from_secs(300))
        );
        // Moving again ends the stall.
        assert!(t.record(key(), figures(2 << 30), t0 + Duration::from_secs(301)));
        assert_eq!(t.sample(&key()).unwrap().stalled_for, None);
    }

    #[test]
    fn retain_forgets_finished_downloads() {
        let t = Tracker::default();
        t.record(key(), figures(1), Instant::now());
        assert_eq!(t.len(), 1);
        t.retain(|k| k.revision != "r1");
        assert!(t.is_empty() && t.sample(&key()).is_none());
    }

    #[test]
    fn summaries_and_durations_read_well() {
        let unknown = Sample {
            figures: Figures {
                done: 1536,
                total: None,
                rate: 512,
            },
            stalled_for: None,
        };
        assert_eq!(unknown.summary(), "1.5Ki 512/s");
        assert_eq!(short_bytes(150 << 20), "150Mi");
        assert_eq!(duration_text(Duration::from_secs(45)), "45s");
        assert_eq!(duration_text(Duration::from_secs(300)), "5m0s");
        assert_eq!(duration_text(Duration::from_secs(3720)), "1h2m0s");
    }
}
