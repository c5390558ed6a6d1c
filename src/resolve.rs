//! Resolving DNS load balancer host names (AWS NLBs report a host name, but
//! CoreDNS `forward` and kube-dns `stubDomains` need IP addresses).
//! Uses hickory-resolver with the system's resolver, or a given server.
//!
//! AWS publishes a load balancer's host name in the Service status minutes
//! before the name resolves, so the first answers are NXDOMAIN.
//! [`resolve_until`] asks again with a backoff until its deadline, with a new
//! resolver and no cache for every attempt: hickory (like most stub
//! resolvers) would otherwise keep answering the cached NXDOMAIN for the
//! negative TTL of the zone's SOA.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::Resolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use tokio::time::Instant;

/// The first pause between attempts of [`resolve_until`]; it doubles up to
/// [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_millis(250);
pub const RETRY_MAX: Duration = Duration::from_secs(5);

/// Why a host name gave no address, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("could not set up a DNS resolver: {0}")]
    Setup(String),
    /// NXDOMAIN: the name does not exist (yet).
    #[error("{host} does not exist in DNS (NXDOMAIN){}", via(server))]
    NoSuchName {
        host: String,
        server: Option<SocketAddr>,
    },
    /// The name exists but has no A or AAAA record.
    #[error("{host} has no A or AAAA record{}", via(server))]
    NoAddress {
        host: String,
        server: Option<SocketAddr>,
    },
    #[error("no answer for {host} from the DNS server{} in time", via(server))]
    Timeout {
        host: String,
        server: Option<SocketAddr>,
    },
    #[error("could not resolve {host}{}: {reason}", via(server))]
    Failed {
        host: String,
        server: Option<SocketAddr>,
        reason: String,
    },
    /// [`resolve_until`] ran out of time; `last` is the last attempt's error.
    #[error(
        "{host} did not resolve within {}s ({attempts} attempts); last answer: {last}",
        waited.as_secs()
    )]
    GaveUp {
        host: String,
        waited: Duration,
        attempts: u32,
        last: Box<ResolveError>,
    },
}

fn via(server: &Option<SocketAddr>) -> String {
    server.map(|s| format!(" (asked {s})")).unwrap_or_default()
}

impl ResolveError {
    /// What to do about it, for the line after the error.
    pub fn hint(&self) -> &'static str {
        match self {
            ResolveError::Setup(_) => {
                "check /etc/resolv.conf, or set [dns] lb_resolver = \"IP:PORT\" in the config"
            }
            _ => {
                "AWS publishes load balancer names minutes before they resolve; if the name only \
                 resolves inside the VPC, set [dns] lb_resolver = \"IP:PORT\" in the config (or \
                 --lb-resolver) to a DNS server that can resolve it, and re-run"
            }
        }
    }

    /// Worth asking again: the name may appear later.
    fn retryable(&self) -> bool {
        !matches!(self, ResolveError::Setup(_))
    }
}

/// A resolver with no cache, so that every call asks the server again.
fn resolver(server: Option<SocketAddr>) -> Result<Resolver<TokioRuntimeProvider>, ResolveError> {
    let mut builder = match server {
        Some(addr) => {
            let mut udp = ConnectionConfig::udp();
            udp.port = addr.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = addr.port();
            let ns = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
            Resolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![ns]),
                TokioRuntimeProvider::default(),
            )
        }
        None => Resolver::builder_tokio().map_err(|e| ResolveError::Setup(e.to_string()))?,
    };
    let opts: &mut ResolverOpts = builder.options_mut();
    opts.cache_size = 0;
    opts.timeout = Duration::from_secs(3);
    opts.attempts = 1;
    builder
        .build()
        .map_err(|e| ResolveError::Setup(e.to_string()))
}

/// All A/AAAA addresses of `host`, sorted (stable plans). One attempt.
pub async fn resolve_host(
    host: &str,
    server: Option<SocketAddr>,
) -> Result<Vec<IpAddr>, ResolveError> {
    let resolver = resolver(server)?;
    let name = if host.ends_with('.') {
        host.to_string()
    } else {
        format!("{host}.")
    };
    let lookup = resolver
        .lookup_ip(name.as_str())
        .await
        .map_err(|e| classify(host, server, &e))?;
    let mut ips: Vec<IpAddr> = lookup.iter().collect();
    ips.sort();
    ips.dedup();
    if ips.is_empty() {
        return Err(ResolveError::NoAddress {
            host: host.to_string(),
            server,
        });
    }
    Ok(ips)
}

fn classify(host: &str, server: Option<SocketAddr>, e: &NetError) -> ResolveError {
    let host = host.to_string();
    if e.is_nx_domain() {
        ResolveError::NoSuchName { host, server }
    } else if e.is_no_records_found() {
        ResolveError::NoAddress { host, server }
    } else if matches!(e, NetError::Timeout) {
        ResolveError::Timeout { host, server }
    } else {
        ResolveError::Failed {
            host,
            server,
            reason: e.to_string(),
        }
    }
}

/// Like [`resolve_host`], but asks again (250 ms, doubling up to 5 s) until
/// `within` has passed; `on_retry` hears each failed attempt and how long
/// it has been, for progress lines.
pub async fn resolve_until(
    host: &str,
    server: Option<SocketAddr>,
    within: Duration,
    mut on_retry: impl FnMut(&ResolveError, Duration),
) -> Result<Vec<IpAddr>, ResolveError> {
    let started = Instant::now();
    let deadline = started + within;
    let mut pause = RETRY_FIRST;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let attempt = tokio::time::timeout_at(deadline, resolve_host(host, server)).await;
        let error = match attempt {
            Ok(Ok(ips)) => return Ok(ips),
            Ok(Err(e)) if !e.retryable() => return Err(e),
            Ok(Err(e)) => e,
            Err(_) => ResolveError::Timeout {
                host: host.to_string(),
                server,
            },
        };
        let now = Instant::now();
        if now + pause >= deadline {
            return Err(ResolveError::GaveUp {
                host: host.to_string(),
                waited: now - started,
                attempts,
                last: Box::new(error),
            });
        }
        on_retry(&error, now - started);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RETRY_MAX);
    }
}

#[cfg(test)]
mod tests;
