//! The HTTPS API server of one simulated cluster: listener lifecycle (down
//! and back up on the same port), bearer-token auth, injected faults, the
//! request log, URL routing, discovery, watch streams, and translation of
//! requests into [`Store`](crate::store::Store) calls. Must not implement
//! object semantics itself (the store does).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::cluster::ClusterShared;
use crate::config::RequestRecord;
use crate::error::ApiError;
use crate::fieldcheck::FieldValidation;
use crate::resources::{self, idx};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::store::{Event, EventType, Ownership, PatchKind, WriteCtx, Written, name_of};

pub type Body = UnsyncBoxBody<Bytes, Infallible>;

const BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed_unsync()
}

/// Serve one cluster until the task is dropped. `down` in the faults closes
/// the listener and every open connection; clearing it binds the same port again.
/// The TLS of the API port: offering `h2` and `http/1.1`, or `http/1.1`
/// alone while the `disable_http2` fault is set.
#[derive(Clone)]
pub struct Tls {
    pub http2: TlsAcceptor,
    pub http1: TlsAcceptor,
}

pub async fn run(shared: Arc<ClusterShared>, tls: Tls, first: TcpListener) {
    let mut faults_rx = shared.faults.subscribe();
    let mut listener = Some(first);
    loop {
        let l = match listener.take() {
            Some(l) => l,
            None => {
                let _ = faults_rx.wait_for(|f| !f.down).await;
                match TcpListener::bind(("127.0.0.1", shared.port)).await {
                    Ok(l) => l,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                }
            }
        };
        if faults_rx.borrow().down {
            drop(l);
            shared.listening.store(false, Ordering::SeqCst);
            let _ = faults_rx.wait_for(|f| !f.down).await;
            continue;
        }
        shared.listening.store(true, Ordering::SeqCst);
        loop {
            tokio::select! {
                accepted = l.accept() => {
                    let Ok((tcp, _)) = accepted else { continue };
                    let _ = tcp.set_nodelay(true);
                    let number = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
                    tokio::spawn(connection(shared.clone(), tls.clone(), tcp, number, shared.faults.subscribe()));
                }
                _ = faults_rx.wait_for(|f| f.down) => break,
            }
        }
        drop(l);
        shared.listening.store(false, Ordering::SeqCst);
    }
}

/// The most requests one HTTP/2 connection may have in flight at once, as
/// kube-apiserver announces it (`SETTINGS_MAX_CONCURRENT_STREAMS`): its
/// default since the HTTP/2 rapid-reset fix (CVE-2023-44487), the same as
/// Go's HTTP/2 client assumes (docs/simulator.md, "HTTP/2").
pub const HTTP2_MAX_STREAMS: u32 = 100;

/// One accepted connection: TLS, then HTTP/2 when the client offered `h2`
/// by ALPN and HTTP/1.1 otherwise, as kube-apiserver (Go's net/http)
/// chooses: by the negotiated protocol only, never by sniffing the bytes.
async fn connection(
    shared: Arc<ClusterShared>,
    tls: Tls,
    tcp: tokio::net::TcpStream,
    number: u64,
    mut faults_rx: watch::Receiver<crate::config::Faults>,
) {
    let tls = if faults_rx.borrow().disable_http2 {
        tls.http1
    } else {
        tls.http2
    };
    let serve = async {
        let Ok(stream) = tls.accept(tcp).await else {
            return;
        };
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
        // kube-apiserver ends an HTTP/2 connection after answering 401 on
        // it (GOAWAY, then close): unauthenticated clients get no
        // long-lived HTTP/2 connections (docs/simulator.md, "HTTP/2").
        let goaway = Arc::new(tokio::sync::Notify::new());
        let svc = hyper::service::service_fn({
            let goaway = goaway.clone();
            move |req| {
                let shared = shared.clone();
                let goaway = goaway.clone();
                async move {
                    let response = handle(shared, number, req).await;
                    if h2 && response.status() == hyper::StatusCode::UNAUTHORIZED {
                        goaway.notify_one();
                    }
                    Ok::<_, Infallible>(response)
                }
            }
        });
        let io = TokioIo::new(stream);
        if h2 {
            let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .max_concurrent_streams(HTTP2_MAX_STREAMS)
                .serve_connection(io, svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = goaway.notified() => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        } else {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await;
        }
    };
    tokio::select! {
        _ = serve => {}
        _ = faults_rx.wait_for(|f| f.down) => {}
    }
}

/// What a handler produced, before logging.
enum Reply {
    Json(u16, Value, bool),
    /// A write's object, whether it changed, and `Warning` headers.
    Written(u16, Value, bool, Vec<String>),
    Text(String),
    Raw(&'static str, Bytes),
    /// What a proxied backend answered: status, content type, body.
    Proxied(u16, &'static str, String),
    Stream(Body),
}

fn error_response(e: &ApiError, retry_after: Option<Duration>) -> Response<Body> {
    let mut b = Response::builder()
        .status(e.code)
        .header("content-type", "application/json");
    if let Some(ra) = retry_after {
        b = b.header("retry-after", ra.as_secs().max(1).to_string());
    }
    b.body(full(e.to_status().to_string()))
        .expect("valid response")
}

fn client_name(req: &Request<Incoming>, query: &HashMap<String, String>) -> String {
    query
        .get("fieldManager")
        .cloned()
        .or_else(|| {
            req.headers()
                .get("user-agent")
                .and_then(|v| v.to_str().ok())
                .map(|ua| ua.split('/').next().unwrap_or(ua).to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

pub async fn handle(
    shared: Arc<ClusterShared>,
    connection: u64,
    req: Request<Incoming>,
) -> Response<Body> {
    let start = Instant::now();
    let h2 = req.version() == hyper::Version::HTTP_2;
    let protocol = if h2 { "HTTP/2" } else { "HTTP/1.1" };
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let raw_query = req.uri().query().unwrap_or("").to_string();
    let query: HashMap<String, String> = form_urlencoded::parse(raw_query.as_bytes())
        .into_owned()
        .collect();
    let client = client_name(&req, &query);
    let faults = shared.faults();
    let record = |status: u16, changed: bool| RequestRecord {
        method: method.clone(),
        path: path.clone(),
        query: raw_query.clone(),
        status,
        duration: start.elapsed(),
        started_us: shared.crdb.micros_since_start(start),
        changed,
        client: client.clone(),
        connection,
        protocol: protocol.to_string(),
    };

    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t.trim() == shared.token);
    if !authorized {
        shared.record(record(401, false));
        return error_response(&ApiError::unauthorized(), None);
    }
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    if faults.error_rate > 0.0 && shared.roll() < faults.error_rate {
        let e = ApiError::injected(faults.error_code);
        shared.record(record(e.code, false));
        return error_response(&e, faults.retry_after);
    }

    let result = route(&shared, req, &path, &query, &client).await;
    match result {
        Ok(Reply::Json(code, v, changed)) => {
            shared.record(record(code, changed));
            Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(full(v.to_string()))
                .expect("valid response")
        }
        Ok(Reply::Written(code, v, changed, warnings)) => {
            shared.record(record(code, changed));
            let mut b = Response::builder()
                .status(code)
                .header("content-type", "application/json");
            for w in warnings {
                // RFC 7234 warn-code 299, agent "-", as the API server sends them.
                let text = serde_json::to_string(&w).unwrap_or_default();
                b = b.header("warning", format!("299 - {text}"));
            }
            b.body(full(v.to_string())).expect("valid response")
        }
        Ok(Reply::Text(t)) => {
            shared.record(record(200, false));
            Response::builder()
                .status(200)
                .header("content-type", "text/plain")
                .body(full(t))
                .expect("valid response")
        }
        Ok(Reply::Raw(content_type, bytes)) => {
            shared.record(record(200, false));
            Response::builder()
                .status(200)
                .header("content-type", content_type)
                .body(full(bytes))
                .expect("valid response")
        }
        Ok(Reply::Proxied(code, content_type, body)) => {
            shared.record(record(code, false));
            Response::builder()
                .status(code)
                .header("content-type", content_type)
                .body(full(body))
                .expect("valid response")
        }
        Ok(Reply::Stream(body)) => {
            shared.record(record(200, false));
            let mut b = Response::builder()
                .status(200)
                .header("content-type", "application/json");
            if !h2 {
                // HTTP/2 has no chunked encoding: its DATA frames stream.
                b = b.header("transfer-encoding", "chunked");
            }
            b.body(body).expect("valid response")
        }
        Err(e) => {
            shared.record(record(e.code, false));
            error_response(&e, None)
        }
    }
}

/// A parsed resource URL.
enum Target {
    Collection {
        res: usize,
        ns: Option<String>,
    },
    Object {
        res: usize,
        ns: String,
        name: String,
        sub: Option<String>,
    },
}

fn parse_target(group: &str, version: &str, segs: &[&str], path: &str) -> Result<Target, ApiError> {
    let nf = || ApiError::path_not_found(path);
    let (ns, rest): (Option<String>, &[&str]) = if segs.len() >= 3
        && segs[0] == "namespaces"
        && resources::by_plural(group, version, segs[2])
            .is_some_and(|r| resources::def(r).namespaced)
    {
        (Some(segs[1].to_string()), &segs[2..])
    } else {
        (None, segs)
    };
    let res = resources::by_plural(group, version, rest.first().ok_or_else(nf)?).ok_or_else(nf)?;
    let def = resources::def(res);
    if def.namespaced && ns.is_none() && rest.len() > 1 {
        return Err(nf());
    }
    match rest.len() {
        1 => Ok(Target::Collection { res, ns }),
        2 | 3 => {
            let sub = rest.get(2).map(|s| s.to_string());
            if let Some(s) = &sub
                && !def.subresources.contains(&s.as_str())
            {
                return Err(nf());
            }
            Ok(Target::Object {
                res,
                ns: ns.unwrap_or_default(),
                name: rest[1].to_string(),
                sub,
            })
        }
        _ => Err(nf()),
    }
}

async fn body_json(req: Request<Incoming>, yaml_ok: bool) -> Result<(Value, String), ApiError> {
    let ct = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let protobuf = ct.starts_with("application/vnd.kubernetes.protobuf");
    if ct.starts_with("application/cbor") {
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {ct:?})"
            ),
        ));
    }
    let bytes = req
        .into_body()
        .collect()
        .await
        .map_err(|e| ApiError::bad_request(format!("could not read the request body: {e}")))?
        .to_bytes();
    if bytes.is_empty() {
        return Ok((Value::Null, ct));
    }
    if protobuf {
        return Ok((crate::proto::decode(&bytes)?, ct));
    }
    match serde_json::from_slice(&bytes) {
        Ok(v) => Ok((v, ct)),
        Err(e) if yaml_ok => {
            let text = String::from_utf8_lossy(&bytes);
            serde_saphyr::from_str::<Value>(&text)
                .map(|v| (v, ct))
                .map_err(|_| {
                    ApiError::bad_request(format!("the request body is neither JSON nor YAML: {e}"))
                })
        }
        Err(e) => Err(ApiError::bad_request(format!(
            "the request body is not valid JSON: {e}"
        ))),
    }
}

fn flag(query: &HashMap<String, String>, key: &str) -> bool {
    query.get(key).is_some_and(|v| v == "true" || v == "1")
}

fn field_validation(query: &HashMap<String, String>) -> Result<FieldValidation, ApiError> {
    FieldValidation::from_query(query.get("fieldValidation").map(String::as_str))
}

fn dry_run(query: &HashMap<String, String>) -> Result<bool, ApiError> {
    match query.get("dryRun").map(String::as_str) {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "invalid dry run value {other:?}: only \"All\" is supported"
        ))),
    }
}

async fn route(
    shared: &Arc<ClusterShared>,
    req: Request<Incoming>,
    path: &str,
    query: &HashMap<String, String>,
    client: &str,
) -> Result<Reply, ApiError> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let get = req.method() == Method::GET;
    let server_addr = format!("127.0.0.1:{}", shared.port);
    match segs.as_slice() {
        ["version"] if get => {
            let minor = shared.faults().server_minor.unwrap_or(36);
            return Ok(Reply::Json(
                200,
                json!({
                    "major": "1", "minor": minor.to_string(), "gitVersion": format!("v1.{minor}.0-kube-sim"),
                    "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
                    "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc",
                    "platform": "linux/amd64",
                }),
                false,
            ));
        }
        ["healthz"] | ["livez"] | ["readyz"] if get => return Ok(Reply::Text("ok".into())),
        ["openapi", "v2"] if get => {
            let accept = req
                .headers()
                .get("accept")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if accept.contains("protobuf") {
                // An empty protobuf message is a valid, empty OpenAPI v2 document.
                return Ok(Reply::Raw(
                    "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
                    Bytes::new(),
                ));
            }
            return Ok(Reply::Json(200, resources::openapi_v2(), false));
        }
        ["openapi", "v3"] if get => {
            return Ok(Reply::Json(200, resources::openapi_v3_root(), false));
        }
        ["openapi", "v3", "api", "v1"] if get => {
            return resources::openapi_v3_doc("", "v1")
                .map(|v| Reply::Json(200, v, false))
                .ok_or_else(|| ApiError::path_not_found(path));
        }
        ["openapi", "v3", "apis", g, v] if get => {
            return resources::openapi_v3_doc(g, v)
                .map(|v| Reply::Json(200, v, false))
                .ok_or_else(|| ApiError::path_not_found(path));
        }
        ["api"] if get => {
            return Ok(Reply::Json(
                200,
                resources::api_versions(&server_addr),
                false,
            ));
        }
        ["apis"] if get => return Ok(Reply::Json(200, resources::api_group_list(), false)),
        ["api", "v1"] if get => {
            return resources::resource_list("", "v1")
                .map(|v| Reply::Json(200, v, false))
                .ok_or_else(|| ApiError::path_not_found(path));
        }
        ["apis", g] if get => {
            return resources::api_group_doc(g)
                .map(|v| Reply::Json(200, v, false))
                .ok_or_else(|| ApiError::path_not_found(path));
        }
        ["apis", g, v] if get => {
            return resources::resource_list(g, v)
                .map(|v| Reply::Json(200, v, false))
                .ok_or_else(|| ApiError::path_not_found(path));
        }
        _ => {}
    }
    if let [
        "api",
        "v1",
        "namespaces",
        ns,
        "pods",
        id,
        "proxy",
        rest @ ..,
    ] = segs.as_slice()
    {
        if !(get || req.method() == Method::HEAD) {
            return Err(ApiError::method_not_allowed());
        }
        return pod_proxy(shared, ns, id, &rest.join("/"), query);
    }
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::path_not_found(path)),
    };
    let target = parse_target(group, version, rest, path)?;
    let method = req.method().clone();
    let table = req
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(crate::table::wants_table);
    match (method, target) {
        (Method::GET, Target::Collection { res, ns }) => {
            if flag(query, "watch") {
                watch(shared, res, ns, query, table)
            } else {
                list(shared, res, ns.as_deref(), query, table)
            }
        }
        (Method::POST, Target::Collection { res, ns }) => {
            let def = resources::def(res);
            if def.create_only {
                let (mut body, _) = body_json(req, false).await?;
                if def.kind == "SelfSubjectRulesReview" {
                    let faults = shared.faults();
                    body["status"] = if faults.webhook_authorizer {
                        webhook_rules_review()
                    } else {
                        rules_review(&faults.denied)
                    };
                    return Ok(Reply::Json(201, body, false));
                }
                let attrs = &body["spec"]["resourceAttributes"];
                let asked = format!(
                    "{} {}",
                    attrs["verb"].as_str().unwrap_or_default(),
                    attrs["resource"].as_str().unwrap_or_default()
                );
                body["status"] = if shared.faults().denied.contains(&asked) {
                    json!({"allowed": false, "reason": "denied by kube-sim (faults.denied)"})
                } else {
                    json!({"allowed": true, "reason": "kube-sim allows every request"})
                };
                return Ok(Reply::Json(201, body, false));
            }
            if def.namespaced && ns.is_none() {
                return Err(ApiError::method_not_allowed());
            }
            let (body, _) = body_json(req, false).await?;
            let ctx = WriteCtx {
                ownership: Ownership::Update(client),
                dry_run: dry_run(query)?,
                validation: field_validation(query)?,
            };
            let w = shared
                .store()
                .create(res, ns.as_deref().unwrap_or(""), body, ctx)?;
            Ok(written(201, w))
        }
        (Method::DELETE, Target::Collection { res, ns }) => {
            let def = resources::def(res);
            if def.namespaced && ns.is_none() {
                return Err(ApiError::method_not_allowed());
            }
            let (body, _) = body_json(req, false).await?;
            delete_collection(shared, res, ns.as_deref().unwrap_or(""), query, &body)
        }
        (Method::GET, Target::Object { res, ns, name, sub }) => {
            get_object(shared, res, &ns, &name, sub.as_deref(), query, table)
        }
        (Method::PUT, Target::Object { res, ns, name, sub }) => {
            let (body, _) = body_json(req, false).await?;
            let ctx = WriteCtx {
                ownership: Ownership::Update(client),
                dry_run: dry_run(query)?,
                validation: field_validation(query)?,
            };
            match sub.as_deref() {
                Some("scale") => {
                    let mut store = shared.store();
                    set_replicas(&mut store, res, &ns, &name, &body, ctx)
                }
                Some("finalize") => {
                    let mut store = shared.store();
                    let w = store.replace(res, &ns, &name, body, false, ctx)?;
                    Ok(written(200, w))
                }
                Some("log") => Err(ApiError::method_not_allowed()),
                s => {
                    let w =
                        shared
                            .store()
                            .replace(res, &ns, &name, body, s == Some("status"), ctx)?;
                    Ok(written(200, w))
                }
            }
        }
        (Method::PATCH, Target::Object { res, ns, name, sub }) => {
            let (body, ct) = body_json(req, true).await?;
            let kind = PatchKind::from_content_type(&ct)
                .ok_or_else(|| ApiError::unsupported_media_type(&ct))?;
            let manager = query
                .get("fieldManager")
                .map(String::as_str)
                .unwrap_or(client);
            if kind == PatchKind::Apply && query.get("fieldManager").is_none_or(|m| m.is_empty()) {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                ));
            }
            let ctx = WriteCtx {
                ownership: Ownership::Update(manager),
                dry_run: dry_run(query)?,
                validation: field_validation(query)?,
            };
            let force = flag(query, "force");
            match sub.as_deref() {
                Some("scale") => {
                    let mut store = shared.store();
                    let live = store
                        .get(res, &ns, &name)
                        .ok_or_else(|| ApiError::not_found(resources::def(res), &name))?;
                    let mut scale = scale_of(res, &live);
                    match kind {
                        PatchKind::Json => crate::patch::json_patch(&mut scale, &body)?,
                        _ => crate::patch::merge_patch(&mut scale, &body),
                    }
                    set_replicas(&mut store, res, &ns, &name, &scale, ctx)
                }
                Some("log") | Some("finalize") => Err(ApiError::method_not_allowed()),
                s => {
                    let w = shared.store().patch(
                        res,
                        &ns,
                        &name,
                        kind,
                        &body,
                        s == Some("status"),
                        force,
                        ctx,
                    )?;
                    let code = if w.created { 201 } else { 200 };
                    Ok(written(code, w))
                }
            }
        }
        (
            Method::DELETE,
            Target::Object {
                res,
                ns,
                name,
                sub: None,
            },
        ) => {
            let (body, _) = body_json(req, false).await?;
            let propagation = query.get("propagationPolicy").cloned().or_else(|| {
                body.get("propagationPolicy")
                    .and_then(Value::as_str)
                    .map(String::from)
            });
            let dry = dry_run(query)?
                || body
                    .get("dryRun")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().any(|v| v == "All"));
            let grace = query
                .get("gracePeriodSeconds")
                .and_then(|g| g.parse::<i64>().ok())
                .or_else(|| body.get("gracePeriodSeconds").and_then(Value::as_i64));
            let w = shared.store().delete_with_grace(
                res,
                &ns,
                &name,
                propagation.as_deref(),
                dry,
                grace,
            )?;
            Ok(written(200, w))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// `pods/proxy`: the API server forwards the request to the pod's IP and
/// port (`[scheme:]name[:port]`, as `ResourceLocation` in
/// pkg/registry/core/pod/strategy.go parses it). Behind it, only the
/// simulated CockroachDB listens: its HTTPS port [`crate::crdb::HTTP_PORT`]
/// serves `/_status/vars` and `/health`; anything else is refused.
fn pod_proxy(
    shared: &Arc<ClusterShared>,
    ns: &str,
    id: &str,
    path: &str,
    query: &HashMap<String, String>,
) -> Result<Reply, ApiError> {
    let parts: Vec<&str> = id.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [name] => ("", *name, ""),
        [name, port] => ("", *name, *port),
        [scheme, name, port] if matches!(*scheme, "http" | "https") => (*scheme, *name, *port),
        _ => {
            return Err(ApiError::bad_request(format!("invalid pod request {id:?}")));
        }
    };
    if name.is_empty() {
        return Err(ApiError::bad_request(format!("invalid pod request {id:?}")));
    }
    let pod = shared
        .store()
        .get(idx::POD, ns, name)
        .ok_or_else(|| ApiError::not_found(resources::def(idx::POD), name))?;
    let port = if port.is_empty() {
        pod.pointer("/spec/containers/0/ports/0/containerPort")
            .and_then(Value::as_u64)
            .map(|p| p.to_string())
            .unwrap_or_default()
    } else {
        port.to_string()
    };
    let ip = pod
        .pointer("/status/podIP")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if ip.parse::<std::net::Ipv4Addr>().is_err() {
        return Err(ApiError::bad_request("address not allowed"));
    }
    let refused = || {
        Reply::Proxied(
            503,
            "text/plain; charset=utf-8",
            format!(
                "error trying to reach service: dial tcp {ip}:{port}: connect: connection refused"
            ),
        )
    };
    let serves = crate::crdb::is_crdb_pod(&pod)
        && crate::crdb::pod_process_runs(&pod)
        && port == crate::crdb::HTTP_PORT.to_string();
    if !serves {
        return Ok(refused());
    }
    if scheme != "https" {
        // CockroachDB in secure mode serves TLS only on its HTTP port.
        return Ok(Reply::Proxied(
            400,
            "text/plain; charset=utf-8",
            "Client sent an HTTP request to an HTTPS server.\n".into(),
        ));
    }
    let crdb = &shared.crdb;
    match path {
        "_status/vars" => Ok(Reply::Proxied(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            crdb.vars(shared.index, ns, name, Instant::now()),
        )),
        "health" => {
            let ready_asked = query.get("ready").is_some_and(|v| v == "1" || v == "true");
            if !ready_asked || crate::crdb::pod_serving_ready(&pod) {
                Ok(Reply::Proxied(200, "application/json", "{}".into()))
            } else {
                Ok(Reply::Proxied(
                    503,
                    "application/json",
                    json!({"error": "node is not healthy", "code": 14, "message": "node is not healthy", "details": []})
                        .to_string(),
                ))
            }
        }
        _ => Ok(Reply::Proxied(
            404,
            "text/plain; charset=utf-8",
            "404 page not found\n".into(),
        )),
    }
}

fn written(code: u16, w: Written) -> Reply {
    Reply::Written(code, w.obj, w.changed, w.warnings)
}

/// The autoscaling/v1 Scale view of a workload.
/// Writes `scale.spec.replicas` into the object behind a scale subresource
/// (PUT and PATCH of `/scale` alike) and answers with the new Scale.
fn set_replicas(
    store: &mut crate::store::Store,
    res: usize,
    ns: &str,
    name: &str,
    scale: &Value,
    ctx: WriteCtx,
) -> Result<Reply, ApiError> {
    let replicas = scale.pointer("/spec/replicas").cloned().unwrap_or(json!(0));
    let patch = json!({"spec": {"replicas": replicas}});
    let w = store.patch(res, ns, name, PatchKind::Merge, &patch, false, false, ctx)?;
    Ok(Reply::Json(200, scale_of(res, &w.obj), w.changed))
}

fn scale_of(_res: usize, obj: &Value) -> Value {
    let selector = obj
        .pointer("/spec/selector")
        .map(|s| LabelSelector::from_object(s).to_query())
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": obj["metadata"]["name"],
            "namespace": obj["metadata"]["namespace"],
            "uid": obj["metadata"]["uid"],
            "resourceVersion": obj["metadata"]["resourceVersion"],
            "creationTimestamp": obj["metadata"]["creationTimestamp"],
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
        "status": {
            "replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}

fn get_object(
    shared: &Arc<ClusterShared>,
    res: usize,
    ns: &str,
    name: &str,
    sub: Option<&str>,
    query: &HashMap<String, String>,
    table: bool,
) -> Result<Reply, ApiError> {
    let def = resources::def(res);
    let obj = shared
        .store()
        .get(res, ns, name)
        .ok_or_else(|| ApiError::not_found(def, name))?;
    match sub {
        Some("scale") => Ok(Reply::Json(200, scale_of(res, &obj), false)),
        Some("log") => {
            let text = shared.pod_log(ns, name).unwrap_or_else(|| {
                format!("kube-sim: pod {ns}/{name} is simulated and writes no log\n")
            });
            Ok(Reply::Text(text))
        }
        _ if table => {
            let include = query.get("includeObject").map(String::as_str).unwrap_or("");
            let rv = crate::store::rv_of(&obj).to_string();
            Ok(Reply::Json(
                200,
                crate::table::table(res, &[(*obj).clone()], &rv, include),
                false,
            ))
        }
        _ => Ok(Reply::Json(200, (*obj).clone(), false)),
    }
}

fn selectors(query: &HashMap<String, String>) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let ls = LabelSelector::parse(query.get("labelSelector").map(String::as_str).unwrap_or(""))?;
    let fs = FieldSelector::parse(query.get("fieldSelector").map(String::as_str).unwrap_or(""))?;
    Ok((ls, fs))
}

fn list(
    shared: &Arc<ClusterShared>,
    res: usize,
    ns: Option<&str>,
    query: &HashMap<String, String>,
    table: bool,
) -> Result<Reply, ApiError> {
    let def = resources::def(res);
    if def.create_only {
        return Err(ApiError::method_not_allowed());
    }
    let (ls, fs) = selectors(query)?;
    let store = shared.store();
    let items: Vec<Value> = store
        .list(res, ns)
        .into_iter()
        .filter(|o| ls.matches(o) && fs.matches(o))
        .map(|o| (*o).clone())
        .collect();
    if table {
        let include = query.get("includeObject").map(String::as_str).unwrap_or("");
        let rv = store.current_rv().to_string();
        return Ok(Reply::Json(
            200,
            crate::table::table(res, &items, &rv, include),
            false,
        ));
    }
    Ok(Reply::Json(
        200,
        json!({
            "kind": format!("{}List", def.kind),
            "apiVersion": def.api_version(),
            "metadata": {"resourceVersion": store.current_rv().to_string()},
            "items": items,
        }),
        false,
    ))
}

fn delete_collection(
    shared: &Arc<ClusterShared>,
    res: usize,
    ns: &str,
    query: &HashMap<String, String>,
    body: &Value,
) -> Result<Reply, ApiError> {
    let def = resources::def(res);
    let (ls, fs) = selectors(query)?;
    let propagation = query.get("propagationPolicy").cloned().or_else(|| {
        body.get("propagationPolicy")
            .and_then(Value::as_str)
            .map(String::from)
    });
    let dry = dry_run(query)?;
    let mut store = shared.store();
    let ns_filter = if def.namespaced { Some(ns) } else { None };
    let names: Vec<String> = store
        .list(res, ns_filter)
        .into_iter()
        .filter(|o| ls.matches(o) && fs.matches(o))
        .map(|o| name_of(&o).to_string())
        .collect();
    let mut items = Vec::new();
    let mut changed = false;
    for name in names {
        if res == idx::NAMESPACE && crate::store::PROTECTED_NAMESPACES.contains(&name.as_str()) {
            continue;
        }
        let w = store.delete(res, ns, &name, propagation.as_deref(), dry)?;
        changed |= w.changed;
        items.push(w.obj);
    }
    Ok(Reply::Json(
        200,
        json!({
            "kind": format!("{}List", def.kind),
            "apiVersion": def.api_version(),
            "metadata": {"resourceVersion": store.current_rv().to_string()},
            "items": items,
        }),
        changed,
    ))
}

/// Filter for one watch: which events it sees and how selector transitions map.
struct WatchFilter {
    /// Send Table rows (kubectl get -w) with this `includeObject`.
    table_include: Option<String>,
    res: usize,
    ns: Option<String>,
    ls: LabelSelector,
    fs: FieldSelector,
}

impl WatchFilter {
    fn render(&self, obj: &Value) -> Value {
        match &self.table_include {
            Some(include) => {
                let rv = crate::store::rv_of(obj).to_string();
                crate::table::table(self.res, std::slice::from_ref(obj), &rv, include)
            }
            None => obj.clone(),
        }
    }

    fn matches(&self, obj: &Value) -> bool {
        self.ls.matches(obj) && self.fs.matches(obj)
    }

    /// The event type this watcher sees for a store event, if any.
    fn translate(&self, ev: &Event) -> Option<EventType> {
        if ev.res != self.res || self.ns.as_ref().is_some_and(|ns| *ns != ev.ns) {
            return None;
        }
        let now = self.matches(&ev.obj);
        match ev.kind {
            EventType::Added => now.then_some(EventType::Added),
            EventType::Deleted => ev
                .old
                .as_ref()
                .is_some_and(|o| self.matches(o))
                .then_some(EventType::Deleted),
            EventType::Modified => {
                let before = ev.old.as_ref().is_some_and(|o| self.matches(o));
                match (before, now) {
                    (true, true) => Some(EventType::Modified),
                    (true, false) => Some(EventType::Deleted),
                    (false, true) => Some(EventType::Added),
                    (false, false) => None,
                }
            }
        }
    }
}

fn event_line(kind: &str, obj: &Value) -> Bytes {
    let mut s = json!({"type": kind, "object": obj}).to_string();
    s.push('\n');
    Bytes::from(s)
}

fn watch(
    shared: &Arc<ClusterShared>,
    res: usize,
    ns: Option<String>,
    query: &HashMap<String, String>,
    table: bool,
) -> Result<Reply, ApiError> {
    let def = resources::def(res);
    if def.create_only {
        return Err(ApiError::method_not_allowed());
    }
    let (ls, fs) = selectors(query)?;
    let table_include = table.then(|| query.get("includeObject").cloned().unwrap_or_default());
    let filter = WatchFilter {
        res,
        ns,
        ls,
        fs,
        table_include,
    };
    let bookmarks = flag(query, "allowWatchBookmarks");
    let send_initial = flag(query, "sendInitialEvents");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_WATCH_TIMEOUT);
    let rv_param = query.get("resourceVersion").cloned().unwrap_or_default();

    let mut initial: Vec<Bytes> = Vec::new();
    let mut expired = false;
    let (rx, start_rv) = {
        let store = shared.store();
        let rx = store.subscribe();
        let current = store.current_rv();
        if send_initial || rv_param.is_empty() || rv_param == "0" {
            for o in store.list(res, filter.ns.as_deref()) {
                if filter.matches(&o) {
                    initial.push(event_line("ADDED", &filter.render(&o)));
                }
            }
            if send_initial {
                let bm = json!({
                    "kind": def.kind, "apiVersion": def.api_version(),
                    "metadata": {"resourceVersion": current.to_string(),
                                 "annotations": {"k8s.io/initial-events-end": "true"}},
                });
                initial.push(event_line("BOOKMARK", &bm));
            }
        } else {
            let rv: u64 = rv_param.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid resourceVersion {rv_param:?}"))
            })?;
            match store.events_since(rv) {
                Ok(events) => {
                    for ev in events {
                        if let Some(kind) = filter.translate(&ev) {
                            initial.push(event_line(kind.as_str(), &filter.render(&ev.obj)));
                        }
                    }
                }
                Err(e) => {
                    expired = true;
                    initial.push(event_line("ERROR", &e.to_status()));
                }
            }
        }
        (rx, current)
    };
    let (tx, body_rx) = mpsc::channel::<Bytes>(256);
    let kind = def.kind;
    let api_version = def.api_version();
    tokio::spawn(async move {
        for line in initial {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        if expired {
            return;
        }
        stream_events(
            rx,
            tx,
            filter,
            start_rv,
            bookmarks,
            timeout,
            kind,
            api_version,
        )
        .await;
    });
    let stream = futures::stream::unfold(body_rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    Ok(Reply::Stream(BodyExt::boxed_unsync(StreamBody::new(
        stream,
    ))))
}

#[allow(clippy::too_many_arguments)]
async fn stream_events(
    mut rx: broadcast::Receiver<Arc<Event>>,
    tx: mpsc::Sender<Bytes>,
    filter: WatchFilter,
    start_rv: u64,
    bookmarks: bool,
    timeout: Duration,
    kind: &'static str,
    api_version: String,
) {
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_rv = start_rv;
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Ok(ev) => {
                    if ev.rv <= last_rv {
                        continue;
                    }
                    last_rv = ev.rv;
                    if let Some(t) = filter.translate(&ev)
                        && tx.send(event_line(t.as_str(), &filter.render(&ev.obj))).await.is_err() {
                            return;
                        }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let e = ApiError::gone("the watch fell behind; resume from a newer resourceVersion");
                    let _ = tx.send(event_line("ERROR", &e.to_status())).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = ticker.tick(), if bookmarks => {
                let bm = json!({"kind": kind, "apiVersion": api_version,
                                "metadata": {"resourceVersion": last_rv.to_string()}});
                if tx.send(event_line("BOOKMARK", &bm)).await.is_err() {
                    return;
                }
            }
            _ = tx.closed() => return,
            _ = &mut deadline => return,
        }
    }
}

/// The rules review of a user whose permissions a webhook authorizer
/// grants: the apiserver's union authorizer asks each authorizer for its
/// rules; RBAC lists what the default `system:basic-user` role allows, and
/// the webhook authorizer cannot list any, so the review is `incomplete`
/// with its error (k8s.io/apiserver plugin/pkg/authorizer/webhook:
/// RulesFor returns "webhook authorizer does not support user rule
/// resolution"; `kubectl auth can-i --list` prints it as a warning).
fn webhook_rules_review() -> Value {
    json!({
        "resourceRules": [
            {"verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
             "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]},
            {"verbs": ["create"], "apiGroups": ["authentication.k8s.io"],
             "resources": ["selfsubjectreviews"]},
        ],
        "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/version", "/version/"]}],
        "incomplete": true,
        "evaluationError": "webhook authorizer does not support user rule resolution",
    })
}

/// The status of a SelfSubjectRulesReview: what the caller may do in the
/// namespace asked about, as RBAC lists it (authorization.k8s.io/v1
/// SubjectRulesReviewStatus: `resourceRules`, `nonResourceRules`,
/// `incomplete`). Without denials it is the `cluster-admin` role's one
/// rule (every verb on every resource); with `faults.denied` it lists, per
/// served resource, the verbs that are not denied, as an RBAC role
/// granting exactly those would (RBAC rules only add; "everything but"
/// cannot be one rule). The create-only review resources are always
/// allowed, as the default `system:basic-user` role allows them.
fn rules_review(denied: &[String]) -> Value {
    const VERBS: &[&str] = &[
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    ];
    let reviews = json!({
        "verbs": ["create"],
        "apiGroups": ["authorization.k8s.io"],
        "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
    });
    let rules: Vec<Value> = if denied.is_empty() {
        vec![
            json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}),
            reviews,
        ]
    } else {
        resources::RESOURCES
            .iter()
            .filter(|r| !r.create_only)
            .filter_map(|r| {
                let verbs: Vec<&str> = VERBS
                    .iter()
                    .copied()
                    .filter(|v| !denied.contains(&format!("{v} {}", r.plural)))
                    .collect();
                (!verbs.is_empty()).then(|| {
                    let mut resources = vec![r.plural.to_string()];
                    resources.extend(r.subresources.iter().map(|s| format!("{}/{s}", r.plural)));
                    json!({"verbs": verbs, "apiGroups": [r.group], "resources": resources})
                })
            })
            .chain(std::iter::once(reviews))
            .collect()
    };
    json!({
        "resourceRules": rules,
        "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": ["*"]}],
        "incomplete": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        let t = parse_target("", "v1", &["namespaces", "db", "pods", "x", "log"], "/")
            .ok()
            .unwrap();
        assert!(
            matches!(t, Target::Object { res: idx::POD, ref ns, ref name, sub: Some(ref s) } if ns == "db" && name == "x" && s == "log")
        );
        let t = parse_target("", "v1", &["namespaces", "db", "status"], "/")
            .ok()
            .unwrap();
        assert!(matches!(t, Target::Object { res: idx::NAMESPACE, ref name, .. } if name == "db"));
        let t = parse_target("", "v1", &["namespaces", "db", "pods"], "/")
            .ok()
            .unwrap();
        assert!(matches!(
            t,
            Target::Collection {
                res: idx::POD,
                ns: Some(_)
            }
        ));
        let t = parse_target("", "v1", &["pods"], "/").ok().unwrap();
        assert!(matches!(
            t,
            Target::Collection {
                res: idx::POD,
                ns: None
            }
        ));
        assert!(parse_target("", "v1", &["pods", "x"], "/").is_err());
        assert!(parse_target("", "v1", &["namespaces", "db", "pods", "x", "nope"], "/").is_err());
    }

    #[test]
    fn scale_view() {
        let s = scale_of(
            idx::STATEFULSET,
            &json!({"metadata": {"name": "x"}, "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "db"}}}}),
        );
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["status"]["selector"], "app=db");
        assert!(s.get("_kind").is_none());
    }
}
