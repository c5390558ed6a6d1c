//! What the benchmarks share: the binary under test, the config of a
//! simulated federation, and reading kube-sim's request log (requests and
//! dependent rounds per cluster).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kube_sim::{Federation, RequestRecord};

/// Added before every API request is answered.
pub const LATENCY: Duration = Duration::from_millis(50);

/// `zone-00`, `zone-01`, ...
pub fn zone_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("zone-{i:02}")).collect()
}

/// The binary under test: this build's, or `CRDB_BENCH_BIN` (e.g. an older
/// commit's build, to compare on the same bench).
pub fn binary(dir: &Path) -> Command {
    let bin = std::env::var_os("CRDB_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_crdb-multiregion")));
    let mut c = Command::new(bin);
    c.current_dir(dir).env_remove("KUBECONFIG");
    c
}

/// Writes `bench.toml` in `dir`: `extra` (TOML before the zones), then one
/// zone per name, its context named like it (as kube-sim names them).
pub fn write_config(dir: &Path, zones: &[String], extra: &str) {
    let mut config = format!("[dns]\nload_balancer = \"public\"\n{extra}");
    for z in zones {
        config.push_str(&format!("\n[[zones]]\nname = \"{z}\"\ncontext = \"{z}\"\n"));
    }
    std::fs::write(dir.join("bench.toml"), config).expect("write the config");
}

pub fn clear_requests(fed: &Federation) {
    for c in fed.clusters() {
        c.clear_requests();
    }
}

fn is_watch(r: &RequestRecord) -> bool {
    r.query
        .split('&')
        .any(|q| q == "watch=true" || q == "watch=1")
}

/// The longest chain of requests where each arrived after the previous one
/// was answered; watches left out (they wait for the cluster, not for a
/// round trip).
pub fn dependent_rounds(requests: &[RequestRecord]) -> usize {
    let mut spans: Vec<(u64, u64)> = requests
        .iter()
        .filter(|r| !is_watch(r))
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

/// Per cluster of `fed`: (requests, dependent rounds) since the last clear.
pub fn per_cluster(fed: &Federation) -> Vec<(usize, usize)> {
    fed.clusters()
        .iter()
        .map(|c| {
            let log = c.requests();
            (log.len(), dependent_rounds(&log))
        })
        .collect()
}

/// With `CRDB_BENCH_TRACE` set: the first cluster's request log on stderr
/// (arrival in seconds since the federation started, duration, request).
pub fn trace(fed: &Federation, what: &str) {
    if std::env::var_os("CRDB_BENCH_TRACE").is_none() {
        return;
    }
    let mut log = fed.clusters()[0].requests();
    log.sort_by_key(|r| r.started_us);
    eprintln!("-- {what}: {} requests", log.len());
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

/// (min, median) of some durations (the mean of the middle two for an
/// even count).
pub fn min_median(values: &[Duration]) -> (Duration, Duration) {
    let mut v = values.to_vec();
    v.sort();
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    };
    (v[0], median)
}
