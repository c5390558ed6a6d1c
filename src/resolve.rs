//! Resolving DNS load balancer hostnames (AWS NLBs report a hostname, but
//! CoreDNS `forward` and kube-dns `stubDomains` need IP addresses).
//! Uses hickory-resolver with the system's resolver, or a given server.

use std::net::{IpAddr, SocketAddr};

use hickory_resolver::Resolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

/// All A/AAAA addresses of `host`, sorted (stable plans).
pub async fn resolve_host(host: &str, server: Option<SocketAddr>) -> Result<Vec<IpAddr>, String> {
    let resolver = match server {
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
            .build()
        }
        None => Resolver::builder_tokio().and_then(|b| b.build()),
    }
    .map_err(|e| format!("could not set up a DNS resolver: {e}"))?;
    let name = if host.ends_with('.') {
        host.to_string()
    } else {
        format!("{host}.")
    };
    let lookup = resolver
        .lookup_ip(name.as_str())
        .await
        .map_err(|e| format!("could not resolve {host}: {e}"))?;
    let mut ips: Vec<IpAddr> = lookup.iter().collect();
    ips.sort();
    ips.dedup();
    if ips.is_empty() {
        return Err(format!("{host} has no A or AAAA records"));
    }
    Ok(ips)
}
