//! Benchmark of `apply` against simulated clusters (not a test: it asserts
//! nothing about time). Reproduce with:
//!
//! ```text
//! cargo bench --bench apply                      # 3, 10 and 30 clusters, 3 samples each
//! cargo bench --bench apply -- 3 10 --samples 5  # chosen sizes and samples
//! cargo bench --bench apply -- upgrade 3 10      # an image upgrade, rolled zone by zone
//! ```
//!
//! For each sample and size (sizes interleaved within a sample, so a
//! change of machine load spreads over all of them) it starts a fresh
//! kube-sim federation with 50 ms added latency per API request, a 2 s
//! load-balancer delay and the simulator's default controller delays,
//! makes the certificates with `plan` (untimed: local work a re-run
//! reuses), then times the real binary's first `apply` and, on the same
//! federation, a second `apply` that has nothing to change (converged).
//! For both it reports per cluster the API requests and the dependent
//! rounds (the longest chain of requests each sent after the previous one
//! was answered, from kube-sim's request log; watches left out), and for
//! the first apply the peak RSS of the process. The first apply is
//! compared with the task's bound, [`LB_DELAY`] + [`TASK_ROUNDS`] ×
//! [`LATENCY`].
//!
//! `upgrade` times an image upgrade of a running federation instead: one
//! apply creates it, the timed apply changes `cockroachdb.image`, and the
//! table compares its wall time with the sum of the per-zone rollouts
//! (the `rolling update` step of each zone in the JSON report) and reports
//! kube-sim's availability record.
//!
//! `CRDB_BENCH_TRACE=1` prints the first cluster's request log of every
//! run; `CRDB_BENCH_BIN` runs another build of the binary.

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use kube_sim::{Federation, Flavor};

mod common;
use common::{LATENCY, binary, clear_requests, per_cluster, write_config, zone_names};

const LB_DELAY: Duration = Duration::from_secs(2);

/// The dependency depth of the task for the zone that also runs
/// `cockroach init`, in request rounds, apart from the waits for the
/// cloud and the controllers (see docs/benchmarks.md, "the bound"):
/// 1 pre-flight (version, permissions, DNS detection, what exists);
/// 2 the server-side dry run of the changes outside the new namespace;
/// 3 namespace, DNS load balancer and the objects outside the namespace;
/// — load-balancer delay (meanwhile, off the critical path: the zone's own
/// objects and the DNS backup, the StatefulSet, its pods, the init Job and
/// the initialised mark; none needs the cross-cluster DNS) —
/// 4 DNS ConfigMap; 5 DNS restart; — the DNS rollout, with the wait for
/// every pod Ready beside it.
const TASK_ROUNDS: u32 = 5;

struct Run {
    wall: Duration,
    /// Per cluster: (requests, dependent rounds).
    clusters: Vec<(usize, usize)>,
    max_rss_kib: i64,
}

impl Run {
    fn max_requests(&self) -> usize {
        self.clusters.iter().map(|c| c.0).max().unwrap_or(0)
    }
    fn max_rounds(&self) -> usize {
        self.clusters.iter().map(|c| c.1).max().unwrap_or(0)
    }
}

/// One fresh federation of `n` clusters: the first apply, then the
/// converged one.
fn run_apply(n: usize) -> (Run, Run) {
    let zones = zone_names(n);
    let fed = Federation::builder()
        .zones(zones.iter().map(String::as_str))
        .flavor(Flavor::Gke)
        .latency(LATENCY)
        .lb_delay(LB_DELAY)
        .start()
        .expect("kube-sim starts");
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &zones, "");
    let status = binary(dir.path())
        .args(["plan", "bench.toml"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "plan failed");
    let timed = |what: &str| {
        clear_requests(&fed);
        let started = Instant::now();
        // Reaped by wait4 below, which also reports the child's peak RSS.
        #[allow(clippy::zombie_processes)]
        let child = binary(dir.path())
            .args(["apply", "bench.toml", "-q", "--wait-timeout", "5m"])
            .arg("--kubeconfig")
            .arg(fed.kubeconfig_path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let (status, max_rss_kib) = wait_with_rusage(child.id() as i32);
        let wall = started.elapsed();
        assert_eq!(status, 0, "{what} apply failed for {n} clusters");
        common::trace(&fed, &format!("{what} apply, {n} clusters"));
        Run {
            wall,
            clusters: per_cluster(&fed),
            max_rss_kib,
        }
    };
    let first = timed("first");
    let converged = timed("converged");
    (first, converged)
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
        .max_termination_grace(Some(TERMINATION))
        .start()
        .expect("kube-sim starts");
    let dir = tempfile::tempdir().unwrap();
    let write = |image: &str| {
        write_config(
            dir.path(),
            &zones,
            &format!("[cockroachdb]\nimage = \"{image}\"\n"),
        );
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    let upgrade = args.first().map(String::as_str) == Some("upgrade");
    let samples = args
        .iter()
        .position(|a| a == "--samples")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(3usize)
        .max(1);
    let sizes: Vec<usize> = args
        .iter()
        .enumerate()
        .filter(|(i, _)| *i == 0 || args[i - 1] != "--samples")
        .filter_map(|(_, a)| a.parse().ok())
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
    let bound = LB_DELAY + LATENCY * TASK_ROUNDS;
    println!(
        "latency {} ms/request, LB delay {} s, simulator's default controller delays; task bound {} s + {TASK_ROUNDS} rounds = {:.2} s; {samples} samples per size, interleaved\n",
        LATENCY.as_millis(),
        LB_DELAY.as_secs(),
        LB_DELAY.as_secs(),
        bound.as_secs_f64()
    );
    let mut runs: Vec<Vec<(Run, Run)>> = sizes.iter().map(|_| Vec::new()).collect();
    for _ in 0..samples {
        for (i, n) in sizes.iter().enumerate() {
            runs[i].push(run_apply(*n));
        }
    }
    println!("First apply:\n");
    println!(
        "| clusters | min | median | median × bound | requests/cluster (max) | dependent rounds/cluster (max) | peak RSS (max) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for (n, r) in sizes.iter().zip(&runs) {
        let walls: Vec<Duration> = r.iter().map(|(f, _)| f.wall).collect();
        let (min, median) = common::min_median(&walls);
        println!(
            "| {n} | {:.2} s | {:.2} s | {:.2} | {} | {} | {:.1} MiB |",
            min.as_secs_f64(),
            median.as_secs_f64(),
            median.as_secs_f64() / bound.as_secs_f64(),
            r.iter().map(|(f, _)| f.max_requests()).max().unwrap_or(0),
            r.iter().map(|(f, _)| f.max_rounds()).max().unwrap_or(0),
            r.iter().map(|(f, _)| f.max_rss_kib).max().unwrap_or(0) as f64 / 1024.0,
        );
    }
    println!("\nConverged apply (nothing to change):\n");
    println!(
        "| clusters | min | median | median / first size's | requests/cluster (max) | dependent rounds/cluster (max) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    let mut base = None;
    for (n, r) in sizes.iter().zip(&runs) {
        let walls: Vec<Duration> = r.iter().map(|(_, c)| c.wall).collect();
        let (min, median) = common::min_median(&walls);
        let base = *base.get_or_insert(median);
        println!(
            "| {n} | {:.2} s | {:.2} s | {:.2} | {} | {} |",
            min.as_secs_f64(),
            median.as_secs_f64(),
            median.as_secs_f64() / base.as_secs_f64(),
            r.iter().map(|(_, c)| c.max_requests()).max().unwrap_or(0),
            r.iter().map(|(_, c)| c.max_rounds()).max().unwrap_or(0),
        );
    }
}
