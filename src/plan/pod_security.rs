//! The Pod Security Standards (`baseline` and `restricted`), checked on a pod
//! template the way the Pod Security admission plugin checks a pod, so that a
//! template that a namespace enforcing `restricted` would refuse is found
//! before anything is applied.
//!
//! Each check follows the plugin's own, in k8s.io/pod-security-admission
//! `policy/check_*.go` (latest versions), and reports the plugin's
//! `ForbiddenReason` and a detail naming the containers. Containers are
//! visited as the plugin's `visitContainers` does: init containers,
//! containers, ephemeral containers. Pure: works on the pod template as JSON.
//!
//! Compiled for the plan's tests only: they prove that every pod template
//! the plan renders passes `restricted`.

use serde_json::Value;

/// One broken rule: the plugin's forbidden reason and which fields broke it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub reason: &'static str,
    pub detail: String,
}

/// Capabilities a `baseline` container may add (check_capabilities_baseline.go).
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
/// Sysctls `baseline` allows (check_sysctls.go, 1.32 set).
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];
/// SELinux types `baseline` allows (check_seLinuxOptions.go).
const SELINUX_TYPES: &[&str] = &[
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];
/// Volume sources `restricted` allows (check_restrictedVolumes.go).
const RESTRICTED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// Every `restricted` violation of a pod (template): `metadata` and `spec`
/// of the pod. `restricted` includes every `baseline` rule.
pub fn restricted(metadata: &Value, spec: &Value) -> Vec<Violation> {
    let mut out = baseline(metadata, spec);
    let containers = containers(spec);
    let names = |pred: &dyn Fn(&Value) -> bool| -> Vec<String> {
        containers
            .iter()
            .filter(|c| pred(c))
            .map(|c| c["name"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let mut push = |reason, detail: String| out.push(Violation { reason, detail });

    // check_restrictedVolumes.go
    let bad_volumes: Vec<String> = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| {
            let source = v
                .as_object()?
                .keys()
                .find(|k| *k != "name")
                .cloned()
                .unwrap_or_default();
            (!RESTRICTED_VOLUMES.contains(&source.as_str()))
                .then(|| format!("{:?} ({source})", v["name"].as_str().unwrap_or("")))
        })
        .collect();
    if !bad_volumes.is_empty() {
        push(
            "restricted volume types",
            format!(
                "volumes {} use restricted volume types",
                bad_volumes.join(", ")
            ),
        );
    }

    // check_allowPrivilegeEscalation.go: must be explicitly false.
    let bad = names(&|c| c["securityContext"]["allowPrivilegeEscalation"] != Value::Bool(false));
    if !bad.is_empty() {
        push(
            "allowPrivilegeEscalation != false",
            format!(
                "{} must set securityContext.allowPrivilegeEscalation=false",
                containers_phrase(&bad)
            ),
        );
    }

    // check_runAsNonRoot.go
    let pod_non_root = spec["securityContext"]["runAsNonRoot"].as_bool();
    let explicitly_bad = names(&|c| c["securityContext"]["runAsNonRoot"] == Value::Bool(false));
    if pod_non_root == Some(false) || !explicitly_bad.is_empty() {
        let mut setters = Vec::new();
        if pod_non_root == Some(false) {
            setters.push("pod".to_string());
        }
        if !explicitly_bad.is_empty() {
            setters.push(containers_phrase(&explicitly_bad));
        }
        push(
            "runAsNonRoot != true",
            format!(
                "{} must not set securityContext.runAsNonRoot=false",
                setters.join(" and ")
            ),
        );
    } else if pod_non_root != Some(true) {
        let implicit = names(&|c| c["securityContext"]["runAsNonRoot"].is_null());
        if !implicit.is_empty() {
            push(
                "runAsNonRoot != true",
                format!(
                    "pod or {} must set securityContext.runAsNonRoot=true",
                    containers_phrase(&implicit)
                ),
            );
        }
    }

    // check_runAsUser.go: 0 is forbidden wherever it is set.
    let mut setters = Vec::new();
    if spec["securityContext"]["runAsUser"] == 0 {
        setters.push("pod".to_string());
    }
    let bad = names(&|c| c["securityContext"]["runAsUser"] == 0);
    if !bad.is_empty() {
        setters.push(containers_phrase(&bad));
    }
    if !setters.is_empty() {
        push(
            "runAsUser=0",
            format!("{} must not set runAsUser=0", setters.join(" and ")),
        );
    }

    // check_seccompProfile_restricted.go
    let allowed = |t: &Value| matches!(t.as_str(), Some("RuntimeDefault" | "Localhost"));
    let pod_type = &spec["securityContext"]["seccompProfile"]["type"];
    let mut setters = Vec::new();
    if !pod_type.is_null() && !allowed(pod_type) {
        setters.push(format!(
            "pod must not set securityContext.seccompProfile.type to {pod_type}"
        ));
    }
    let bad = names(&|c| {
        let t = &c["securityContext"]["seccompProfile"]["type"];
        !t.is_null() && !allowed(t)
    });
    if !bad.is_empty() {
        setters.push(format!(
            "{} must not set securityContext.seccompProfile.type to a value other than RuntimeDefault or Localhost",
            containers_phrase(&bad)
        ));
    }
    if pod_type.is_null() {
        let unset = names(&|c| c["securityContext"]["seccompProfile"]["type"].is_null());
        if !unset.is_empty() {
            setters.push(format!(
                "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                containers_phrase(&unset)
            ));
        }
    }
    if !setters.is_empty() {
        push("seccompProfile", setters.join("; "));
    }

    // check_capabilities_restricted.go
    let missing_drop_all = names(&|c| {
        !c["securityContext"]["capabilities"]["drop"]
            .as_array()
            .is_some_and(|d| d.iter().any(|x| x == "ALL"))
    });
    let adding = names(&|c| {
        c["securityContext"]["capabilities"]["add"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x != "NET_BIND_SERVICE"))
    });
    let mut details = Vec::new();
    if !missing_drop_all.is_empty() {
        details.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            containers_phrase(&missing_drop_all)
        ));
    }
    if !adding.is_empty() {
        details.push(format!(
            "{} must not add capabilities other than NET_BIND_SERVICE",
            containers_phrase(&adding)
        ));
    }
    if !details.is_empty() {
        push("unrestricted capabilities", details.join("; "));
    }
    out
}

/// Every `baseline` violation.
pub fn baseline(metadata: &Value, spec: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    let containers = containers(spec);
    let names = |pred: &dyn Fn(&Value) -> bool| -> Vec<String> {
        containers
            .iter()
            .filter(|c| pred(c))
            .map(|c| c["name"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let mut push = |reason, detail: String| out.push(Violation { reason, detail });

    // check_hostNamespaces.go
    let host: Vec<String> = ["hostNetwork", "hostPID", "hostIPC"]
        .into_iter()
        .filter(|k| spec[*k] == true)
        .map(|k| format!("{k}=true"))
        .collect();
    if !host.is_empty() {
        push("host namespaces", host.join(", "));
    }
    // check_privileged.go
    let bad = names(&|c| c["securityContext"]["privileged"] == true);
    if !bad.is_empty() {
        push(
            "privileged",
            format!(
                "{} must not set securityContext.privileged=true",
                containers_phrase(&bad)
            ),
        );
    }
    // check_capabilities_baseline.go
    let bad = names(&|c| {
        c["securityContext"]["capabilities"]["add"]
            .as_array()
            .is_some_and(|a| {
                a.iter().any(|x| {
                    !x.as_str()
                        .is_some_and(|x| BASELINE_CAPABILITIES.contains(&x))
                })
            })
    });
    if !bad.is_empty() {
        push(
            "non-default capabilities",
            format!(
                "{} must not add capabilities beyond the default set",
                containers_phrase(&bad)
            ),
        );
    }
    // check_hostPathVolumes.go
    let host_paths: Vec<&str> = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| !v["hostPath"].is_null())
        .map(|v| v["name"].as_str().unwrap_or(""))
        .collect();
    if !host_paths.is_empty() {
        push("hostPath volumes", format!("volumes {host_paths:?}"));
    }
    // check_hostPorts.go
    let bad = names(&|c| {
        c["ports"].as_array().is_some_and(|p| {
            p.iter()
                .any(|p| p["hostPort"].as_i64().is_some_and(|h| h != 0))
        })
    });
    if !bad.is_empty() {
        push(
            "hostPort",
            format!("{} use hostPort", containers_phrase(&bad)),
        );
    }
    // check_appArmorProfile.go (field and the legacy annotations)
    let unconfined = |sc: &Value| sc["appArmorProfile"]["type"] == "Unconfined";
    let annotation_bad = metadata["annotations"].as_object().is_some_and(|a| {
        a.iter().any(|(k, v)| {
            k.starts_with("container.apparmor.security.beta.kubernetes.io/")
                && !v
                    .as_str()
                    .is_some_and(|v| v == "runtime/default" || v.starts_with("localhost/"))
        })
    });
    if unconfined(&spec["securityContext"])
        || annotation_bad
        || !names(&|c| unconfined(&c["securityContext"])).is_empty()
    {
        push(
            "forbidden AppArmor profile",
            "AppArmor must not be Unconfined".into(),
        );
    }
    // check_seLinuxOptions.go
    let selinux_bad = |sc: &Value| {
        let o = &sc["seLinuxOptions"];
        !o.is_null()
            && (!o["type"]
                .as_str()
                .is_none_or(|t| SELINUX_TYPES.contains(&t))
                || o["user"].as_str().is_some_and(|u| !u.is_empty())
                || o["role"].as_str().is_some_and(|r| !r.is_empty()))
    };
    if selinux_bad(&spec["securityContext"])
        || !names(&|c| selinux_bad(&c["securityContext"])).is_empty()
    {
        push(
            "seLinuxOptions",
            "seLinuxOptions type, user or role is forbidden".into(),
        );
    }
    // check_procMount.go
    let bad = names(&|c| {
        c["securityContext"]["procMount"]
            .as_str()
            .is_some_and(|p| p != "Default")
    });
    if !bad.is_empty() {
        push(
            "procMount",
            format!(
                "{} must not set securityContext.procMount",
                containers_phrase(&bad)
            ),
        );
    }
    // check_seccompProfile_baseline.go
    let is_unconfined = |sc: &Value| sc["seccompProfile"]["type"] == "Unconfined";
    if is_unconfined(&spec["securityContext"])
        || !names(&|c| is_unconfined(&c["securityContext"])).is_empty()
    {
        push(
            "seccompProfile",
            "seccompProfile.type must not be Unconfined".into(),
        );
    }
    // check_sysctls.go
    let bad: Vec<&str> = spec["securityContext"]["sysctls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .filter(|n| !SAFE_SYSCTLS.contains(n))
        .collect();
    if !bad.is_empty() {
        push("forbidden sysctls", bad.join(", "));
    }
    // check_windowsHostProcess.go
    let host_process = |sc: &Value| sc["windowsOptions"]["hostProcess"] == true;
    if host_process(&spec["securityContext"])
        || !names(&|c| host_process(&c["securityContext"])).is_empty()
    {
        push("hostProcess", "hostProcess must not be true".into());
    }
    // check_hostProbesAndhostLifecycle.go
    let bad = names(&|c| {
        let handlers = [
            &c["livenessProbe"],
            &c["readinessProbe"],
            &c["startupProbe"],
            &c["lifecycle"]["postStart"],
            &c["lifecycle"]["preStop"],
        ];
        handlers.iter().any(|h| {
            ["httpGet", "tcpSocket"]
                .iter()
                .any(|k| h[*k]["host"].as_str().is_some_and(|host| !host.is_empty()))
        })
    });
    if !bad.is_empty() {
        push(
            "probe or lifecycle host",
            format!(
                "{} must not set a probe or lifecycle host",
                containers_phrase(&bad)
            ),
        );
    }
    out
}

fn containers(spec: &Value) -> Vec<&Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().into_iter().flatten())
        .collect()
}

fn containers_phrase(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    format!(
        "{} {}",
        if names.len() == 1 {
            "container"
        } else {
            "containers"
        },
        quoted.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reasons(spec: Value) -> Vec<&'static str> {
        restricted(&json!({}), &spec)
            .into_iter()
            .map(|v| v.reason)
            .collect()
    }

    #[test]
    fn a_bare_pod_breaks_every_restricted_rule_that_needs_a_setting() {
        assert_eq!(
            reasons(json!({"containers": [{"name": "c"}]})),
            [
                "allowPrivilegeEscalation != false",
                "runAsNonRoot != true",
                "seccompProfile",
                "unrestricted capabilities",
            ]
        );
    }

    #[test]
    fn a_restricted_pod_passes_and_each_change_breaks_one_rule() {
        let ok = json!({
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "securityContext": {
                "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}],
            "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "d"}}],
        });
        assert_eq!(reasons(ok.clone()), Vec::<&str>::new());
        for (pointer, value, reason) in [
            ("/securityContext/runAsUser", json!(0), "runAsUser=0"),
            ("/hostNetwork", json!(true), "host namespaces"),
            (
                "/volumes/0",
                json!({"name": "h", "hostPath": {"path": "/"}}),
                "hostPath volumes",
            ),
            (
                "/containers/0/securityContext/privileged",
                json!(true),
                "privileged",
            ),
            (
                "/containers/0/securityContext/capabilities/add",
                json!(["NET_RAW"]),
                "unrestricted capabilities",
            ),
            (
                "/securityContext/seccompProfile/type",
                json!("Unconfined"),
                "seccompProfile",
            ),
            (
                "/containers/0/securityContext/runAsNonRoot",
                json!(false),
                "runAsNonRoot != true",
            ),
        ] {
            let mut spec = ok.clone();
            let parent = pointer.rsplit_once('/').unwrap().0;
            let key = pointer.rsplit_once('/').unwrap().1;
            match spec.pointer_mut(parent).unwrap() {
                Value::Object(m) => {
                    m.insert(key.to_string(), value);
                }
                Value::Array(a) => a[key.parse::<usize>().unwrap()] = value,
                _ => unreachable!(),
            }
            assert!(
                reasons(spec.clone()).contains(&reason),
                "{pointer}: {:?}",
                reasons(spec)
            );
        }
    }
}
