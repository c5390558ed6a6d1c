//! Taking CockroachDB nodes out of the federation before their pods go
//! away: when `replicas` of a zone is lowered, and when a zone is removed
//! (`apply --prune`).
//!
//! CockroachDB's procedure ("Decommission nodes", `cockroach node
//! decommission`): decommission the nodes first, so that their replicas
//! move to the other nodes, wait until the command reports them
//! decommissioned, and only then stop them. A node stopped without that
//! keeps its replicas until CockroachDB gives up on it
//! (`server.time_until_store_dead`, 5 minutes by default), and its ranges
//! are under-replicated meanwhile; with several such nodes, ranges become
//! unavailable.
//!
//! Both commands run in the cluster as one-off Jobs made from the init
//! Job's template (same image, the root client certificate, the same
//! security settings a customised template gives it), so nothing needs a
//! port-forward or a local `cockroach` binary:
//! - `cockroach node status --decommission --format=tsv` maps each node's
//!   advertised address (the pod's FQDN,
//!   `cockroachdb-N.cockroachdb.NAMESPACE.svc.DOMAIN:26257`) to its node
//!   ID and membership;
//! - `cockroach node decommission ID...` decommissions them and returns
//!   when they are (CockroachDB refuses to leave fewer nodes than the
//!   replication factor, 3).
//!
//! A Job that succeeds is deleted; one that fails is kept for
//! `kubectl logs`, and the error quotes its output.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use super::job::{self, JobEnd, JobWaitError};
use crate::k8s::{self, Cluster, Seen, WaitError, error_text};
use crate::names;
use crate::plan::Object;
use crate::progress::Progress;

/// CockroachDB's default replication factor: a federation with fewer nodes
/// cannot keep three replicas of each range, and `cockroach node
/// decommission` refuses to go below it.
pub const MIN_NODES: u32 = 3;

/// One row of `cockroach node status --decommission --format=tsv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    pub id: u64,
    /// host:port the node advertises.
    pub address: String,
    /// `membership` is `decommissioned` (or `decommissioning`, already on
    /// its way).
    pub leaving: bool,
}

/// Parses `node status --format=tsv` output: a header line naming the
/// columns, then one line per node. Lines that are not rows (a trailing
/// row count, blank lines) are skipped.
pub fn parse_status(text: &str) -> Result<Vec<NodeRow>, StatusError> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .ok_or(StatusError::Empty)?
        .split('\t')
        .map(str::trim)
        .collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (Some(id), Some(address)) = (col("id"), col("address")) else {
        return Err(StatusError::NoColumns {
            header: header.join(" "),
        });
    };
    let membership = col("membership");
    let mut rows = Vec::new();
    for line in lines {
        let fields: Vec<&str> = line.split('\t').map(str::trim).collect();
        let Some(Ok(node)) = fields.get(id).map(|f| f.parse::<u64>()) else {
            continue;
        };
        let Some(addr) = fields.get(address) else {
            continue;
        };
        let leaving = membership
            .and_then(|m| fields.get(m))
            .is_some_and(|m| m.starts_with("decommission"));
        rows.push(NodeRow {
            id: node,
            address: addr.to_string(),
            leaving,
        });
    }
    Ok(rows)
}

/// Output of `cockroach node status` that is not a node table.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    #[error("`cockroach node status` printed nothing")]
    Empty,
    #[error("`cockroach node status` printed no id and address columns (header: {header})")]
    NoColumns { header: String },
}

/// Why a decommission (or the scale-down after it) stopped.
#[derive(Debug, thiserror::Error)]
pub enum DecommissionError {
    #[error("listing the CockroachDB nodes{}: {source}", from_zone(.from))]
    Status {
        /// The zone the Job ran in, when it is not the zone scaled down.
        from: Option<String>,
        #[source]
        source: Box<StatusFailure>,
    },
    #[error("decommissioning node(s) {}{}: {source}", list(.ids), if *.removed { " of the removed zone(s)" } else { "" })]
    Decommission {
        ids: Vec<u64>,
        removed: bool,
        #[source]
        source: Box<JobError>,
    },
    #[error(transparent)]
    Apply(k8s::ApplyError),
    #[error("reading pod {pod}: {}", error_text(.source))]
    ReadPod {
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("scaling down to {replicas} replicas: {wait}")]
    ScaleDown { replicas: i32, wait: WaitError },
    #[error("{0} is not a StatefulSet")]
    NotAStatefulSet(String),
    #[error("the plan has no init Job to run `cockroach node` commands from")]
    NoInitJob,
}

fn from_zone(zone: &Option<String>) -> String {
    zone.as_ref()
        .map(|z| format!(" (from zone {z})"))
        .unwrap_or_else(|| " before the scale-down".into())
}

/// Why `cockroach node status` gave no node table.
#[derive(Debug, thiserror::Error)]
pub enum StatusFailure {
    #[error(transparent)]
    Job(JobError),
    #[error(transparent)]
    Output(StatusError),
}

/// The host part of an address (`host:port`).
fn host(address: &str) -> &str {
    address.rsplit_once(':').map_or(address, |(h, _)| h)
}

/// The node running in pod `cockroachdb-ORDINAL` of `namespace`, if it is
/// in the cluster and not already leaving it.
pub fn node_of_pod(rows: &[NodeRow], namespace: &str, ordinal: u32) -> Option<u64> {
    let prefix = format!("{}.", names::pod_host(ordinal, namespace));
    rows.iter()
        .find(|r| host(&r.address).starts_with(&prefix) && !r.leaving)
        .map(|r| r.id)
}

/// The nodes of every pod of the StatefulSet in `namespace` not already
/// leaving the cluster (a removed zone's nodes).
pub fn nodes_of_namespace(rows: &[NodeRow], namespace: &str) -> Vec<u64> {
    let infix = format!(".{}.{namespace}.", names::HEADLESS_SERVICE);
    let pod = format!("{}-", names::STATEFULSET);
    rows.iter()
        .filter(|r| {
            let h = host(&r.address);
            h.starts_with(&pod) && h.contains(&infix) && !r.leaving
        })
        .map(|r| r.id)
        .collect()
}

/// A one-off Job in `namespace` of `zone` running `cockroach ARGS` with
/// the root client certificate against the zone's nodes, made from the
/// init Job's template (image, certificates, security settings).
pub fn cockroach_job(
    init: &Job,
    zone: &str,
    namespace: &str,
    purpose: &str,
    args: &[String],
) -> Job {
    let mut job = init.clone();
    let relabel = |labels: &mut Option<std::collections::BTreeMap<String, String>>| {
        if let Some(l) = labels.as_mut()
            && l.contains_key(names::ZONE_KEY)
        {
            l.insert(names::ZONE_KEY.to_string(), zone.to_string());
        }
    };
    job.metadata.name = None;
    job.metadata.generate_name = Some(format!("crdb-{purpose}-"));
    job.metadata.namespace = Some(namespace.to_string());
    job.metadata.resource_version = None;
    job.metadata.uid = None;
    relabel(&mut job.metadata.labels);
    job.status = None;
    if let Some(spec) = job.spec.as_mut() {
        // One attempt: a refusal is an answer, not a transient failure.
        spec.backoff_limit = Some(0);
        relabel(&mut spec.template.metadata.get_or_insert_default().labels);
        if let Some(pod) = spec.template.spec.as_mut() {
            pod.restart_policy = Some("Never".into());
            if let Some(c) = pod.containers.first_mut() {
                c.name = purpose.to_string();
                let mut command = vec!["/cockroach/cockroach".to_string()];
                command.extend(args.iter().cloned());
                command.push(format!("--certs-dir={}", names::CLIENT_CERTS_MOUNT));
                command.push(format!("--host={}", names::PUBLIC_SERVICE));
                c.command = Some(command);
                c.args = None;
            }
        }
    }
    job
}

/// Why a Job did not give its output.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("creating the {purpose} Job in namespace {namespace}: {}", error_text(.source))]
    Create {
        purpose: String,
        namespace: String,
        source: kube::Error,
    },
    #[error(
        "Job {namespace}/{name} ({command}) failed{}\n      hint: `kubectl -n {namespace} logs job/{name}` shows its output; the Job is kept until you delete it",
        output_lines(.output)
    )]
    Failed {
        namespace: String,
        name: String,
        command: String,
        output: String,
    },
    #[error("Job {namespace}/{name} ({command}): {wait}")]
    Wait {
        namespace: String,
        name: String,
        command: String,
        wait: JobWaitError,
    },
}

fn output_lines(output: &str) -> String {
    let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    let mut s = String::from(":");
    for l in lines {
        s.push_str("\n        ");
        s.push_str(l);
    }
    s
}

/// Creates `job`, waits (by watch, bounded) until it completed or failed,
/// and returns the output of its pod. A completed Job is deleted.
pub async fn run(cluster: &Cluster, job: &Job, timeout: Duration) -> Result<String, JobError> {
    let namespace = job.metadata.namespace.clone().unwrap_or_default();
    let container = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first());
    let purpose = container.map(|c| c.name.clone()).unwrap_or_default();
    let command = container
        .and_then(|c| c.command.as_ref())
        .map(|c| {
            c.iter()
                .skip(1)
                .take_while(|w| !w.starts_with("--certs-dir"))
                .cloned()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .map(|c| format!("cockroach {c}"))
        .unwrap_or_default();
    let created = cluster
        .create_in(&namespace, job)
        .await
        .map_err(|source| JobError::Create {
            purpose,
            namespace: namespace.clone(),
            source,
        })?;
    let name = created.metadata.name.clone().unwrap_or_default();
    let end = job::wait(cluster, &namespace, &name, Some(created), timeout)
        .await
        .map_err(|wait| JobError::Wait {
            namespace: namespace.clone(),
            name: name.clone(),
            command: command.clone(),
            wait,
        })?;
    let output = pod_output(cluster, &namespace, &name).await;
    if end != JobEnd::Complete {
        return Err(JobError::Failed {
            namespace,
            name,
            command,
            output,
        });
    }
    // A Job left behind is harmless (teardown removes it with the rest).
    let _ = cluster.delete_in::<Job>(&namespace, &name).await;
    Ok(output)
}

/// The output of the Job's (last) pod; empty when it cannot be read.
async fn pod_output(cluster: &Cluster, namespace: &str, job: &str) -> String {
    let list = cluster
        .list_in::<Pod>(namespace, Some(&format!("job-name={job}")))
        .await;
    let Some(pod) = list.ok().and_then(|l| {
        l.into_iter()
            .max_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0))
    }) else {
        return String::new();
    };
    let name = pod.metadata.name.unwrap_or_default();
    cluster
        .pod_log(namespace, &name, None)
        .await
        .unwrap_or_default()
}

/// Every node of the federation as `cockroach node status` lists it, asked
/// from a Job in `namespace` of `zone`.
pub async fn node_status(
    cluster: &Cluster,
    init: &Job,
    zone: &str,
    namespace: &str,
    timeout: Duration,
) -> Result<Vec<NodeRow>, StatusFailure> {
    let args: Vec<String> = ["node", "status", "--decommission", "--format=tsv"]
        .map(String::from)
        .to_vec();
    let job = cockroach_job(init, zone, namespace, "node-status", &args);
    let output = run(cluster, &job, timeout)
        .await
        .map_err(StatusFailure::Job)?;
    parse_status(&output).map_err(StatusFailure::Output)
}

/// Decommissions `ids` (from a Job in `namespace` of `zone`) and returns
/// once CockroachDB reports them decommissioned.
pub async fn decommission(
    cluster: &Cluster,
    init: &Job,
    zone: &str,
    namespace: &str,
    ids: &[u64],
    timeout: Duration,
) -> Result<(), JobError> {
    let mut args: Vec<String> = vec!["node".into(), "decommission".into()];
    args.extend(ids.iter().map(u64::to_string));
    let job = cockroach_job(init, zone, namespace, "decommission", &args);
    run(cluster, &job, timeout).await.map(|_| ())
}

/// Lowers the replicas of a zone's StatefulSet from `live` to what
/// `planned` says: decommissions the nodes of the pods that go (one
/// command for all of them, as CockroachDB recommends for several nodes),
/// then removes the pods one at a time, highest ordinal first, each after
/// the previous one is gone. The last step applies `planned` itself.
/// Returns the StatefulSet before the first step and after the last, for
/// the report.
pub async fn scale_down(
    cluster: &Cluster,
    planned: &Object,
    init: &Job,
    live: i32,
    timeout: Duration,
    progress: Progress,
) -> Result<(Value, Value), DecommissionError> {
    let Object::StatefulSet(sts) = planned else {
        return Err(DecommissionError::NotAStatefulSet(planned.describe()));
    };
    let want = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let zone = cluster.zone.as_str();
    let namespace = cluster.namespace.as_str();
    let rows = node_status(cluster, init, zone, namespace, timeout)
        .await
        .map_err(|source| DecommissionError::Status {
            from: None,
            source: Box::new(source),
        })?;
    let going: Vec<(i32, u64)> = (want..live)
        .filter_map(|i| node_of_pod(&rows, namespace, i as u32).map(|id| (i, id)))
        .collect();
    if !going.is_empty() {
        let ids: Vec<u64> = going.iter().map(|(_, id)| *id).collect();
        let pods: Vec<String> = going
            .iter()
            .map(|(i, _)| format!("{}-{i}", names::STATEFULSET))
            .collect();
        progress.say(
            zone,
            format!(
                "decommissioning CockroachDB node(s) {} (pod(s) {}) before the scale-down",
                list(&ids),
                pods.join(", ")
            ),
        );
        decommission(cluster, init, zone, namespace, &ids, timeout)
            .await
            .map_err(|source| DecommissionError::Decommission {
                ids: ids.clone(),
                removed: false,
                source: Box::new(source),
            })?;
        progress.say(zone, format!("node(s) {} decommissioned", list(&ids)));
    }
    let mut first_before = None;
    let mut last_after = Value::Null;
    for i in (want..live).rev() {
        let mut step = sts.clone();
        if let Some(spec) = step.spec.as_mut() {
            spec.replicas = Some(i);
        }
        let applied = k8s::apply_object(&cluster.client, &Object::StatefulSet(step), false)
            .await
            .map_err(DecommissionError::Apply)?;
        first_before.get_or_insert(applied.before.unwrap_or(Value::Null));
        last_after = applied.after;
        let pod = format!("{}-{i}", names::STATEFULSET);
        let now = cluster
            .read::<Pod>(namespace, &pod)
            .await
            .map_err(|source| DecommissionError::ReadPod {
                pod: pod.clone(),
                source,
            })?;
        let rv = now
            .as_ref()
            .and_then(|p| p.metadata.resource_version.clone())
            .unwrap_or_default();
        cluster
            .watch_until(namespace, &pod, now, rv, timeout, |p| match p {
                None => Seen::Done(()),
                Some(p) => Seen::Waiting(format!(
                    "pod {pod} still there ({})",
                    p.status
                        .as_ref()
                        .and_then(|s| s.phase.clone())
                        .unwrap_or_default()
                )),
            })
            .await
            .map_err(|wait| DecommissionError::ScaleDown { replicas: i, wait })?;
        progress.say(zone, format!("pod {pod} removed ({i} replicas)"));
    }
    Ok((first_before.unwrap_or(Value::Null), last_after))
}

/// `apply --prune`: decommissions every node of the removed zones'
/// namespaces, from a Job in `cluster` (a zone that stays), before their
/// DNS names are no longer forwarded. Their own clusters are not touched
/// (the config no longer names their contexts): their pods keep running,
/// out of the CockroachDB cluster, until `teardown` with the old config.
pub async fn removed_zones(
    cluster: &Cluster,
    init: &Job,
    namespaces: &[String],
    timeout: Duration,
    progress: Progress,
) -> Result<(), DecommissionError> {
    let zone = cluster.zone.as_str();
    let rows = node_status(cluster, init, zone, &cluster.namespace, timeout)
        .await
        .map_err(|source| DecommissionError::Status {
            from: Some(zone.to_string()),
            source: Box::new(source),
        })?;
    let ids: Vec<u64> = namespaces
        .iter()
        .flat_map(|ns| nodes_of_namespace(&rows, ns))
        .collect();
    if ids.is_empty() {
        progress.say(
            zone,
            format!(
                "no CockroachDB node of {} left to decommission",
                namespaces.join(", ")
            ),
        );
        return Ok(());
    }
    progress.say(
        zone,
        format!(
            "decommissioning the CockroachDB node(s) {} of removed zone(s) {}",
            list(&ids),
            namespaces.join(", ")
        ),
    );
    decommission(cluster, init, zone, &cluster.namespace, &ids, timeout)
        .await
        .map_err(|source| DecommissionError::Decommission {
            ids: ids.clone(),
            removed: true,
            source: Box::new(source),
        })?;
    progress.say(zone, format!("node(s) {} decommissioned", list(&ids)));
    Ok(())
}

/// Writes a list of node IDs for messages: `4, 7`.
pub fn list(ids: &[u64]) -> String {
    ids.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "id\taddress\tsql_address\tbuild\tstarted_at\tupdated_at\tlocality\tis_available\tis_live\tgossiped_replicas\tis_decommissioning\tmembership\tis_draining\n\
        1\tcockroachdb-0.cockroachdb.us-east1-b.svc.cluster.local:26257\tx\tv25.2.0\t\t\tregion=us-east1,zone=us-east1-b\ttrue\ttrue\t24\tfalse\tactive\tfalse\n\
        2\tcockroachdb-1.cockroachdb.us-east1-b.svc.cluster.local:26257\tx\tv25.2.0\t\t\tregion=us-east1,zone=us-east1-b\ttrue\ttrue\t24\tfalse\tactive\tfalse\n\
        3\tcockroachdb-0.cockroachdb.us-west1-a.svc.cluster.local:26257\tx\tv25.2.0\t\t\tregion=us-west1,zone=us-west1-a\ttrue\ttrue\t24\tfalse\tactive\tfalse\n\
        4\tcockroachdb-10.cockroachdb.us-east1-b.svc.cluster.local:26257\tx\tv25.2.0\t\t\tregion=us-east1,zone=us-east1-b\tfalse\tfalse\t0\ttrue\tdecommissioned\tfalse\n\
        # 4 rows\n";

    #[test]
    fn status_rows_map_pods_to_node_ids() {
        let rows = parse_status(STATUS).unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(node_of_pod(&rows, "us-east1-b", 1), Some(2));
        assert_eq!(node_of_pod(&rows, "us-west1-a", 0), Some(3));
        // Ordinal 1 is not a prefix match for ordinal 10, and a node
        // already decommissioned is not decommissioned again.
        assert_eq!(node_of_pod(&rows, "us-east1-b", 10), None);
        assert_eq!(node_of_pod(&rows, "us-west1-a", 1), None);
        assert_eq!(nodes_of_namespace(&rows, "us-east1-b"), vec![1, 2]);
        assert_eq!(nodes_of_namespace(&rows, "us-east1"), Vec::<u64>::new());
    }

    #[test]
    fn output_without_the_columns_is_an_error_not_an_empty_list() {
        assert_eq!(parse_status(""), Err(StatusError::Empty));
        assert!(matches!(
            parse_status("ERROR: cannot dial server\n"),
            Err(StatusError::NoColumns { header }) if header == "ERROR: cannot dial server"
        ));
    }

    #[test]
    fn the_job_runs_cockroach_with_the_root_certificate_once() {
        let init: Job = serde_json::from_value(serde_json::json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "cluster-init-secure", "namespace": "a",
                "labels": {names::ZONE_KEY: "a", "app": "cockroachdb"}},
            "spec": {"backoffLimit": 10, "template": {
                "metadata": {"labels": {names::ZONE_KEY: "a"}},
                "spec": {"restartPolicy": "OnFailure", "containers": [{
                    "name": "cluster-init", "image": "cockroachdb/cockroach:v25.2.0",
                    "command": ["/cockroach/cockroach", "init", "--host=x"]}]}}}
        }))
        .unwrap();
        let args = vec!["node".to_string(), "decommission".into(), "4".into()];
        let job = cockroach_job(&init, "b", "ns-b", "decommission", &args);
        let v = serde_json::to_value(&job).unwrap();
        assert_eq!(v["metadata"]["generateName"], "crdb-decommission-");
        assert!(v["metadata"].get("name").is_none(), "{v}");
        assert_eq!(v["metadata"]["namespace"], "ns-b");
        assert_eq!(v["metadata"]["labels"][names::ZONE_KEY], "b");
        assert_eq!(v["spec"]["backoffLimit"], 0);
        let pod = &v["spec"]["template"];
        assert_eq!(pod["metadata"]["labels"][names::ZONE_KEY], "b");
        assert_eq!(pod["spec"]["restartPolicy"], "Never");
        assert_eq!(
            pod["spec"]["containers"][0]["command"],
            serde_json::json!([
                "/cockroach/cockroach",
                "node",
                "decommission",
                "4",
                format!("--certs-dir={}", names::CLIENT_CERTS_MOUNT),
                format!("--host={}", names::PUBLIC_SERVICE)
            ])
        );
    }
}
