//! What one round of reads learned about a zone's cluster, so that later
//! steps of the same run need not ask again: the objects `apply` owns or
//! reads (listed together with the pre-flight requests), kept up to date
//! with the answers of our own writes.
//!
//! Owns the bookkeeping only: which kinds were listed where (so that an
//! object missing from a list is known not to exist), the objects seen,
//! and [`converged`], which tells from an object as it is whether a
//! server-side apply of the planned object would change anything. Makes no
//! request itself; [`crate::k8s`] fills it and reads through it.
//!
//! An object missing from a list filtered by our label is either absent or
//! exists without our label; applying it then creates it or changes it
//! (our labels are added), never leaves it unchanged.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::names;

type Key = (String, String, String);

#[derive(Debug, Default)]
struct State {
    /// The zone namespace: objects in it are absent when it is.
    zone_namespace: String,
    objects: HashMap<Key, Value>,
    absent: HashSet<Key>,
    /// (kind, namespace or `None` for every namespace, filtered by our label).
    listed: Vec<(String, Option<String>, bool)>,
}

/// A cluster's objects as last read or written in this run (shared by the
/// clones of a [`crate::k8s::Cluster`]).
#[derive(Debug, Clone, Default)]
pub struct Known(Arc<Mutex<State>>);

/// What is known about one object.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    Present(Value),
    Absent,
    /// Missing from a list filtered by our label: absent, or there without
    /// our label.
    AbsentOrUnlabelled,
    Unknown,
}

impl Known {
    pub fn new(zone_namespace: &str) -> Self {
        let known = Known::default();
        known.state().zone_namespace = zone_namespace.to_string();
        known
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a list of `K` in `namespace` (`None`: every namespace),
    /// filtered by our label or not.
    pub fn listed<K: Resource<DynamicType = ()> + Serialize>(
        &self,
        namespace: Option<&str>,
        labelled: bool,
        items: &[K],
    ) {
        let kind = K::kind(&()).to_string();
        let mut state = self.state();
        for item in items {
            if let Ok(v) = serde_json::to_value(item) {
                let key = key_of(&kind, &v);
                state.objects.insert(key, v);
            }
        }
        state
            .listed
            .push((kind, namespace.map(str::to_string), labelled));
    }

    /// Records one object read by name (`None`: it does not exist).
    pub fn read<K: Resource<DynamicType = ()> + Serialize>(
        &self,
        namespace: &str,
        name: &str,
        object: Option<&K>,
    ) {
        let kind = K::kind(&()).to_string();
        let key = (kind.clone(), namespace.to_string(), name.to_string());
        let mut state = self.state();
        match object.and_then(|o| serde_json::to_value(o).ok()) {
            Some(v) => {
                state.absent.remove(&key);
                state.objects.insert(key, v);
            }
            None => {
                state.objects.remove(&key);
                state.absent.insert(key);
            }
        }
    }

    /// Records an object as a write returned it.
    pub fn wrote(&self, kind: &str, object: &Value) {
        let key = key_of(kind, object);
        let mut state = self.state();
        state.absent.remove(&key);
        state.objects.insert(key, object.clone());
    }

    pub fn lookup(&self, kind: &str, namespace: &str, name: &str) -> Lookup {
        let key = (kind.to_string(), namespace.to_string(), name.to_string());
        let state = self.state();
        if let Some(v) = state.objects.get(&key) {
            return Lookup::Present(v.clone());
        }
        if state.absent.contains(&key) {
            return Lookup::Absent;
        }
        let covering = state
            .listed
            .iter()
            .filter(|(k, ns, _)| k == kind && ns.as_deref().is_none_or(|ns| ns == namespace));
        let mut labelled = false;
        for (_, _, l) in covering {
            if !l {
                return Lookup::Absent;
            }
            labelled = true;
        }
        if !labelled {
            return Lookup::Unknown;
        }
        let namespace_absent = state.absent.contains(&(
            "Namespace".to_string(),
            String::new(),
            state.zone_namespace.clone(),
        ));
        if namespace_absent && namespace == state.zone_namespace {
            Lookup::Absent
        } else {
            Lookup::AbsentOrUnlabelled
        }
    }

    /// The object if it is known to be there (`Some(Some)`) or known not to
    /// be (`Some(None)`); `None` when only a request can tell. `ours`: an
    /// object missing from a list filtered by our label counts as absent
    /// (for readers that skip objects without our label anyway).
    pub fn get<K: Resource<DynamicType = ()> + DeserializeOwned>(
        &self,
        namespace: &str,
        name: &str,
        ours: bool,
    ) -> Option<Option<K>> {
        match self.lookup(&K::kind(&()), namespace, name) {
            Lookup::Present(v) => serde_json::from_value(v).ok().map(Some),
            Lookup::Absent => Some(None),
            Lookup::AbsentOrUnlabelled if ours => Some(None),
            Lookup::AbsentOrUnlabelled | Lookup::Unknown => None,
        }
    }
}

fn key_of(kind: &str, v: &Value) -> Key {
    let meta = &v["metadata"];
    (
        kind.to_string(),
        meta["namespace"].as_str().unwrap_or_default().to_string(),
        meta["name"].as_str().unwrap_or_default().to_string(),
    )
}

/// Whether a server-side apply of `planned` by our field manager would
/// leave `live` as it is: our manager's applied field set (its `Apply`
/// entry in `metadata.managedFields`) is exactly the set of fields
/// `planned` sets, and every one of them has the planned value in `live`.
/// Then the apply neither sets a value nor removes a field it no longer
/// sets (server-side apply removes fields dropped from an applier's
/// configuration that only it owned), so it is a no-op. Lists owned by
/// key (`k:{...}` entries) are matched by key, sets (`v:`) by value,
/// atomic lists as a whole. When in doubt the answer is `false`, and the
/// caller applies.
pub fn converged(planned: &Value, live: &Value) -> bool {
    let Some(fields) = applied_fields(live) else {
        return false;
    };
    let mut planned = planned.clone();
    let Some(top) = planned.as_object_mut() else {
        return false;
    };
    top.remove("apiVersion");
    top.remove("kind");
    top.remove("status");
    if let Some(meta) = top.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("name");
        meta.remove("namespace");
        if meta.values().all(Value::is_null) {
            top.remove("metadata");
        }
    }
    object_matches(&planned, live, fields)
}

fn applied_fields(live: &Value) -> Option<&Map<String, Value>> {
    live["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|e| {
            e["manager"] == names::FIELD_MANAGER
                && e["operation"] == "Apply"
                && e.get("subresource").is_none_or(Value::is_null)
        })?
        .get("fieldsV1")?
        .as_object()
}

fn object_matches(planned: &Value, live: &Value, fields: &Map<String, Value>) -> bool {
    let (Some(p), Some(l)) = (planned.as_object(), live.as_object()) else {
        return false;
    };
    let set: HashSet<&str> = p
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, _)| k.as_str())
        .collect();
    let owned: HashSet<&str> = fields.keys().filter_map(|k| k.strip_prefix("f:")).collect();
    if set != owned || fields.keys().any(|k| k != "." && !k.starts_with("f:")) {
        return false;
    }
    set.iter().all(|k| {
        let (Some(pv), Some(lv)) = (p.get(*k), l.get(*k)) else {
            return false;
        };
        let Some(f) = fields.get(&format!("f:{k}")).and_then(Value::as_object) else {
            return false;
        };
        let f_children = f.keys().any(|k| k != ".");
        match pv {
            _ if !f_children => subset(pv, lv),
            Value::Object(_) => object_matches(pv, lv, f),
            Value::Array(items) => list_matches(items, lv, f),
            _ => false,
        }
    })
}

fn list_matches(planned: &[Value], live: &Value, fields: &Map<String, Value>) -> bool {
    let Some(live) = live.as_array() else {
        return false;
    };
    let entries: Vec<(&String, &Value)> = fields.iter().filter(|(k, _)| *k != ".").collect();
    if entries.len() != planned.len() {
        return false;
    }
    entries.iter().all(|(k, f)| {
        if let Some(key) = k.strip_prefix("k:") {
            let Ok(Value::Object(key)) = serde_json::from_str::<Value>(key) else {
                return false;
            };
            // The key holds the item's key fields as stored, defaults
            // included (a port's `protocol: TCP`): a planned item may leave
            // one out. Two planned items matching one key means no match.
            let planned_key = |item: &&Value| {
                key.iter()
                    .all(|(kk, kv)| item.get(kk).is_none_or(|v| v.is_null() || v == kv))
            };
            let live_key = |item: &&Value| key.iter().all(|(kk, kv)| item.get(kk) == Some(kv));
            let ps: Vec<&Value> = planned.iter().filter(planned_key).collect();
            let ls: Vec<&Value> = live.iter().filter(live_key).collect();
            match (ps.as_slice(), ls.as_slice(), f.as_object()) {
                ([p], [l], Some(f)) => object_matches(p, l, f),
                _ => false,
            }
        } else if let Some(value) = k.strip_prefix("v:") {
            let Ok(value) = serde_json::from_str::<Value>(value) else {
                return false;
            };
            planned.contains(&value) && live.contains(&value)
        } else {
            false
        }
    })
}

/// Every non-null field of `planned` has the same value in `live` (lists
/// item by item, same length).
fn subset(planned: &Value, live: &Value) -> bool {
    match (planned, live) {
        (Value::Object(p), Value::Object(l)) => p
            .iter()
            .filter(|(_, v)| !v.is_null())
            .all(|(k, v)| l.get(k).is_some_and(|lv| subset(v, lv))),
        (Value::Array(p), Value::Array(l)) => {
            p.len() == l.len() && p.iter().zip(l).all(|(p, l)| subset(p, l))
        }
        (Value::Number(p), Value::Number(l)) => p.as_f64() == l.as_f64(),
        (p, l) => p == l,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn live(fields: Value, body: Value) -> Value {
        let mut v = body;
        v["metadata"]["managedFields"] = json!([
            {"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:data": {"f:other": {}}}},
            {"manager": names::FIELD_MANAGER, "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": fields},
        ]);
        v
    }

    fn planned() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "s", "namespace": "n", "labels": {"a": "1"}},
            "spec": {"ports": [{"name": "grpc", "port": 26257}], "selector": {"app": "x"}}
        })
    }

    fn fields_by_key() -> Value {
        json!({
            "f:metadata": {"f:labels": {"f:a": {}}},
            "f:spec": {
                "f:ports": {"k:{\"port\":26257,\"protocol\":\"TCP\"}": {".": {}, "f:name": {}, "f:port": {}}},
                "f:selector": {"f:app": {}}
            }
        })
    }

    fn body() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "s", "namespace": "n", "resourceVersion": "7", "labels": {"a": "1", "b": "2"}},
            "spec": {"ports": [{"name": "grpc", "port": 26257, "protocol": "TCP"}], "selector": {"app": "x"}, "type": "ClusterIP"},
            "status": {}
        })
    }

    #[test]
    fn an_object_whose_applied_fields_and_values_match_the_plan_is_converged() {
        assert!(converged(&planned(), &live(fields_by_key(), body())));
        // Atomic lists (kube-sim's only kind of list) are compared whole.
        let atomic = json!({
            "f:metadata": {"f:labels": {"f:a": {}}},
            "f:spec": {"f:ports": {}, "f:selector": {"f:app": {}}}
        });
        assert!(converged(&planned(), &live(atomic, body())));
    }

    #[test]
    fn a_changed_value_a_dropped_field_or_another_owner_is_not_converged() {
        let mut changed = planned();
        changed["spec"]["selector"]["app"] = json!("y");
        assert!(!converged(&changed, &live(fields_by_key(), body())));
        // We once set label `c` and no longer do: the apply would remove it.
        let mut more = fields_by_key();
        more["f:metadata"]["f:labels"]["f:c"] = json!({});
        assert!(!converged(&planned(), &live(more, body())));
        // A field we set now but do not own yet.
        let mut less = fields_by_key();
        less["f:spec"].as_object_mut().unwrap().remove("f:selector");
        assert!(!converged(&planned(), &live(less, body())));
        // Another port in the plan.
        let mut ports = planned();
        ports["spec"]["ports"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "http", "port": 8080}));
        assert!(!converged(&ports, &live(fields_by_key(), body())));
        // Never applied by us.
        let mut none = body();
        none["metadata"]["managedFields"] = json!([]);
        assert!(!converged(&planned(), &none));
    }

    #[test]
    fn missing_from_a_labelled_list_is_absent_only_inside_an_absent_zone_namespace() {
        let known = Known::new("db");
        known.listed::<k8s_openapi::api::core::v1::Secret>(None, true, &[]);
        assert_eq!(
            known.lookup("Secret", "default", "x"),
            Lookup::AbsentOrUnlabelled
        );
        assert_eq!(
            known.lookup("Secret", "db", "x"),
            Lookup::AbsentOrUnlabelled
        );
        known.read::<k8s_openapi::api::core::v1::Namespace>("", "db", None);
        assert_eq!(known.lookup("Secret", "db", "x"), Lookup::Absent);
        assert_eq!(known.lookup("ConfigMap", "db", "x"), Lookup::Unknown);
        known.listed::<k8s_openapi::api::core::v1::ConfigMap>(Some("db"), false, &[]);
        assert_eq!(known.lookup("ConfigMap", "db", "x"), Lookup::Absent);
        assert_eq!(known.lookup("ConfigMap", "other", "x"), Lookup::Unknown);
    }
}
