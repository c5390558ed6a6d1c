//! Pods as a kubelet would run them. Two parts:
//!
//! - rules both network modes share, used by the simulated controllers:
//!   an image naming `does-not-exist` never pulls (`ErrImagePull`), a
//!   `readinessProbe.exec.command == ["false"]` keeps a pod not Ready;
//! - the real network mode's [`Kubelet`]: a pod whose image is busybox has
//!   its first container's `command` + `args` run as a real `busybox`
//!   process in the cluster's network namespace, with the pod's `env`
//!   values, its output captured for the `pods/log` API, its exit code
//!   turned into the pod's phase (or a restart, by `restartPolicy`), and the
//!   process group killed when the pod is deleted.
//!
//! Addresses and DNS belong to [`crate::network`]; this module only writes
//! pod status and pod logs.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster::ClusterShared;
use crate::resources::idx;
use crate::store::{name_of, now_rfc3339, uid_of};

/// Images containing this never pull (both network modes).
pub const MISSING_IMAGE_MARKER: &str = "does-not-exist";
/// Images containing this run for real in the real network mode.
pub const BUSYBOX_MARKER: &str = "busybox";
/// At most this much of a pod's output is kept (the tail).
const MAX_LOG_BYTES: usize = 1 << 20;
/// How long after a container exits its output may still arrive.
const LOG_DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// Wait before a container that `restartPolicy` restarts runs again.
const RESTART_BACKOFF: Duration = Duration::from_secs(1);

fn containers(pod: &Value) -> impl Iterator<Item = &Value> {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// Whether an image of the pod cannot be pulled (image name contains `does-not-exist`).
pub fn image_pull_fails(pod: &Value) -> bool {
    containers(pod).any(|c| str_at(c, "/image").contains(MISSING_IMAGE_MARKER))
}

/// Whether a readiness probe of the pod can never pass (`exec: {command: ["false"]}`).
pub fn never_ready(pod: &Value) -> bool {
    containers(pod).any(|c| {
        c.pointer("/readinessProbe/exec/command")
            .and_then(Value::as_array)
            .is_some_and(|cmd| cmd.len() == 1 && cmd[0] == "false")
    })
}

/// Whether the real network mode runs this pod as a process: its first
/// container's image is busybox (and pullable).
pub fn runs_for_real(pod: &Value) -> bool {
    containers(pod)
        .next()
        .is_some_and(|c| str_at(c, "/image").contains(BUSYBOX_MARKER))
        && !image_pull_fails(pod)
}

/// A pod status with every condition set and `Ready` / `ContainersReady` as given.
pub fn conditions(ready: bool) -> Value {
    let r = if ready { "True" } else { "False" };
    json!([
        {"type": "PodReadyToStartContainers", "status": "True"},
        {"type": "Initialized", "status": "True"},
        {"type": "Ready", "status": r},
        {"type": "ContainersReady", "status": r},
        {"type": "PodScheduled", "status": "True"},
    ])
}

/// Mark a freshly Running pod status not ready when its probe never passes.
pub fn apply_readiness(pod: &Value, status: &mut Value) {
    if !never_ready(pod) {
        return;
    }
    status["conditions"] = conditions(false);
    if let Some(cs) = status
        .get_mut("containerStatuses")
        .and_then(Value::as_array_mut)
    {
        for c in cs {
            c["ready"] = json!(false);
        }
    }
}

fn container_id(pod: &Value, i: usize, restarts: u32) -> String {
    format!(
        "containerd://{:064x}",
        crate::store::fnv(format!("{}{i}/{restarts}", uid_of(pod)).as_bytes())
    )
}

/// The reason the pod's first waiting container gives, if any.
pub fn waiting_reason(pod: &Value) -> Option<&str> {
    pod.pointer("/status/containerStatuses")
        .and_then(Value::as_array)?
        .iter()
        .find_map(|c| c.pointer("/state/waiting/reason").and_then(Value::as_str))
}

/// What kubelet says when a container's environment names a ConfigMap (or a
/// key of one) that does not exist, for the first such container: kubelet
/// does not start it (`CreateContainerConfigError`, the pod stays Pending)
/// and retries until the ConfigMap appears. `optional: true` references are
/// skipped, as kubelet does. Messages as kubelet's `makeEnvironmentVariables`
/// words them. `lookup(name)` returns the ConfigMap of the pod's namespace.
pub fn missing_config_map_ref(
    pod: &Value,
    lookup: impl Fn(&str) -> Option<Arc<Value>>,
) -> Option<(String, String)> {
    let ns = str_at(pod, "/metadata/namespace");
    for c in containers(pod) {
        for e in c.get("env").and_then(Value::as_array).into_iter().flatten() {
            let Some(r) = e.pointer("/valueFrom/configMapKeyRef") else {
                continue;
            };
            if r.get("optional").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            let name = str_at(r, "/name");
            let key = str_at(r, "/key");
            let message = match lookup(name) {
                None => format!("configmap \"{name}\" not found"),
                Some(cm) if cm.pointer("/data").and_then(|d| d.get(key)).is_none() => {
                    format!("couldn't find key {key} in ConfigMap {ns}/{name}")
                }
                Some(_) => continue,
            };
            return Some((str_at(c, "/name").to_string(), message));
        }
    }
    None
}

/// The status of a pod whose container cannot be configured (see
/// [`missing_config_map_ref`]): Pending, the sandbox in place, the container
/// waiting in `CreateContainerConfigError` with kubelet's message.
pub fn config_error_status(
    pod: &Value,
    node_ip: &str,
    pod_ip: &str,
    container: &str,
    message: &str,
) -> Value {
    let mut status = err_image_pull_status(pod, node_ip, pod_ip, "", &[]);
    for c in status
        .get_mut("containerStatuses")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if c["name"] == container {
            c["state"] =
                json!({"waiting": {"reason": "CreateContainerConfigError", "message": message}});
        }
    }
    status
}

/// The status of a pod whose image cannot be pulled: Pending, with the
/// sandbox (and so the pod IP) in place and every container waiting; the
/// containers whose image does not pull give `reason` (`ErrImagePull` or
/// `ImagePullBackOff`), with kubelet's message.
pub fn err_image_pull_status(
    pod: &Value,
    node_ip: &str,
    pod_ip: &str,
    reason: &str,
    bad_images: &[String],
) -> Value {
    let statuses: Vec<Value> = containers(pod)
        .map(|c| {
            let image = str_at(c, "/image");
            let bad = image.contains(MISSING_IMAGE_MARKER) || bad_images.iter().any(|b| b == image);
            let state = if bad && reason == "ImagePullBackOff" {
                json!({"waiting": {"reason": "ImagePullBackOff", "message": format!(
                    "Back-off pulling image \"{image}\"")}})
            } else if bad {
                json!({"waiting": {"reason": "ErrImagePull", "message": format!(
                    "failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": {image}: not found")}})
            } else {
                json!({"waiting": {"reason": "PodInitializing"}})
            };
            json!({"name": c["name"], "image": image, "imageID": "", "ready": false,
                   "started": false, "restartCount": 0, "state": state})
        })
        .collect();
    let mut conds = conditions(false);
    for c in conds.as_array_mut().into_iter().flatten() {
        if c["type"] == "Ready" || c["type"] == "ContainersReady" {
            c["reason"] = json!("ContainersNotReady");
        }
    }
    json!({
        "phase": "Pending",
        "conditions": conds,
        "hostIP": node_ip, "hostIPs": [{"ip": node_ip}],
        "podIP": pod_ip, "podIPs": [{"ip": pod_ip}],
        "startTime": now_rfc3339(),
        "qosClass": "BestEffort",
        "containerStatuses": statuses,
    })
}

/// The busybox arguments for a container: `sh ...` for a shell
/// (`sh`, `/bin/sh`), otherwise the applet named by `command[0]`'s base name
/// followed by the rest. An empty command and args run busybox's `sh`
/// (the image's default).
pub fn busybox_args(container: &Value) -> Vec<String> {
    let strings = |p: &str| -> Vec<String> {
        container
            .get(p)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|s| s.as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut argv = strings("command");
    argv.extend(strings("args"));
    if argv.is_empty() {
        return vec!["sh".to_string()];
    }
    let applet = argv[0].rsplit('/').next().unwrap_or("").to_string();
    argv[0] = applet;
    argv
}

/// `env` entries with a literal `value` (`valueFrom` entries are left out).
pub fn env_of(container: &Value) -> Vec<(String, String)> {
    container
        .get("env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let name = e.get("name")?.as_str()?;
            if e.get("valueFrom").is_some() {
                return None;
            }
            let value = e.get("value").and_then(Value::as_str).unwrap_or("");
            Some((name.to_string(), value.to_string()))
        })
        .collect()
}

/// Output of one pod, shared with its reader thread.
#[derive(Default)]
struct LogBuf {
    bytes: Vec<u8>,
    /// Total bytes ever written (changes even when the buffer is full).
    written: u64,
}

enum State {
    Running {
        child: Child,
        reader: JoinHandle<()>,
    },
    /// Exited; waiting (bounded) for the last output before reporting.
    Draining {
        code: i32,
        finished_at: String,
        reader: JoinHandle<()>,
        deadline: Instant,
    },
    /// Exited and restarting after a back-off.
    BackOff { until: Instant },
    /// Exited for good; the phase has been written.
    Done,
}

struct Proc {
    ns: String,
    name: String,
    pod: Value,
    ip: Ipv4Addr,
    started_at: String,
    restarts: u32,
    log: Arc<Mutex<LogBuf>>,
    log_seen: u64,
    state: State,
}

/// A pod the kubelet is about to start: its IP must be on the cluster's
/// namespace before the process runs.
pub struct Start {
    pod: Value,
    pub ip: Ipv4Addr,
}

impl Start {
    pub fn uid(&self) -> &str {
        uid_of(&self.pod)
    }

    /// The pod as it will look once running (phase, IP and readiness), for
    /// DNS records that must exist before it is reported Running.
    pub fn running_view(&self) -> Value {
        let mut p = self.pod.clone();
        p["status"] = json!({
            "phase": "Running",
            "podIP": self.ip.to_string(),
            "conditions": conditions(!never_ready(&self.pod)),
        });
        p
    }
}

/// Runs one cluster's busybox pods as processes (real network mode).
pub struct Kubelet {
    zone: String,
    ip_tool: PathBuf,
    busybox: PathBuf,
    bin_dir: PathBuf,
    work_dir: PathBuf,
    netns: String,
    procs: HashMap<String, Proc>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Kubelet {
    pub fn new(
        zone: &str,
        ip_tool: &Path,
        busybox: &Path,
        bin_dir: &Path,
        work_dir: &Path,
        netns: &str,
    ) -> Self {
        Kubelet {
            zone: zone.to_string(),
            ip_tool: ip_tool.to_path_buf(),
            busybox: busybox.to_path_buf(),
            bin_dir: bin_dir.to_path_buf(),
            work_dir: work_dir.to_path_buf(),
            netns: netns.to_string(),
            procs: HashMap::new(),
        }
    }

    /// Kill the processes of deleted pods, and pick the new pods to start
    /// (allocating their IPs). `pods` is a snapshot of the cluster's pods.
    pub fn plan(&mut self, shared: &ClusterShared, pods: &[Arc<Value>]) -> Vec<Start> {
        let live: HashSet<&str> = pods.iter().map(|p| uid_of(p)).collect();
        self.procs.retain(|uid, _| live.contains(uid.as_str()));
        let mut starts = Vec::new();
        for pod in pods {
            if !runs_for_real(pod)
                || str_at(pod, "/status/phase") != "Pending"
                || self.procs.contains_key(uid_of(pod))
            {
                continue;
            }
            let ns = str_at(pod, "/metadata/namespace");
            let ip = shared.store().net.pod_ip(ns, name_of(pod));
            starts.push(Start {
                pod: (**pod).clone(),
                ip,
            });
        }
        starts
    }

    /// Start the planned pods and report them Running.
    pub fn start(&mut self, shared: &ClusterShared, starts: Vec<Start>) {
        for s in starts {
            let ns = str_at(&s.pod, "/metadata/namespace").to_string();
            let name = name_of(&s.pod).to_string();
            let uid = uid_of(&s.pod).to_string();
            shared.set_pod_log(&ns, &name, String::new());
            let log = Arc::new(Mutex::new(LogBuf::default()));
            let mut proc = Proc {
                ns,
                name,
                pod: s.pod,
                ip: s.ip,
                started_at: now_rfc3339(),
                restarts: 0,
                log,
                log_seen: 0,
                state: State::Done,
            };
            match self.spawn(&proc) {
                Ok((child, reader)) => {
                    proc.state = State::Running { child, reader };
                    self.write_running(shared, &proc);
                }
                Err(e) => {
                    let msg = format!("kube-sim: could not start the container: {e}\n");
                    eprintln!(
                        "kube-sim: [{}] pod {}/{}: {msg}",
                        self.zone, proc.ns, proc.name
                    );
                    lock(&proc.log).bytes.extend_from_slice(msg.as_bytes());
                    proc.state = self.finish(shared, &mut proc, 128, now_rfc3339());
                }
            }
            self.procs.insert(uid, proc);
        }
    }

    fn spawn(&self, proc: &Proc) -> std::io::Result<(Child, JoinHandle<()>)> {
        let container = containers(&proc.pod).next().cloned().unwrap_or(json!({}));
        let hostname = match str_at(&proc.pod, "/spec/hostname") {
            "" => proc.name.clone(),
            h => h.to_string(),
        };
        let (mut reader, writer) = std::io::pipe()?;
        let child = Command::new(&self.ip_tool)
            .args(["netns", "exec", &self.netns])
            .arg(&self.busybox)
            .args(busybox_args(&container))
            .env_clear()
            .env("PATH", &self.bin_dir)
            .env("HOSTNAME", hostname)
            .env("POD_IP", proc.ip.to_string())
            .envs(env_of(&container))
            .current_dir(&self.work_dir)
            .stdin(Stdio::null())
            .stdout(writer.try_clone()?)
            .stderr(writer)
            .process_group(0)
            .spawn()?;
        let log = proc.log.clone();
        let reader = std::thread::Builder::new()
            .name("kube-sim-log".into())
            .spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = reader.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut l = lock(&log);
                    l.bytes.extend_from_slice(&buf[..n]);
                    l.written += n as u64;
                    if l.bytes.len() > MAX_LOG_BYTES {
                        let cut = l.bytes.len() - MAX_LOG_BYTES;
                        l.bytes.drain(..cut);
                    }
                }
            })?;
        Ok((child, reader))
    }

    /// Follow the processes: publish new output, report exits, restart by policy.
    pub fn poll(&mut self, shared: &ClusterShared) {
        let uids: Vec<String> = self.procs.keys().cloned().collect();
        for uid in uids {
            let Some(mut proc) = self.procs.remove(&uid) else {
                continue;
            };
            self.step(shared, &mut proc);
            let written = lock(&proc.log).written;
            if written != proc.log_seen {
                proc.log_seen = written;
                publish_log(shared, &proc);
            }
            self.procs.insert(uid, proc);
        }
    }

    fn step(&mut self, shared: &ClusterShared, proc: &mut Proc) {
        let state = std::mem::replace(&mut proc.state, State::Done);
        proc.state = match state {
            State::Running { mut child, reader } => match child.try_wait() {
                Ok(Some(status)) => {
                    use std::os::unix::process::ExitStatusExt;
                    let code = status
                        .code()
                        .unwrap_or_else(|| 128 + status.signal().unwrap_or(9));
                    // Like a container's end: whatever else runs in it stops too.
                    crate::network::signal_group(child.id(), libc::SIGKILL);
                    State::Draining {
                        code,
                        finished_at: now_rfc3339(),
                        reader,
                        deadline: Instant::now() + LOG_DRAIN_TIMEOUT,
                    }
                }
                _ => State::Running { child, reader },
            },
            State::Draining {
                code,
                finished_at,
                reader,
                deadline,
            } => {
                if reader.is_finished() || Instant::now() >= deadline {
                    publish_log(shared, proc);
                    self.finish(shared, proc, code, finished_at)
                } else {
                    State::Draining {
                        code,
                        finished_at,
                        reader,
                        deadline,
                    }
                }
            }
            State::BackOff { until } if Instant::now() >= until => {
                proc.restarts += 1;
                proc.started_at = now_rfc3339();
                match self.spawn(proc) {
                    Ok((child, reader)) => {
                        proc.state = State::Running { child, reader };
                        self.write_running(shared, proc);
                        return;
                    }
                    Err(_) => State::BackOff {
                        until: Instant::now() + RESTART_BACKOFF,
                    },
                }
            }
            other => other,
        };
    }

    /// Report an exit: the final phase, or a back-off before a restart.
    fn finish(
        &self,
        shared: &ClusterShared,
        proc: &mut Proc,
        code: i32,
        finished_at: String,
    ) -> State {
        let policy = str_at(&proc.pod, "/spec/restartPolicy");
        let restart = match policy {
            "Never" => false,
            "OnFailure" => code != 0,
            _ => true,
        };
        let terminated = json!({"terminated": {
            "exitCode": code,
            "reason": if code == 0 { "Completed" } else { "Error" },
            "startedAt": proc.started_at, "finishedAt": finished_at,
            "containerID": container_id(&proc.pod, 0, proc.restarts),
        }});
        let restarts = proc.restarts;
        update_status(shared, proc, |status| {
            status["conditions"] = conditions(false);
            for c in status
                .get_mut("containerStatuses")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                c["ready"] = json!(false);
                c["started"] = json!(false);
                if restart {
                    c["state"] = json!({"waiting": {"reason": "CrashLoopBackOff",
                        "message": format!("back-off restarting failed container (exit code {code})")}});
                    c["lastState"] = terminated.clone();
                    c["restartCount"] = json!(restarts + 1);
                } else {
                    c["state"] = terminated.clone();
                }
            }
            if !restart {
                status["phase"] = json!(if code == 0 { "Succeeded" } else { "Failed" });
            }
        });
        if restart {
            State::BackOff {
                until: Instant::now() + RESTART_BACKOFF,
            }
        } else {
            State::Done
        }
    }

    fn write_running(&self, shared: &ClusterShared, proc: &Proc) {
        let node = crate::controllers::node_name(&shared.zone);
        let node_ip = shared.store().net.node_ip().to_string();
        let ready = !never_ready(&proc.pod);
        let ip = proc.ip.to_string();
        let statuses: Vec<Value> = containers(&proc.pod)
            .enumerate()
            .map(|(i, c)| {
                json!({
                    "name": c["name"], "image": c["image"], "imageID": "",
                    "containerID": container_id(&proc.pod, i, proc.restarts),
                    "ready": ready, "started": true, "restartCount": proc.restarts,
                    "state": {"running": {"startedAt": proc.started_at}},
                })
            })
            .collect();
        let first = proc.restarts == 0;
        let started_at = proc.started_at.clone();
        update_status(shared, proc, |status| {
            let last_states: Vec<Value> = status
                .get("containerStatuses")
                .and_then(Value::as_array)
                .map(|cs| {
                    cs.iter()
                        .map(|c| c.get("lastState").cloned().unwrap_or(Value::Null))
                        .collect()
                })
                .unwrap_or_default();
            let mut statuses = statuses.clone();
            for (c, last) in statuses.iter_mut().zip(last_states) {
                if !last.is_null() {
                    c["lastState"] = last;
                }
            }
            if first {
                *status = json!({
                    "phase": "Running",
                    "hostIP": node_ip, "hostIPs": [{"ip": node_ip}],
                    "podIP": ip, "podIPs": [{"ip": ip}],
                    "startTime": started_at,
                    "qosClass": "BestEffort",
                });
            }
            status["conditions"] = conditions(ready);
            status["containerStatuses"] = json!(statuses);
        });
        if first {
            let mut store = shared.store();
            if let Some(p) = store.get(idx::POD, &proc.ns, &proc.name)
                && uid_of(&p) == uid_of(&proc.pod)
                && p.pointer("/spec/nodeName").is_none()
            {
                let mut p = (*p).clone();
                p["spec"]["nodeName"] = json!(node);
                store.put_internal(idx::POD, &proc.ns, p);
            }
        }
    }
}

/// A CPU quantity in millicores (`2`, `500m`, `1.5`).
pub fn cpu_millis(q: &str) -> Option<u64> {
    match q.strip_suffix('m') {
        Some(m) => m.parse().ok(),
        None => q.parse::<f64>().ok().map(|c| (c * 1000.0).ceil() as u64),
    }
}

/// A memory quantity in bytes (`8Gi`, `512Mi`, `1G`, `1000`).
pub fn memory_bytes(q: &str) -> Option<u64> {
    const SUFFIXES: [(&str, u64); 10] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("Pi", 1 << 50),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
        ("P", 1_000_000_000_000_000),
    ];
    for (suffix, factor) in SUFFIXES {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<f64>().ok().map(|n| (n * factor as f64) as u64);
        }
    }
    q.parse::<f64>().ok().map(|n| n as u64)
}

/// A pod's effective requests (cpu millis, memory bytes), as the scheduler
/// counts them: the sum over its containers, or the largest init
/// container's if that is more; a container without a request but with a
/// limit requests its limit (the API server defaults requests to limits).
pub fn pod_requests(pod: &Value) -> (u64, u64) {
    let of = |c: &Value| {
        let get = |res: &str, parse: fn(&str) -> Option<u64>| {
            c.pointer(&format!("/resources/requests/{res}"))
                .or_else(|| c.pointer(&format!("/resources/limits/{res}")))
                .and_then(Value::as_str)
                .and_then(parse)
                .unwrap_or(0)
        };
        (get("cpu", cpu_millis), get("memory", memory_bytes))
    };
    let list = |key: &str| -> Vec<(u64, u64)> {
        pod.pointer(&format!("/spec/{key}"))
            .and_then(Value::as_array)
            .map(|cs| cs.iter().map(of).collect())
            .unwrap_or_default()
    };
    let main = list("containers")
        .into_iter()
        .fold((0, 0), |(c, m), (c2, m2)| (c + c2, m + m2));
    list("initContainers")
        .into_iter()
        .fold(main, |(c, m), (c2, m2)| (c.max(c2), m.max(m2)))
}

/// kube-scheduler's NodeResourcesFit filter on the cluster's one node: the
/// FailedScheduling message when the pod's requests exceed what the node
/// offers (kubernetes/pkg/scheduler/framework/plugins/noderesources/fit.go,
/// "Insufficient cpu"; the "0/N nodes are available" summary and its
/// preemption postscript from the scheduler's FitError).
pub fn unschedulable(pod: &Value, node: &crate::Allocatable) -> Option<String> {
    let (cpu, memory) = pod_requests(pod);
    let mut why = Vec::new();
    if cpu > node.cpu_millis {
        why.push("1 Insufficient cpu");
    }
    if memory > node.memory_bytes {
        why.push("1 Insufficient memory");
    }
    (!why.is_empty()).then(|| {
        format!(
            "0/1 nodes are available: {}. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.",
            why.join(", ")
        )
    })
}

/// The status of a pod the scheduler cannot place.
pub fn unschedulable_status(message: &str) -> Value {
    json!({
        "phase": "Pending",
        "conditions": [{
            "type": "PodScheduled", "status": "False",
            "lastProbeTime": null,
            "lastTransitionTime": crate::store::now_rfc3339(),
            "reason": "Unschedulable", "message": message,
        }],
        "qosClass": "Guaranteed",
    })
}

/// Change the stored pod's status, if it is still the same pod.
fn update_status(shared: &ClusterShared, proc: &Proc, f: impl FnOnce(&mut Value)) {
    let mut store = shared.store();
    let Some(p) = store.get(idx::POD, &proc.ns, &proc.name) else {
        return;
    };
    if uid_of(&p) != uid_of(&proc.pod) {
        return;
    }
    let mut p = (*p).clone();
    if !p.get("status").is_some_and(Value::is_object) {
        p["status"] = json!({});
    }
    f(&mut p["status"]);
    store.put_internal(idx::POD, &proc.ns, p);
}

fn publish_log(shared: &ClusterShared, proc: &Proc) {
    let text = String::from_utf8_lossy(&lock(&proc.log).bytes).into_owned();
    shared.set_pod_log(&proc.ns, &proc.name, text);
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let State::Running { child, .. } = &mut self.state {
            crate::network::kill_group(child);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_larger_than_the_node_is_unschedulable() {
        let node = crate::Allocatable {
            cpu_millis: 3920,
            memory_bytes: 13 << 30,
        };
        let pod = |cpu: &str, memory: &str| {
            json!({"spec": {"containers": [
                {"name": "db", "resources": {"limits": {"cpu": cpu, "memory": memory}}},
                {"name": "side", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
            ]}})
        };
        assert_eq!(unschedulable(&pod("2", "8Gi"), &node), None);
        assert_eq!(
            pod_requests(&pod("2", "8Gi")),
            (2100, (8 << 30) + (64 << 20))
        );
        let m = unschedulable(&pod("4", "8Gi"), &node).unwrap();
        assert!(
            m.starts_with("0/1 nodes are available: 1 Insufficient cpu."),
            "{m}"
        );
        let m = unschedulable(&pod("3500m", "16Gi"), &node).unwrap();
        assert!(m.contains("1 Insufficient memory."), "{m}");
        assert_eq!(cpu_millis("1.5"), Some(1500));
        assert_eq!(memory_bytes("1G"), Some(1_000_000_000));
    }

    #[test]
    fn env_from_a_missing_config_map_or_key_stops_the_container() {
        let pod = json!({"metadata": {"namespace": "z"}, "spec": {"containers": [{
            "name": "db",
            "env": [
                {"name": "A", "value": "1"},
                {"name": "O", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k", "optional": true}}},
                {"name": "J", "valueFrom": {"configMapKeyRef": {"name": "join", "key": "join"}}},
            ],
        }]}});
        let none = |_: &str| None;
        assert_eq!(
            missing_config_map_ref(&pod, none),
            Some(("db".into(), "configmap \"join\" not found".into()))
        );
        let without_key = |n: &str| (n == "join").then(|| Arc::new(json!({"data": {"x": "1"}})));
        assert_eq!(
            missing_config_map_ref(&pod, without_key),
            Some((
                "db".into(),
                "couldn't find key join in ConfigMap z/join".into()
            ))
        );
        let present = |n: &str| (n == "join").then(|| Arc::new(json!({"data": {"join": "a,b"}})));
        assert_eq!(missing_config_map_ref(&pod, present), None);
        let s = config_error_status(
            &pod,
            "10.0.0.1",
            "10.1.0.2",
            "db",
            "configmap \"join\" not found",
        );
        assert_eq!(s["phase"], "Pending");
        assert_eq!(
            waiting_reason(&json!({"status": s})),
            Some("CreateContainerConfigError")
        );
    }

    #[test]
    fn images_and_probes() {
        let pod = |image: &str, probe: Value| json!({"spec": {"containers": [{"name": "c", "image": image, "readinessProbe": probe}]}});
        assert!(image_pull_fails(&pod(
            "registry.example/does-not-exist:1",
            Value::Null
        )));
        assert!(!image_pull_fails(&pod("busybox:1.36", Value::Null)));
        assert!(runs_for_real(&pod(
            "docker.io/library/busybox:1.36",
            Value::Null
        )));
        assert!(!runs_for_real(&pod(
            "cockroachdb/cockroach:v24.1",
            Value::Null
        )));
        assert!(!runs_for_real(&pod("busybox-does-not-exist", Value::Null)));
        assert!(never_ready(&pod(
            "busybox",
            json!({"exec": {"command": ["false"]}})
        )));
        assert!(!never_ready(&pod(
            "busybox",
            json!({"exec": {"command": ["true"]}})
        )));
        assert!(!never_ready(&pod(
            "busybox",
            json!({"tcpSocket": {"port": 1}})
        )));
    }

    #[test]
    fn busybox_arguments() {
        let c = json!({"command": ["/bin/sh", "-c", "echo $1", "x"], "args": ["y"]});
        assert_eq!(busybox_args(&c), ["sh", "-c", "echo $1", "x", "y"]);
        let c = json!({"command": ["nc"], "args": ["-ll", "-p", "26257", "-e", "true"]});
        assert_eq!(busybox_args(&c), ["nc", "-ll", "-p", "26257", "-e", "true"]);
        assert_eq!(busybox_args(&json!({})), ["sh"]);
        let c = json!({"env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {}}]});
        assert_eq!(env_of(&c), [("A".to_string(), "1".to_string())]);
    }

    #[test]
    fn err_image_pull_is_pending_and_waiting() {
        let pod = json!({"metadata": {"uid": "u"}, "spec": {"containers": [{"name": "c", "image": "x/does-not-exist"}]}});
        let s = err_image_pull_status(&pod, "10.100.0.2", "10.100.2.10", "ErrImagePull", &[]);
        assert_eq!(s["phase"], "Pending");
        assert_eq!(
            s["containerStatuses"][0]["state"]["waiting"]["reason"],
            "ErrImagePull"
        );
        assert_eq!(s["conditions"][2]["status"], "False");
    }
}
