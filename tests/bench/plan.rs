//! Benchmark of `plan` with fresh certificates (not a test: it asserts
//! nothing about time). Reproduce with:
//!
//! ```text
//! cargo bench --bench plan                  # 100 zones, 5 samples each
//! cargo bench --bench plan -- 30 3          # 30 zones, 3 samples each
//! ```
//!
//! Each sample runs the real binary's `plan` on a config of N zones with an
//! empty certificates directory, so it creates the CA, the root client
//! certificate and one node certificate per zone: N + 2 keys. ECDSA P-256
//! and RSA-2048 samples alternate (interleaved, so a change in machine
//! load hits both alike); the table gives min, median and max per key type.
//! Every sample's directory is kept until all samples are done: on a file
//! system that makes new files slower the more were deleted in the last
//! minute (ext4 without a journal, as on the machine the results come
//! from: docs/benchmarks.md), deleting one sample's 2,000 files would slow
//! the next.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KEY_TYPES: [&str; 2] = ["ecdsa-p256", "rsa-2048"];

/// One run's wall time, and its directory (deleted when dropped).
fn sample(zones: usize, key_type: &str) -> (Duration, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut config = format!("[certs]\nkey_type = \"{key_type}\"\n");
    for i in 0..zones {
        config.push_str(&format!(
            "\n[[zones]]\nname = \"zone-{i:03}\"\ncontext = \"ctx-{i:03}\"\n"
        ));
    }
    std::fs::write(dir.path().join("bench.toml"), config).expect("write the config");
    let started = Instant::now();
    let status = binary(dir.path())
        .args(["plan", "bench.toml"])
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("run plan");
    let wall = started.elapsed();
    assert!(
        status.success(),
        "plan failed for {zones} zones ({key_type})"
    );
    (wall, dir)
}

fn binary(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_crdb-multiregion"));
    c.current_dir(dir);
    c
}

fn main() {
    let numbers: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let zones = numbers.first().copied().unwrap_or(100).max(1);
    let samples = numbers.get(1).copied().unwrap_or(5).max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "plan, {zones} zones ({} keys) with fresh certificates, {samples} samples each, {cores} cores\n",
        zones + 2
    );
    let mut walls: Vec<Vec<Duration>> = vec![Vec::new(); KEY_TYPES.len()];
    let mut dirs = Vec::new();
    for _ in 0..samples {
        for (i, key_type) in KEY_TYPES.iter().enumerate() {
            let (wall, dir) = sample(zones, key_type);
            walls[i].push(wall);
            dirs.push(dir);
        }
    }
    drop(dirs);
    println!("| key type | min | median | max | per key (median) |");
    println!("|---|---:|---:|---:|---:|");
    for (key_type, mut w) in KEY_TYPES.iter().zip(walls) {
        w.sort();
        let median = w[w.len() / 2];
        println!(
            "| {key_type} | {:.2} s | {:.2} s | {:.2} s | {:.1} ms |",
            w[0].as_secs_f64(),
            median.as_secs_f64(),
            w[w.len() - 1].as_secs_f64(),
            median.as_secs_f64() * 1000.0 / (zones + 2) as f64,
        );
    }
}
