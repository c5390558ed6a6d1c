//! Benchmark of `apply` against simulated clusters (not a test: it asserts
//! nothing about time). Reproduce with:
//!
//! ```text
//! cargo bench --bench apply                 # 3, 10 and 30 clusters
//! cargo bench --bench apply -- 3 10         # chosen sizes
//! cargo bench --bench apply -- upgrade 3 10 # an image upgrade, rolled zone by zone
//! ```
//!
//! `upgrade` times an image upgrade of a running federation instead: one
//! apply creates it, the timed apply changes `cockroachdb.image`, and the
//! table compares its wall time with the sum of the per-zone rollouts
//! (the `rolling update` step of each zone in the JSON report) and reports
//! kube-sim's availability record.
//!
//! For each size it starts a kube-sim federation with 50 ms added latency
//! per API request and a 2 s load-balancer delay, runs the real binary's
//! `apply` (all zones at once), then again on a fresh federation with
//! `--concurrency 1`, and prints a Markdown table: wall time, API requests
//! per cluster, peak memory (max RSS of the apply process) and the
//! critical-path lower bound.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kube_sim::{Federation, Flavor};

const LATENCY: Duration = Duration::from_millis(50);
const LB_DELAY: Duration = Duration::from_secs(2);
const POD_READY: Duration = Duration::from_millis(50);
const JOB_DURATION: Duration = Duration::from_millis(100);

/// Dependent request rounds on the critical path of one apply (the first
/// zone, which also runs the init Job), counted from src/apply.rs:
/// version; permission reviews + DNS detection; DNS config read (prune
/// check); namespace GET+PATCH; other objects GET+PATCH; LB status after
/// the delay; DNS ConfigMap GET, backup create, replace; rollout patch;
/// rollout status; workload GET+PATCH; pods list; init: Job and
/// StatefulSet GET (together), Job create, Job status, StatefulSet annotation.
const ROUNDS: u32 = 20;

fn zone_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("zone-{i:02}")).collect()
}

struct Run {
    wall: Duration,
    requests_per_cluster: f64,
    max_rss_kib: i64,
}

fn run_apply(n: usize, concurrency: usize) -> Run {
    let zones = zone_names(n);
    let fed = Federation::builder()
        .zones(zones.iter().map(String::as_str))
        .flavor(Flavor::Gke)
        .latency(LATENCY)
        .lb_delay(LB_DELAY)
        .pod_ready_delay(POD_READY)
        .job_duration(JOB_DURATION)
        .start()
        .expect("kube-sim starts");
    let dir = tempfile::tempdir().unwrap();
    let mut config = String::from("[dns]\nload_balancer = \"public\"\n");
    for z in &zones {
        config.push_str(&format!("\n[[zones]]\nname = \"{z}\"\ncontext = \"{z}\"\n"));
    }
    std::fs::write(dir.path().join("bench.toml"), config).unwrap();
    // Certificates are made before the clock starts: they are local work
    // that a re-run reuses, not part of talking to clusters.
    let status = binary(dir.path())
        .args(["plan", "bench.toml"])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    for c in fed.clusters() {
        c.clear_requests();
    }

    let started = Instant::now();
    // Reaped by wait4 below, which also reports the child's peak RSS.
    #[allow(clippy::zombie_processes)]
    let child = binary(dir.path())
        .args(["apply", "bench.toml", "-q", "--wait-timeout", "5m"])
        .arg("--concurrency")
        .arg(concurrency.to_string())
        .arg("--kubeconfig")
        .arg(fed.kubeconfig_path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (status, max_rss_kib) = wait_with_rusage(child.id() as i32);
    let wall = started.elapsed();
    assert_eq!(status, 0, "apply failed for {n} clusters");
    let total: usize = fed.clusters().iter().map(|c| c.requests().len()).sum();
    Run {
        wall,
        requests_per_cluster: total as f64 / n as f64,
        max_rss_kib,
    }
}

fn binary(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_crdb-multiregion"));
    c.current_dir(dir).env_remove("KUBECONFIG");
    c
}

/// waitpid with the child's own resource usage (its peak RSS).
fn wait_with_rusage(pid: i32) -> (i32, i64) {
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own child; status and usage are valid out-pointers.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4 failed");
    let code = std::process::ExitStatus::from_raw(status)
        .code()
        .unwrap_or(-1);
    (code, usage.ru_maxrss)
}

/// Pod termination and start in the upgrade benchmark (shortened: a real
/// CockroachDB pod takes up to its 60 s grace period to drain).
const TERMINATION: Duration = Duration::from_millis(300);
const UPGRADE_POD_READY: Duration = Duration::from_millis(300);

struct Upgrade {
    wall: Duration,
    rollouts: Vec<f64>,
    unavailable_ms: u64,
    max_zones_unready: u64,
}

fn run_upgrade(n: usize) -> Upgrade {
    let zones = zone_names(n);
    let fed = Federation::builder()
        .zones(zones.iter().map(String::as_str))
        .flavor(Flavor::Gke)
        .latency(LATENCY)
        .lb_delay(LB_DELAY)
        .pod_ready_delay(UPGRADE_POD_READY)
        .job_duration(JOB_DURATION)
        .max_termination_grace(Some(TERMINATION))
        .start()
        .expect("kube-sim starts");
    let dir = tempfile::tempdir().unwrap();
    let write = |image: &str| {
        let mut config =
            format!("[dns]\nload_balancer = \"public\"\n[cockroachdb]\nimage = \"{image}\"\n");
        for z in &zones {
            config.push_str(&format!("\n[[zones]]\nname = \"{z}\"\ncontext = \"{z}\"\n"));
        }
        std::fs::write(dir.path().join("bench.toml"), config).unwrap();
    };
    let apply = || {
        binary(dir.path())
            .args([
                "apply",
                "bench.toml",
                "-q",
                "-o",
                "json",
                "--wait-timeout",
                "5m",
            ])
            .arg("--kubeconfig")
            .arg(fed.kubeconfig_path())
            .stderr(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    write("cockroachdb/cockroach:v25.4.1");
    assert!(apply().status.success(), "the first apply failed");
    fed.reset_availability();
    write("cockroachdb/cockroach:v25.4.2");
    let started = Instant::now();
    let out = apply();
    let wall = started.elapsed();
    assert!(out.status.success(), "the upgrade failed for {n} clusters");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rollouts = report["zones"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|z| z["steps"].as_array().cloned().unwrap_or_default())
        .filter(|s| s["step"] == "rolling update")
        .filter_map(|s| s["seconds"].as_f64())
        .collect();
    let a = fed.availability();
    Upgrade {
        wall,
        rollouts,
        unavailable_ms: a["unavailable_ms"].as_u64().unwrap_or(0),
        max_zones_unready: a["max_zones_unready"].as_u64().unwrap_or(0),
    }
}

fn upgrade_main(sizes: Vec<usize>) {
    println!(
        "latency {} ms/request, pods start in {} ms and terminate in {} ms, 3 pods per zone\n",
        LATENCY.as_millis(),
        UPGRADE_POD_READY.as_millis(),
        TERMINATION.as_millis()
    );
    println!(
        "| clusters | upgrade (wall) | sum of zone rollouts | mean rollout per zone | wall − sum | unavailable_ms | max zones unready |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for n in sizes {
        let u = run_upgrade(n);
        let sum: f64 = u.rollouts.iter().sum();
        println!(
            "| {n} | {:.2} s | {sum:.2} s | {:.2} s | {:.2} s | {} | {} |",
            u.wall.as_secs_f64(),
            sum / u.rollouts.len().max(1) as f64,
            u.wall.as_secs_f64() - sum,
            u.unavailable_ms,
            u.max_zones_unready,
        );
    }
}

fn main() {
    let upgrade = std::env::args().nth(1).as_deref() == Some("upgrade");
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    if upgrade {
        upgrade_main(if sizes.is_empty() { vec![3, 10] } else { sizes });
        return;
    }
    let sizes = if sizes.is_empty() {
        vec![3, 10, 30]
    } else {
        sizes
    };
    let bound = LB_DELAY + LATENCY * ROUNDS;
    println!(
        "latency {} ms/request, LB delay {} s, {ROUNDS} dependent rounds: lower bound {:.2} s\n",
        LATENCY.as_millis(),
        LB_DELAY.as_secs(),
        bound.as_secs_f64()
    );
    println!(
        "| clusters | apply (all at once) | × bound | requests/cluster | peak RSS | --concurrency 1 | sequential / concurrent |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for n in sizes {
        let all = run_apply(n, 0);
        let seq = run_apply(n, 1);
        println!(
            "| {n} | {:.2} s | {:.2} | {:.1} | {:.1} MiB | {:.2} s | {:.1}× |",
            all.wall.as_secs_f64(),
            all.wall.as_secs_f64() / bound.as_secs_f64(),
            all.requests_per_cluster,
            all.max_rss_kib as f64 / 1024.0,
            seq.wall.as_secs_f64(),
            seq.wall.as_secs_f64() / all.wall.as_secs_f64(),
        );
    }
}
