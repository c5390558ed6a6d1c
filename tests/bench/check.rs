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

use std::process::Stdio;
use std::time::{Duration, Instant};

use kube_sim::{Federation, Flavor};

mod common;
use common::{LATENCY, binary, clear_requests, dependent_rounds, write_config, zone_names};

fn main() {
    let numbers: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let zones = numbers.first().copied().unwrap_or(3).max(1);
    let samples = numbers.get(1).copied().unwrap_or(5).max(1);
    let names = zone_names(zones);
    let fed = Federation::builder()
        .zones(names.iter().map(String::as_str))
        .flavor(Flavor::Gke)
        .latency(LATENCY)
        .lb_delay(Duration::from_millis(100))
        .start()
        .expect("kube-sim starts");
    let dir = tempfile::tempdir().expect("temporary directory");
    write_config(dir.path(), &names, "");
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
        clear_requests(&fed);
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
        common::trace(&fed, &format!("check, sample {i}"));
        walls.push(wall);
    }
    let (min, median) = common::min_median(&walls);
    println!(
        "\nwall: min {:.2} s, median {:.2} s",
        min.as_secs_f64(),
        median.as_secs_f64()
    );
}
