//! Waits on one object driven by a watch instead of a poll: the condition
//! is evaluated on the state the caller already holds, then on every change
//! the API server streams, so a wait notices a change one event late at
//! most, not one poll interval late, and costs one request instead of one
//! per poll.
//!
//! The watch starts at the resourceVersion of the state the caller holds
//! (the response of a create or a list), so no change between that response
//! and the watch is missed (Kubernetes API concepts, "Efficient detection
//! of changes": a watch from a resourceVersion sends every change after
//! it). A watch that ends (the server's timeout) is reopened from the last
//! event seen; one that is too old (410 Gone) starts again from a fresh
//! GET. Bounded by `timeout`; the error keeps the last state seen.
//!
//! Conditions answer with [`Seen`], as the probes of [`crate::k8s::wait`]
//! do; a failed request stops the wait with [`WaitError::Request`], an
//! error the watch streams with [`WaitError::WatchEnded`], and a `stuck`
//! check with its own typed error ([`WaitError::Failed`]).

use std::fmt::Debug;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kube::Resource;
use kube::api::{Api, WatchEvent, WatchParams};
use serde::de::DeserializeOwned;

use super::wait::{Seen, WaitError};

/// The state of the watched object: `Some` while it exists.
pub type State<K> = Option<K>;

/// Waits until `done` returns [`Seen::Done`] for the object named `name`,
/// starting from `current` (its state at `resource_version`). `done`
/// returns [`Seen::Waiting`] (what is seen) while the condition does not
/// hold yet.
pub async fn until<K, T>(
    api: &Api<K>,
    name: &str,
    current: State<K>,
    resource_version: String,
    timeout: Duration,
    mut done: impl FnMut(Option<&K>) -> Seen<T>,
) -> Result<T, WaitError>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let mut last = match done(current.as_ref()) {
        Seen::Done(v) => return Ok(v),
        Seen::Waiting(seen) => seen,
    };
    let work = async {
        let mut rv = resource_version;
        loop {
            let params = WatchParams::default()
                .fields(&format!("metadata.name={name}"))
                .timeout(290);
            let mut events = api.watch(&params, &rv).await?.boxed();
            let mut gone = false;
            while let Some(event) = events.try_next().await? {
                let state = match event {
                    WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                        rv = o.meta().resource_version.clone().unwrap_or(rv);
                        Some(o)
                    }
                    WatchEvent::Deleted(o) => {
                        rv = o.meta().resource_version.clone().unwrap_or(rv);
                        None
                    }
                    WatchEvent::Bookmark(b) => {
                        rv = b.metadata.resource_version;
                        continue;
                    }
                    WatchEvent::Error(e) if e.code == 410 => {
                        gone = true;
                        break;
                    }
                    WatchEvent::Error(e) => {
                        return Err(WaitError::WatchEnded(e));
                    }
                };
                match done(state.as_ref()) {
                    Seen::Done(v) => return Ok(v),
                    Seen::Waiting(seen) => last = seen,
                }
            }
            if gone {
                // Too far behind: start again from the object as it is now.
                let now = api.get_opt(name).await?;
                rv = match &now {
                    Some(o) => o.meta().resource_version.clone().unwrap_or_default(),
                    None => "0".to_string(),
                };
                match done(now.as_ref()) {
                    Seen::Done(v) => return Ok(v),
                    Seen::Waiting(seen) => last = seen,
                }
            }
        }
    };
    // `last` is shared with the watch loop: read it only once that is dropped.
    let result = tokio::time::timeout(timeout, work).await;
    match result {
        Ok(r) => r,
        Err(_) => Err(WaitError::Timeout {
            after: timeout,
            last,
        }),
    }
}

/// [`until`], with a look at what the watch cannot see: beside the watch,
/// after 0.25 s and then at doubling intervals up to 2 s, `stuck` is asked
/// about the object as the caller held it (e.g. whether a cloud or a
/// controller recorded an event refusing it) whether waiting on is
/// pointless: `Err(why)` ends the wait with [`WaitError::Failed`] holding
/// `why`. The watch
/// itself runs uninterrupted, so the change waited for is seen when it
/// happens.
pub async fn until_checked<K, T, D, S, Fut, E>(
    api: &Api<K>,
    name: &str,
    current: State<K>,
    timeout: Duration,
    done: D,
    mut stuck: S,
) -> Result<T, WaitError>
where
    K: Resource + Clone + DeserializeOwned + Debug,
    D: FnMut(Option<&K>) -> Seen<T>,
    S: FnMut(Option<K>) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    let version = current
        .as_ref()
        .and_then(|o| o.meta().resource_version.clone())
        .unwrap_or_else(|| "0".to_string());
    let held = current.clone();
    let checks = async {
        let mut quiet = Duration::from_millis(250);
        loop {
            tokio::time::sleep(quiet).await;
            if let Err(why) = stuck(held.clone()).await {
                return WaitError::failed(why);
            }
            quiet = (quiet * 2).min(Duration::from_secs(2));
        }
    };
    tokio::select! {
        result = until(api, name, current, version, timeout, done) => result,
        stopped = checks => Err(stopped),
    }
}
