//! Asking a zone's DNS load balancer directly, from where `check` runs, with
//! hickory-resolver: one A query over exactly one transport (UDP or TCP), no
//! cache, no search list, no hosts file, one attempt.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use hickory_resolver::Resolver;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};

/// Transport of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// What one query found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A records (possibly none, for a name without addresses).
    Addresses { ips: Vec<IpAddr>, ms: u64 },
    /// The server answered with an error or no records.
    Negative(String),
    /// No answer at all: the address is not reachable from here.
    Unreachable(String),
    /// Anything else (could not set up the query, malformed answer).
    Error(String),
}

/// One A query for `name` to `server`:53 over `transport`.
pub async fn query(server: IpAddr, transport: Transport, name: &str, timeout: Duration) -> Answer {
    let ns = match transport {
        Transport::Udp => NameServerConfig::udp(server),
        Transport::Tcp => NameServerConfig::tcp(server),
    };
    let mut opts = ResolverOpts::default();
    opts.timeout = timeout;
    opts.attempts = 1;
    opts.cache_size = 0;
    opts.ndots = 0;
    opts.use_hosts_file = ResolveHosts::Never;
    opts.try_tcp_on_error = false;
    opts.num_concurrent_reqs = 1;
    let resolver = match Resolver::builder_with_config(
        ResolverConfig::from_name_servers(vec![ns]),
        TokioRuntimeProvider::default(),
    )
    .with_options(opts)
    .build()
    {
        Ok(r) => r,
        Err(e) => return Answer::Error(format!("could not set up a DNS client: {e}")),
    };
    let fqdn = if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    };
    if transport == Transport::Tcp {
        // hickory reports any failed TCP connection as "no connections";
        // tell a refusal (the address answers, nothing serves TCP 53) from
        // an address that cannot be reached from here.
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((server, 53))).await {
            Err(_) => {
                return Answer::Unreachable(format!(
                    "no TCP connection within {}s",
                    timeout.as_secs()
                ));
            }
            Ok(Err(e)) => {
                return match e.kind() {
                    std::io::ErrorKind::ConnectionRefused => {
                        Answer::Error("connection refused on TCP port 53".to_string())
                    }
                    _ => Answer::Unreachable(e.to_string()),
                };
            }
            Ok(Ok(_)) => {}
        }
    }
    let started = Instant::now();
    // The resolver bounds each attempt; this bounds everything around it.
    let lookup =
        tokio::time::timeout(timeout * 2, resolver.lookup(fqdn.as_str(), RecordType::A)).await;
    let ms = started.elapsed().as_millis() as u64;
    match lookup {
        Err(_) => Answer::Unreachable(format!("no answer within {}s", timeout.as_secs())),
        Ok(Ok(lookup)) => {
            let ips = lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    _ => None,
                })
                .collect();
            Answer::Addresses { ips, ms }
        }
        Ok(Err(e)) => classify(&e, timeout),
    }
}

fn classify(e: &NetError, timeout: Duration) -> Answer {
    match e {
        NetError::Timeout => {
            Answer::Unreachable(format!("no answer within {}s", timeout.as_secs()))
        }
        NetError::Io(io) => match io.kind() {
            std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::HostUnreachable
            | std::io::ErrorKind::NetworkUnreachable
            | std::io::ErrorKind::AddrNotAvailable => Answer::Unreachable(io.to_string()),
            _ => Answer::Error(io.to_string()),
        },
        NetError::NoConnections => Answer::Unreachable("no connection could be made".to_string()),
        e if e.is_nx_domain() => Answer::Negative("no such name (NXDOMAIN)".to_string()),
        e if e.is_no_records_found() => Answer::Negative(format!("no A record ({e})")),
        e => Answer::Negative(e.to_string()),
    }
}
