//! The HTTP stack under a zone's client: kube's own (what
//! `ClientBuilder::try_from(config)` builds in kube-client 5), rebuilt so
//! that TLS offers HTTP/2 by ALPN. kube-apiserver speaks HTTP/2 (Go's
//! net/http; docs/simulator.md, "HTTP/2"), so the concurrent requests of a
//! round share one multiplexed connection per cluster, as kubectl's do,
//! instead of paying a TLS handshake each. A server that does not offer
//! `h2` gets HTTP/1.1 with a connection per request in flight, as before.
//!
//! Owns: the connectors (direct, CONNECT tunnel through an `http://` or
//! `https://` proxy with basic auth from the proxy URL, TLS with the
//! kubeconfig's CA, client certificate, server name and skip-verify), the
//! connect/read/write timeouts, HTTP/2 keep-alive, one connection opened at
//! a time until the server's protocol is known ([`AlpnGate`]), and kube's
//! layers around the HTTP client (base URI, auth, extra headers, its
//! request tracing).
//!
//! Must not: add retries or records (the caller's layers do) or choose the
//! proxy (the caller sets `config.proxy_url`).

use std::error::Error as StdError;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::{Body, ClientBuilder, ConfigExt, DynBody};
use tower::util::BoxService;
use tower::{BoxError, ServiceBuilder, ServiceExt};
use tower_http::classify::ServerErrorsFailureClass;
use tower_http::trace::TraceLayer;
use tracing::Span;

/// The service kube's `ClientBuilder::try_from` gives, to put layers on.
pub type GenericService = BoxService<Request<Body>, Response<Box<DynBody>>, BoxError>;

/// How often an HTTP/2 connection is pinged, busy or idle. Every answer is
/// a read, so a live server's connection never goes `read_timeout` (60 s)
/// without one; a server that stops answering pings (within hyper's 20 s
/// keep-alive timeout) has its connection closed.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);

/// How long a connect that waited for another to learn the protocol stays
/// pending once that one has brought HTTP/2: the client's pool hands the
/// new connection to its request well within this (one round trip for the
/// HTTP/2 handshake), and then gives up on this connect.
const SUPERSEDED_AFTER: Duration = Duration::from_secs(5);

/// kube's `ClientBuilder::try_from(config)` with HTTP/2 offered by ALPN;
/// `config.proxy_url` is used as kube uses it.
pub fn client_builder(config: kube::Config) -> Result<ClientBuilder<GenericService>, kube::Error> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    match config.proxy_url.clone() {
        // kube's feature set here has no socks5: its own error.
        Some(proxy) if proxy.scheme_str() == Some("socks5") => {
            Err(kube::Error::ProxyProtocolDisabled {
                proxy_url: Box::new(proxy),
                protocol_feature: "kube/socks5",
            })
        }
        Some(proxy) if proxy.scheme_str() == Some("http") => {
            let tunnel = with_proxy_basic_auth(&proxy, Tunnel::new(proxy.clone(), http));
            stack(tunnel, config)
        }
        Some(proxy) if proxy.scheme_str() == Some("https") => {
            // TLS to the proxy itself as kube makes it (no ALPN: CONNECT is
            // HTTP/1.1); the server's TLS inside the tunnel offers h2.
            let to_proxy = config.rustls_https_connector_with_connector(http)?;
            let tunnel = with_proxy_basic_auth(&proxy, Tunnel::new(proxy.clone(), to_proxy));
            stack(tunnel, config)
        }
        Some(proxy) => Err(kube::Error::ProxyProtocolUnsupported {
            proxy_url: Box::new(proxy),
        }),
        None => stack(http, config),
    }
}

/// kube's `Proxy-Authorization` from the proxy URL's userinfo: percent
/// escapes decoded first (`http::Uri` keeps them), then `Basic` base64.
fn with_proxy_basic_auth<C>(proxy: &Uri, tunnel: Tunnel<C>) -> Tunnel<C> {
    let Some((userinfo, _)) = proxy.authority().and_then(|a| a.as_str().split_once('@')) else {
        return tunnel;
    };
    match http::HeaderValue::from_str(&proxy_basic_auth_value(userinfo)) {
        Ok(header) => tunnel.with_auth(header),
        Err(_) => tunnel,
    }
}

fn proxy_basic_auth_value(userinfo: &str) -> String {
    use base64::Engine as _;
    let plain: Vec<u8> = percent_encoding::percent_decode_str(userinfo).collect();
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(plain)
    )
}

/// kube's `make_generic_builder` over `connector`, with TLS offering `h2`
/// and `http/1.1` and the HTTP client configured for HTTP/2.
fn stack<H>(
    connector: H,
    config: kube::Config,
) -> Result<ClientBuilder<GenericService>, kube::Error>
where
    H: tower::Service<Uri> + Clone + Send + Sync + 'static,
    H::Response: Connection + hyper::rt::Read + hyper::rt::Write + Send + Unpin + 'static,
    H::Future: Send + 'static,
    H::Error: Into<BoxError>,
{
    let default_ns = config.default_namespace.clone();
    let auth_layer = config.auth_layer()?;

    // `rustls_client_config` keeps everything kube's connector has: the CA,
    // the client certificate (or the exec plugin's), insecure-skip-verify.
    let mut tls = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config.rustls_client_config()?)
        .https_or_http();
    if let Some(name) = &config.tls_server_name {
        tls = tls.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(
            name.clone()
                .try_into()
                .map_err(kube::client::RustlsTlsError::InvalidServerName)
                .map_err(kube::Error::RustlsTls)?,
        ));
    }
    // ALPN offers h2, then http/1.1 (kube offers nothing, which servers
    // answer with HTTP/1.1).
    let tls = tls.enable_http1().enable_http2().wrap_connector(connector);

    // The timeouts are kube's, per connection. With HTTP/2 the read timeout
    // covers the whole multiplexed connection, not one response: it fires
    // when nothing at all arrives for `read_timeout`. The keep-alive pings
    // below are answered by any live server, so it then only ends a
    // connection whose server went silent (which the pings' own timeout
    // finds first), never an idle watch nor a request the server is still
    // working on; over HTTP/1.1 (a server without h2) it bounds each
    // response as before.
    let mut connector = hyper_timeout::TimeoutConnector::new(AlpnGate::new(tls));
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);

    let client: hyper_util::client::legacy::Client<_, Body> =
        hyper_util::client::legacy::Builder::new(TokioExecutor::new())
            // The HTTP/2 keep-alive pings need a timer (HTTP/1.1 uses none).
            .timer(TokioTimer::new())
            .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .http2_keep_alive_while_idle(true)
            .build(connector);

    // kube's layers in kube's order (its retry layer is off: the caller
    // adds retries outside its own record of each attempt). kube's request
    // tracing is not public, so it is repeated here with kube's target, so
    // that `-v`/`-vv` and RUST_LOG filters show the same lines as before.
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(auth_layer)
        .layer(config.extra_headers_layer()?)
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request<Body>| {
                    tracing::debug_span!(
                        target: "kube_client::client::builder",
                        "HTTP",
                        http.method = %req.method(),
                        http.url = %req.uri(),
                        http.status_code = tracing::field::Empty,
                        otel.name = req.extensions().get::<&'static str>().unwrap_or(&"HTTP"),
                        otel.kind = "client",
                        otel.status_code = tracing::field::Empty,
                    )
                })
                .on_request(|_req: &Request<Body>, _span: &Span| {
                    tracing::debug!(target: "kube_client::client::builder", "requesting");
                })
                .on_response(
                    |res: &Response<Incoming>, _latency: Duration, span: &Span| {
                        let status = res.status();
                        span.record("http.status_code", status.as_u16());
                        if status.is_client_error() || status.is_server_error() {
                            span.record("otel.status_code", "ERROR");
                        }
                    },
                )
                .on_body_chunk(())
                .on_eos(|_: Option<&http::HeaderMap>, _: Duration, _: &Span| {
                    tracing::debug!(target: "kube_client::client::builder", "stream closed");
                })
                .on_failure(
                    |ec: ServerErrorsFailureClass, _latency: Duration, span: &Span| {
                        span.record("otel.status_code", "ERROR");
                        match ec {
                            ServerErrorsFailureClass::StatusCode(status) => {
                                span.record("http.status_code", status.as_u16());
                                tracing::error!(
                                    target: "kube_client::client::builder",
                                    "failed with status {}", status
                                )
                            }
                            ServerErrorsFailureClass::Error(err) => {
                                tracing::error!(
                                    target: "kube_client::client::builder",
                                    "failed with error {}", err
                                )
                            }
                        }
                    },
                ),
        )
        .map_err(BoxError::from)
        .service(client);

    // kube also stamps the client with the expiry of an exec plugin's
    // client certificate (`Client::valid_until`); that function is private
    // to kube and the tool never reads it (a fresh client per command).
    Ok(ClientBuilder::new(
        service
            .map_response(|res| {
                res.map(|body| {
                    Box::new(http_body_util::BodyExt::map_err(body, BoxError::from)) as Box<DynBody>
                })
            })
            .boxed(),
        default_ns,
    ))
}

/// Opens one connection at a time while the server's protocol is not
/// known, so that a round of concurrent first requests shares the one
/// HTTP/2 connection it brings instead of each opening its own TLS
/// connection (hyper's pool only holds back a second connect once it
/// knows the server speaks HTTP/2, i.e. after the first handshake ended).
///
/// The first connect opens; those that come while it is under way wait
/// for its outcome: HTTP/2, and they stay pending (their requests get the
/// new connection from the pool meanwhile, see [`SUPERSEDED_AFTER`]);
/// HTTP/1.1 or a failure, and they connect themselves, all at once, as
/// before. After an HTTP/1.1 answer connects are no longer held back
/// (HTTP/1.1 needs one connection per request in flight); after HTTP/2 the
/// next connect (the connection closed) is again the only one.
#[derive(Clone)]
struct AlpnGate<C> {
    inner: C,
    state: Arc<Mutex<GateState>>,
}

#[derive(Default)]
struct GateState {
    /// The server answered without `h2`.
    http1: bool,
    /// The connect under way and its number; waiters share its outcome.
    opening: Option<(u64, Shared<tokio::sync::oneshot::Receiver<Opened>>)>,
    opened: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opened {
    Http2,
    Http1,
    Failed,
}

impl<C> AlpnGate<C> {
    fn new(inner: C) -> Self {
        AlpnGate {
            inner,
            state: Arc::default(),
        }
    }
}

fn lock(state: &Mutex<GateState>) -> std::sync::MutexGuard<'_, GateState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Ends the turn of the connect numbered `.1` even when its future is
/// dropped (a timeout): waiters then see a closed channel and connect.
struct Turn(Arc<Mutex<GateState>>, u64);

impl Drop for Turn {
    fn drop(&mut self) {
        let mut state = lock(&self.0);
        if state.opening.as_ref().is_some_and(|(n, _)| *n == self.1) {
            state.opening = None;
        }
    }
}

/// A connect that was not needed: the request went on the HTTP/2
/// connection another connect opened meanwhile.
#[derive(Debug, thiserror::Error)]
#[error("not needed: the request went on the HTTP/2 connection opened meanwhile")]
struct Superseded;

impl<C> tower::Service<Uri> for AlpnGate<C>
where
    C: tower::Service<Uri> + Clone + Send + 'static,
    C::Response: Connection + Send + 'static,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<C::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        // The connector that was polled ready makes the call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let state = self.state.clone();
        enum Role {
            Direct,
            Open(tokio::sync::oneshot::Sender<Opened>, Turn),
            Wait(Shared<tokio::sync::oneshot::Receiver<Opened>>),
        }
        let role = {
            let mut s = lock(&state);
            if s.http1 {
                Role::Direct
            } else if let Some((_, outcome)) = &s.opening {
                Role::Wait(outcome.clone())
            } else {
                let (tx, rx) = tokio::sync::oneshot::channel();
                s.opened += 1;
                let n = s.opened;
                s.opening = Some((n, rx.shared()));
                Role::Open(tx, Turn(state.clone(), n))
            }
        };
        Box::pin(async move {
            match role {
                Role::Direct => inner.call(dst).await.map_err(Into::into),
                Role::Open(tx, turn) => {
                    let result = inner.call(dst).await;
                    let opened = match &result {
                        Ok(io) if io.connected().is_negotiated_h2() => Opened::Http2,
                        Ok(_) => Opened::Http1,
                        Err(_) => Opened::Failed,
                    };
                    if opened == Opened::Http1 {
                        lock(&state).http1 = true;
                    }
                    drop(turn);
                    let _ = tx.send(opened);
                    result.map_err(Into::into)
                }
                Role::Wait(outcome) => {
                    if outcome.await == Ok(Opened::Http2) {
                        tokio::time::sleep(SUPERSEDED_AFTER).await;
                        return Err(Box::new(Superseded) as Box<dyn StdError + Send + Sync>);
                    }
                    inner.call(dst).await.map_err(Into::into)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_credentials_are_percent_decoded_before_base64() {
        let basic = |plain: &str| {
            use base64::Engine as _;
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(plain)
            )
        };
        assert_eq!(
            proxy_basic_auth_value("user:pa%40ss%3Aword"),
            basic("user:pa@ss:word")
        );
        assert_eq!(proxy_basic_auth_value("user:pass"), basic("user:pass"));
        assert_eq!(
            proxy_basic_auth_value("user:pass%+A"),
            basic("user:pass%+A")
        );
    }
}
