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

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
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

/// The lower-case name (without the final dot) and type of a query.
fn question(query: &Message) -> Option<(String, RecordType)> {
    let q = query.queries.first()?;
    let name = q.name().to_lowercase().to_ascii();
    Some((name.trim_end_matches('.').to_string(), q.query_type()))
}

/// Build the answer to one DNS query, or None for a packet to ignore (not a
/// query, or not one DNS message). `live` tells whether the host name of an
/// address resolves now.
pub fn answer(query: &[u8], live: impl Fn(Ipv4Addr) -> bool) -> Option<Vec<u8>> {
    let query = Message::from_vec(query).ok()?;
    if query.metadata.message_type != MessageType::Query {
        return None;
    }
    let (name, qtype) = question(&query)?;
    let (rcode, ip) = if !(name == "kube-sim.test" || name.ends_with(".kube-sim.test")) {
        (ResponseCode::Refused, None)
    } else {
        match resolve_lb_hostname(&name) {
            Some(ip) if !live(ip) => (ResponseCode::NXDomain, None),
            Some(ip) if matches!(qtype, RecordType::A | RecordType::ANY) => {
                (ResponseCode::NoError, Some(ip))
            }
            Some(_) => (ResponseCode::NoError, None),
            None => (ResponseCode::NXDomain, None),
        }
    };
    let mut resp = Message::response(query.metadata.id, query.metadata.op_code);
    resp.metadata.authoritative = true;
    resp.metadata.recursion_desired = query.metadata.recursion_desired;
    resp.metadata.response_code = rcode;
    let asked = query.queries[0].clone();
    if let Some(ip) = ip {
        resp.add_answer(Record::from_rdata(
            asked.name().clone(),
            30,
            RData::A(A(ip)),
        ));
    }
    resp.add_query(asked);
    resp.to_vec().ok()
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

    fn query(name: &str, qtype: RecordType) -> Vec<u8> {
        let mut q = Message::new(0x1234, MessageType::Query, hickory_proto::op::OpCode::Query);
        q.metadata.recursion_desired = true;
        q.add_query(hickory_proto::op::Query::query(
            hickory_proto::rr::Name::from_ascii(name).unwrap(),
            qtype,
        ));
        q.to_vec().unwrap()
    }

    fn ask(name: &str, live: impl Fn(Ipv4Addr) -> bool) -> Message {
        Message::from_vec(&answer(&query(name, RecordType::A), live).unwrap()).unwrap()
    }

    #[test]
    fn answers_a_records() {
        let all = |_| true;
        let r = ask("lb-10-150-0-10.elb.kube-sim.test", all);
        assert_eq!(r.metadata.id, 0x1234);
        assert_eq!(r.metadata.message_type, MessageType::Response);
        assert!(r.metadata.authoritative && r.metadata.recursion_desired);
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert_eq!(r.queries.len(), 1);
        let ips: Vec<RData> = r.answers.iter().map(|a| a.data.clone()).collect();
        assert_eq!(ips, [RData::A(A(Ipv4Addr::new(10, 150, 0, 10)))]);
        let aaaa = query("lb-10-150-0-10.elb.kube-sim.test", RecordType::AAAA);
        let aaaa = Message::from_vec(&answer(&aaaa, all).unwrap()).unwrap();
        assert_eq!(aaaa.metadata.response_code, ResponseCode::NoError);
        assert!(aaaa.answers.is_empty());
        let nx = ask("nope.kube-sim.test", all);
        assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
        let refused = ask("example.com", all);
        assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
        let unpublished = ask("lb-10-150-0-10.elb.kube-sim.test", |_| false);
        assert_eq!(
            unpublished.metadata.response_code,
            ResponseCode::NXDomain,
            "an unpublished name is NXDOMAIN"
        );
        assert!(unpublished.answers.is_empty());
        // A response is never answered.
        let mut resp = Message::from_vec(&query("x.kube-sim.test", RecordType::A)).unwrap();
        resp.metadata.message_type = MessageType::Response;
        assert_eq!(answer(&resp.to_vec().unwrap(), all), None);
        assert_eq!(answer(b"short", all), None);
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
