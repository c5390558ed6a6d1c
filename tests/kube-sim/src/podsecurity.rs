//! Pod Security admission: the `baseline` and `restricted` profiles of the
//! Pod Security Standards, checked when a pod is created, with the messages
//! of k8s.io/pod-security-admission (`policy/check_*.go`). The level is the
//! namespace's `pod-security.kubernetes.io/enforce` label, else the
//! cluster-wide default (`--pod-security`); `kube-system` is exempt, as
//! admission configurations of managed clusters exempt it. Pure functions;
//! the store and the controllers decide what to do with a refusal.

use serde_json::Value;

use crate::config::PodSecurityLevel;
use crate::error::ApiError;

/// The namespace label that sets the enforced level.
pub const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";
/// Namespaces never checked.
const EXEMPT_NAMESPACES: &[&str] = &["kube-system"];

/// Capabilities baseline allows in `capabilities.add` (check_capabilities_baseline.go).
const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Volume types restricted allows (check_restrictedVolumes.go).
const RESTRICTED_VOLUME_TYPES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// The level enforced in a namespace (given its labels) under the cluster default.
/// A label value that is not a level is enforced as `restricted` (the
/// strictest reading; the real admission also refuses such pods).
pub fn level_for(ns: &str, ns_obj: Option<&Value>, default: PodSecurityLevel) -> PodSecurityLevel {
    if EXEMPT_NAMESPACES.contains(&ns) {
        return PodSecurityLevel::Privileged;
    }
    match ns_obj
        .and_then(|n| n.pointer("/metadata/labels"))
        .and_then(|l| l.get(ENFORCE_LABEL))
        .and_then(Value::as_str)
    {
        Some(v) => v.parse().unwrap_or(PodSecurityLevel::Restricted),
        None => default,
    }
}

fn names_phrase(what: &str, names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    if names.len() == 1 {
        format!("{what} {}", quoted[0])
    } else {
        format!("{what}s {}", quoted.join(", "))
    }
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

fn bool_at(v: &Value, ptr: &str) -> Option<bool> {
    v.pointer(ptr).and_then(Value::as_bool)
}

/// Every container of a pod spec (init, regular, ephemeral) with its name.
fn containers(spec: &Value) -> Vec<(String, &Value)> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| spec.get(*k).and_then(Value::as_array).into_iter().flatten())
        .map(|c| (str_at(c, "/name").unwrap_or("").to_string(), c))
        .collect()
}

/// The violated checks of `level` for a pod spec, each as
/// `"<check> (<detail>)"`, in the order the real admission lists them.
pub fn violations(spec: &Value, level: PodSecurityLevel) -> Vec<String> {
    if level == PodSecurityLevel::Privileged {
        return Vec::new();
    }
    let restricted = level == PodSecurityLevel::Restricted;
    let cs = containers(spec);
    let mut out: Vec<(&str, String)> = Vec::new();
    let mut check = |id: &'static str, title: &str, details: Vec<String>| {
        if !details.is_empty() {
            out.push((id, format!("{title} ({})", details.join("; "))));
        }
    };
    let filter = |pred: &dyn Fn(&Value) -> bool| -> Vec<String> {
        cs.iter()
            .filter(|(_, c)| pred(c))
            .map(|(n, _)| n.clone())
            .collect()
    };

    // baseline
    let added = |c: &Value| -> Vec<String> {
        c.pointer("/securityContext/capabilities/add")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect()
    };
    if !restricted {
        let mut details = Vec::new();
        for (n, c) in &cs {
            let bad: Vec<String> = added(c)
                .into_iter()
                .filter(|a| !BASELINE_CAPABILITIES.contains(&a.as_str()))
                .map(|a| format!("{a:?}"))
                .collect();
            if !bad.is_empty() {
                details.push(format!(
                    "container {n:?} must not include {} in securityContext.capabilities.add",
                    bad.join(", ")
                ));
            }
        }
        check("capabilities_baseline", "non-default capabilities", details);
    }
    let host_ns: Vec<String> = ["hostNetwork", "hostPID", "hostIPC"]
        .iter()
        .filter(|k| bool_at(spec, &format!("/{k}")) == Some(true))
        .map(|k| format!("{k}=true"))
        .collect();
    if !host_ns.is_empty() {
        check(
            "hostNamespaces",
            "host namespaces",
            vec![host_ns.join(", ")],
        );
    }
    let volumes: Vec<&Value> = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    let vol_name = |v: &Value| str_at(v, "/name").unwrap_or("").to_string();
    let host_paths: Vec<String> = volumes
        .iter()
        .filter(|v| v.get("hostPath").is_some())
        .map(|v| vol_name(v))
        .collect();
    if !host_paths.is_empty() {
        check(
            "hostPathVolumes",
            "hostPath volumes",
            vec![names_phrase("volume", &host_paths)],
        );
    }
    let mut host_ports = Vec::new();
    for (n, c) in &cs {
        let ports: Vec<String> = c
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("hostPort").and_then(Value::as_u64))
            .filter(|p| *p != 0)
            .map(|p| p.to_string())
            .collect();
        if !ports.is_empty() {
            host_ports.push(format!(
                "container {n:?} uses hostPort {}",
                ports.join(", ")
            ));
        }
    }
    check("hostPorts", "hostPort", host_ports);
    let privileged = filter(&|c| bool_at(c, "/securityContext/privileged") == Some(true));
    if !privileged.is_empty() {
        check(
            "privileged",
            "privileged",
            vec![format!(
                "{} must not set securityContext.privileged=true",
                names_phrase("container", &privileged)
            )],
        );
    }
    let unmasked =
        filter(&|c| str_at(c, "/securityContext/procMount").is_some_and(|m| m != "Default"));
    if !unmasked.is_empty() {
        check(
            "procMount",
            "procMount",
            vec![format!(
                "{} must not set securityContext.procMount to \"Unmasked\"",
                names_phrase("container", &unmasked)
            )],
        );
    }
    if !restricted {
        let mut details = Vec::new();
        if str_at(spec, "/securityContext/seccompProfile/type") == Some("Unconfined") {
            details.push(
                "pod must not set securityContext.seccompProfile.type to \"Unconfined\""
                    .to_string(),
            );
        }
        let bad =
            filter(&|c| str_at(c, "/securityContext/seccompProfile/type") == Some("Unconfined"));
        if !bad.is_empty() {
            details.push(format!(
                "{} must not set securityContext.seccompProfile.type to \"Unconfined\"",
                names_phrase("container", &bad)
            ));
        }
        check("seccompProfile_baseline", "seccompProfile", details);
    }

    if restricted {
        let escalating =
            filter(&|c| bool_at(c, "/securityContext/allowPrivilegeEscalation") != Some(false));
        if !escalating.is_empty() {
            check(
                "allowPrivilegeEscalation",
                "allowPrivilegeEscalation != false",
                vec![format!(
                    "{} must set securityContext.allowPrivilegeEscalation=false",
                    names_phrase("container", &escalating)
                )],
            );
        }
        let mut details = Vec::new();
        let no_drop = filter(&|c| {
            !c.pointer("/securityContext/capabilities/drop")
                .and_then(Value::as_array)
                .is_some_and(|d| d.iter().any(|x| x == "ALL"))
        });
        if !no_drop.is_empty() {
            details.push(format!(
                "{} must set securityContext.capabilities.drop=[\"ALL\"]",
                names_phrase("container", &no_drop)
            ));
        }
        for (n, c) in &cs {
            let bad: Vec<String> = added(c)
                .into_iter()
                .filter(|a| a != "NET_BIND_SERVICE")
                .map(|a| format!("{a:?}"))
                .collect();
            if !bad.is_empty() {
                details.push(format!(
                    "container {n:?} must not include {} in securityContext.capabilities.add",
                    bad.join(", ")
                ));
            }
        }
        // restricted replaces the baseline capability check
        check(
            "capabilities_restricted",
            "unrestricted capabilities",
            details,
        );
        let bad_types: Vec<String> = volumes
            .iter()
            .filter_map(|v| {
                let ty = v
                    .as_object()?
                    .keys()
                    .find(|k| k.as_str() != "name")?
                    .clone();
                (!RESTRICTED_VOLUME_TYPES.contains(&ty.as_str())).then(|| {
                    format!(
                        "volume {:?} uses restricted volume type {ty:?}",
                        vol_name(v)
                    )
                })
            })
            .collect();
        check("restrictedVolumes", "restricted volume types", bad_types);

        let pod_non_root = bool_at(spec, "/securityContext/runAsNonRoot");
        let mut details = Vec::new();
        if pod_non_root == Some(false) {
            details.push("pod must not set securityContext.runAsNonRoot=false".to_string());
        }
        let explicit_false =
            filter(&|c| bool_at(c, "/securityContext/runAsNonRoot") == Some(false));
        if !explicit_false.is_empty() {
            details.push(format!(
                "{} must not set securityContext.runAsNonRoot=false",
                names_phrase("container", &explicit_false)
            ));
        }
        if pod_non_root != Some(true) {
            let unset = filter(&|c| c.pointer("/securityContext/runAsNonRoot").is_none());
            if !unset.is_empty() {
                details.push(format!(
                    "pod or {} must set securityContext.runAsNonRoot=true",
                    names_phrase("container", &unset)
                ));
            }
        }
        check("runAsNonRoot", "runAsNonRoot != true", details);

        let mut details = Vec::new();
        if spec
            .pointer("/securityContext/runAsUser")
            .and_then(Value::as_i64)
            == Some(0)
        {
            details.push("pod must not set runAsUser=0".to_string());
        }
        let root = filter(&|c| {
            c.pointer("/securityContext/runAsUser")
                .and_then(Value::as_i64)
                == Some(0)
        });
        if !root.is_empty() {
            details.push(format!(
                "{} must not set runAsUser=0",
                names_phrase("container", &root)
            ));
        }
        check("runAsUser", "runAsUser=0", details);

        let allowed = |t: Option<&str>| matches!(t, Some("RuntimeDefault") | Some("Localhost"));
        let pod_type = str_at(spec, "/securityContext/seccompProfile/type");
        let mut details = Vec::new();
        if pod_type.is_some() && !allowed(pod_type) {
            details.push(format!(
                "pod must not set securityContext.seccompProfile.type to {:?}",
                pod_type.unwrap_or_default()
            ));
        }
        let bad = filter(&|c| {
            let t = str_at(c, "/securityContext/seccompProfile/type");
            t.is_some() && !allowed(t)
        });
        if !bad.is_empty() {
            details.push(format!(
                "{} must not set securityContext.seccompProfile.type to an unrestricted value",
                names_phrase("container", &bad)
            ));
        }
        if !allowed(pod_type) {
            let unset = filter(&|c| c.pointer("/securityContext/seccompProfile/type").is_none());
            if !unset.is_empty() {
                details.push(format!(
                    "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                    names_phrase("container", &unset)
                ));
            }
        }
        check("seccompProfile_restricted", "seccompProfile", details);
    }
    out.sort_by(|a, b| a.0.cmp(b.0));
    out.into_iter().map(|(_, m)| m).collect()
}

/// The API server's refusal of a pod that violates `level`, as
/// `pods "<name>" is forbidden: violates PodSecurity "<level>:latest": ...`.
pub fn refusal(pod_name: &str, level: PodSecurityLevel, violations: &[String]) -> ApiError {
    ApiError::new(
        403,
        "Forbidden",
        format!(
            "pods {pod_name:?} is forbidden: violates PodSecurity \"{level}:latest\": {}",
            violations.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hardened() -> Value {
        json!({
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "fsGroup": 1000,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "db", "image": "cockroachdb/cockroach",
                            "securityContext": {"allowPrivilegeEscalation": false,
                                                "capabilities": {"drop": ["ALL"]}}}],
            "volumes": [{"name": "datadir", "persistentVolumeClaim": {"claimName": "d"}}],
        })
    }

    /// Set the value at a JSON pointer, creating objects on the way.
    fn set(v: &mut Value, ptr: &str, value: Value) {
        let mut cur = v;
        for seg in ptr.trim_start_matches('/').split('/') {
            cur = match cur {
                Value::Array(a) => &mut a[seg.parse::<usize>().unwrap()],
                other => other
                    .as_object_mut()
                    .unwrap()
                    .entry(seg)
                    .or_insert(json!({})),
            };
        }
        *cur = value;
    }

    #[test]
    fn a_hardened_pod_passes_every_level() {
        for level in [PodSecurityLevel::Baseline, PodSecurityLevel::Restricted] {
            assert_eq!(violations(&hardened(), level), Vec::<String>::new());
        }
    }

    #[test]
    fn a_default_pod_fails_restricted_only_with_the_real_messages() {
        let spec = json!({"containers": [{"name": "db", "image": "x"}]});
        assert!(violations(&spec, PodSecurityLevel::Baseline).is_empty());
        assert_eq!(
            violations(&spec, PodSecurityLevel::Restricted),
            vec![
                "allowPrivilegeEscalation != false (container \"db\" must set securityContext.allowPrivilegeEscalation=false)",
                "unrestricted capabilities (container \"db\" must set securityContext.capabilities.drop=[\"ALL\"])",
                "runAsNonRoot != true (pod or container \"db\" must set securityContext.runAsNonRoot=true)",
                "seccompProfile (pod or container \"db\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")",
            ]
        );
    }

    #[test]
    fn each_restricted_rule_is_named_when_it_alone_breaks() {
        let cases: &[(&str, &str, Value)] = &[
            ("/securityContext/runAsUser", "runAsUser=0", json!(0)),
            (
                "/securityContext/runAsNonRoot",
                "runAsNonRoot != true",
                json!(false),
            ),
            (
                "/containers/0/securityContext/allowPrivilegeEscalation",
                "allowPrivilegeEscalation != false",
                json!(true),
            ),
            (
                "/containers/0/securityContext/capabilities/add",
                "unrestricted capabilities",
                json!(["SYS_ADMIN"]),
            ),
            (
                "/volumes/0",
                "restricted volume types",
                json!({"name": "h", "hostPath": {"path": "/"}}),
            ),
            (
                "/securityContext/seccompProfile/type",
                "seccompProfile",
                json!("Unconfined"),
            ),
        ];
        for (ptr, rule, value) in cases {
            let mut spec = hardened();
            set(&mut spec, ptr, value.clone());
            let v = violations(&spec, PodSecurityLevel::Restricted);
            assert!(
                v.iter().any(|m| m.starts_with(rule)),
                "{ptr}: expected {rule:?} in {v:?}"
            );
        }
    }

    #[test]
    fn baseline_refuses_host_access_and_privilege() {
        let spec = json!({
            "hostNetwork": true,
            "containers": [{"name": "a", "image": "x",
                            "securityContext": {"privileged": true, "capabilities": {"add": ["NET_ADMIN", "CHOWN"]}},
                            "ports": [{"containerPort": 80, "hostPort": 8080}]}],
            "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
        });
        assert_eq!(
            violations(&spec, PodSecurityLevel::Baseline),
            vec![
                "non-default capabilities (container \"a\" must not include \"NET_ADMIN\" in securityContext.capabilities.add)",
                "host namespaces (hostNetwork=true)",
                "hostPath volumes (volume \"root\")",
                "hostPort (container \"a\" uses hostPort 8080)",
                "privileged (container \"a\" must not set securityContext.privileged=true)",
            ]
        );
    }

    #[test]
    fn the_namespace_label_wins_and_kube_system_is_exempt() {
        let ns = json!({"metadata": {"labels": {ENFORCE_LABEL: "baseline"}}});
        assert_eq!(
            level_for("db", Some(&ns), PodSecurityLevel::Restricted),
            PodSecurityLevel::Baseline
        );
        assert_eq!(
            level_for("db", None, PodSecurityLevel::Restricted),
            PodSecurityLevel::Restricted
        );
        let bad = json!({"metadata": {"labels": {ENFORCE_LABEL: "strict"}}});
        assert_eq!(
            level_for("db", Some(&bad), PodSecurityLevel::Privileged),
            PodSecurityLevel::Restricted
        );
        assert_eq!(
            level_for("kube-system", Some(&ns), PodSecurityLevel::Restricted),
            PodSecurityLevel::Privileged
        );
    }
}
