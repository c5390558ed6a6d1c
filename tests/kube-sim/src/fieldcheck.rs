//! Field validation of API writes: unknown fields in a body are found by a
//! typed round trip through k8s-openapi (decode into the kind's Go-shaped
//! struct, encode, compare) and handled as the API server handles them
//! (KEP-2885, `fieldValidation`):
//!
//! - create, update and non-apply patches: `Warn` by default (a `299`
//!   Warning header per field, the field dropped), `Ignore` (dropped
//!   silently) or `Strict` (400 `strict decoding error: unknown field "…"`);
//! - server-side apply: always refused, whatever `fieldValidation` says,
//!   because the patch cannot be typed (500 `failed to create typed patch
//!   object (…): .spec.foo: field not declared in schema`).
//!
//! An object the round trip cannot decode (a required field missing, a
//! wrong type) is not judged here. Pure functions; the store applies them.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::resources::ResourceDef;
#[cfg(test)]
use crate::resources::idx;

/// The `fieldValidation` directive of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// Unknown fields are dropped silently (controller writes, `Ignore`).
    #[default]
    Ignore,
    /// Unknown fields are dropped with a warning (the API server's default).
    Warn,
    /// Unknown fields fail the request.
    Strict,
}

impl FieldValidation {
    /// The directive of a request's `fieldValidation` query parameter.
    pub fn from_query(value: Option<&str>) -> Result<Self, ApiError> {
        match value {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
            ))),
        }
    }
}

/// One step of a path into an object.
#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    /// A list element: its index, and the element itself (for list keys).
    Item(usize, Value),
}

fn round_trip<T: DeserializeOwned + Serialize>(v: &Value) -> Option<Value> {
    let typed: T = serde_json::from_value(v.clone()).ok()?;
    serde_json::to_value(typed).ok()
}

/// The object as the API server would keep it, or None when kube-sim has
/// no typed model of the kind or the object does not decode.
fn typed(res: usize, obj: &Value) -> Option<Value> {
    use k8s_openapi::api::{apps::v1 as apps, batch::v1 as batch, core::v1 as core};
    use k8s_openapi::api::{policy::v1 as policy, rbac::v1 as rbac};
    let def = crate::resources::def(res);
    let mut obj = obj.clone();
    obj["apiVersion"] = Value::String(def.api_version());
    obj["kind"] = Value::String(def.kind.to_string());
    match (def.group, def.kind) {
        ("", "Namespace") => round_trip::<core::Namespace>(&obj),
        ("", "Node") => round_trip::<core::Node>(&obj),
        ("", "Pod") => round_trip::<core::Pod>(&obj),
        ("", "Service") => round_trip::<core::Service>(&obj),
        ("", "Secret") => round_trip::<core::Secret>(&obj),
        ("", "ConfigMap") => round_trip::<core::ConfigMap>(&obj),
        ("", "ServiceAccount") => round_trip::<core::ServiceAccount>(&obj),
        ("", "Endpoints") => round_trip::<core::Endpoints>(&obj),
        ("", "PersistentVolumeClaim") => round_trip::<core::PersistentVolumeClaim>(&obj),
        ("", "Event") => round_trip::<core::Event>(&obj),
        ("apps", "StatefulSet") => round_trip::<apps::StatefulSet>(&obj),
        ("apps", "Deployment") => round_trip::<apps::Deployment>(&obj),
        ("batch", "Job") => round_trip::<batch::Job>(&obj),
        ("policy", "PodDisruptionBudget") => round_trip::<policy::PodDisruptionBudget>(&obj),
        ("rbac.authorization.k8s.io", "Role") => round_trip::<rbac::Role>(&obj),
        ("rbac.authorization.k8s.io", "RoleBinding") => round_trip::<rbac::RoleBinding>(&obj),
        ("rbac.authorization.k8s.io", "ClusterRole") => round_trip::<rbac::ClusterRole>(&obj),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            round_trip::<rbac::ClusterRoleBinding>(&obj)
        }
        _ => None,
    }
}

/// Walk `sent` against its typed form: collect the paths of fields the
/// typed form lost, and return `sent` without them.
fn prune(sent: &Value, kept: &Value, path: &mut Vec<Seg>, unknown: &mut Vec<Vec<Seg>>) -> Value {
    match (sent, kept) {
        (Value::Object(s), Value::Object(k)) => {
            let mut out = Map::new();
            for (key, v) in s {
                match k.get(key) {
                    Some(kv) => {
                        path.push(Seg::Key(key.clone()));
                        out.insert(key.clone(), prune(v, kv, path, unknown));
                        path.pop();
                    }
                    None if v.is_null() => {
                        out.insert(key.clone(), Value::Null);
                    }
                    None => {
                        let mut p = path.clone();
                        p.push(Seg::Key(key.clone()));
                        unknown.push(p);
                    }
                }
            }
            Value::Object(out)
        }
        (Value::Array(s), Value::Array(k)) if s.len() == k.len() => Value::Array(
            s.iter()
                .zip(k)
                .enumerate()
                .map(|(i, (sv, kv))| {
                    path.push(Seg::Item(i, sv.clone()));
                    let v = prune(sv, kv, path, unknown);
                    path.pop();
                    v
                })
                .collect(),
        ),
        _ => sent.clone(),
    }
}

/// The unknown fields of `obj` that `old` does not already have (an update
/// is not blamed for what is stored), and `obj` without any unknown field.
/// None when the kind has no typed model here or `obj` does not decode.
fn check(res: usize, obj: &Value, old: Option<&Value>) -> Option<(Vec<Vec<Seg>>, Value)> {
    let kept = typed(res, obj)?;
    let mut unknown = Vec::new();
    let pruned = prune(obj, &kept, &mut Vec::new(), &mut unknown);
    if let Some(old) = old
        && let Some(old_kept) = typed(res, old)
    {
        let mut old_unknown = Vec::new();
        prune(old, &old_kept, &mut Vec::new(), &mut old_unknown);
        let old_paths: Vec<String> = old_unknown.iter().map(|p| json_path(p)).collect();
        unknown.retain(|p| !old_paths.contains(&json_path(p)));
    }
    Some((unknown, pruned))
}

/// `spec.template.spec.containers[0].foo`, as strict decoding errors name fields.
fn json_path(p: &[Seg]) -> String {
    let mut s = String::new();
    for seg in p {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Item(i, _) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// `.spec.template.spec.containers[name="db"].foo`, as structured-merge-diff
/// names fields (list elements by their keys where the list has keys).
fn smd_path(p: &[Seg]) -> String {
    let mut s = String::new();
    let mut parent_list = "";
    let mut last_key = "";
    for seg in p {
        match seg {
            Seg::Key(k) => {
                s.push('.');
                s.push_str(k);
                last_key = k;
            }
            Seg::Item(i, item) => {
                let key = crate::patch::merge_key(last_key, parent_list);
                let mut parts = Vec::new();
                if let Some(key) = key
                    && let Some(v) = item.get(key)
                {
                    parts.push(format!("{key}={v}"));
                    if key.ends_with("ort")
                        && let Some(proto) = item.get("protocol")
                    {
                        parts.push(format!("protocol={proto}"));
                    }
                }
                if parts.is_empty() {
                    s.push_str(&format!("[{i}]"));
                } else {
                    s.push_str(&format!("[{}]", parts.join(",")));
                }
                parent_list = last_key;
            }
        }
    }
    s
}

/// The outcome of validating one write.
#[derive(Debug, Default)]
pub struct Checked {
    /// The object to store (unknown fields dropped).
    pub obj: Option<Value>,
    /// `unknown field "…"` warnings for the response.
    pub warnings: Vec<String>,
}

/// A create, update or non-apply patch: `obj` is the object as it would be
/// stored (after the patch), `old` the stored version.
pub fn validate_write(
    def: &ResourceDef,
    res: usize,
    obj: &Value,
    old: Option<&Value>,
    directive: FieldValidation,
) -> Result<Checked, ApiError> {
    let Some((unknown, pruned)) = check(res, obj, old) else {
        return Ok(Checked::default());
    };
    let fields: Vec<String> = unknown
        .iter()
        .map(|p| format!("unknown field {:?}", json_path(p)))
        .collect();
    if directive == FieldValidation::Strict && !fields.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{} in version {:?} cannot be handled as a {}: strict decoding error: {}",
            def.kind,
            def.version,
            def.kind,
            fields.join(", ")
        )));
    }
    Ok(Checked {
        obj: Some(pruned),
        warnings: if directive == FieldValidation::Warn {
            fields
        } else {
            Vec::new()
        },
    })
}

/// A server-side apply: `merged` is the live object with the patch applied,
/// `old` the live object. Any unknown field fails the request.
pub fn validate_apply(
    def: &ResourceDef,
    res: usize,
    ns: &str,
    name: &str,
    merged: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let Some((unknown, _)) = check(res, merged, old) else {
        return Ok(());
    };
    if unknown.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = unknown
        .iter()
        .map(|p| format!("{}: field not declared in schema", smd_path(p)))
        .collect();
    let detail = if lines.len() == 1 {
        lines[0].clone()
    } else {
        format!("errors:\n  {}", lines.join("\n  "))
    };
    let ns = if def.namespaced { ns } else { "" };
    Err(ApiError::new(
        500,
        "",
        format!(
            "failed to create typed patch object ({ns}/{name}; {}, Kind={}): {detail}",
            def.api_version(),
            def.kind
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sts() -> Value {
        json!({
            "metadata": {"name": "db", "namespace": "crdb"},
            "spec": {
                "serviceName": "db",
                "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}}, "spec": {
                    "containers": [{"name": "db", "image": "cockroachdb/cockroach",
                                    "ports": [{"containerPort": 26257, "protocol": "TCP"}]}],
                }},
            },
        })
    }

    #[test]
    fn a_known_object_round_trips_unchanged() {
        let def = crate::resources::def(idx::STATEFULSET);
        let c =
            validate_write(def, idx::STATEFULSET, &sts(), None, FieldValidation::Strict).unwrap();
        assert!(c.warnings.is_empty());
        assert_eq!(c.obj.unwrap(), sts());
    }

    #[test]
    fn unknown_fields_warn_and_are_dropped_by_default() {
        let def = crate::resources::def(idx::STATEFULSET);
        let mut obj = sts();
        obj["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = json!("Always");
        obj["spec"]["replica"] = json!(3);
        let c = validate_write(def, idx::STATEFULSET, &obj, None, FieldValidation::Warn).unwrap();
        assert_eq!(
            c.warnings,
            vec![
                "unknown field \"spec.replica\"",
                "unknown field \"spec.template.spec.containers[0].imagePullPolicyy\"",
            ]
        );
        assert_eq!(c.obj.unwrap(), sts());
        let e =
            validate_write(def, idx::STATEFULSET, &obj, None, FieldValidation::Strict).unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "StatefulSet in version \"v1\" cannot be handled as a StatefulSet: strict decoding error: \
             unknown field \"spec.replica\", unknown field \"spec.template.spec.containers[0].imagePullPolicyy\""
        );
        let quiet =
            validate_write(def, idx::STATEFULSET, &obj, None, FieldValidation::Ignore).unwrap();
        assert!(quiet.warnings.is_empty());
        assert_eq!(quiet.obj.unwrap(), sts());
    }

    #[test]
    fn apply_names_fields_by_list_keys() {
        let def = crate::resources::def(idx::STATEFULSET);
        let mut obj = sts();
        obj["spec"]["template"]["spec"]["containers"][0]["ports"][0]["hostport"] = json!(1);
        let e = validate_apply(def, idx::STATEFULSET, "crdb", "db", &obj, None).unwrap_err();
        assert_eq!(e.code, 500);
        assert_eq!(
            e.message,
            "failed to create typed patch object (crdb/db; apps/v1, Kind=StatefulSet): \
             .spec.template.spec.containers[name=\"db\"].ports[containerPort=26257,protocol=\"TCP\"].hostport: \
             field not declared in schema"
        );
    }

    #[test]
    fn an_update_is_not_blamed_for_what_is_stored() {
        let def = crate::resources::def(idx::CONFIGMAP);
        let old = json!({"metadata": {"name": "c"}, "data": {"a": "1"}, "junk": 1});
        let new = json!({"metadata": {"name": "c"}, "data": {"a": "2"}, "junk": 1});
        let c = validate_write(
            def,
            idx::CONFIGMAP,
            &new,
            Some(&old),
            FieldValidation::Strict,
        )
        .unwrap();
        assert!(c.warnings.is_empty());
        assert!(c.obj.unwrap().get("junk").is_none(), "still dropped");
    }

    #[test]
    fn undecodable_objects_and_unmodelled_kinds_are_not_judged() {
        let def = crate::resources::def(idx::SERVICE);
        let bad_type = json!({"metadata": {"name": "s"}, "spec": {"ports": "53"}, "foo": 1});
        let c =
            validate_write(def, idx::SERVICE, &bad_type, None, FieldValidation::Strict).unwrap();
        assert!(c.obj.is_none());
    }

    #[test]
    fn directives_parse() {
        assert_eq!(
            FieldValidation::from_query(None).unwrap(),
            FieldValidation::Warn
        );
        assert_eq!(
            FieldValidation::from_query(Some("Strict")).unwrap(),
            FieldValidation::Strict
        );
        assert_eq!(
            FieldValidation::from_query(Some("strict"))
                .unwrap_err()
                .code,
            400
        );
    }
}
