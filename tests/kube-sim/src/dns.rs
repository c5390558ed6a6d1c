//! LoadBalancer hostnames (EKS flavour) and the tiny UDP DNS responder that
//! resolves them. A hostname encodes its address: `lb-10-150-0-10.elb.kube-sim.test`
//! is 10.150.0.10. A name answers only while a Service publishes it and,
//! as AWS load balancer names do, only once `--lb-dns-delay-ms` has passed
//! since it was published (NXDOMAIN before: [`LbNames`]). Answers only names
//! under `kube-sim.test`; everything else is REFUSED.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

pub const LB_DOMAIN: &str = "elb.kube-sim.test";

/// The hostname an EKS-flavoured cluster gives a LoadBalancer with this address.
pub fn lb_hostname(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("lb-{}-{}-{}-{}.{LB_DOMAIN}", o[0], o[1], o[2], o[3])
}

/// The address behind a hostname from [`lb_hostname`] (case-insensitive, trailing dot allowed).
pub fn resolve_lb_hostname(name: &str) -> Option<Ipv4Addr> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let label = name
        .strip_suffix(&format!(".{LB_DOMAIN}"))?
        .strip_prefix("lb-")?;
    let parts: Vec<u8> = label
        .split('-')
        .map(|p| p.parse::<u8>())
        .collect::<Result<_, _>>()
        .ok()?;
    match parts.as_slice() {
        [a, b, c, d] => Some(Ipv4Addr::new(*a, *b, *c, *d)),
        _ => None,
    }
}

/// The LB host names the clusters publish, and since when. Shared by every
/// cluster's controllers (which publish) and the DNS responder (which answers).
#[derive(Debug, Default)]
pub struct LbNames {
    delay: Duration,
    /// address -> (cluster index, first seen published)
    published: Mutex<HashMap<Ipv4Addr, (usize, Instant)>>,
}

impl LbNames {
    /// Names answer `delay` after they are first published.
    pub fn new(delay: Duration) -> Self {
        LbNames {
            delay,
            published: Mutex::new(HashMap::new()),
        }
    }

    /// The addresses cluster `cluster` publishes now (as host names); the
    /// others it published before stop resolving.
    pub fn sync(&self, cluster: usize, live: &[Ipv4Addr], now: Instant) {
        let mut p = self.published.lock().unwrap_or_else(|e| e.into_inner());
        p.retain(|ip, (c, _)| *c != cluster || live.contains(ip));
        for ip in live {
            p.entry(*ip).or_insert((cluster, now));
        }
    }

    /// Whether the host name of `ip` resolves at `now`.
    pub fn answers(&self, ip: Ipv4Addr, now: Instant) -> bool {
        let p = self.published.lock().unwrap_or_else(|e| e.into_inner());
        p.get(&ip)
            .is_some_and(|(_, since)| now.saturating_duration_since(*since) >= self.delay)
    }
}

fn parse_question(msg: &[u8]) -> Option<(String, u16, usize)> {
    let mut pos = 12;
    let mut labels = Vec::new();
    loop {
        let len = *msg.get(pos)? as usize;
        pos += 1;
        if len == 0 {
            break;
        }
        if len & 0xc0 != 0 {
            return None;
        }
        labels.push(String::from_utf8_lossy(msg.get(pos..pos + len)?).to_string());
        pos += len;
    }
    let qtype = u16::from_be_bytes([*msg.get(pos)?, *msg.get(pos + 1)?]);
    Some((labels.join("."), qtype, pos + 4))
}

/// Build the answer to one DNS query, or None for a packet to ignore.
/// `live` tells whether the host name of an address resolves now.
pub fn answer(query: &[u8], live: impl Fn(Ipv4Addr) -> bool) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None;
    }
    let (name, qtype, qend) = parse_question(query)?;
    let mut resp = query[..qend].to_vec();
    resp[2] = 0x84 | (query[2] & 0x01); // QR, AA, copy RD
    let lower = name.to_ascii_lowercase();
    let (rcode, ip) = if !(lower == "kube-sim.test" || lower.ends_with(".kube-sim.test")) {
        (5, None)
    } else {
        match resolve_lb_hostname(&lower) {
            Some(ip) if !live(ip) => (3, None),
            Some(ip) if qtype == 1 || qtype == 255 => (0, Some(ip)),
            Some(_) => (0, None),
            None => (3, None),
        }
    };
    resp[3] = rcode;
    resp[4..6].copy_from_slice(&1u16.to_be_bytes());
    resp[6..8].copy_from_slice(&(ip.is_some() as u16).to_be_bytes());
    resp[8..12].copy_from_slice(&[0, 0, 0, 0]);
    if let Some(ip) = ip {
        resp.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
        resp.extend_from_slice(&30u32.to_be_bytes());
        resp.extend_from_slice(&4u16.to_be_bytes());
        resp.extend_from_slice(&ip.octets());
    }
    Some(resp)
}

pub async fn serve(socket: UdpSocket, names: std::sync::Arc<LbNames>) {
    let mut buf = [0u8; 1500];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        if let Some(resp) = answer(&buf[..n], |ip| names.answers(ip, Instant::now())) {
            let _ = socket.send_to(&resp, peer).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_round_trip() {
        let ip = Ipv4Addr::new(10, 150, 0, 10);
        assert_eq!(resolve_lb_hostname(&lb_hostname(ip)), Some(ip));
        assert_eq!(
            resolve_lb_hostname("LB-1-2-3-4.ELB.kube-sim.test."),
            Some(Ipv4Addr::new(1, 2, 3, 4))
        );
        assert_eq!(resolve_lb_hostname("lb-1-2-3.elb.kube-sim.test"), None);
        assert_eq!(resolve_lb_hostname("example.com"), None);
    }

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        q
    }

    #[test]
    fn answers_a_records() {
        let all = |_| true;
        let r = answer(&query("lb-10-150-0-10.elb.kube-sim.test", 1), all).unwrap();
        assert_eq!(&r[..2], &[0x12, 0x34]);
        assert_eq!(r[3] & 0x0f, 0);
        assert_eq!(&r[6..8], &[0, 1]);
        assert_eq!(&r[r.len() - 4..], &[10, 150, 0, 10]);
        let nx = answer(&query("nope.kube-sim.test", 1), all).unwrap();
        assert_eq!(nx[3] & 0x0f, 3);
        let refused = answer(&query("example.com", 1), all).unwrap();
        assert_eq!(refused[3] & 0x0f, 5);
        let unpublished = answer(&query("lb-10-150-0-10.elb.kube-sim.test", 1), |_| false).unwrap();
        assert_eq!(unpublished[3] & 0x0f, 3, "an unpublished name is NXDOMAIN");
        assert_eq!(&unpublished[6..8], &[0, 0]);
    }

    #[test]
    fn names_answer_only_after_the_delay_and_while_published() {
        let ip = Ipv4Addr::new(10, 150, 0, 10);
        let t0 = Instant::now();
        let names = LbNames::new(Duration::from_secs(3));
        assert!(!names.answers(ip, t0));
        names.sync(0, &[ip], t0);
        assert!(!names.answers(ip, t0 + Duration::from_secs(2)));
        assert!(names.answers(ip, t0 + Duration::from_secs(3)));
        // Publishing again does not restart the clock.
        names.sync(0, &[ip], t0 + Duration::from_secs(4));
        assert!(names.answers(ip, t0 + Duration::from_secs(4)));
        // Another cluster's sync leaves it alone; its own withdrawal removes it.
        names.sync(1, &[], t0 + Duration::from_secs(5));
        assert!(names.answers(ip, t0 + Duration::from_secs(5)));
        names.sync(0, &[], t0 + Duration::from_secs(5));
        assert!(!names.answers(ip, t0 + Duration::from_secs(6)));
    }
}
