//! One cluster's object store and the write semantics of the API server:
//! resourceVersion, generation, uid, defaults, status subresources,
//! preconditions, field ownership, namespaces, dry-run and the watch event
//! log. Synchronous; callers hold the cluster's lock. Must not know about
//! HTTP or controllers' timing.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::error::ApiError;
use crate::fieldcheck::{self, FieldValidation};
use crate::managed::{self, ApplyOutcome};
use crate::patch;
use crate::resources::{self, ResourceDef, idx};

/// `(resource index, namespace or "", name)`.
pub type ObjKey = (usize, String, String);

const LOG_CAPACITY: usize = 20_000;
pub const PROTECTED_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub res: usize,
    pub ns: String,
    pub kind: EventType,
    pub obj: Arc<Value>,
    pub old: Option<Arc<Value>>,
}

/// How a write records field ownership.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ownership<'a> {
    /// A non-apply API write by this manager.
    Update(&'a str),
    /// `metadata.managedFields` is already computed (server-side apply).
    Precomputed,
    /// A controller or seed write: no ownership changes.
    Internal,
}

#[derive(Debug, Clone, Copy)]
pub struct WriteCtx<'a> {
    pub ownership: Ownership<'a>,
    pub dry_run: bool,
    /// How unknown fields of an API write are handled (`fieldValidation`);
    /// controller writes are not validated.
    pub validation: FieldValidation,
}

impl WriteCtx<'_> {
    pub fn internal() -> Self {
        WriteCtx {
            ownership: Ownership::Internal,
            dry_run: false,
            validation: FieldValidation::Ignore,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Written {
    pub obj: Value,
    pub changed: bool,
    pub created: bool,
    /// Warnings for the response (`unknown field "…"`).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PatchKind {
    Apply,
    Merge,
    Strategic,
    Json,
}

impl PatchKind {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let ct = ct.split(';').next().unwrap_or("").trim();
        match ct {
            "application/apply-patch+yaml" | "application/apply-patch+json" => {
                Some(PatchKind::Apply)
            }
            "application/merge-patch+json" => Some(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Some(PatchKind::Strategic),
            "application/json-patch+json" => Some(PatchKind::Json),
            _ => None,
        }
    }
}

/// Addresses handed out in one cluster; deterministic and stable for the
/// life of the simulation (the same pod name always gets the same IP).
#[derive(Debug, Default)]
pub struct Net {
    pub cluster: u8,
    pod_ips: HashMap<(String, String), Ipv4Addr>,
    next_pod: u32,
    next_svc: u32,
    lb_ips: HashMap<(String, String), Ipv4Addr>,
    next_lb: u32,
    next_node_port: u16,
}

impl Net {
    pub fn new(cluster: u8) -> Self {
        Net {
            cluster,
            next_pod: 2 * 256 + 10,
            next_svc: 100,
            next_lb: 10,
            next_node_port: 30000,
            ..Net::default()
        }
    }

    pub fn pod_cidr(&self) -> String {
        format!("10.{}.0.0/16", 100 + self.cluster as u32)
    }

    pub fn service_cidr(&self) -> String {
        format!("10.{}.0.0/16", 200 + self.cluster as u32)
    }

    pub fn dns_service_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 200 + self.cluster, 0, 10)
    }

    pub fn node_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 100 + self.cluster, 0, 2)
    }

    fn in_range(second: u8, n: u32) -> Ipv4Addr {
        Ipv4Addr::new(10, second, ((n >> 8) & 0xff) as u8, (n & 0xff) as u8)
    }

    pub fn pod_ip(&mut self, ns: &str, name: &str) -> Ipv4Addr {
        let key = (ns.to_string(), name.to_string());
        if let Some(ip) = self.pod_ips.get(&key) {
            return *ip;
        }
        let mut n = self.next_pod;
        if n & 0xff == 0 || n & 0xff == 255 {
            n += 2;
        }
        self.next_pod = n + 1;
        let ip = Self::in_range(100 + self.cluster, n);
        self.pod_ips.insert(key, ip);
        ip
    }

    fn service_ip(&mut self) -> Ipv4Addr {
        let n = self.next_svc;
        self.next_svc += 1;
        Self::in_range(200 + self.cluster, n)
    }

    pub fn lb_ip(&mut self, ns: &str, name: &str) -> Ipv4Addr {
        let key = (ns.to_string(), name.to_string());
        if let Some(ip) = self.lb_ips.get(&key) {
            return *ip;
        }
        let n = self.next_lb;
        self.next_lb += 1;
        let ip = Self::in_range(150 + self.cluster, n);
        self.lb_ips.insert(key, ip);
        ip
    }

    fn node_port(&mut self) -> u16 {
        let p = self.next_node_port;
        self.next_node_port = if p >= 32767 { 30000 } else { p + 1 };
        p
    }
}

pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_string())
}

/// FNV-1a: a stable hash for template hashes and name suffixes.
pub fn fnv(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in data {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Five characters from the alphabet Kubernetes uses for generated names.
pub fn name_suffix(seed: u64) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h = fnv(&seed.to_le_bytes());
    (0..5)
        .map(|_| {
            let c = ALPHABET[(h % ALPHABET.len() as u64) as usize] as char;
            h /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn meta(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
}

/// The grace period (seconds) a pod's deletion takes, None when it goes at
/// once: only Running pods terminate gracefully, for the request's
/// `gracePeriodSeconds`, else the pod's `terminationGracePeriodSeconds`
/// (default 30).
pub fn graceful(pod: &Value, grace: Option<i64>) -> Option<i64> {
    if pod.pointer("/status/phase").and_then(Value::as_str) != Some("Running") {
        return None;
    }
    let secs = grace
        .or_else(|| {
            pod.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(30);
    (secs > 0).then_some(secs)
}

pub fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub fn uid_of(obj: &Value) -> &str {
    obj.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub fn rv_of(obj: &Value) -> u64 {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Defaults inside a pod spec that clients print and compare: container
/// port protocols.
fn pod_spec_defaults(spec: &mut Value) {
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs {
                if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports {
                        if p.is_object() && p.get("protocol").is_none() {
                            p["protocol"] = json!("TCP");
                        }
                    }
                }
            }
        }
    }
}

/// Workload defaults the real API server fills in (kubectl's `rollout
/// status` needs the update strategy).
fn workload_defaults(res: usize, obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    if let Some(tspec) = spec.pointer_mut("/template/spec") {
        pod_spec_defaults(tspec);
    }
    let m = spec.as_object_mut().expect("spec is an object");
    match res {
        idx::STATEFULSET => {
            m.entry("replicas").or_insert(json!(1));
            m.entry("podManagementPolicy")
                .or_insert(json!("OrderedReady"));
            m.entry("updateStrategy")
                .or_insert(json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}));
            m.entry("revisionHistoryLimit").or_insert(json!(10));
        }
        idx::DEPLOYMENT => {
            m.entry("replicas").or_insert(json!(1));
            m.entry("strategy").or_insert(
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
            );
            m.entry("revisionHistoryLimit").or_insert(json!(10));
            m.entry("progressDeadlineSeconds").or_insert(json!(600));
        }
        _ => {
            m.entry("completions").or_insert(json!(1));
            m.entry("parallelism").or_insert(json!(1));
            m.entry("backoffLimit").or_insert(json!(6));
        }
    }
}

/// `spec` without the given keys, for "everything else is immutable" rules.
fn spec_without(obj: &Value, keys: &[&str]) -> Value {
    let mut spec = obj.get("spec").cloned().unwrap_or(json!({}));
    if let Some(m) = spec.as_object_mut() {
        for k in keys {
            m.remove(*k);
        }
    }
    spec
}

fn immutable(def: &ResourceDef, obj: &Value, field: &str) -> ApiError {
    ApiError::invalid(
        def,
        name_of(obj),
        field,
        "Invalid value: field is immutable",
    )
}

/// Fields the real API server refuses to change, checked on the request as
/// sent (before defaults fill gaps in).
fn check_immutable(res: usize, old: &Value, cand: &Value) -> Result<(), ApiError> {
    let def = resources::def(res);
    let changed = |ptr: &str| {
        let new = cand.pointer(ptr);
        new.is_some() && new != old.pointer(ptr)
    };
    match res {
        idx::SERVICE => {
            let new_ip = cand
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .unwrap_or("");
            let old_ip = old
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !new_ip.is_empty() && !old_ip.is_empty() && new_ip != old_ip {
                return Err(ApiError::invalid(
                    def,
                    name_of(old),
                    "spec.clusterIPs[0]",
                    &format!("Invalid value: {new_ip:?}: may not change once set"),
                ));
            }
            // ValidateServiceUpdate: the class may only change together
            // with a change of type away from LoadBalancer.
            let old_class = old
                .pointer("/spec/loadBalancerClass")
                .filter(|v| !v.is_null());
            let new_class = cand
                .pointer("/spec/loadBalancerClass")
                .filter(|v| !v.is_null());
            let still_lb =
                cand.pointer("/spec/type").and_then(Value::as_str) == Some("LoadBalancer");
            if old_class.is_some() && still_lb && new_class != old_class {
                let shown = new_class
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "\"null\"".into());
                return Err(ApiError::invalid(
                    def,
                    name_of(old),
                    "spec.loadBalancerClass",
                    &format!("Invalid value: {shown}: may not change once set"),
                ));
            }
        }
        idx::CONFIGMAP | idx::SECRET if old.get("immutable") == Some(&json!(true)) => {
            for field in ["data", "binaryData", "stringData"] {
                let new = cand.get(field).filter(|v| !v.is_null());
                if new.is_some() && new != old.get(field) {
                    return Err(ApiError::invalid(
                        def,
                        name_of(old),
                        field,
                        "Forbidden: field is immutable when `immutable` is set",
                    ));
                }
            }
        }
        idx::DEPLOYMENT | idx::STATEFULSET | idx::JOB if changed("/spec/selector") => {
            return Err(immutable(def, old, "spec.selector"));
        }
        _ => {}
    }
    Ok(())
}

/// Immutability rules that compare whole specs, after defaults, so that a
/// field the client left out is not a change.
fn check_immutable_after_defaults(res: usize, old: &Value, cand: &Value) -> Result<(), ApiError> {
    let def = resources::def(res);
    match res {
        idx::STATEFULSET => {
            let mutable = [
                "replicas",
                "ordinals",
                "template",
                "updateStrategy",
                "revisionHistoryLimit",
                "persistentVolumeClaimRetentionPolicy",
                "minReadySeconds",
            ];
            if spec_without(old, &mutable) != spec_without(cand, &mutable) {
                return Err(ApiError::invalid(
                    def,
                    name_of(old),
                    "spec",
                    "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', \
                     'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' \
                     and 'minReadySeconds' are forbidden",
                ));
            }
        }
        idx::JOB if old.pointer("/spec/template") != cand.pointer("/spec/template") => {
            return Err(immutable(def, old, "spec.template"));
        }
        idx::PVC if spec_without(old, &["resources"]) != spec_without(cand, &["resources"]) => {
            return Err(ApiError::invalid(
                def,
                name_of(old),
                "spec",
                "Forbidden: spec is immutable after creation except resources.requests and \
                 volumeAttributesClassName for bound claims",
            ));
        }
        _ => {}
    }
    Ok(())
}

/// What admission plugins and webhooks of the simulated cluster do to
/// API writes (not to controller writes, which go through [`Store::admit_pod`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Admission {
    /// A mutating webhook sets `spec.loadBalancerClass` to this on every
    /// new LoadBalancer Service that has none (the AWS Load Balancer Controller's).
    pub lb_class: Option<&'static str>,
    /// The cluster-wide Pod Security `enforce` level.
    pub pod_security: crate::config::PodSecurityLevel,
}

pub struct Store {
    pub admission: Admission,
    objects: BTreeMap<ObjKey, Arc<Value>>,
    rv: u64,
    log: VecDeque<Arc<Event>>,
    compacted: u64,
    tx: broadcast::Sender<Arc<Event>>,
    seq: u64,
    pub net: Net,
}

impl Store {
    pub fn new(cluster: u8) -> Self {
        let (tx, _) = broadcast::channel(8192);
        Store {
            admission: Admission::default(),
            objects: BTreeMap::new(),
            rv: 1000,
            log: VecDeque::new(),
            compacted: 1000,
            tx,
            seq: 0,
            net: Net::new(cluster),
        }
    }

    /// Pod Security admission of a new pod in `ns`: the refusal the API
    /// server answers when the pod violates the namespace's enforced level.
    pub fn admit_pod(&self, ns: &str, pod: &Value) -> Result<(), ApiError> {
        let ns_obj = self.get(idx::NAMESPACE, "", ns);
        let level =
            crate::podsecurity::level_for(ns, ns_obj.as_deref(), self.admission.pod_security);
        let spec = pod.get("spec").cloned().unwrap_or(json!({}));
        let v = crate::podsecurity::violations(&spec, level);
        if v.is_empty() {
            Ok(())
        } else {
            Err(crate::podsecurity::refusal(name_of(pod), level, &v))
        }
    }

    pub fn current_rv(&self) -> u64 {
        self.rv
    }

    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// Events after `rv`, or 410 Gone when they were compacted away.
    pub fn events_since(&self, rv: u64) -> Result<Vec<Arc<Event>>, ApiError> {
        if rv < self.compacted {
            return Err(ApiError::gone(format!(
                "too old resource version: {rv} ({})",
                self.compacted
            )));
        }
        Ok(self.log.iter().filter(|e| e.rv > rv).cloned().collect())
    }

    pub fn get(&self, res: usize, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.objects
            .get(&(res, ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Objects of one resource, in one namespace or all, ordered by key.
    pub fn list(&self, res: usize, ns: Option<&str>) -> Vec<Arc<Value>> {
        let start = (res, ns.unwrap_or("").to_string(), String::new());
        self.objects
            .range(start..)
            .take_while(|((r, n, _), _)| *r == res && ns.is_none_or(|ns| n == ns))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Every object, for controllers that look across kinds.
    pub fn all(&self) -> impl Iterator<Item = (&ObjKey, &Arc<Value>)> {
        self.objects.iter()
    }

    fn commit(
        &mut self,
        res: usize,
        ns: &str,
        name: &str,
        new: Option<Value>,
    ) -> Option<Arc<Value>> {
        let key = (res, ns.to_string(), name.to_string());
        self.rv += 1;
        let rv = self.rv;
        let (kind, obj, old) = match new {
            Some(mut v) => {
                meta(&mut v).insert("resourceVersion".into(), json!(rv.to_string()));
                let v = Arc::new(v);
                let old = self.objects.insert(key, v.clone());
                let kind = if old.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                (kind, v, old)
            }
            None => {
                let old = self.objects.remove(&key)?;
                let mut v = (*old).clone();
                meta(&mut v).insert("resourceVersion".into(), json!(rv.to_string()));
                (EventType::Deleted, Arc::new(v), Some(old))
            }
        };
        let ev = Arc::new(Event {
            rv,
            res,
            ns: ns.to_string(),
            kind,
            obj: obj.clone(),
            old,
        });
        self.log.push_back(ev.clone());
        while self.log.len() > LOG_CAPACITY {
            if let Some(e) = self.log.pop_front() {
                self.compacted = e.rv;
            }
        }
        let _ = self.tx.send(ev);
        Some(obj)
    }

    fn new_uid(&mut self) -> String {
        let seq = self.next_seq();
        format!(
            "6b756265-{:04x}-4000-8000-{:012x}",
            self.net.cluster as u32, seq
        )
    }

    /// Check that `ns` can receive new objects.
    fn check_namespace(&self, res: &ResourceDef, ns: &str, name: &str) -> Result<(), ApiError> {
        if !res.namespaced {
            return Ok(());
        }
        match self.get(idx::NAMESPACE, "", ns) {
            None => Err(ApiError::namespace_not_found(ns)),
            Some(n) if n.pointer("/metadata/deletionTimestamp").is_some() => {
                Err(ApiError::terminating(res, name, ns))
            }
            Some(_) => Ok(()),
        }
    }

    fn set_identity(res: &ResourceDef, obj: &mut Value, ns: &str, name: &str) {
        if !obj.is_object() {
            *obj = json!({});
        }
        obj["apiVersion"] = json!(res.api_version());
        obj["kind"] = json!(res.kind);
        let m = meta(obj);
        m.insert("name".into(), json!(name));
        if res.namespaced {
            m.insert("namespace".into(), json!(ns));
        } else {
            m.remove("namespace");
        }
    }

    /// Server-side defaults that real clusters fill in (and tools rely on).
    fn apply_defaults(&mut self, res: usize, obj: &mut Value, old: Option<&Value>) {
        let name = name_of(obj).to_string();
        match res {
            idx::NAMESPACE => {
                let m = meta(obj);
                let labels = m.entry("labels").or_insert_with(|| json!({}));
                labels["kubernetes.io/metadata.name"] = json!(name);
                if obj.pointer("/spec/finalizers").is_none() {
                    obj["spec"] = json!({"finalizers": ["kubernetes"]});
                }
                if obj.pointer("/status/phase").is_none() {
                    obj["status"] = json!({"phase": "Active"});
                }
            }
            idx::SERVICE => self.service_defaults(obj, old),
            idx::SECRET => {
                if let Some(sd) = obj.as_object_mut().and_then(|o| o.remove("stringData"))
                    && let Some(sd) = sd.as_object()
                {
                    let data = obj
                        .as_object_mut()
                        .expect("object")
                        .entry("data")
                        .or_insert_with(|| json!({}));
                    for (k, v) in sd {
                        let s = v.as_str().unwrap_or("");
                        data[k] = json!(base64::engine::general_purpose::STANDARD.encode(s));
                    }
                }
                if obj.get("type").is_none() {
                    obj["type"] = json!("Opaque");
                }
            }
            idx::STATEFULSET | idx::DEPLOYMENT | idx::JOB => workload_defaults(res, obj),
            idx::POD => {
                if let Some(spec) = obj.get_mut("spec") {
                    pod_spec_defaults(spec);
                }
                if obj.pointer("/status/phase").is_none() {
                    obj["status"] = json!({"phase": "Pending"});
                }
            }
            idx::PVC if obj.pointer("/status/phase").is_none() => {
                let storage = obj
                    .pointer("/spec/resources/requests/storage")
                    .cloned()
                    .unwrap_or(json!("1Gi"));
                let modes = obj
                    .pointer("/spec/accessModes")
                    .cloned()
                    .unwrap_or(json!(["ReadWriteOnce"]));
                obj["status"] = json!({"phase": "Bound", "accessModes": modes, "capacity": {"storage": storage}});
            }
            _ => {}
        }
    }

    fn service_defaults(&mut self, obj: &mut Value, old: Option<&Value>) {
        if !obj.get("spec").is_some_and(Value::is_object) {
            obj["spec"] = json!({});
        }
        let spec = obj["spec"].as_object_mut().expect("spec is an object");
        let ty = spec
            .entry("type")
            .or_insert_with(|| json!("ClusterIP"))
            .as_str()
            .unwrap_or("ClusterIP")
            .to_string();
        let old_ip = old.and_then(|o| o.pointer("/spec/clusterIP")).cloned();
        if ty != "ExternalName" {
            let ip = match (spec.get("clusterIP").and_then(Value::as_str), old_ip) {
                (_, Some(old_ip)) => old_ip,
                (Some(ip), None) if !ip.is_empty() => json!(ip),
                _ => json!(self.net.service_ip().to_string()),
            };
            spec.insert("clusterIP".into(), ip.clone());
            spec.insert("clusterIPs".into(), json!([ip]));
            spec.entry("sessionAffinity").or_insert(json!("None"));
            spec.entry("ipFamilies").or_insert(json!(["IPv4"]));
            spec.entry("ipFamilyPolicy").or_insert(json!("SingleStack"));
            spec.entry("internalTrafficPolicy")
                .or_insert(json!("Cluster"));
        }
        let wants_node_ports = ty == "NodePort" || ty == "LoadBalancer";
        if wants_node_ports {
            spec.entry("externalTrafficPolicy")
                .or_insert(json!("Cluster"));
        }
        if ty == "LoadBalancer" {
            spec.entry("allocateLoadBalancerNodePorts")
                .or_insert(json!(true));
        }
        let old_ports: Vec<Value> = old
            .and_then(|o| o.pointer("/spec/ports"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut ports: Vec<Value> = spec
            .get("ports")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for p in ports.iter_mut() {
            if p.get("protocol").is_none() {
                p["protocol"] = json!("TCP");
            }
            if p.get("targetPort").is_none() {
                p["targetPort"] = p["port"].clone();
            }
            if wants_node_ports && p.get("nodePort").is_none() {
                let reuse = old_ports
                    .iter()
                    .find(|o| o["port"] == p["port"] && o["protocol"] == p["protocol"])
                    .and_then(|o| o.get("nodePort"))
                    .cloned();
                p["nodePort"] = reuse.unwrap_or_else(|| json!(self.net.node_port()));
            }
        }
        if spec.contains_key("ports") {
            spec.insert("ports".into(), Value::Array(ports));
        }
        if obj.get("status").is_none() {
            obj["status"] = json!({"loadBalancer": {}});
        }
    }

    /// Create an object (POST, or server-side apply of a new object).
    pub fn create(
        &mut self,
        res: usize,
        ns: &str,
        mut obj: Value,
        ctx: WriteCtx,
    ) -> Result<Written, ApiError> {
        let def = resources::def(res);
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        let body_ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("");
        if def.namespaced && !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let mut name = name_of(&obj).to_string();
        if name.is_empty()
            && let Some(gen_name) = obj
                .pointer("/metadata/generateName")
                .and_then(Value::as_str)
        {
            let seq = self.next_seq();
            name = format!("{gen_name}{}", name_suffix(seq));
        }
        if name.is_empty() {
            return Err(ApiError::invalid(
                def,
                "",
                "metadata.name",
                "Required value: name or generateName is required",
            ));
        }
        if !valid_name(&name) {
            return Err(ApiError::invalid(
                def,
                &name,
                "metadata.name",
                "Invalid value: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'",
            ));
        }
        if ctx.ownership != Ownership::Internal {
            self.check_namespace(def, ns, &name)?;
        }
        if self.get(res, ns, &name).is_some() {
            return Err(ApiError::already_exists(def, &name));
        }
        if res == idx::POD && ctx.ownership != Ownership::Internal {
            let mut named = obj.clone();
            meta(&mut named).insert("name".into(), json!(name));
            self.admit_pod(ns, &named)?;
        }
        Self::set_identity(def, &mut obj, ns, &name);
        let mut warnings = Vec::new();
        if matches!(ctx.ownership, Ownership::Update(_)) {
            let checked = fieldcheck::validate_write(def, res, &obj, None, ctx.validation)?;
            if let Some(o) = checked.obj {
                obj = o;
            }
            warnings = checked.warnings;
        }
        let uid = self.new_uid();
        {
            let m = meta(&mut obj);
            m.remove("resourceVersion");
            m.remove("deletionTimestamp");
            m.insert("uid".into(), json!(uid));
            m.insert("creationTimestamp".into(), json!(now_rfc3339()));
        }
        if obj.get("spec").is_some() && res != idx::NAMESPACE && res != idx::SERVICE {
            meta(&mut obj).insert("generation".into(), json!(1));
        }
        if def.has_status() && ctx.ownership != Ownership::Internal {
            obj.as_object_mut().expect("object").remove("status");
        }
        self.apply_defaults(res, &mut obj, None);
        if let Ownership::Update(manager) = ctx.ownership {
            managed::track_update(None, &mut obj, manager, &def.api_version(), &now_rfc3339());
        }
        // A mutating webhook runs after the request's fields were recorded,
        // so no manager owns what it sets.
        if res == idx::SERVICE
            && ctx.ownership != Ownership::Internal
            && let Some(class) = self.admission.lb_class
            && obj.pointer("/spec/type").and_then(Value::as_str) == Some("LoadBalancer")
            && obj
                .pointer("/spec/loadBalancerClass")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        {
            obj["spec"]["loadBalancerClass"] = json!(class);
        }
        if ctx.dry_run {
            return Ok(Written {
                obj,
                changed: false,
                created: true,
                warnings: warnings.clone(),
            });
        }
        let stored = self
            .commit(res, ns, &name, Some(obj))
            .expect("put returns the object");
        Ok(Written {
            obj: (*stored).clone(),
            changed: true,
            created: true,
            warnings,
        })
    }

    /// Write a new version of an existing object. `status_only` is a write
    /// to the status subresource.
    fn write_existing(
        &mut self,
        res: usize,
        old: &Value,
        mut cand: Value,
        status_only: bool,
        ctx: WriteCtx,
    ) -> Result<Written, ApiError> {
        let def = resources::def(res);
        let ns = old
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let name = name_of(old).to_string();
        if !cand.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        if def.has_status() && ctx.ownership != Ownership::Internal {
            if status_only {
                let status = cand.get("status").cloned();
                cand = old.clone();
                match status {
                    Some(s) => cand["status"] = s,
                    None => {
                        cand.as_object_mut().expect("object").remove("status");
                    }
                }
            } else {
                match old.get("status") {
                    Some(s) => cand["status"] = s.clone(),
                    None => {
                        cand.as_object_mut().expect("object").remove("status");
                    }
                }
            }
        }
        Self::set_identity(def, &mut cand, &ns, &name);
        let mut warnings = Vec::new();
        if matches!(ctx.ownership, Ownership::Update(_)) && !status_only {
            let checked = fieldcheck::validate_write(def, res, &cand, Some(old), ctx.validation)?;
            if let Some(o) = checked.obj {
                cand = o;
            }
            warnings = checked.warnings;
        }
        {
            let om = old["metadata"].as_object().cloned().unwrap_or_default();
            let m = meta(&mut cand);
            for k in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "generation",
            ] {
                match om.get(k) {
                    Some(v) => m.insert(k.into(), v.clone()),
                    None => m.remove(k),
                };
            }
            if ctx.ownership == Ownership::Internal
                && let Some(mf) = om.get("managedFields")
            {
                m.insert("managedFields".into(), mf.clone());
            }
            m.insert(
                "resourceVersion".into(),
                om.get("resourceVersion").cloned().unwrap_or(json!("")),
            );
        }
        if ctx.ownership != Ownership::Internal {
            check_immutable(res, old, &cand)?;
        }
        self.apply_defaults(res, &mut cand, Some(old));
        if ctx.ownership != Ownership::Internal {
            check_immutable_after_defaults(res, old, &cand)?;
        }
        if cand.get("spec") != old.get("spec")
            && let Some(g) = old.pointer("/metadata/generation").and_then(Value::as_i64)
        {
            meta(&mut cand).insert("generation".into(), json!(g + 1));
        }
        if let Ownership::Update(manager) = ctx.ownership {
            let requested = cand.pointer("/metadata/managedFields");
            if requested.is_some() && requested != old.pointer("/metadata/managedFields") {
                // The client rewrote ownership on purpose (kubectl does when it
                // upgrades client-side-apply objects to server-side apply).
            } else {
                managed::track_update(
                    Some(old),
                    &mut cand,
                    manager,
                    &def.api_version(),
                    &now_rfc3339(),
                );
            }
        }
        if cand == *old {
            return Ok(Written {
                obj: old.clone(),
                changed: false,
                created: false,
                warnings: warnings.clone(),
            });
        }
        if ctx.dry_run {
            return Ok(Written {
                obj: cand,
                changed: false,
                created: false,
                warnings: warnings.clone(),
            });
        }
        let stored = self
            .commit(res, &ns, &name, Some(cand))
            .expect("put returns the object");
        Ok(Written {
            obj: (*stored).clone(),
            changed: true,
            created: false,
            warnings,
        })
    }

    /// PUT: replace an object (or its status), honouring the resourceVersion precondition.
    pub fn replace(
        &mut self,
        res: usize,
        ns: &str,
        name: &str,
        obj: Value,
        status_only: bool,
        ctx: WriteCtx,
    ) -> Result<Written, ApiError> {
        let def = resources::def(res);
        let old = self
            .get(res, ns, name)
            .ok_or_else(|| ApiError::not_found(def, name))?;
        let body_name = name_of(&obj);
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let want_rv = rv_of(&obj);
        if want_rv != 0 && want_rv != rv_of(&old) {
            return Err(ApiError::stale(def, name));
        }
        self.write_existing(res, &old, obj, status_only, ctx)
    }

    /// PATCH in any of the four patch formats.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        res: usize,
        ns: &str,
        name: &str,
        kind: PatchKind,
        body: &Value,
        status_only: bool,
        force: bool,
        ctx: WriteCtx,
    ) -> Result<Written, ApiError> {
        let def = resources::def(res);
        let old = self.get(res, ns, name);
        if kind == PatchKind::Apply && !status_only {
            let Ownership::Update(manager) = ctx.ownership else {
                return Err(ApiError::bad_request(
                    "server-side apply needs a field manager",
                ));
            };
            return self.server_side_apply(
                res,
                ns,
                name,
                old.as_deref(),
                body,
                manager,
                force,
                ctx.dry_run,
            );
        }
        let old = old.ok_or_else(|| ApiError::not_found(def, name))?;
        let mut cand = (*old).clone();
        match kind {
            PatchKind::Merge | PatchKind::Apply => patch::merge_patch(&mut cand, body),
            PatchKind::Strategic => patch::strategic_merge(&mut cand, body)?,
            PatchKind::Json => patch::json_patch(&mut cand, body)?,
        }
        let want_rv = rv_of(&cand);
        if want_rv != 0 && want_rv != rv_of(&old) {
            return Err(ApiError::stale(def, name));
        }
        self.write_existing(res, &old, cand, status_only, ctx)
    }

    #[allow(clippy::too_many_arguments)]
    fn server_side_apply(
        &mut self,
        res: usize,
        ns: &str,
        name: &str,
        old: Option<&Value>,
        body: &Value,
        manager: &str,
        force: bool,
        dry_run: bool,
    ) -> Result<Written, ApiError> {
        let def = resources::def(res);
        if !body.is_object() {
            return Err(ApiError::bad_request("the apply patch must be an object"));
        }
        let av = body.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = body.get("kind").and_then(Value::as_str).unwrap_or("");
        if av.is_empty() || kind.is_empty() {
            return Err(ApiError::bad_request(
                "apiVersion and kind must be set in a server-side apply patch",
            ));
        }
        if av != def.api_version() || kind != def.kind {
            return Err(ApiError::bad_request(format!(
                "the apply patch is for {av}, Kind={kind} but the URL is for {}, Kind={}",
                def.api_version(),
                def.kind
            )));
        }
        let body_name = name_of(body);
        if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let now = now_rfc3339();
        let ctx = WriteCtx {
            ownership: Ownership::Precomputed,
            dry_run,
            validation: FieldValidation::Ignore,
        };
        match managed::apply(old, body, manager, force, &def.api_version(), &now) {
            ApplyOutcome::Conflicts(c) => Err(ApiError::apply_conflict(def, name, &c)),
            ApplyOutcome::Ok(obj) => {
                fieldcheck::validate_apply(def, res, ns, name, &obj, old)?;
                match old {
                    None => self.create(res, ns, obj, ctx),
                    Some(old) => self.write_existing(res, old, obj, false, ctx),
                }
            }
        }
    }

    fn dependents(&self, owner_uid: &str) -> Vec<ObjKey> {
        self.objects
            .iter()
            .filter(|(_, v)| {
                v.pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"] == owner_uid))
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// DELETE of one object. Namespaces only start terminating; the
    /// namespace controller empties and removes them later. Running pods
    /// terminate gracefully (see [`Store::terminate_pod`]).
    pub fn delete(
        &mut self,
        res: usize,
        ns: &str,
        name: &str,
        propagation: Option<&str>,
        dry_run: bool,
    ) -> Result<Written, ApiError> {
        self.delete_with_grace(res, ns, name, propagation, dry_run, None)
    }

    /// [`Store::delete`] with the request's `gracePeriodSeconds`.
    pub fn delete_with_grace(
        &mut self,
        res: usize,
        ns: &str,
        name: &str,
        propagation: Option<&str>,
        dry_run: bool,
        grace: Option<i64>,
    ) -> Result<Written, ApiError> {
        let def = resources::def(res);
        let old = self
            .get(res, ns, name)
            .ok_or_else(|| ApiError::not_found(def, name))?;
        if res == idx::POD && !dry_run && graceful(&old, grace).is_some() {
            let changed = old.pointer("/metadata/deletionTimestamp").is_none();
            let obj = self
                .terminate_pod(ns, name, grace)
                .map(|o| (*o).clone())
                .unwrap_or_else(|| (*old).clone());
            return Ok(Written {
                obj,
                changed,
                created: false,
                warnings: Vec::new(),
            });
        }
        if res == idx::NAMESPACE {
            if PROTECTED_NAMESPACES.contains(&name) {
                return Err(ApiError::forbidden(format!(
                    "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
                )));
            }
            if old.pointer("/metadata/deletionTimestamp").is_some() {
                return Ok(Written {
                    obj: (*old).clone(),
                    changed: false,
                    created: false,
                    warnings: Vec::new(),
                });
            }
            let mut cand = (*old).clone();
            meta(&mut cand).insert("deletionTimestamp".into(), json!(now_rfc3339()));
            cand["status"] = json!({"phase": "Terminating"});
            if dry_run {
                return Ok(Written {
                    obj: cand,
                    changed: false,
                    created: false,
                    warnings: Vec::new(),
                });
            }
            let stored = self
                .commit(res, ns, name, Some(cand))
                .expect("put returns the object");
            return Ok(Written {
                obj: (*stored).clone(),
                changed: true,
                created: false,
                warnings: Vec::new(),
            });
        }
        if dry_run {
            return Ok(Written {
                obj: (*old).clone(),
                changed: false,
                created: false,
                warnings: Vec::new(),
            });
        }
        let uid = uid_of(&old).to_string();
        match propagation {
            Some("Orphan") => {
                for (r, n, nm) in self.dependents(&uid) {
                    if let Some(dep) = self.get(r, &n, &nm) {
                        let mut d = (*dep).clone();
                        if let Some(refs) = d
                            .pointer_mut("/metadata/ownerReferences")
                            .and_then(Value::as_array_mut)
                        {
                            refs.retain(|x| x["uid"] != uid.as_str());
                        }
                        self.commit(r, &n, &nm, Some(d));
                    }
                }
            }
            Some("Foreground") => self.delete_tree(&uid),
            _ => {}
        }
        let stored = self.commit(res, ns, name, None).expect("the object exists");
        Ok(Written {
            obj: (*stored).clone(),
            changed: true,
            created: false,
            warnings: Vec::new(),
        })
    }

    fn delete_tree(&mut self, uid: &str) {
        for (r, n, nm) in self.dependents(uid) {
            if let Some(dep) = self.get(r, &n, &nm) {
                let dep_uid = uid_of(&dep).to_string();
                self.delete_tree(&dep_uid);
                self.commit(r, &n, &nm, None);
            }
        }
    }

    /// Controller write: create or update without API checks, keeping
    /// whatever status the controller set. Returns whether anything changed.
    pub fn put_internal(&mut self, res: usize, ns: &str, obj: Value) -> bool {
        let name = name_of(&obj).to_string();
        match self.get(res, ns, &name) {
            Some(old) => self
                .write_existing(res, &old, obj, false, WriteCtx::internal())
                .map(|w| w.changed)
                .unwrap_or(false),
            None => self.create(res, ns, obj, WriteCtx::internal()).is_ok(),
        }
    }

    /// Controller write of an object through a manager, so that it shows up
    /// in `managedFields` like objects created by cluster add-ons do.
    pub fn put_as(
        &mut self,
        res: usize,
        ns: &str,
        obj: Value,
        manager: &str,
    ) -> Result<Written, ApiError> {
        let name = name_of(&obj).to_string();
        let ctx = WriteCtx {
            ownership: Ownership::Update(manager),
            dry_run: false,
            validation: FieldValidation::Ignore,
        };
        match self.get(res, ns, &name) {
            Some(old) => self.write_existing(res, &old, obj, false, ctx),
            None => self.create(res, ns, obj, ctx),
        }
    }

    /// Graceful deletion of a pod, as the API server and kubelet do it: a
    /// Running pod gets `deletionTimestamp` (now + grace) and
    /// `deletionGracePeriodSeconds` and stays until the pod controller
    /// removes it after the grace period; other pods (and grace 0) go at
    /// once. Returns the terminating pod, None when it is gone.
    pub fn terminate_pod(
        &mut self,
        ns: &str,
        name: &str,
        grace: Option<i64>,
    ) -> Option<Arc<Value>> {
        let old = self.get(idx::POD, ns, name)?;
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            return Some(old);
        }
        let Some(secs) = graceful(&old, grace) else {
            self.commit(idx::POD, ns, name, None);
            return None;
        };
        let mut cand = (*old).clone();
        let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(secs);
        let at = at
            .replace_nanosecond(0)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(now_rfc3339);
        meta(&mut cand).insert("deletionTimestamp".into(), json!(at));
        meta(&mut cand).insert("deletionGracePeriodSeconds".into(), json!(secs));
        self.commit(idx::POD, ns, name, Some(cand))
    }

    pub fn delete_internal(&mut self, res: usize, ns: &str, name: &str) -> bool {
        self.commit(res, ns, name, None).is_some()
    }

    /// Remove everything in a terminating namespace, then the namespace.
    pub fn purge_namespace(&mut self, ns: &str) {
        let keys: Vec<ObjKey> = self
            .objects
            .keys()
            .filter(|(r, n, _)| n == ns && resources::def(*r).namespaced)
            .cloned()
            .collect();
        for (r, n, name) in keys {
            self.commit(r, &n, &name, None);
        }
        self.commit(idx::NAMESPACE, "", ns, None);
    }

    /// Delete objects whose every owner is gone (background garbage collection).
    pub fn collect_garbage(&mut self) {
        let uids: std::collections::HashSet<String> = self
            .objects
            .values()
            .map(|v| uid_of(v).to_string())
            .collect();
        let orphans: Vec<ObjKey> = self
            .objects
            .iter()
            .filter(|(_, v)| {
                v.pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|refs| {
                        !refs.is_empty()
                            && refs
                                .iter()
                                .all(|r| !uids.contains(r["uid"].as_str().unwrap_or("")))
                    })
            })
            .map(|(k, _)| k.clone())
            .collect();
        for (r, n, name) in orphans {
            self.commit(r, &n, &name, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(m: &str) -> WriteCtx<'_> {
        WriteCtx {
            ownership: Ownership::Update(m),
            dry_run: false,
            validation: FieldValidation::Warn,
        }
    }

    fn store_with_ns() -> Store {
        let mut s = Store::new(0);
        s.create(
            idx::NAMESPACE,
            "",
            json!({"metadata": {"name": "db"}}),
            ctx("t"),
        )
        .unwrap();
        s
    }

    #[test]
    fn create_get_update_conflict() {
        let mut s = store_with_ns();
        let w = s
            .create(
                idx::CONFIGMAP,
                "db",
                json!({"metadata": {"name": "c"}, "data": {"a": "1"}}),
                ctx("t"),
            )
            .unwrap();
        assert!(w.changed);
        let rv = rv_of(&w.obj);
        let mut next = w.obj.clone();
        next["data"]["a"] = json!("2");
        let w2 = s
            .replace(idx::CONFIGMAP, "db", "c", next.clone(), false, ctx("t"))
            .unwrap();
        assert!(rv_of(&w2.obj) > rv);
        let err = s
            .replace(idx::CONFIGMAP, "db", "c", next, false, ctx("t"))
            .unwrap_err();
        assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    }

    #[test]
    fn missing_and_terminating_namespaces() {
        let mut s = store_with_ns();
        let err = s
            .create(
                idx::CONFIGMAP,
                "nope",
                json!({"metadata": {"name": "c"}}),
                ctx("t"),
            )
            .unwrap_err();
        assert_eq!(err.code, 404);
        s.delete(idx::NAMESPACE, "", "db", None, false).unwrap();
        let err = s
            .create(
                idx::CONFIGMAP,
                "db",
                json!({"metadata": {"name": "c"}}),
                ctx("t"),
            )
            .unwrap_err();
        assert_eq!((err.code, err.reason.as_str()), (403, "Forbidden"));
        assert!(err.message.contains("because it is being terminated"));
    }

    #[test]
    fn generation_bumps_on_spec_only() {
        let mut s = store_with_ns();
        let w = s
            .create(
                idx::STATEFULSET,
                "db",
                json!({"metadata": {"name": "x"}, "spec": {"replicas": 1}}),
                ctx("t"),
            )
            .unwrap();
        assert_eq!(w.obj["metadata"]["generation"], 1);
        let w = s
            .patch(
                idx::STATEFULSET,
                "db",
                "x",
                PatchKind::Merge,
                &json!({"metadata": {"labels": {"a": "b"}}}),
                false,
                false,
                ctx("t"),
            )
            .unwrap();
        assert_eq!(w.obj["metadata"]["generation"], 1);
        let w = s
            .patch(
                idx::STATEFULSET,
                "db",
                "x",
                PatchKind::Merge,
                &json!({"spec": {"replicas": 2}}),
                false,
                false,
                ctx("t"),
            )
            .unwrap();
        assert_eq!(w.obj["metadata"]["generation"], 2);
    }

    #[test]
    fn immutable_fields_are_refused() {
        let mut s = store_with_ns();
        let sts = json!({"metadata": {"name": "db"}, "spec": {
            "replicas": 1, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "d"}, "spec": {"resources": {"requests": {"storage": "1Gi"}}}}],
        }});
        s.create(idx::STATEFULSET, "db", sts.clone(), ctx("t"))
            .unwrap();
        let patch = |s: &mut Store, p: Value| {
            s.patch(
                idx::STATEFULSET,
                "db",
                "db",
                PatchKind::Merge,
                &p,
                false,
                false,
                ctx("t"),
            )
        };
        // Allowed: replicas and template; a re-sent spec without defaults is no change.
        patch(
            &mut s,
            json!({"spec": {"replicas": 3, "template": {"metadata": {"annotations": {"a": "b"}}}}}),
        )
        .unwrap();
        s.replace(idx::STATEFULSET, "db", "db", sts.clone(), false, ctx("t"))
            .unwrap();
        let err = patch(
            &mut s,
            json!({"spec": {"volumeClaimTemplates": [{"metadata": {"name": "d"}, "spec": {"resources": {"requests": {"storage": "2Gi"}}}}]}}),
        )
        .unwrap_err();
        assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
        assert!(
            err.message
                .contains("Forbidden: updates to statefulset spec"),
            "{}",
            err.message
        );
        let err = patch(
            &mut s,
            json!({"spec": {"selector": {"matchLabels": {"app": "x"}}}}),
        )
        .unwrap_err();
        assert_eq!(err.code, 422);

        let svc = s
            .create(
                idx::SERVICE,
                "db",
                json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}}),
                ctx("t"),
            )
            .unwrap()
            .obj;
        let ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
        let same = json!({"spec": {"clusterIP": ip}});
        s.patch(
            idx::SERVICE,
            "db",
            "s",
            PatchKind::Merge,
            &same,
            false,
            false,
            ctx("t"),
        )
        .unwrap();
        let other = json!({"spec": {"clusterIP": "10.200.9.9", "clusterIPs": ["10.200.9.9"]}});
        let err = s
            .patch(
                idx::SERVICE,
                "db",
                "s",
                PatchKind::Merge,
                &other,
                false,
                false,
                ctx("t"),
            )
            .unwrap_err();
        assert_eq!(err.code, 422);

        s.create(
            idx::CONFIGMAP,
            "db",
            json!({"metadata": {"name": "frozen"}, "immutable": true, "data": {"a": "1"}}),
            ctx("t"),
        )
        .unwrap();
        let err = s
            .patch(
                idx::CONFIGMAP,
                "db",
                "frozen",
                PatchKind::Merge,
                &json!({"data": {"a": "2"}}),
                false,
                false,
                ctx("t"),
            )
            .unwrap_err();
        assert_eq!(err.code, 422);
        // Controllers may still write status and the like.
        let mut live = (*s.get(idx::STATEFULSET, "db", "db").unwrap()).clone();
        live["status"] = json!({"replicas": 3});
        assert!(s.put_internal(idx::STATEFULSET, "db", live));
    }

    #[test]
    fn compacted_resource_versions_are_gone() {
        let mut s = store_with_ns();
        let start = s.current_rv();
        assert!(s.events_since(start).unwrap().is_empty());
        for i in 0..(LOG_CAPACITY + 10) {
            s.put_internal(
                idx::CONFIGMAP,
                "db",
                json!({"metadata": {"name": "c"}, "data": {"i": i.to_string()}}),
            );
        }
        let err = s.events_since(start).unwrap_err();
        assert_eq!((err.code, err.reason.as_str()), (410, "Expired"));
        let recent = s.current_rv() - 5;
        assert_eq!(s.events_since(recent).unwrap().len(), 5);
    }

    #[test]
    fn delete_propagation() {
        let mut s = store_with_ns();
        let owner = s
            .create(
                idx::CONFIGMAP,
                "db",
                json!({"metadata": {"name": "owner"}}),
                ctx("t"),
            )
            .unwrap()
            .obj;
        let dep = |name: &str| {
            json!({"metadata": {"name": name, "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid_of(&owner)}
            ]}})
        };
        s.create(idx::SECRET, "db", dep("orphan"), ctx("t"))
            .unwrap();
        s.delete(idx::CONFIGMAP, "db", "owner", Some("Orphan"), false)
            .unwrap();
        s.collect_garbage();
        let kept = s
            .get(idx::SECRET, "db", "orphan")
            .expect("orphaned, not deleted");
        assert!(
            kept["metadata"]["ownerReferences"]
                .as_array()
                .unwrap()
                .is_empty()
        );

        let owner = s
            .create(
                idx::CONFIGMAP,
                "db",
                json!({"metadata": {"name": "owner"}}),
                ctx("t"),
            )
            .unwrap()
            .obj;
        let dep = |name: &str| {
            json!({"metadata": {"name": name, "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid_of(&owner)}
            ]}})
        };
        s.create(idx::SECRET, "db", dep("fg"), ctx("t")).unwrap();
        s.delete(idx::CONFIGMAP, "db", "owner", Some("Foreground"), false)
            .unwrap();
        assert!(
            s.get(idx::SECRET, "db", "fg").is_none(),
            "foreground deletes dependents first"
        );

        let owner = s
            .create(
                idx::CONFIGMAP,
                "db",
                json!({"metadata": {"name": "owner"}}),
                ctx("t"),
            )
            .unwrap()
            .obj;
        s.create(
            idx::SECRET,
            "db",
            json!({"metadata": {"name": "bg", "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid_of(&owner)}
            ]}}),
            ctx("t"),
        )
        .unwrap();
        s.delete(idx::CONFIGMAP, "db", "owner", None, false)
            .unwrap();
        assert!(s.get(idx::SECRET, "db", "bg").is_some());
        s.collect_garbage();
        assert!(
            s.get(idx::SECRET, "db", "bg").is_none(),
            "background GC removes it"
        );
    }

    #[test]
    fn addresses_are_stable_and_in_range() {
        let mut n = Net::new(1);
        let a = n.pod_ip("db", "x-0");
        assert_eq!(n.pod_ip("db", "x-0"), a);
        assert_ne!(n.pod_ip("db", "x-1"), a);
        assert_eq!(a.octets()[1], 101);
        assert_eq!(n.dns_service_ip().to_string(), "10.201.0.10");
    }
}
