//! Decoding of the Kubernetes protobuf encoding for the few request bodies
//! kubectl's typed clients send that way (`kubectl create namespace`,
//! `create configmap`/`secret`/`serviceaccount`, DeleteOptions). Everything
//! else answers 415 so clients fall back or fail loudly. Pure.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::error::ApiError;

const MAGIC: &[u8] = b"k8s\0";

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        out |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return Some(out);
        }
    }
    None
}

fn fields(buf: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < buf.len() {
        let tag = varint(buf, &mut pos)?;
        let f = match tag & 7 {
            0 => Field::Varint(varint(buf, &mut pos)?),
            1 => {
                pos += 8;
                Field::Fixed
            }
            2 => {
                let len = varint(buf, &mut pos)? as usize;
                let b = buf.get(pos..pos + len)?;
                pos += len;
                Field::Bytes(b)
            }
            5 => {
                pos += 4;
                Field::Fixed
            }
            _ => return None,
        };
        out.push((tag >> 3, f));
    }
    Some(out)
}

fn string(b: &[u8]) -> Value {
    json!(String::from_utf8_lossy(b))
}

fn map_entry(b: &[u8], bytes_value: bool) -> Option<(String, Value)> {
    let mut key = String::new();
    let mut value = json!("");
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(k)) => key = String::from_utf8_lossy(k).to_string(),
            (2, Field::Bytes(v)) if bytes_value => {
                value = json!(base64::engine::general_purpose::STANDARD.encode(v))
            }
            (2, Field::Bytes(v)) => value = string(v),
            _ => {}
        }
    }
    Some((key, value))
}

fn insert_entry(
    obj: &mut Map<String, Value>,
    field: &str,
    b: &[u8],
    bytes_value: bool,
) -> Option<()> {
    let (k, v) = map_entry(b, bytes_value)?;
    obj.entry(field)
        .or_insert_with(|| json!({}))
        .as_object_mut()?
        .insert(k, v);
    Some(())
}

fn object_meta(b: &[u8]) -> Option<Value> {
    let mut m = Map::new();
    for (n, f) in fields(b)? {
        match (n, f) {
            (1, Field::Bytes(v)) => {
                m.insert("name".into(), string(v));
            }
            (2, Field::Bytes(v)) => {
                m.insert("generateName".into(), string(v));
            }
            (3, Field::Bytes(v)) => {
                m.insert("namespace".into(), string(v));
            }
            (6, Field::Bytes(v)) => {
                m.insert("resourceVersion".into(), string(v));
            }
            (11, Field::Bytes(v)) => insert_entry(&mut m, "labels", v, false)?,
            (12, Field::Bytes(v)) => insert_entry(&mut m, "annotations", v, false)?,
            (14, Field::Bytes(v)) => m
                .entry("finalizers")
                .or_insert_with(|| json!([]))
                .as_array_mut()?
                .push(string(v)),
            _ => {}
        }
    }
    Some(Value::Object(m))
}

fn decode_kind(api_version: &str, kind: &str, raw: &[u8]) -> Option<Value> {
    let mut o = Map::new();
    o.insert("apiVersion".into(), json!(api_version));
    o.insert("kind".into(), json!(kind));
    for (n, f) in fields(raw)? {
        match (kind, n, f) {
            ("DeleteOptions", 1, Field::Varint(v)) => {
                o.insert("gracePeriodSeconds".into(), json!(v as i64));
            }
            ("DeleteOptions", 3, Field::Varint(v)) => {
                o.insert("orphanDependents".into(), json!(v != 0));
            }
            ("DeleteOptions", 4, Field::Bytes(v)) => {
                o.insert("propagationPolicy".into(), string(v));
            }
            ("DeleteOptions", 5, Field::Bytes(v)) => o
                .entry("dryRun")
                .or_insert_with(|| json!([]))
                .as_array_mut()?
                .push(string(v)),
            ("DeleteOptions", _, _) => {}
            (_, 1, Field::Bytes(v)) => {
                o.insert("metadata".into(), object_meta(v)?);
            }
            ("Namespace", 2, Field::Bytes(v)) => {
                let mut fin = Vec::new();
                for (n, f) in fields(v)? {
                    if let (1, Field::Bytes(s)) = (n, f) {
                        fin.push(string(s));
                    }
                }
                o.insert("spec".into(), json!({"finalizers": fin}));
            }
            ("ConfigMap", 2, Field::Bytes(v)) => insert_entry(&mut o, "data", v, false)?,
            ("ConfigMap", 3, Field::Bytes(v)) => insert_entry(&mut o, "binaryData", v, true)?,
            ("ConfigMap", 4, Field::Varint(v)) | ("Secret", 5, Field::Varint(v)) => {
                o.insert("immutable".into(), json!(v != 0));
            }
            ("Secret", 2, Field::Bytes(v)) => insert_entry(&mut o, "data", v, true)?,
            ("Secret", 3, Field::Bytes(v)) => {
                o.insert("type".into(), string(v));
            }
            ("Secret", 4, Field::Bytes(v)) => insert_entry(&mut o, "stringData", v, false)?,
            _ => {}
        }
    }
    Some(Value::Object(o))
}

/// Decode a `application/vnd.kubernetes.protobuf` body into JSON.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let unsupported = |what: &str| {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "kube-sim decodes protobuf only for Namespace, ConfigMap, Secret, ServiceAccount and DeleteOptions ({what}); send application/json"
            ),
        )
    };
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| unsupported("no k8s envelope"))?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    for (n, f) in fields(envelope).ok_or_else(|| unsupported("malformed envelope"))? {
        match (n, f) {
            (1, Field::Bytes(tm)) => {
                for (n, f) in fields(tm).ok_or_else(|| unsupported("malformed type meta"))? {
                    match (n, f) {
                        (1, Field::Bytes(v)) => {
                            api_version = String::from_utf8_lossy(v).to_string()
                        }
                        (2, Field::Bytes(v)) => kind = String::from_utf8_lossy(v).to_string(),
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(r)) => raw = r,
            _ => {}
        }
    }
    if kind.starts_with("SelfSubject") {
        // Access reviews are always allowed; what was asked does not matter.
        return Ok(json!({"apiVersion": api_version, "kind": kind, "spec": {}}));
    }
    if !matches!(
        kind.as_str(),
        "Namespace" | "ConfigMap" | "Secret" | "ServiceAccount" | "DeleteOptions"
    ) {
        return Err(unsupported(&format!("got {api_version} {kind}")));
    }
    decode_kind(&api_version, &kind, raw).ok_or_else(|| unsupported("malformed object"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(fields: &[(u8, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, b) in fields {
            out.push((n << 3) | 2);
            out.push(b.len() as u8);
            out.extend_from_slice(b);
        }
        out
    }

    #[test]
    fn decodes_a_namespace() {
        let label = msg(&[(1, b"team"), (2, b"db")]);
        let meta = msg(&[(1, b"crdb"), (11, &label)]);
        let ns = msg(&[(1, &meta)]);
        let tm = msg(&[(1, b"v1"), (2, b"Namespace")]);
        let mut body = MAGIC.to_vec();
        body.extend(msg(&[(1, &tm), (2, &ns)]));
        let v = decode(&body).unwrap();
        assert_eq!(v["metadata"]["name"], "crdb");
        assert_eq!(v["metadata"]["labels"]["team"], "db");
        assert_eq!(v["kind"], "Namespace");
    }

    #[test]
    fn refuses_other_kinds() {
        let tm = msg(&[(1, b"apps/v1"), (2, b"StatefulSet")]);
        let mut body = MAGIC.to_vec();
        body.extend(msg(&[(1, &tm)]));
        assert_eq!(decode(&body).unwrap_err().code, 415);
    }
}
