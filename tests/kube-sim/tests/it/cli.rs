//! The `kube-sim up` contract: one `ready <kubeconfig>` line on stdout once
//! every cluster serves; SIGTERM stops it cleanly and closes the ports.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[test]
fn up_prints_ready_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let state = dir.path().join("state.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kube-sim"))
        .args([
            "up",
            "--zones",
            "us-east1-b,us-west1-a,us-central1-a=central",
            "--flavor",
            "gke",
        ])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--state-file")
        .arg(&state)
        .args([
            "--latency-ms",
            "0",
            "--lb-delay-ms",
            "100",
            "--error-rate",
            "0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kube-sim starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap_or_default());
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("a ready line within 20 s");
    assert_eq!(line, format!("ready {}", kubeconfig.display()));
    let text = std::fs::read_to_string(&kubeconfig).unwrap();
    for ctx in ["\"us-east1-b\"", "\"us-west1-a\"", "\"central\""] {
        assert!(
            text.contains(&format!("- name: {ctx}")),
            "{ctx} in kubeconfig"
        );
    }
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let ports: Vec<u16> = state["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            c["server"]
                .as_str()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(ports.len(), 3);
    for p in &ports {
        std::net::TcpStream::connect(("127.0.0.1", *p)).expect("cluster serves");
    }

    // Faults change at run time through the control endpoint, from the CLI.
    let control = state["control"].as_str().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_kube-sim"))
        .args([
            "faults",
            "--control",
            &control,
            "--zone",
            "central",
            "--down",
            "true",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let faults: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(faults["down"], true);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", ports[2])).is_err(),
        "central is down"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_kube-sim"))
        .args([
            "faults",
            "--control",
            &control,
            "--zone",
            "central",
            "--down",
            "false",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    std::net::TcpStream::connect(("127.0.0.1", ports[2])).expect("central is back");
    let out = Command::new(env!("CARGO_BIN_EXE_kube-sim"))
        .args(["requests", "--control", &control, "--zone", "us-east1-b"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .unwrap()
            .is_array()
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("kube-sim did not stop within 20 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
    assert!(
        rx.recv_timeout(Duration::from_secs(1)).is_err(),
        "nothing else on stdout"
    );
    for p in &ports {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", *p)).is_err(),
            "port {p} closed"
        );
    }
}

fn up_output(extra: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_kube-sim"))
        .args(["up", "--zones", "a"])
        .arg("--kubeconfig")
        .arg(dir.path().join("kubeconfig"))
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("kube-sim runs")
}

#[test]
fn up_refuses_cloud_options_that_do_not_fit() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--flavor", "gke", "--eks-lb-controller"],
            "--eks-lb-controller models an EKS add-on: it needs --flavor eks (got --flavor gke)",
        ),
        (
            &["--pod-security", "strict"],
            "unknown Pod Security level \"strict\"",
        ),
        (&["--host-lb-routes"], "host LB routes need Network::Real"),
    ];
    for (args, message) in cases {
        let out = up_output(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: no ready line");
    }
}

#[test]
fn up_accepts_every_cloud_option() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kube-sim"))
        .args(["up", "--zones", "a", "--flavor", "eks", "--cloud-lb-rules"])
        .args(["--eks-lb-controller", "--lb-dns-delay-ms", "1000"])
        .args(["--pod-security", "restricted"])
        .arg("--kubeconfig")
        .arg(dir.path().join("kubeconfig"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kube-sim starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap_or_default());
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(20));
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.expect("a ready line").starts_with("ready "));
}
