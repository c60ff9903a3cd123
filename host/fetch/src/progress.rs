//! Progress as plain log lines (bytes, total, rate, ETA), readable in `kubectl logs`, each
//! ending in the exact figures (`[done=… total=… rate=…]`) that the operator reads back from the
//! pod's log to show the progress in the model's status ([`Figures::parse_log`]).
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

    /// The figures now.
    pub fn figures(&self) -> Figures {
        let received = self.received();
        let done = (self.kept.load(Ordering::Relaxed) + received)
            .saturating_sub(self.discarded.load(Ordering::Relaxed));
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let expected = self.expected.load(Ordering::Relaxed);
        let known = !self.unknown.load(Ordering::Relaxed) && expected > 0;
        Figures {
            done,
            total: known.then_some(expected),
            rate: (received as f64 / secs) as u64,
        }
    }

    /// One human line: "1.2 GiB of 2.0 GiB (60%), 250.0 MiB/s, ETA 3s".
    pub fn line(&self) -> String {
        self.figures().human()
    }
}

/// Where a download stands: bytes placed so far, bytes in all (when every size is known), and
/// the average rate of this run in bytes per second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Figures {
    pub done: u64,
    pub total: Option<u64>,
    pub rate: u64,
}

impl Figures {
    const MARK: &'static str = "progress: ";

    /// "1.2 GiB of 2.0 GiB (60%), 250.0 MiB/s, ETA 3s".
    pub fn human(&self) -> String {
        let mut line = format!("{} of ", human_bytes(self.done));
        match self.total {
            Some(total) => {
                let percent = self.percent().unwrap_or(0.0).floor() as u64;
                line += &format!("{} ({percent}%)", human_bytes(total));
            }
            None => line += "unknown size",
        }
        line += &format!(", {}/s", human_bytes(self.rate));
        if let Some(eta) = self.eta_seconds() {
            line += &format!(", ETA {}", eta_text(eta as f64));
        }
        line
    }

    /// Done in percent of the total, when known (shown rounded down: 100% only when done).
    pub fn percent(&self) -> Option<f64> {
        self.total
            .filter(|t| *t > 0)
            .map(|t| (self.done as f64 * 100.0 / t as f64).min(100.0))
    }

    /// Seconds left at the average rate, when the total is known and the rate is not zero.
    pub fn eta_seconds(&self) -> Option<u64> {
        let total = self.total?;
        (self.rate > 0).then(|| total.saturating_sub(self.done).div_ceil(self.rate))
    }

    /// The log line's message: the human text, then the exact figures.
    pub fn log_message(&self) -> String {
        let total = self.total.map_or("-".to_string(), |t| t.to_string());
        format!(
            "{}{} [done={} total={total} rate={}]",
            Self::MARK,
            self.human(),
            self.done,
            self.rate
        )
    }

    /// The figures of the last progress line in `log` (text or JSON log format alike), if any.
    pub fn parse_log(log: &str) -> Option<Figures> {
        log.lines().rev().find_map(Self::parse_line)
    }

    fn parse_line(line: &str) -> Option<Figures> {
        let at = line.find(Self::MARK)?;
        let rest = &line[at..];
        let open = rest.rfind("[done=")?;
        let inner = &rest[open + 1..];
        let inner = &inner[..inner.find(']')?];
        let mut figures = Figures {
            done: 0,
            total: None,
            rate: 0,
        };
        let (mut done, mut total, mut rate) = (false, false, false);
        for field in inner.split_whitespace() {
            let (key, value) = field.split_once('=')?;
            match key {
                "done" => (figures.done, done) = (value.parse().ok()?, true),
                "total" => {
                    figures.total = if value == "-" {
                        None
                    } else {
                        Some(value.parse().ok()?)
                    };
                    total = true;
                }
                "rate" => (figures.rate, rate) = (value.parse().ok()?, true),
                _ => {}
            }
        }
        (done && total && rate).then_some(figures)
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
            info!("{}", progress.figures().log_message());
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
    fn the_figures_survive_the_log_in_either_format() {
        let figures = Figures {
            done: 1 << 30,
            total: Some(3 << 30),
            rate: 35 << 20,
        };
        let message = figures.log_message();
        assert!(
            message.starts_with("progress: 1.0 GiB of 3.0 GiB (33%), 35.0 MiB/s, ETA 59s [done="),
            "{message}"
        );
        let text = format!("2026-12-02T10:00:00Z  INFO mlmodel_fetch::progress: {message}\n");
        let json = format!("{{\"level\":\"INFO\",\"fields\":{{\"message\":\"{message}\"}}}}\n");
        let older = Figures {
            done: 1,
            total: None,
            rate: 1,
        };
        for log in [text, json] {
            let log = format!("{}\n{log}", older.log_message());
            assert_eq!(Figures::parse_log(&log), Some(figures), "{log}");
        }
        let unknown = Figures {
            done: 5,
            total: None,
            rate: 0,
        };
        assert_eq!(Figures::parse_log(&unknown.log_message()), Some(unknown));
        assert_eq!(unknown.eta_seconds(), None);
        assert_eq!(unknown.percent(), None);
        // Anything else is no progress: never a wrong figure.
        for log in [
            "",
            "fetching url=https://x",
            "progress: 1 GiB [done=x total=1 rate=1]",
            "progress: [done=1 rate=1]",
            "progress: 1 GiB [done=1 total=2 rate=3",
        ] {
            assert_eq!(Figures::parse_log(log), None, "{log}");
        }
    }

    #[test]
    fn eta_formats() {
        assert_eq!(eta_text(4.2), "5s");
        assert_eq!(eta_text(125.0), "2m05s");
        assert_eq!(eta_text(7300.0), "2h01m");
    }
}
