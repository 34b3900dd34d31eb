//! The one retry layer: every connector's transient failures are retried here and nowhere
//! else, so a failure costs at most `attempts` requests (no layer multiplies another).
//!
//! - Only [`ErrorClass::Transient`] is retried; permanent and config errors (a 4xx, a 501)
//!   fail on their first answer.
//! - Waits grow exponentially from `first_backoff` with jitter (so many changes that failed
//!   together do not come back together), up to `max_backoff`.
//! - A server's `Retry-After` (seconds or an HTTP date, see [`retry_after`]) is honoured:
//!   the wait is at least what it asked. One asking for longer than `max_retry_after` is not
//!   waited for in this run: the change fails as transient and the next apply retries it.

use std::future::Future;
use std::time::{Duration, SystemTime};

use backon::{ExponentialBuilder, Retryable};

use super::{ConnectorError, ErrorClass};

/// Retry policy for transient errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all, the first included (1: never retried).
    pub attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// The longest `Retry-After` waited for within one run.
    pub max_retry_after: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 4,
            first_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl Retry {
    /// Runs `attempt` until it succeeds, fails other than transiently, or the budget is
    /// spent; returns its last result and how many attempts were made.
    pub async fn run<T, F, Fut>(
        &self,
        what: &str,
        mut attempt: F,
    ) -> (Result<T, ConnectorError>, u32)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ConnectorError>>,
    {
        let mut made = 0u32;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.first_backoff)
            .with_max_delay(self.max_backoff.max(self.first_backoff))
            .with_max_times(self.attempts.saturating_sub(1) as usize)
            .with_jitter();
        let max_retry_after = self.max_retry_after;
        let result = (|| {
            made += 1;
            attempt()
        })
        .retry(backoff)
        .when(|e: &ConnectorError| e.class == ErrorClass::Transient)
        .adjust(move |e: &ConnectorError, next: Option<Duration>| {
            let next = next?;
            match e.retry_after {
                // Longer than a run should wait: the next apply's job.
                Some(asked) if asked > max_retry_after => None,
                Some(asked) => Some(next.max(asked)),
                None => Some(next),
            }
        })
        .notify(|e: &ConnectorError, wait: Duration| {
            tracing::warn!(what, error = %e, ?wait, "transient failure; retrying");
        })
        .await;
        let result = result.map_err(|e| {
            if made > 1 {
                e.note(format!("after {made} attempts"))
            } else {
                e
            }
        });
        (result, made)
    }
}

/// The wait a `Retry-After` header asks for: delay-seconds, or an HTTP date (RFC 9110
/// §10.2.3) taken relative to `now`. A date in the past asks for no wait; a value that is
/// neither is ignored (None).
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn quick(attempts: u32) -> Retry {
        Retry {
            attempts,
            first_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            max_retry_after: Duration::from_millis(50),
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Tue, 01 Dec 2026 10:00:00 GMT").unwrap();
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Tue, 01 Dec 2026 10:00:07 GMT", now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after("Tue, 01 Dec 2026 09:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past asks for no wait"
        );
        assert_eq!(retry_after("soon", now), None);
    }

    #[tokio::test]
    async fn permanent_errors_are_tried_once() {
        let calls = AtomicU32::new(0);
        let (r, made) = quick(4)
            .run("op", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(ConnectorError::permanent("HTTP 501"))
            })
            .await;
        assert_eq!((made, calls.load(Ordering::SeqCst)), (1, 1));
        assert_eq!(
            r.unwrap_err().message,
            "HTTP 501",
            "no attempt count on one try"
        );
    }

    #[tokio::test]
    async fn transient_errors_use_the_whole_budget_and_say_so() {
        let calls = AtomicU32::new(0);
        let (r, made) = quick(3)
            .run("op", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(ConnectorError::transient("HTTP 503"))
            })
            .await;
        assert_eq!((made, calls.load(Ordering::SeqCst)), (3, 3));
        let e = r.unwrap_err();
        assert_eq!(e.class, ErrorClass::Transient);
        assert_eq!(e.message, "HTTP 503 (after 3 attempts)");
    }

    #[tokio::test]
    async fn a_retry_after_beyond_the_limit_is_left_to_the_next_run() {
        let (r, made) = quick(4)
            .run("op", || async {
                Err::<(), _>(
                    ConnectorError::transient("HTTP 429")
                        .with_retry_after(Some(Duration::from_secs(3600))),
                )
            })
            .await;
        assert_eq!(made, 1, "an hour is not waited for");
        assert_eq!(r.unwrap_err().class, ErrorClass::Transient);
    }

    #[tokio::test]
    async fn retry_after_is_a_lower_bound_of_the_wait() {
        let started = std::time::Instant::now();
        let calls = AtomicU32::new(0);
        let (r, made) = quick(4)
            .run("op", || async {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    Err(ConnectorError::transient("HTTP 429")
                        .with_retry_after(Some(Duration::from_millis(40))))
                } else {
                    Ok(())
                }
            })
            .await;
        assert!(r.is_ok());
        assert_eq!(made, 2);
        assert!(started.elapsed() >= Duration::from_millis(40));
    }
}
