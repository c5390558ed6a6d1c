//! What a change of one object means, for `diff` and dry runs: the changed
//! fields with their old and new values, a unified text diff of the object
//! as YAML, and the consequences a user should know before applying it (a
//! rolling restart of the zone's CockroachDB nodes, a scale-down that
//! removes nodes (apply decommissions them first), a field Kubernetes does not
//! allow to change).
//!
//! Pure: the I/O layers pass in the object as it is in the cluster and as
//! the server's dry run says it would be. Secrets' `data` and `stringData`
//! never leave this module unmasked ([`prepare`] masks them as `kubectl
//! diff` does: `***`, or `*** (before)` and `*** (after)` when a value
//! changes; k8s.io/kubectl/pkg/cmd/diff, `Masker`).

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value;

use crate::k8s;

/// What masks a Secret value that is the same on both sides (or on one).
pub const MASK: &str = "***";
/// What masks a Secret value that changes, before and after.
pub const MASK_BEFORE: &str = "*** (before)";
pub const MASK_AFTER: &str = "*** (after)";

/// The StatefulSet spec fields Kubernetes lets an update change; any other
/// is refused ("updates to statefulset spec for fields other than ... are
/// forbidden", k8s.io/kubernetes pkg/apis/apps/validation,
/// ValidateStatefulSetUpdate).
pub const STATEFULSET_MUTABLE: &[&str] = &[
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "revisionHistoryLimit",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
];

/// One changed field: its path (`spec.replicas`,
/// `spec.template.spec.containers[0].image`, `data["ca.crt"]`) and its
/// values; a side without the field has no value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
}

/// Both sides ready to show: without the fields the server maintains
/// ([`k8s::comparable`]) and, for a Secret, with its data masked.
pub fn prepare(kind: &str, before: &Value, after: &Value) -> (Value, Value) {
    let mut before = k8s::comparable(before);
    let mut after = k8s::comparable(after);
    if kind == "Secret" {
        mask_secret(&mut before, &mut after);
    }
    (before, after)
}

fn mask_secret(before: &mut Value, after: &mut Value) {
    for field in ["data", "stringData"] {
        let old = before.get(field).and_then(Value::as_object).cloned();
        let new = after.get(field).and_then(Value::as_object).cloned();
        let masked = |own: &Option<serde_json::Map<String, Value>>,
                      other: &Option<serde_json::Map<String, Value>>,
                      changed: &str| {
            own.as_ref().map(|own| {
                own.iter()
                    .map(|(k, v)| {
                        let other = other.as_ref().and_then(|o| o.get(k));
                        let mask = match other {
                            Some(o) if o != v => changed,
                            _ => MASK,
                        };
                        (k.clone(), Value::String(mask.to_string()))
                    })
                    .collect::<serde_json::Map<_, _>>()
            })
        };
        let masked_old = masked(&old, &new, MASK_BEFORE);
        let masked_new = masked(&new, &old, MASK_AFTER);
        if let (Some(m), Some(o)) = (masked_old, before.as_object_mut()) {
            o.insert(field.to_string(), Value::Object(m));
        }
        if let (Some(m), Some(o)) = (masked_new, after.as_object_mut()) {
            o.insert(field.to_string(), Value::Object(m));
        }
    }
}

/// Every field whose value differs, depth first in key order. Objects are
/// compared key by key and lists of the same length item by item; a list
/// whose length changes is one change.
pub fn field_changes(before: &Value, after: &Value) -> Vec<FieldChange> {
    fn walk(a: Option<&Value>, b: Option<&Value>, path: String, out: &mut Vec<FieldChange>) {
        match (a, b) {
            (Some(Value::Object(x)), Some(Value::Object(y))) => {
                let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    walk(x.get(k), y.get(k), join_key(&path, k), out);
                }
            }
            (Some(Value::Array(x)), Some(Value::Array(y))) if x.len() == y.len() => {
                for (i, (a, b)) in x.iter().zip(y).enumerate() {
                    walk(Some(a), Some(b), format!("{path}[{i}]"), out);
                }
            }
            _ if a != b => out.push(FieldChange {
                path,
                old: a.cloned(),
                new: b.cloned(),
            }),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(Some(before), Some(after), String::new(), &mut out);
    out
}

/// `path.key`, or `path["key"]` when the key holds anything but letters,
/// digits, `-` and `_` (`data["ca.crt"]`, `labels["app.kubernetes.io/name"]`).
fn join_key(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    match (plain, path.is_empty()) {
        (true, true) => key.to_string(),
        (true, false) => format!("{path}.{key}"),
        (false, _) => format!("{path}[{}]", Value::String(key.to_string())),
    }
}

/// A unified diff (3 lines of context) of the two sides as YAML, headed
/// `--- old_label` / `+++ new_label`; empty when they are equal.
pub fn unified(before: &Value, after: &Value, old_label: &str, new_label: &str) -> String {
    let old = yaml(before);
    let new = yaml(after);
    if old == new {
        return String::new();
    }
    similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(3)
        .header(old_label, new_label)
        .to_string()
}

fn yaml(v: &Value) -> String {
    serde_saphyr::to_string(v).unwrap_or_else(|e| format!("# could not serialise: {e}\n"))
}

/// The live object with the planned one laid over it: what the server would
/// store if it took the planned fields (planned objects win, lists of the
/// same length are laid over item by item so the server's defaults inside
/// them stay). Used to show a change the server refused to dry-run.
pub fn overlay(live: &Value, planned: &Value) -> Value {
    match (live, planned) {
        (Value::Object(l), Value::Object(p)) => {
            let mut out = l.clone();
            for (k, v) in p {
                let merged = match l.get(k) {
                    Some(lv) => overlay(lv, v),
                    None => v.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(l), Value::Array(p)) if l.len() == p.len() => {
            Value::Array(l.iter().zip(p).map(|(l, p)| overlay(l, p)).collect())
        }
        (_, p) => p.clone(),
    }
}

/// What applying a change to `kind` in `zone` does beyond storing it, one
/// sentence each: for a StatefulSet, a rolling restart when the pod template
/// changes, the removal of nodes when replicas decrease, and a refusal when
/// a field Kubernetes does not allow to change differs. `before` and
/// `after` as from [`prepare`].
pub fn consequences(zone: &str, kind: &str, before: &Value, after: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if kind != "StatefulSet" {
        return out;
    }
    let namespace = after
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = after
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let replicas = |v: &Value| v.pointer("/spec/replicas").and_then(Value::as_i64);
    let (old, new) = (replicas(before), replicas(after));

    let frozen: Vec<String> = {
        let spec = |v: &Value| v.get("spec").and_then(Value::as_object).cloned();
        let (b, a) = (
            spec(before).unwrap_or_default(),
            spec(after).unwrap_or_default(),
        );
        let keys: BTreeSet<&String> = b.keys().chain(a.keys()).collect();
        keys.into_iter()
            .filter(|k| !STATEFULSET_MUTABLE.contains(&k.as_str()) && b.get(*k) != a.get(*k))
            .map(|k| format!("spec.{k}"))
            .collect()
    };
    if !frozen.is_empty() {
        let storage = if frozen.iter().any(|f| f == "spec.volumeClaimTemplates") {
            format!(
                " To give the nodes bigger volumes: expand each PersistentVolumeClaim of the StatefulSet (`kubectl -n {namespace} patch pvc datadir-{name}-0 -p '{{\"spec\":{{\"resources\":{{\"requests\":{{\"storage\":\"NEW\"}}}}}}}}'`, for every ordinal; the StorageClass must allow volume expansion), then `kubectl -n {namespace} delete statefulset {name} --cascade=orphan` (the pods keep running) and apply again (docs/operations.md#expanding-storage)."
            )
        } else {
            format!(
                " Delete the StatefulSet with `kubectl -n {namespace} delete statefulset {name} --cascade=orphan` (the pods keep running) and apply again."
            )
        };
        out.push(format!(
            "immutable field: Kubernetes does not allow changing {} of StatefulSet {namespace}/{name}, so apply refuses to run (nothing is changed) while zone {zone} differs.{storage}",
            frozen.join(", ")
        ));
    }
    if before.pointer("/spec/template") != after.pointer("/spec/template") {
        let on_delete = after
            .pointer("/spec/updateStrategy/type")
            .and_then(Value::as_str)
            == Some("OnDelete");
        out.push(if on_delete {
            format!(
                "pod template change in zone {zone}: with updateStrategy OnDelete the {} pods of StatefulSet {namespace}/{name} keep the old template until each is deleted",
                new.unwrap_or(0)
            )
        } else {
            format!(
                "rolling restart of zone {zone}: the pod template changes, so the StatefulSet replaces its {} pods one at a time, highest ordinal first (each CockroachDB node restarts)",
                new.unwrap_or(0)
            )
        });
    }
    if let (Some(old), Some(new)) = (old, new)
        && new < old
    {
        let pods: Vec<String> = (new..old).map(|i| format!("{name}-{i}")).collect();
        out.push(format!(
            "scale-down in zone {zone} from {old} to {new} replicas: apply first decommissions the CockroachDB nodes of pod(s) {} (`cockroach node decommission` in a Job), waits until their replicas have moved, then removes the pods one at a time; the federation must keep at least 3 nodes",
            pods.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sts(image: &str, replicas: i64, storage: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "cockroachdb", "namespace": "us-east1-b", "generation": 3},
            "spec": {
                "replicas": replicas,
                "updateStrategy": {"type": "RollingUpdate"},
                "template": {"spec": {"containers": [{"name": "cockroachdb", "image": image}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "datadir"},
                    "spec": {"resources": {"requests": {"storage": storage}}}}]
            },
            "status": {"replicas": replicas}
        })
    }

    #[test]
    fn an_image_change_is_one_field_with_both_values_and_a_minus_plus_pair() {
        let (b, a) = prepare(
            "StatefulSet",
            &sts("cockroach:v1", 3, "100Gi"),
            &sts("cockroach:v2", 3, "100Gi"),
        );
        assert_eq!(
            field_changes(&b, &a),
            vec![FieldChange {
                path: "spec.template.spec.containers[0].image".into(),
                old: Some(json!("cockroach:v1")),
                new: Some(json!("cockroach:v2")),
            }]
        );
        let text = unified(&b, &a, "live", "after apply");
        assert!(text.starts_with("--- live\n+++ after apply\n@@"), "{text}");
        let minus: Vec<&str> = text.lines().filter(|l| l.starts_with("-  ")).collect();
        let plus: Vec<&str> = text.lines().filter(|l| l.starts_with("+  ")).collect();
        assert_eq!(minus.len(), 1, "{text}");
        assert!(minus[0].ends_with("image: cockroach:v1"), "{text}");
        assert!(plus[0].ends_with("image: cockroach:v2"), "{text}");
        let c = consequences("us-east1-b", "StatefulSet", &b, &a);
        assert_eq!(c.len(), 1, "{c:?}");
        assert!(
            c[0].starts_with("rolling restart of zone us-east1-b"),
            "{c:?}"
        );
    }

    #[test]
    fn a_replicas_decrease_warns_about_decommissioning_the_removed_pods() {
        let (b, a) = prepare(
            "StatefulSet",
            &sts("v1", 3, "100Gi"),
            &sts("v1", 1, "100Gi"),
        );
        let c = consequences("z", "StatefulSet", &b, &a);
        assert_eq!(c.len(), 1, "{c:?}");
        assert!(c[0].contains("scale-down in zone z from 3 to 1"), "{c:?}");
        assert!(c[0].contains("cockroachdb-1, cockroachdb-2"), "{c:?}");
        assert!(c[0].contains("cockroach node decommission"), "{c:?}");
        // Up is no warning.
        assert!(consequences("z", "StatefulSet", &a, &b).is_empty());
    }

    #[test]
    fn a_storage_change_is_named_immutable_with_the_way_out() {
        let live = sts("v1", 3, "100Gi");
        let planned = json!({"spec": {"volumeClaimTemplates": [{"metadata": {"name": "datadir"},
            "spec": {"resources": {"requests": {"storage": "200Gi"}}}}]}});
        let after = overlay(&live, &planned);
        let (b, a) = prepare("StatefulSet", &live, &after);
        let fields = field_changes(&b, &a);
        assert_eq!(fields.len(), 1, "{fields:?}");
        assert_eq!(
            fields[0].path,
            "spec.volumeClaimTemplates[0].spec.resources.requests.storage"
        );
        let c = consequences("z", "StatefulSet", &b, &a);
        assert_eq!(c.len(), 1, "{c:?}");
        assert!(c[0].starts_with("immutable field"), "{c:?}");
        assert!(c[0].contains("spec.volumeClaimTemplates"), "{c:?}");
        assert!(c[0].contains("--cascade=orphan"), "{c:?}");
    }

    #[test]
    fn secret_values_are_masked_and_a_changed_one_shows_as_before_and_after() {
        let before = json!({"kind": "Secret", "data": {"ca.crt": "QUFB", "node.key": "S0VZMQ=="}});
        let after = json!({"kind": "Secret", "data": {"ca.crt": "QUFB", "node.key": "S0VZMg==", "new": "TkVX"}});
        let (b, a) = prepare("Secret", &before, &after);
        let text = unified(&b, &a, "old", "new");
        for secret in ["QUFB", "S0VZ", "TkVX"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert!(
            text.contains("-  node.key: '*** (before)'")
                || text.contains("-  node.key: \"*** (before)\""),
            "{text}"
        );
        let fields = field_changes(&b, &a);
        let paths: Vec<&str> = fields.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["data.new", "data[\"node.key\"]"]);
        assert_eq!(fields[1].old, Some(json!(MASK_BEFORE)));
        assert_eq!(fields[0].new, Some(json!(MASK)));
    }

    #[test]
    fn equal_objects_have_no_fields_and_no_text() {
        let v = sts("v1", 3, "1Gi");
        let (b, a) = prepare("StatefulSet", &v, &v);
        assert!(field_changes(&b, &a).is_empty());
        assert_eq!(unified(&b, &a, "a", "b"), "");
    }
}
