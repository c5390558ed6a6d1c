//! Benchmark of `check` against simulated clusters (not a test: it asserts
//! nothing about time). Reproduce with:
//!
//! ```text
//! cargo bench --bench check                # 3 zones, 5 samples
//! cargo bench --bench check -- 5 3         # 5 zones, 3 samples
//! CRDB_BENCH_BIN=/path/to/crdb-multiregion cargo bench --bench check
//! ```
//!
//! It starts a kube-sim federation with 50 ms added latency on every API
//! request, deploys with `apply` (untimed), then times the real binary's
//! `check` several times. kube-sim's default mode does not run pods, so each
//! prober is read after `--probe-timeout 1s` and `check` reports that the
//! probers printed nothing (exit 2): every request around the probes (the
//! connection facts, namespace, leftover scan, listener, prober, log read,
//! cleanup) is made as in a successful run, and that is what is measured.
//!
//! Per zone it reports the API requests and the dependent rounds: the
//! longest chain of requests each of which arrived after the one before it
//! had been answered (from kube-sim's request log), leaving out watches,
//! which wait for the cluster rather than for a round trip. `CRDB_BENCH_BIN`
//! runs another build of the binary (an older commit) on the same bench.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kube_sim::{Federation, Flavor, RequestRecord};

const LATENCY: Duration = Duration::from_millis(50);

fn binary(dir: &Path) -> Command {
    let bin = std::env::var_os("CRDB_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_crdb-multiregion")));
    let mut c = Command::new(bin);
    c.current_dir(dir).env_remove("KUBECONFIG");
    c
}

/// The longest chain of requests where each arrived after the previous one
/// was answered; watches left out.
fn dependent_rounds(requests: &[RequestRecord]) -> usize {
    let mut spans: Vec<(u64, u64)> = requests
        .iter()
        .filter(|r| {
            !r.query
                .split('&')
                .any(|q| q == "watch=true" || q == "watch=1")
        })
        .map(|r| (r.started_us, r.started_us + r.duration.as_micros() as u64))
        .collect();
    spans.sort();
    let mut depth = vec![0usize; spans.len()];
    for i in 0..spans.len() {
        let before = (0..i)
            .filter(|&j| spans[j].1 <= spans[i].0)
            .map(|j| depth[j])
            .max()
            .unwrap_or(0);
        depth[i] = before + 1;
    }
    depth.into_iter().max().unwrap_or(0)
}

fn main() {
    let numbers: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let zones = numbers.first().copied().unwrap_or(3).max(1);
    let samples = numbers.get(1).copied().unwrap_or(5).max(1);
    let names: Vec<String> = (0..zones).map(|i| format!("zone-{i:02}")).collect();
    let fed = Federation::builder()
        .zones(names.iter().map(String::as_str))
        .flavor(Flavor::Gke)
        .latency(LATENCY)
        .lb_delay(Duration::from_millis(100))
        .start()
        .expect("kube-sim starts");
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut config = String::from("[dns]\nload_balancer = \"public\"\n");
    for z in &names {
        config.push_str(&format!("\n[[zones]]\nname = \"{z}\"\ncontext = \"{z}\"\n"));
    }
    std::fs::write(dir.path().join("bench.toml"), config).expect("write the config");
    let status = binary(dir.path())
        .args(["apply", "bench.toml", "-q", "--kubeconfig"])
        .arg(fed.kubeconfig_path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run apply");
    assert!(status.success(), "apply failed");

    println!(
        "check, {zones} zones, {} ms latency per request, probe timeout 1 s, {samples} samples\n",
        LATENCY.as_millis()
    );
    println!("| sample | wall | requests/zone (max) | dependent rounds/zone (max) |");
    println!("|---:|---:|---:|---:|");
    let mut walls = Vec::new();
    for i in 1..=samples {
        for c in fed.clusters() {
            c.clear_requests();
        }
        let started = Instant::now();
        let output = binary(dir.path())
            .args([
                "check",
                "bench.toml",
                "-q",
                "--probe-timeout",
                "1s",
                "--kubeconfig",
            ])
            .arg(fed.kubeconfig_path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("run check");
        let wall = started.elapsed();
        // 2: the probers printed nothing (pods do not run here); anything
        // else means the run did not get as far as the probes.
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.code() == Some(2) && stderr.contains("printed no results"),
            "check did not reach the probes: {stderr}"
        );
        let requests = fed
            .clusters()
            .iter()
            .map(|c| c.requests().len())
            .max()
            .unwrap_or(0);
        let rounds = fed
            .clusters()
            .iter()
            .map(|c| dependent_rounds(&c.requests()))
            .max()
            .unwrap_or(0);
        println!(
            "| {i} | {:.2} s | {requests} | {rounds} |",
            wall.as_secs_f64()
        );
        if std::env::var_os("CRDB_BENCH_TRACE").is_some() {
            let mut log = fed.clusters()[0].requests();
            log.sort_by_key(|r| r.started_us);
            for r in log {
                eprintln!(
                    "{:>8.3} {:>6.3} {} {} {}",
                    r.started_us as f64 / 1e6,
                    r.duration.as_secs_f64(),
                    r.method,
                    r.path,
                    r.query
                );
            }
        }
        walls.push(wall);
    }
    walls.sort();
    println!(
        "\nwall: min {:.2} s, median {:.2} s",
        walls[0].as_secs_f64(),
        walls[walls.len() / 2].as_secs_f64()
    );
}
