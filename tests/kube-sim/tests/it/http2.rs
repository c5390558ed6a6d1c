//! HTTP/2 as kube-apiserver serves it: chosen by ALPN (`h2`, then
//! `http/1.1`), at most 100 concurrent streams per connection, GOAWAY after
//! a 401, and connections (with their watch streams) dropped by `down`.
//! Raw TLS clients here choose what they offer.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use kube_sim::{Cluster, Faults, Flavor};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::common::{WAIT, fast};

/// TLS to the cluster with `alpn` offered (none when empty), trusting its CA.
async fn tls(cluster: &Cluster, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    let ca = rustls::pki_types::pem::PemObject::from_pem_slice(cluster.ca_pem().as_bytes())
        .expect("the CA is PEM");
    roots.add(ca).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(("127.0.0.1", cluster.port()))
        .await
        .unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake")
}

fn get(cluster: &Cluster, path: &str, token: &str) -> http::Request<Empty<Bytes>> {
    http::Request::get(format!("https://127.0.0.1:{}{path}", cluster.port()))
        .header("authorization", format!("Bearer {token}"))
        .body(Empty::new())
        .unwrap()
}

/// An HTTP/2 connection with `h2` (the crate hyper uses) directly, to read
/// the server's SETTINGS; its driver runs in the returned task.
async fn h2_client(
    cluster: &Cluster,
) -> (
    h2::client::SendRequest<Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let io = tls(cluster, &[b"h2", b"http/1.1"]).await;
    assert_eq!(io.get_ref().1.alpn_protocol(), Some(b"h2".as_slice()));
    let (send, conn) = h2::client::handshake(io).await.expect("HTTP/2 handshake");
    (send, tokio::spawn(conn))
}

async fn h2_get(send: &mut h2::client::SendRequest<Bytes>, req: http::Request<()>) -> (u16, Bytes) {
    let (response, _) = send
        .clone()
        .ready()
        .await
        .unwrap()
        .send_request(req, true)
        .unwrap();
    let response = response.await.expect("a response");
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    (status, Bytes::from(bytes))
}

fn bare(req: http::Request<Empty<Bytes>>) -> http::Request<()> {
    req.map(|_| ())
}

#[tokio::test]
async fn an_h2_client_gets_one_multiplexed_connection_with_100_streams() {
    let fed = fast(&["us-east1-b"], Flavor::Gke);
    let c = fed.cluster("us-east1-b");
    c.set_faults(Faults {
        latency: Duration::from_millis(50),
        ..Faults::default()
    });
    let before = c.connections();
    let (send, conn) = h2_client(&c).await;
    let requests = (0..20).map(|_| {
        let mut send = send.clone();
        let req = bare(get(&c, "/api/v1/namespaces/kube-system", c.token()));
        async move { h2_get(&mut send, req).await }
    });
    for (status, body) in futures::future::join_all(requests).await {
        assert_eq!(status, 200, "{body:?}");
    }
    assert_eq!(c.connections() - before, 1, "one TCP connection");
    let log = c.requests();
    assert_eq!(log.len(), 20);
    assert!(log.iter().all(|r| r.protocol == "HTTP/2"), "{log:?}");
    let connections: BTreeSet<u64> = log.iter().map(|r| r.connection).collect();
    assert_eq!(connections, BTreeSet::from([c.connections()]));
    // kube-apiserver's SETTINGS_MAX_CONCURRENT_STREAMS (known once a
    // response came, as the server's SETTINGS frame is its first).
    assert_eq!(send.current_max_send_streams(), 100);

    // A watch streams its events as DATA frames of its stream.
    let req = bare(get(
        &c,
        "/api/v1/namespaces?watch=1&fieldSelector=metadata.name%3Ddefault",
        c.token(),
    ));
    let (response, _) = send.ready().await.unwrap().send_request(req, true).unwrap();
    let response = tokio::time::timeout(WAIT, response).await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers().get("transfer-encoding"), None);
    let mut body = response.into_body();
    let first = tokio::time::timeout(WAIT, body.data())
        .await
        .expect("an event within the wait")
        .unwrap()
        .unwrap();
    let event: serde_json::Value =
        serde_json::from_slice(first.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(event["type"], "ADDED");
    assert_eq!(event["object"]["metadata"]["name"], "default");

    // `down` drops the connection, the open watch with it.
    c.set_faults(Faults {
        down: true,
        ..Faults::default()
    });
    tokio::time::timeout(WAIT, conn)
        .await
        .expect("the connection ends when the server goes down")
        .unwrap()
        .ok();
    let rest =
        tokio::time::timeout(WAIT, async { while let Some(Ok(_)) = body.data().await {} }).await;
    assert!(rest.is_ok(), "the watch stream ends with the connection");
    c.set_faults(Faults::default());
}

#[tokio::test]
async fn a_401_on_http2_ends_the_connection_with_goaway() {
    let fed = fast(&["us-east1-b"], Flavor::Gke);
    let c = fed.cluster("us-east1-b");
    let (mut send, conn) = h2_client(&c).await;
    let (status, _) = h2_get(&mut send, bare(get(&c, "/api/v1/namespaces", c.token()))).await;
    assert_eq!(status, 200);
    let (status, _) = h2_get(&mut send, bare(get(&c, "/api/v1/namespaces", "wrong"))).await;
    assert_eq!(status, 401);
    tokio::time::timeout(WAIT, conn)
        .await
        .expect("the server closes the connection after the 401")
        .unwrap()
        // GOAWAY, then the close: the client may still be writing (its
        // acknowledgement), which can then fail with a broken pipe.
        .ok();
    assert!(
        send.ready().await.is_err(),
        "no new stream on a closed connection"
    );
}

/// A client that offers only `http/1.1`, or no ALPN at all (kube's default
/// client), gets HTTP/1.1; an HTTP/2 preface without ALPN is not HTTP/2;
/// the `disable_http2` fault takes `h2` off the offer.
#[tokio::test]
async fn http1_clients_get_http1_and_h2_needs_alpn() {
    let fed = fast(&["us-east1-b"], Flavor::Gke);
    let c = fed.cluster("us-east1-b");
    for alpn in [&[b"http/1.1".as_slice()][..], &[]] {
        let io = tls(&c, alpn).await;
        let agreed = io.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        assert_eq!(agreed, alpn.first().map(|p| p.to_vec()), "offered {alpn:?}");
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
                .await
                .unwrap();
        let driver = tokio::spawn(conn);
        for _ in 0..2 {
            let response = send
                .send_request(get(&c, "/api/v1/namespaces/default", c.token()))
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.version(), http::Version::HTTP_11);
            response.into_body().collect().await.unwrap();
        }
        drop(send);
        let _ = tokio::time::timeout(WAIT, driver).await;
    }
    let log = c.requests();
    assert_eq!(log.len(), 4);
    assert!(log.iter().all(|r| r.protocol == "HTTP/1.1"), "{log:?}");
    assert_eq!(
        log.iter()
            .map(|r| r.connection)
            .collect::<BTreeSet<_>>()
            .len(),
        2,
        "two requests per keep-alive connection"
    );

    let io = tls(&c, &[]).await;
    let h2 = async {
        let (mut send, conn) = h2::client::handshake(io).await?;
        tokio::spawn(conn);
        let req = bare(get(&c, "/api/v1/namespaces/default", c.token()));
        let (response, _) = send.send_request(req, true)?;
        response.await
    };
    let answer = tokio::time::timeout(WAIT, h2)
        .await
        .expect("an answer or an error");
    assert!(answer.is_err(), "HTTP/2 without ALPN: {answer:?}");

    // With HTTP/2 disabled, a client offering h2 is answered http/1.1.
    c.set_faults(Faults {
        disable_http2: true,
        ..Faults::default()
    });
    let io = tls(&c, &[b"h2", b"http/1.1"]).await;
    assert_eq!(io.get_ref().1.alpn_protocol(), Some(b"http/1.1".as_slice()));
    c.set_faults(Faults::default());
    let io = tls(&c, &[b"h2", b"http/1.1"]).await;
    assert_eq!(io.get_ref().1.alpn_protocol(), Some(b"h2".as_slice()));
}
