//! Bounded polls: a probe asked again, backing off, until it is done or
//! the time is up. A timeout says what the probe last saw; a probe that
//! fails ends the wait at once with its typed cause (transient API errors
//! were already retried by the client). Waits that can follow one object's
//! changes use [`crate::k8s::watch`] instead.

use std::error::Error as StdError;
use std::future::Future;
use std::time::Duration;

use super::error_text;

/// Bounded waits look again after this long at first, then back off by half
/// each time up to [`POLL_MAX`]: quick to notice a fast change, gentle on
/// the API server during a long wait.
pub const POLL_FIRST: Duration = Duration::from_millis(50);
pub const POLL_MAX: Duration = Duration::from_millis(250);

/// What one look at the state waited for found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen<T> {
    /// The condition holds.
    Done(T),
    /// Not yet: what was seen, for the timeout's "last seen".
    Waiting(String),
}

#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("timed out after {}s; last seen: {last}", after.as_secs_f32())]
    Timeout { after: Duration, last: String },
    /// The watch streamed an error (other than 410 Gone, which restarts it).
    #[error("{} ({})", .0.message, .0.reason)]
    WatchEnded(Box<kube::core::Status>),
    /// A request of the wait failed.
    #[error("{}", error_text(.0))]
    Request(kube::Error),
    /// A step of the probe failed, or a check found waiting on pointless
    /// (its error says which).
    #[error(transparent)]
    Failed(Box<dyn StdError + Send + Sync>),
}

impl From<kube::Error> for WaitError {
    fn from(e: kube::Error) -> Self {
        WaitError::Request(e)
    }
}

impl WaitError {
    /// A probe's own error, kept as it is.
    pub fn failed(e: impl StdError + Send + Sync + 'static) -> Self {
        WaitError::Failed(Box::new(e))
    }
}

/// Asks `probe` until it is [`Seen::Done`], or until `timeout`; on timeout
/// the error holds what it last saw. A probe error ends the wait at once.
pub async fn poll<T, F, Fut>(timeout: Duration, mut probe: F) -> Result<T, WaitError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Seen<T>, WaitError>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut interval = POLL_FIRST;
    loop {
        let seen = match probe().await? {
            Seen::Done(v) => return Ok(v),
            Seen::Waiting(seen) => seen,
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
