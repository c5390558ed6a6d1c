//! The static table of resources every simulated API server serves.
//!
//! Owns: kinds, plurals, scopes, subresources and discovery documents built
//! from them. Must not hold any state: the store and the HTTP layer look
//! resources up here by index.

use serde_json::{Value, json};

/// One served resource (a row of the discovery documents).
#[derive(Debug)]
pub struct ResourceDef {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub subresources: &'static [&'static str],
    /// Only `create` is served (access reviews).
    pub create_only: bool,
}

impl ResourceDef {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods` or `statefulsets.apps`, as the real server names resources in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn has_status(&self) -> bool {
        self.subresources.contains(&"status")
    }
}

const fn res(
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    subresources: &'static [&'static str],
) -> ResourceDef {
    ResourceDef {
        group,
        version: "v1",
        kind,
        plural,
        singular,
        namespaced,
        short_names,
        subresources,
        create_only: false,
    }
}

pub static RESOURCES: &[ResourceDef] = &[
    res(
        "",
        "Namespace",
        "namespaces",
        "namespace",
        false,
        &["ns"],
        &["status", "finalize"],
    ),
    res("", "Node", "nodes", "node", false, &["no"], &["status"]),
    res("", "Pod", "pods", "pod", true, &["po"], &["status", "log"]),
    res(
        "",
        "Service",
        "services",
        "service",
        true,
        &["svc"],
        &["status"],
    ),
    res("", "Secret", "secrets", "secret", true, &[], &[]),
    res(
        "",
        "ConfigMap",
        "configmaps",
        "configmap",
        true,
        &["cm"],
        &[],
    ),
    res(
        "",
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        true,
        &["sa"],
        &[],
    ),
    res(
        "",
        "Endpoints",
        "endpoints",
        "endpoints",
        true,
        &["ep"],
        &[],
    ),
    res(
        "",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        true,
        &["pvc"],
        &["status"],
    ),
    res("", "Event", "events", "event", true, &["ev"], &[]),
    res(
        "apps",
        "StatefulSet",
        "statefulsets",
        "statefulset",
        true,
        &["sts"],
        &["status", "scale"],
    ),
    res(
        "apps",
        "Deployment",
        "deployments",
        "deployment",
        true,
        &["deploy"],
        &["status", "scale"],
    ),
    res("batch", "Job", "jobs", "job", true, &[], &["status"]),
    res(
        "policy",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        true,
        &["pdb"],
        &["status"],
    ),
    res(
        "rbac.authorization.k8s.io",
        "Role",
        "roles",
        "role",
        true,
        &[],
        &[],
    ),
    res(
        "rbac.authorization.k8s.io",
        "RoleBinding",
        "rolebindings",
        "rolebinding",
        true,
        &[],
        &[],
    ),
    res(
        "rbac.authorization.k8s.io",
        "ClusterRole",
        "clusterroles",
        "clusterrole",
        false,
        &[],
        &[],
    ),
    res(
        "rbac.authorization.k8s.io",
        "ClusterRoleBinding",
        "clusterrolebindings",
        "clusterrolebinding",
        false,
        &[],
        &[],
    ),
    ResourceDef {
        group: "authorization.k8s.io",
        version: "v1",
        kind: "SelfSubjectAccessReview",
        plural: "selfsubjectaccessreviews",
        singular: "selfsubjectaccessreview",
        namespaced: false,
        short_names: &[],
        subresources: &[],
        create_only: true,
    },
    ResourceDef {
        group: "authorization.k8s.io",
        version: "v1",
        kind: "SelfSubjectRulesReview",
        plural: "selfsubjectrulesreviews",
        singular: "selfsubjectrulesreview",
        namespaced: false,
        short_names: &[],
        subresources: &[],
        create_only: true,
    },
];

/// Indices into [`RESOURCES`] for the kinds controllers touch.
pub mod idx {
    pub const NAMESPACE: usize = 0;
    pub const NODE: usize = 1;
    pub const POD: usize = 2;
    pub const SERVICE: usize = 3;
    pub const SECRET: usize = 4;
    pub const CONFIGMAP: usize = 5;
    pub const SERVICEACCOUNT: usize = 6;
    pub const ENDPOINTS: usize = 7;
    pub const PVC: usize = 8;
    pub const EVENT: usize = 9;
    pub const STATEFULSET: usize = 10;
    pub const DEPLOYMENT: usize = 11;
    pub const JOB: usize = 12;
}

pub fn def(index: usize) -> &'static ResourceDef {
    &RESOURCES[index]
}

pub fn by_plural(group: &str, version: &str, plural: &str) -> Option<usize> {
    RESOURCES
        .iter()
        .position(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Look a resource up by `apiVersion` and `kind` (as objects carry them).
pub fn by_kind(api_version: &str, kind: &str) -> Option<usize> {
    let (group, version) = split_api_version(api_version);
    RESOURCES
        .iter()
        .position(|r| r.group == group && r.version == version && r.kind == kind)
}

pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

/// Groups other than core, in table order, without duplicates.
fn groups() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for r in RESOURCES {
        if !r.group.is_empty() && !out.contains(&r.group) {
            out.push(r.group);
        }
    }
    out
}

pub fn api_versions(server: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server}],
    })
}

fn api_group(group: &str) -> Value {
    let gv = format!("{group}/v1");
    json!({
        "name": group,
        "versions": [{"groupVersion": gv, "version": "v1"}],
        "preferredVersion": {"groupVersion": gv, "version": "v1"},
    })
}

pub fn api_group_list() -> Value {
    let groups: Vec<Value> = groups().into_iter().map(api_group).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn api_group_doc(group: &str) -> Option<Value> {
    if !groups().contains(&group) {
        return None;
    }
    let mut v = api_group(group);
    v["kind"] = json!("APIGroup");
    v["apiVersion"] = json!("v1");
    Some(v)
}

pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let verbs: Vec<&str> = if r.create_only {
            vec!["create"]
        } else {
            vec![
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ]
        };
        resources.push(json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": verbs,
            "shortNames": r.short_names,
        }));
        if matches!(
            r.kind,
            "Pod" | "Service" | "StatefulSet" | "Deployment" | "Job"
        ) {
            resources.last_mut().expect("just pushed")["categories"] = json!(["all"]);
        }
        for sub in r.subresources {
            let (kind, group, version, verbs): (&str, &str, &str, Vec<&str>) = match *sub {
                "scale" => ("Scale", "autoscaling", "v1", vec!["get", "patch", "update"]),
                "log" => ("Pod", "", "", vec!["get"]),
                "finalize" => (r.kind, "", "", vec!["update"]),
                _ => (r.kind, "", "", vec!["get", "patch", "update"]),
            };
            let mut entry = json!({
                "name": format!("{}/{}", r.plural, sub),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": kind,
                "verbs": verbs,
            });
            if !group.is_empty() {
                entry["group"] = json!(group);
                entry["version"] = json!(version);
            }
            resources.push(entry);
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": resources,
    }))
}

pub fn openapi_v2() -> Value {
    json!({"swagger": "2.0", "info": {"title": "kube-sim", "version": "v1.36.0"}, "paths": {}})
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The OpenAPI v3 index. Per-group documents list operations (so kubectl
/// sees that `fieldValidation` is supported and validates on the server)
/// but carry no schemas.
pub fn openapi_v3_root() -> Value {
    let mut paths = serde_json::Map::new();
    let mut gvs: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !gvs.contains(&(r.group, r.version)) {
            gvs.push((r.group, r.version));
        }
    }
    for (g, v) in gvs {
        let p = gv_path(g, v);
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash=kube-sim-1")}),
        );
    }
    json!({"paths": paths})
}

pub fn openapi_v3_doc(group: &str, version: &str) -> Option<Value> {
    let mut paths = serde_json::Map::new();
    let params = json!([
        {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}},
    ]);
    let ok = json!({"200": {"description": "OK"}});
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version && !r.create_only)
    {
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let base = format!("/{}", gv_path(group, version));
        let (collection, item) = if r.namespaced {
            (
                format!("{base}/namespaces/{{namespace}}/{}", r.plural),
                format!("{base}/namespaces/{{namespace}}/{}/{{name}}", r.plural),
            )
        } else {
            (
                format!("{base}/{}", r.plural),
                format!("{base}/{}/{{name}}", r.plural),
            )
        };
        let op = |verb: &str| {
            json!({
                "operationId": format!("{verb}{}", r.kind),
                "x-kubernetes-action": verb,
                "x-kubernetes-group-version-kind": gvk,
                "parameters": params,
                "responses": ok,
            })
        };
        paths.insert(collection, json!({"get": op("list"), "post": op("post")}));
        paths.insert(item, json!({"get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete")}));
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (kube-sim)", "version": "v1.36.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_match_the_table() {
        assert_eq!(def(idx::NAMESPACE).kind, "Namespace");
        assert_eq!(def(idx::NODE).kind, "Node");
        assert_eq!(def(idx::POD).kind, "Pod");
        assert_eq!(def(idx::SERVICE).kind, "Service");
        assert_eq!(def(idx::SECRET).kind, "Secret");
        assert_eq!(def(idx::CONFIGMAP).kind, "ConfigMap");
        assert_eq!(def(idx::SERVICEACCOUNT).kind, "ServiceAccount");
        assert_eq!(def(idx::ENDPOINTS).kind, "Endpoints");
        assert_eq!(def(idx::PVC).kind, "PersistentVolumeClaim");
        assert_eq!(def(idx::STATEFULSET).kind, "StatefulSet");
        assert_eq!(def(idx::DEPLOYMENT).kind, "Deployment");
        assert_eq!(def(idx::JOB).kind, "Job");
    }

    #[test]
    fn lookups() {
        assert_eq!(by_kind("apps/v1", "StatefulSet"), Some(idx::STATEFULSET));
        assert_eq!(by_plural("", "v1", "pods"), Some(idx::POD));
        assert!(resource_list("apps", "v1").is_some());
        assert!(api_group_doc("nope").is_none());
    }
}
