//! What each `kube-sim` subcommand does: `up` runs a federation until a
//! signal, `faults` and `requests` talk to a running one's control endpoint.
//! stdout carries only data (`ready <kubeconfig>`, JSON); the rest goes to stderr.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use serde_json::{Value, json};

use crate::cli::{
    ActivityArgs, AddonUpdateArgs, AvailabilityArgs, CleanupArgs, Cli, Command, FaultArgs,
    RequestArgs, UpArgs,
};
use crate::config::{CloudRules, Faults, Flavor, PodRules};
use crate::{Federation, StartError};

/// Exit code when the simulator could not run (bad arguments, bind failure).
const EXIT_COULD_NOT_RUN: u8 = 2;

pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_COULD_NOT_RUN)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let result = match cli.command {
        Command::Up(a) => up(*a),
        Command::Faults(a) => faults(a),
        Command::Requests(a) => requests(a),
        Command::AddonUpdate(a) => addon_update(a),
        Command::RestartZone(a) => restart_zone(a),
        Command::Availability(a) => availability(a),
        Command::Activity(a) => activity(a),
        Command::Cleanup(a) => cleanup(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = e.source();
            while let Some(s) = source {
                eprintln!("Caused by: {s}");
                source = s.source();
            }
            ExitCode::from(EXIT_COULD_NOT_RUN)
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn up(a: UpArgs) -> Result<(), BoxError> {
    if !(0.0..=1.0).contains(&a.error_rate) {
        return Err(format!("--error-rate must be within 0..=1, got {}", a.error_rate).into());
    }
    let faults = Faults {
        latency: Duration::from_millis(a.latency_ms),
        error_rate: a.error_rate,
        error_code: a.error_code,
        retry_after: a.retry_after_secs.map(Duration::from_secs),
        down: false,
        lb_never_ready: a.lb_never_ready,
        namespace_delete_delay: Duration::from_millis(a.namespace_delete_delay_ms),
        disable_http2: a.disable_http2,
        ..Faults::default()
    };
    if a.eks_lb_controller && a.flavor != Flavor::Eks {
        return Err(format!(
            "--eks-lb-controller models an EKS add-on: it needs --flavor eks (got --flavor {})",
            a.flavor
        )
        .into());
    }
    let rules = CloudRules {
        lb_protocols: a.cloud_lb_rules,
        eks_lb_controller: a.eks_lb_controller,
        pod_security: a.pod_security,
    };
    let mut builder = Federation::builder()
        .network(a.network)
        .host_lb_routes(a.host_lb_routes);
    for (x, y) in &a.cut {
        builder = builder.cut(x, y);
    }
    for (x, y) in &a.cut_oneway {
        builder = builder.cut_oneway(x, y);
    }
    for (zone, port) in &a.block_port {
        builder = builder.block_port(zone, *port);
    }
    let fed = builder
        .zones(a.zones.clone())
        .flavor(a.flavor)
        .faults(faults)
        .lb_delay(Duration::from_millis(a.lb_delay_ms))
        .pod_ready_delay(Duration::from_millis(a.pod_ready_delay_ms))
        .job_duration(Duration::from_millis(a.job_duration_ms))
        .seed_user_dns(a.seed_user_dns)
        .rules(rules)
        .pod_rules(PodRules {
            bad_images: a.bad_image.clone(),
            crash_images: a.crash_image.clone(),
            max_termination_grace: a.max_termination_grace_ms.map(Duration::from_millis),
            crdb_recovery: Duration::from_millis(a.crdb_recovery_ms),
            node_allocatable: {
                let d = crate::Allocatable::default();
                crate::Allocatable {
                    cpu_millis: a.node_cpu_millis.unwrap_or(d.cpu_millis),
                    memory_bytes: a.node_memory_mib.map_or(d.memory_bytes, |m| m << 20),
                }
            },
        })
        .lb_dns_delay(Duration::from_millis(a.lb_dns_delay_ms))
        .kubeconfig(a.kubeconfig.clone())
        .control_addr(a.control_addr)
        .dns_addr(a.dns_addr)
        .start()
        .map_err(|e: StartError| -> BoxError { Box::new(e) })?;
    let mut clusters = Vec::new();
    for c in fed.clusters() {
        eprintln!(
            "[{}] context={} server={} pod-cidr={} dns={} flavor={}",
            c.zone(),
            c.context(),
            c.server_url(),
            c.pod_cidr(),
            c.dns_service_ip(),
            c.flavor()
        );
        clusters.push(json!({
            "zone": c.zone(), "context": c.context(), "region": c.region(), "server": c.server_url(),
            "pod_cidr": c.pod_cidr(), "dns_service_ip": c.dns_service_ip().to_string(),
            "netns": fed.netns(c.zone()),
        }));
    }
    eprintln!("kube-sim: control {}", fed.control_url());
    eprintln!("kube-sim: lb-dns {}", fed.dns_addr());
    if let Some(prefix) = fed.network_prefix() {
        eprintln!("kube-sim: real network {prefix} (ip netns exec {prefix}-<index> ...)");
    }
    if let Some(path) = &a.state_file {
        let state = json!({
            "kubeconfig": fed.kubeconfig_path(), "control": fed.control_url(),
            "dns": fed.dns_addr().to_string(), "clusters": clusters,
        });
        std::fs::write(path, serde_json::to_string_pretty(&state)?)
            .map_err(|e| format!("could not write the state file {}: {e}", path.display()))?;
    }
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready {}", fed.kubeconfig_path().display())?;
        out.flush()?;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        Ok::<_, std::io::Error>(())
    })?;
    eprintln!("kube-sim: stopping");
    drop(fed);
    Ok(())
}

/// A minimal blocking HTTP/1.1 request to the control endpoint.
fn control_request(
    base: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, BoxError> {
    let hostport = base
        .trim_end_matches('/')
        .strip_prefix("http://")
        .ok_or_else(|| format!("the control URL must start with http:// (got {base})"))?;
    let mut stream = std::net::TcpStream::connect(hostport)
        .map_err(|e| format!("could not reach the control endpoint {base}: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut resp = String::new();
    stream.read_to_string(&mut resp)?;
    let (head, payload) = resp
        .split_once("\r\n\r\n")
        .ok_or("malformed response from the control endpoint")?;
    let ok = head.starts_with("HTTP/1.1 2");
    let v: Value = serde_json::from_str(payload).unwrap_or(Value::String(payload.to_string()));
    if !ok {
        return Err(format!(
            "the control endpoint answered {}: {v}",
            head.lines().next().unwrap_or("")
        )
        .into());
    }
    Ok(v)
}

fn faults(a: FaultArgs) -> Result<(), BoxError> {
    let mut patch = json!({});
    if let Some(v) = a.latency_ms {
        patch["latency_ms"] = json!(v);
    }
    if let Some(v) = a.error_rate {
        patch["error_rate"] = json!(v);
    }
    if let Some(v) = a.error_code {
        patch["error_code"] = json!(v);
    }
    if let Some(v) = a.retry_after_secs {
        patch["retry_after_secs"] = json!(v);
    }
    if let Some(v) = a.down {
        patch["down"] = json!(v);
    }
    if let Some(v) = a.lb_never_ready {
        patch["lb_never_ready"] = json!(v);
    }
    if let Some(v) = a.namespace_delete_delay_ms {
        patch["namespace_delete_delay_ms"] = json!(v);
    }
    if let Some(v) = a.disable_http2 {
        patch["disable_http2"] = json!(v);
    }
    let v = control_request(
        &a.control,
        "PATCH",
        &format!("/clusters/{}/faults", a.zone),
        Some(&patch),
    )?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

fn requests(a: RequestArgs) -> Result<(), BoxError> {
    let method = if a.clear { "DELETE" } else { "GET" };
    let v = control_request(
        &a.control,
        method,
        &format!("/clusters/{}/requests", a.zone),
        None,
    )?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

fn addon_update(a: AddonUpdateArgs) -> Result<(), BoxError> {
    let v = control_request(
        &a.control,
        "POST",
        &format!("/clusters/{}/addon-update", a.zone),
        None,
    )?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

fn restart_zone(a: AddonUpdateArgs) -> Result<(), BoxError> {
    let v = control_request(
        &a.control,
        "POST",
        &format!("/clusters/{}/restart", a.zone),
        None,
    )?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

fn availability(a: AvailabilityArgs) -> Result<(), BoxError> {
    let v = control_request(&a.control, "GET", "/availability", None)?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    if a.reset {
        control_request(&a.control, "DELETE", "/availability", None)?;
    }
    Ok(())
}

fn activity(a: ActivityArgs) -> Result<(), BoxError> {
    let path = match &a.zone {
        Some(z) => format!("/clusters/{z}/activity"),
        None => "/activity".to_string(),
    };
    let v = control_request(&a.control, "GET", &path, None)?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

fn cleanup(a: CleanupArgs) -> Result<(), BoxError> {
    let removed = crate::network::cleanup(a.all);
    if removed.is_empty() {
        eprintln!("kube-sim: nothing to clean up");
    }
    for r in removed {
        println!("removed {r}");
    }
    Ok(())
}
