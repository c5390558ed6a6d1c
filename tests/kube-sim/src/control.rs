//! The control endpoint: plain HTTP on 127.0.0.1 (no auth, loopback only)
//! for reading request logs and rollout counts and for changing faults at
//! run time. It stays up while a cluster is "down". Touches objects only as
//! a cloud's own add-on manager would (`addon-update`).
//!
//! | method | path | body / answer |
//! |---|---|---|
//! | GET | `/clusters` | every cluster's summary |
//! | GET | `/clusters/{zone}` | one cluster's summary |
//! | GET, PUT, PATCH | `/clusters/{zone}/faults` | [`Faults`] as JSON (PATCH merges) |
//! | GET, DELETE | `/clusters/{zone}/requests` | the request log / clear it |
//! | GET | `/clusters/{zone}/rollouts` | `{"ns/name": count}` |
//! | GET | `/clusters/{zone}/activity` | what its controllers and CockroachDB did |
//! | GET, DELETE | `/availability` | the simulated CockroachDB's availability record / restart it |
//! | GET | `/activity` | every cluster's activity, in order, with the zone |
//! | POST | `/clusters/{zone}/addon-update` | eks: the CoreDNS add-on update (overwrite) |
//! | POST | `/clusters/{zone}/restart` | restart as the distribution does (k3s rewrites `coredns`) |

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::cluster::ClusterShared;
use crate::config::Faults;
use crate::crdb::CrdbSim;
use crate::server::Body;

pub fn summary(c: &ClusterShared) -> Value {
    let store = c.store();
    json!({
        "zone": c.zone,
        "context": c.context,
        "region": c.region,
        "flavor": c.flavor.to_string(),
        "server": format!("https://127.0.0.1:{}", c.port),
        "pod_cidr": store.net.pod_cidr(),
        "service_cidr": store.net.service_cidr(),
        "dns_service_ip": store.net.dns_service_ip().to_string(),
        "listening": c.is_listening(),
        "faults": c.faults(),
    })
}

pub async fn run(clusters: Vec<Arc<ClusterShared>>, crdb: Arc<CrdbSim>, listener: TcpListener) {
    let clusters = Arc::new(clusters);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let clusters = clusters.clone();
        let crdb = crdb.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let clusters = clusters.clone();
                let crdb = crdb.clone();
                async move { Ok::<_, Infallible>(handle(&clusters, &crdb, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

fn reply(code: u16, v: Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(v.to_string())).boxed_unsync())
        .expect("valid response")
}

async fn handle(
    clusters: &[Arc<ClusterShared>],
    crdb: &CrdbSim,
    req: Request<Incoming>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let segs: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let method = req.method().clone();
    let find = |zone: &str| {
        clusters
            .iter()
            .find(|c| c.zone == zone || c.context == zone)
            .cloned()
    };
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match (method, segs.as_slice()) {
        (Method::GET, [] | ["clusters"]) => reply(
            200,
            json!({"clusters": clusters.iter().map(|c| summary(c)).collect::<Vec<_>>()}),
        ),
        (Method::GET, ["availability"]) => reply(200, crdb.availability(std::time::Instant::now())),
        (Method::DELETE, ["availability"]) => {
            crdb.reset_availability();
            reply(200, crdb.availability(std::time::Instant::now()))
        }
        (Method::GET, ["activity"]) => {
            let mut all: Vec<Value> = clusters
                .iter()
                .flat_map(|c| {
                    c.activity().into_iter().map(|a| {
                        let mut v = json!(a);
                        v["zone"] = json!(c.zone);
                        v
                    })
                })
                .collect();
            all.sort_by_key(|v| v["seq"].as_u64().unwrap_or(0));
            reply(200, json!(all))
        }
        (m, ["clusters", zone, rest @ ..]) => {
            let Some(c) = find(zone) else {
                return reply(
                    404,
                    json!({"error": format!("no cluster for zone {zone:?}")}),
                );
            };
            match (m, rest) {
                (Method::GET, []) => reply(200, summary(&c)),
                (Method::GET, ["faults"]) => reply(200, json!(c.faults())),
                (m @ (Method::PUT | Method::PATCH), ["faults"]) => {
                    let body = match req.into_body().collect().await {
                        Ok(b) => b.to_bytes(),
                        Err(e) => return reply(400, json!({"error": e.to_string()})),
                    };
                    let patch: Value = match serde_json::from_slice(&body) {
                        Ok(v) => v,
                        Err(e) => {
                            return reply(400, json!({"error": format!("body is not JSON: {e}")}));
                        }
                    };
                    let mut base = if m == Method::PATCH {
                        json!(c.faults())
                    } else {
                        json!(Faults::default())
                    };
                    json_patch::merge(&mut base, &patch);
                    match serde_json::from_value::<Faults>(base) {
                        Ok(f) => {
                            let cluster = crate::Cluster::from_shared(c.clone());
                            tokio::task::spawn_blocking(move || cluster.set_faults(f.clone()))
                                .await
                                .ok();
                            reply(200, json!(c.faults()))
                        }
                        Err(e) => reply(400, json!({"error": format!("invalid faults: {e}")})),
                    }
                }
                (Method::GET, ["requests"]) => reply(200, json!(c.requests())),
                (Method::DELETE, ["requests"]) => {
                    c.clear_requests();
                    reply(200, json!({"cleared": true}))
                }
                (Method::GET, ["rollouts"]) => reply(200, json!(c.all_rollouts())),
                (Method::GET, ["activity"]) => reply(200, json!(c.activity())),
                (Method::POST, ["restart"]) => {
                    match crate::Cluster::from_shared(c.clone()).restart() {
                        Ok(rewritten) => reply(200, json!({"rewritten": rewritten})),
                        Err(e) => reply(500, json!({"error": e.message})),
                    }
                }
                (Method::POST, ["addon-update"]) => {
                    match crate::Cluster::from_shared(c.clone()).addon_update() {
                        Ok(()) => reply(200, json!({"updated": "kube-system/coredns"})),
                        Err(e) => reply(400, json!({"error": e.message})),
                    }
                }
                _ => reply(
                    404,
                    json!({"error": format!("no such control path {path}")}),
                ),
            }
        }
        _ => reply(
            404,
            json!({"error": format!("no such control path {path}")}),
        ),
    }
}
