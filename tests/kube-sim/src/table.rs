//! Server-side printing: `meta.k8s.io/v1` Table responses for clients that
//! ask for them (`kubectl get`), with the columns kubectl users expect for
//! the common kinds and NAME/AGE for the rest. Pure.

use serde_json::{Value, json};

use crate::resources::idx;

pub fn wants_table(accept: &str) -> bool {
    accept.contains("as=Table") && accept.contains("g=meta.k8s.io")
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn n(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

/// kubectl-style age: 45s, 5m10s, 42m, 5h, 3d.
pub fn age(created: &str, now: time::OffsetDateTime) -> String {
    let Ok(t) =
        time::OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339)
    else {
        return "<unknown>".to_string();
    };
    let secs = (now - t).whole_seconds().max(0);
    match secs {
        0..=119 => format!("{secs}s"),
        120..=599 => format!("{}m{}s", secs / 60, secs % 60),
        600..=10799 => format!("{}m", secs / 60),
        10800..=172799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

type Column = (&'static str, &'static str, u8);

fn columns(res: usize) -> Vec<Column> {
    let mut c: Vec<Column> = vec![("Name", "string", 0)];
    c.extend_from_slice(match res {
        idx::NAMESPACE => &[("Status", "string", 0)],
        idx::NODE => &[("Status", "string", 0), ("Roles", "string", 0)],
        idx::POD => &[
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
        ],
        idx::SERVICE => &[
            ("Type", "string", 0),
            ("Cluster-IP", "string", 0),
            ("External-IP", "string", 0),
            ("Port(s)", "string", 0),
        ],
        idx::SECRET => &[("Type", "string", 0), ("Data", "string", 0)],
        idx::CONFIGMAP => &[("Data", "string", 0)],
        idx::ENDPOINTS => &[("Endpoints", "string", 0)],
        idx::PVC => &[
            ("Status", "string", 0),
            ("Capacity", "string", 0),
            ("Access Modes", "string", 0),
        ],
        idx::STATEFULSET => &[("Ready", "string", 0)],
        idx::DEPLOYMENT => &[
            ("Ready", "string", 0),
            ("Up-to-date", "string", 0),
            ("Available", "string", 0),
        ],
        idx::JOB => &[("Status", "string", 0), ("Completions", "string", 0)],
        _ => &[],
    });
    c.push(("Age", "string", 0));
    match res {
        idx::NODE => c.push(("Version", "string", 0)),
        idx::POD => {
            c.push(("IP", "string", 1));
            c.push(("Node", "string", 1));
        }
        idx::SERVICE => c.push(("Selector", "string", 1)),
        _ => {}
    }
    c
}

fn service_ports(o: &Value) -> String {
    let ports = o
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if ports.is_empty() {
        return "<none>".into();
    }
    ports
        .iter()
        .map(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match p.get("nodePort") {
                Some(np) => format!("{}:{}/{proto}", p["port"], np),
                None => format!("{}/{proto}", p["port"]),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn external_ip(o: &Value) -> String {
    let ingress: Vec<String> = o
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|i| {
                    i.get("ip")
                        .or_else(|| i.get("hostname"))
                        .and_then(Value::as_str)
                })
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    if !ingress.is_empty() {
        ingress.join(",")
    } else if s(o, "/spec/type") == "LoadBalancer" {
        "<pending>".into()
    } else {
        "<none>".into()
    }
}

fn cells(res: usize, o: &Value, now: time::OffsetDateTime) -> Vec<Value> {
    let name = s(o, "/metadata/name").to_string();
    let age = age(s(o, "/metadata/creationTimestamp"), now);
    let count = |ptr: &str| {
        o.pointer(ptr)
            .and_then(Value::as_object)
            .map(|m| m.len())
            .unwrap_or(0)
    };
    let mut c: Vec<Value> = vec![json!(name)];
    match res {
        idx::NAMESPACE => c.push(json!(s(o, "/status/phase"))),
        idx::NODE => {
            c.push(json!("Ready"));
            c.push(json!("<none>"));
        }
        idx::POD => {
            let total = o
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map(Vec::len)
                .unwrap_or(0);
            let ready = o
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter(|c| c["ready"] == true).count())
                .unwrap_or(0);
            let status = if o.pointer("/metadata/deletionTimestamp").is_some() {
                "Terminating"
            } else if s(o, "/status/phase") == "Succeeded" {
                "Completed"
            } else {
                s(o, "/status/phase")
            };
            c.extend([json!(format!("{ready}/{total}")), json!(status), json!("0")]);
        }
        idx::SERVICE => c.extend([
            json!(s(o, "/spec/type")),
            json!(s(o, "/spec/clusterIP")),
            json!(external_ip(o)),
            json!(service_ports(o)),
        ]),
        idx::SECRET => c.extend([json!(s(o, "/type")), json!(count("/data"))]),
        idx::CONFIGMAP => c.push(json!(count("/data") + count("/binaryData"))),
        idx::ENDPOINTS => {
            let mut eps = Vec::new();
            for subset in o
                .get("subsets")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                for a in subset
                    .get("addresses")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    for p in subset
                        .get("ports")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        eps.push(format!("{}:{}", s(a, "/ip"), p["port"]));
                    }
                }
            }
            c.push(json!(if eps.is_empty() {
                "<none>".to_string()
            } else {
                eps.join(",")
            }));
        }
        idx::PVC => {
            let modes: Vec<&str> = o
                .pointer("/status/accessModes")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|m| match m.as_str().unwrap_or("") {
                            "ReadWriteOnce" => "RWO",
                            "ReadOnlyMany" => "ROX",
                            "ReadWriteMany" => "RWX",
                            other => other,
                        })
                        .collect()
                })
                .unwrap_or_default();
            c.extend([
                json!(s(o, "/status/phase")),
                json!(s(o, "/status/capacity/storage")),
                json!(modes.join(",")),
            ]);
        }
        idx::STATEFULSET => c.push(json!(format!(
            "{}/{}",
            n(o, "/status/readyReplicas"),
            o.pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1)
        ))),
        idx::DEPLOYMENT => c.extend([
            json!(format!(
                "{}/{}",
                n(o, "/status/readyReplicas"),
                o.pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1)
            )),
            json!(n(o, "/status/updatedReplicas")),
            json!(n(o, "/status/availableReplicas")),
        ]),
        idx::JOB => {
            let complete = o
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Complete" && c["status"] == "True")
                });
            c.extend([
                json!(if complete { "Complete" } else { "Running" }),
                json!(format!(
                    "{}/{}",
                    n(o, "/status/succeeded"),
                    o.pointer("/spec/completions")
                        .and_then(Value::as_i64)
                        .unwrap_or(1)
                )),
            ]);
        }
        _ => {}
    }
    c.push(json!(age));
    match res {
        idx::NODE => c.push(json!(s(o, "/status/nodeInfo/kubeletVersion"))),
        idx::POD => {
            let ip = s(o, "/status/podIP");
            let node = s(o, "/spec/nodeName");
            c.push(json!(if ip.is_empty() { "<none>" } else { ip }));
            c.push(json!(if node.is_empty() { "<none>" } else { node }));
        }
        idx::SERVICE => {
            let sel = o
                .pointer("/spec/selector")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            c.push(json!(if sel.is_empty() {
                "<none>".to_string()
            } else {
                sel
            }));
        }
        _ => {}
    }
    c
}

/// A Table of `objs`; `include` is the `includeObject` query parameter.
pub fn table(res: usize, objs: &[Value], resource_version: &str, include: &str) -> Value {
    let now = time::OffsetDateTime::now_utc();
    let defs: Vec<Value> = columns(res)
        .into_iter()
        .map(|(name, ty, priority)| {
            let mut d = json!({"name": name, "type": ty, "format": "", "description": name, "priority": priority});
            if name == "Name" {
                d["format"] = json!("name");
            }
            d
        })
        .collect();
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let mut row = json!({"cells": cells(res, o, now)});
            match include {
                "None" => {}
                "Object" => row["object"] = o.clone(),
                _ => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": o.get("metadata").cloned().unwrap_or(json!({})),
                    })
                }
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": defs,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_rows_show_addresses_and_ports() {
        let svc = json!({
            "metadata": {"name": "lb", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.200.0.5", "ports": [{"port": 53, "protocol": "UDP", "nodePort": 30001}]},
            "status": {"loadBalancer": {}},
        });
        let t = table(idx::SERVICE, &[svc], "1", "");
        let cells = &t["rows"][0]["cells"];
        assert_eq!(cells[0], "lb");
        assert_eq!(cells[3], "<pending>");
        assert_eq!(cells[4], "53:30001/UDP");
        assert_eq!(
            t["columnDefinitions"].as_array().unwrap().len(),
            cells.as_array().unwrap().len()
        );
    }

    #[test]
    fn ages() {
        let now = time::OffsetDateTime::parse(
            "2026-01-01T01:00:00Z",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        assert_eq!(age("2026-01-01T00:59:30Z", now), "30s");
        assert_eq!(age("2026-01-01T00:55:00Z", now), "5m0s");
        assert_eq!(age("2026-01-01T00:00:00Z", now), "60m");
        assert_eq!(age("nonsense", now), "<unknown>");
    }
}
