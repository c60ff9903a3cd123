//! Retries with backoff: the settings of a run, the delay before each retry, and a loop for
//! one-shot requests (listings, lookups); `transfer` has its own loop, which counts progress.
use std::time::Duration;

use tracing::warn;

use crate::error::FetchError;
use crate::remote::AttemptError;

#[derive(Debug, Clone)]
pub struct Settings {
    /// Failed attempts in a row (without progress) before giving up.
    pub retries: u32,
    /// No byte for this long -> the attempt is abandoned and retried.
    pub stall: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

/// Backoff before retry number `failures` (1-based): exponential with equal jitter, or what the
/// server asked for (capped, so a silly Retry-After cannot park the Job for hours).
pub fn backoff(settings: &Settings, failures: u32, retry_after: Option<Duration>) -> Duration {
    const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
    if let Some(after) = retry_after {
        return after.min(MAX_RETRY_AFTER);
    }
    let exp = settings
        .backoff_base
        .saturating_mul(1u32 << failures.saturating_sub(1).min(20));
    let d = exp.min(settings.backoff_max);
    d / 2 + d.mul_f64(random_unit() / 2.0)
}

/// A uniform value in [0, 1) from std's randomly keyed hasher: enough for jitter, no extra crate.
fn random_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let x = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Runs `f` until it succeeds, fails fatally, or `settings.retries` retries have failed.
pub async fn with_retries<T, F, Fut>(
    settings: &Settings,
    what: &str,
    mut f: F,
) -> Result<T, FetchError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AttemptError>>,
{
    let mut failures = 0;
    loop {
        let (error, after) = match f().await {
            Ok(v) => return Ok(v),
            Err(AttemptError::Fatal(e)) => return Err(e),
            Err(AttemptError::Retry { error, after }) => (error, after),
            Err(AttemptError::Restart(why)) => (FetchError::Network(why), None),
        };
        failures += 1;
        if failures > settings.retries {
            return Err(error);
        }
        let delay = backoff(settings, failures, after);
        warn!(what, attempt = failures, retry_in = ?delay, "{error}; retrying");
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            retries: 3,
            stall: Duration::from_secs(1),
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
        }
    }

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let s = settings();
        for failures in 1..10 {
            let d = backoff(&s, failures, None);
            let full = (s.backoff_base * (1 << (failures - 1))).min(s.backoff_max);
            assert!(d >= full / 2 && d <= full, "{failures}: {d:?} vs {full:?}");
        }
        assert_eq!(
            backoff(&s, 1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            backoff(&s, 1, Some(Duration::from_secs(100_000))),
            Duration::from_secs(300)
        );
    }

    #[tokio::test]
    async fn retries_stop_after_the_limit_and_fatal_stops_at_once() {
        let s = settings();
        let mut calls = 0;
        let r: Result<(), _> = with_retries(&s, "t", || {
            calls += 1;
            async { Err(AttemptError::retry(FetchError::Network("down".into()))) }
        })
        .await;
        assert_eq!(r.unwrap_err().reason(), "NetworkError");
        assert_eq!(calls, 4);
        let mut calls = 0;
        let r: Result<(), _> = with_retries(&s, "t", || {
            calls += 1;
            async {
                Err(AttemptError::Fatal(FetchError::NotFound {
                    message: "gone".into(),
                    status: Some(404),
                }))
            }
        })
        .await;
        assert_eq!(r.unwrap_err().reason(), "NotFound");
        assert_eq!(calls, 1);
    }
}
