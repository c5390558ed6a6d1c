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
