//! Bounded polls: a probe asked again, backing off, until it holds or the
//! time is up; a timeout says what it last saw. Waits that can follow one
//! object's changes use [`crate::k8s::watch`] instead.

use std::time::Duration;

/// Bounded waits look again after this long at first, then back off by half
/// each time up to [`POLL_MAX`]: quick to notice a fast change, gentle on
/// the API server during a long wait.
pub const POLL_FIRST: Duration = Duration::from_millis(50);
pub const POLL_MAX: Duration = Duration::from_millis(250);

/// Polls `probe` until it returns `Ok(Some(T))`, or until `timeout`; on
/// timeout returns what it last saw (the `Ok(None)`-case description is
/// produced by `describe`). API errors end the wait at once (transient ones
/// were already retried by the client).
pub async fn wait_for<T, F, Fut>(timeout: Duration, mut probe: F) -> Result<T, WaitError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Result<T, String>, String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut interval = POLL_FIRST;
    loop {
        let seen = match probe().await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(seen)) => seen,
            Err(e) => return Err(WaitError::Api(e)),
        };
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(WaitError::Timeout {
                after: timeout,
                last: seen,
            });
        }
        tokio::time::sleep(interval.min(deadline - now)).await;
        interval = (interval * 3 / 2).min(POLL_MAX);
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum WaitError {
    #[error("timed out after {}s; last seen: {last}", after.as_secs_f32())]
    Timeout { after: Duration, last: String },
    #[error("{0}")]
    Api(String),
}
