//! Against a small DNS server on loopback that answers NXDOMAIN until the
//! name is "published", as AWS does for a new load balancer's host name.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use hickory_resolver::proto::op::{Message, ResponseCode};
use hickory_resolver::proto::rr::rdata::A;
use hickory_resolver::proto::rr::{RData, Record, RecordType};

use super::*;

const ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 9);

struct Server {
    addr: SocketAddr,
    published: Arc<AtomicBool>,
    queries: Arc<AtomicU32>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// NXDOMAIN for every name until `published`, then `ADDRESS` for A queries
/// and an empty answer for the rest.
async fn server() -> Server {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let published = Arc::new(AtomicBool::new(false));
    let queries = Arc::new(AtomicU32::new(0));
    let (p, q) = (published.clone(), queries.clone());
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            q.fetch_add(1, Ordering::SeqCst);
            let id = query.metadata.id;
            let op = query.metadata.op_code;
            let mut reply = if p.load(Ordering::SeqCst) {
                let mut m = Message::response(id, op);
                for question in &query.queries {
                    if question.query_type() == RecordType::A {
                        m.add_answer(Record::from_rdata(
                            question.name().clone(),
                            60,
                            RData::A(A(ADDRESS)),
                        ));
                    }
                }
                m
            } else {
                Message::error_msg(id, op, ResponseCode::NXDomain)
            };
            reply.add_queries(query.queries.clone());
            let _ = socket.send_to(&reply.to_vec().unwrap(), peer).await;
        }
    });
    Server {
        addr,
        published,
        queries,
        task,
    }
}

#[tokio::test]
async fn lb_host_name_that_resolves_late_is_retried_until_it_resolves() {
    let server = server().await;
    let mut retries = Vec::new();
    let published = server.published.clone();
    let ips = resolve_until(
        "nlb-1.elb.example.",
        Some(server.addr),
        Duration::from_secs(30),
        |e, _| {
            retries.push(e.clone());
            if retries.len() == 2 {
                published.store(true, Ordering::SeqCst);
            }
        },
    )
    .await
    .expect("resolves once published");
    assert_eq!(ips, vec![IpAddr::V4(ADDRESS)]);
    assert_eq!(retries.len(), 2, "{retries:?}");
    for e in &retries {
        assert!(
            matches!(e, ResolveError::NoSuchName { host, server: Some(s) }
                if host == "nlb-1.elb.example." && *s == server.addr),
            "{e:?}"
        );
    }
}

#[tokio::test]
async fn a_cached_nxdomain_is_not_reused_between_attempts() {
    // One resolver with a cache would answer the first NXDOMAIN again
    // without asking; every attempt must reach the server.
    let server = server().await;
    let mut attempts = 0;
    let _ = resolve_until(
        "nlb-2.elb.example",
        Some(server.addr),
        Duration::from_millis(1200),
        |_, _| attempts += 1,
    )
    .await;
    assert!(attempts >= 2, "{attempts}");
    assert!(
        server.queries.load(Ordering::SeqCst) > attempts,
        "{} queries for {attempts} failed attempts",
        server.queries.load(Ordering::SeqCst)
    );
}

#[tokio::test]
async fn lb_host_name_that_never_resolves_gives_up_in_plain_words_with_the_hint() {
    let server = server().await;
    let err = resolve_until(
        "nlb-3.elb.example",
        Some(server.addr),
        Duration::from_secs(1),
        |_, _| {},
    )
    .await
    .unwrap_err();
    let ResolveError::GaveUp { attempts, last, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(*attempts >= 2, "{err:?}");
    assert!(matches!(**last, ResolveError::NoSuchName { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with("nlb-3.elb.example did not resolve within"),
        "{text}"
    );
    assert!(!text.contains("Query {"), "no debug dump: {text}");
    assert!(err.hint().contains("lb_resolver"), "{}", err.hint());
}

#[tokio::test]
async fn a_name_with_an_address_resolves_on_the_first_attempt() {
    let server = server().await;
    server.published.store(true, Ordering::SeqCst);
    let ips = resolve_host("ready.elb.example", Some(server.addr))
        .await
        .unwrap();
    assert_eq!(ips, vec![IpAddr::V4(ADDRESS)]);
}
