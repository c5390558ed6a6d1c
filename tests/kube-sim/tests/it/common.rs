//! Shared helpers: a fast federation, kube-rs clients per context, raw
//! requests, and bounded waits.

use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube_sim::{Federation, Flavor};

pub const WAIT: Duration = Duration::from_secs(15);

pub fn fast(zones: &[&str], flavor: Flavor) -> Federation {
    Federation::builder()
        .zones(zones.iter().copied())
        .flavor(flavor)
        .lb_delay(Duration::from_millis(100))
        .pod_ready_delay(Duration::from_millis(20))
        .job_duration(Duration::from_millis(50))
        .namespace_delete_delay(Duration::from_millis(100))
        .start()
        .expect("the federation starts")
}

pub async fn client(fed: &Federation, context: &str) -> kube::Client {
    client_with_retry(fed, context, true).await
}

/// A client without kube's retry layer, to see injected errors as they are.
pub async fn client_with_retry(fed: &Federation, context: &str, retry: bool) -> kube::Client {
    let kc = Kubeconfig::read_from(fed.kubeconfig_path()).expect("kubeconfig parses");
    let opts = KubeConfigOptions {
        context: Some(context.to_string()),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kc, &opts)
        .await
        .expect("kubeconfig context loads");
    let mut config = config;
    config.default_retry = retry;
    kube::Client::try_from(config).expect("client builds")
}

/// Poll `check` until it is true; panic with `what` after `WAIT`.
pub async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A raw request through a kube client (auth and TLS included).
pub async fn raw(
    client: &kube::Client,
    method: &str,
    uri: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, http::HeaderMap, serde_json::Value) {
    let mut b = http::Request::builder().method(method).uri(uri);
    if let Some(ct) = content_type {
        b = b.header("content-type", ct);
    }
    let req = b
        .body(kube::client::Body::from(body))
        .expect("request builds");
    let resp = client.send(req).await.expect("request is sent");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    use http_body_util::BodyExt;
    let bytes = resp
        .into_body()
        .collect()
        .await
        .expect("body reads")
        .to_bytes();
    let v = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, headers, v)
}

pub fn api_code(e: &kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}
