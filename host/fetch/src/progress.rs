//! Progress as plain log lines (bytes, total, rate, ETA), readable in `kubectl logs`.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing::info;

use crate::error::human_bytes;

#[derive(Debug)]
pub struct Progress {
    started: Instant,
    /// Bytes found on disk from an earlier run (not counted in the rate).
    kept: AtomicU64,
    received: AtomicU64,
    discarded: AtomicU64,
    expected: AtomicU64,
    /// Some file's size is unknown, so `expected` is a lower bound.
    unknown: AtomicBool,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            kept: AtomicU64::new(0),
            received: AtomicU64::new(0),
            discarded: AtomicU64::new(0),
            expected: AtomicU64::new(0),
            unknown: AtomicBool::new(false),
        }
    }
}

impl Progress {
    pub fn add_expected(&self, size: Option<u64>) {
        match size {
            Some(n) => {
                self.expected.fetch_add(n, Ordering::Relaxed);
            }
            None => self.unknown.store(true, Ordering::Relaxed),
        }
    }

    pub fn kept(&self, n: u64) {
        self.kept.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_done(&self, n: u64) {
        self.received.fetch_add(n, Ordering::Relaxed);
    }

    pub fn sub_done(&self, n: u64) {
        self.discarded.fetch_add(n, Ordering::Relaxed);
    }

    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// One human line: "1.2 GiB of 2.0 GiB (60%), 250.0 MiB/s, ETA 3s".
    pub fn line(&self) -> String {
        let received = self.received();
        let done = (self.kept.load(Ordering::Relaxed) + received)
            .saturating_sub(self.discarded.load(Ordering::Relaxed));
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = received as f64 / secs;
        let expected = self.expected.load(Ordering::Relaxed);
        let known = !self.unknown.load(Ordering::Relaxed) && expected > 0;
        let mut line = format!("{} of ", human_bytes(done));
        if known {
            let pct = done as f64 * 100.0 / expected as f64;
            line += &format!("{} ({pct:.0}%)", human_bytes(expected));
        } else {
            line += "unknown size";
        }
        line += &format!(", {}/s", human_bytes(rate as u64));
        if known && rate > 0.0 {
            let eta = expected.saturating_sub(done) as f64 / rate;
            line += &format!(", ETA {}", eta_text(eta));
        }
        line
    }
}

fn eta_text(secs: f64) -> String {
    let s = secs.ceil() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// Logs a progress line every `every` until the returned handle is aborted.
pub fn spawn_logger(progress: Arc<Progress>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            info!("progress: {}", progress.line());
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_has_bytes_total_rate_eta() {
        let p = Progress::default();
        p.add_expected(Some(4 << 20));
        p.kept(1 << 20);
        p.add_done(1 << 20);
        let line = p.line();
        assert!(line.starts_with("2.0 MiB of 4.0 MiB (50%), "), "{line}");
        assert!(line.contains("/s, ETA "), "{line}");
        p.add_expected(None);
        assert!(p.line().contains("of unknown size"));
    }

    #[test]
    fn eta_formats() {
        assert_eq!(eta_text(4.2), "5s");
        assert_eq!(eta_text(125.0), "2m05s");
        assert_eq!(eta_text(7300.0), "2h01m");
    }
}
