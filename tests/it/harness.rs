//! What every test that runs the binary against kube-sim shares: a
//! simulated federation with a scratch directory, the binary run through
//! the federation's kubeconfig, and the assertions on its output.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output};
use std::time::{Duration, Instant};

use kube_sim::{Federation, Flavor};
use serde_json::Value;

/// A simulated federation and a scratch directory the binary runs in.
pub struct Env {
    pub fed: Federation,
    pub dir: tempfile::TempDir,
}

impl Env {
    /// Clusters for `zones` (named `<region>-<x>`; each zone's context is
    /// its name), DNS load balancers after 150 ms, the clouds' user DNS
    /// settings seeded; `configure` may change any of it.
    pub fn start(
        flavor: Flavor,
        zones: &[&str],
        configure: impl FnOnce(kube_sim::FederationBuilder) -> kube_sim::FederationBuilder,
    ) -> Env {
        let builder = Federation::builder()
            .zones(zones.iter().copied())
            .flavor(flavor)
            .lb_delay(Duration::from_millis(150))
            .seed_user_dns(true);
        let fed = configure(builder).start().expect("kube-sim starts");
        Env {
            fed,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// [`Env::start`] unchanged, with a plain config for `zones` (nothing
    /// but the zones) at `config.toml`.
    pub fn with_config(flavor: Flavor, zones: &[&str]) -> (Env, PathBuf) {
        let env = Env::start(flavor, zones, |b| b);
        let config = env.config("config.toml", zones, "");
        (env, config)
    }

    /// Sets `zone`'s faults: the defaults (none) as `f` changes them.
    pub fn set_faults(&self, zone: &str, f: impl FnOnce(&mut kube_sim::Faults)) {
        self.fed.cluster(zone).set_faults(faults(f));
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a config for `zones` (context = zone name, as kube-sim names
    /// them), `extra` first.
    pub fn config(&self, name: &str, zones: &[&str], extra: &str) -> PathBuf {
        let mut text = format!("{extra}\n");
        for z in zones {
            let region = z.rsplit_once('-').map(|(r, _)| r).unwrap_or(z);
            text.push_str(&format!(
                "\n[[zones]]\nname = \"{z}\"\ncontext = \"{z}\"\nregion = \"{region}\"\n"
            ));
        }
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The binary with `args` in `cwd`: the federation's kubeconfig (not
    /// for the offline `plan`), kube-sim's DNS server for load-balancer
    /// names (apply, diff), no colour, no KUBECONFIG from the environment.
    pub fn command(&self, cwd: &Path, args: &[&str], vars: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_crdb-multiregion"));
        cmd.current_dir(cwd)
            .args(args)
            .env_remove("KUBECONFIG")
            .env("NO_COLOR", "1");
        for (k, v) in vars {
            cmd.env(k, v);
        }
        if args.first() != Some(&"plan") {
            cmd.arg("--kubeconfig").arg(self.fed.kubeconfig_path());
        }
        if matches!(args.first(), Some(&"apply") | Some(&"diff")) {
            cmd.arg("--lb-resolver")
                .arg(self.fed.dns_addr().to_string());
        }
        cmd
    }

    /// Runs the binary in the scratch directory; it must not panic.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_full(self.dir.path(), args, &[])
    }

    /// [`Env::run`] from another working directory.
    pub fn run_in(&self, cwd: &Path, args: &[&str]) -> Output {
        self.run_full(cwd, args, &[])
    }

    /// [`Env::run`] with extra environment variables.
    pub fn run_with_env(&self, args: &[&str], vars: &[(&str, &str)]) -> Output {
        self.run_full(self.dir.path(), args, vars)
    }

    pub fn run_full(&self, cwd: &Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
        let out = self.command(cwd, args, vars).output().expect("binary runs");
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
        out
    }

    /// Every object of these kinds carrying label `key`, in every cluster,
    /// as `zone: Kind name`.
    pub fn labelled(&self, key: &str, kinds: &[(&str, &str)]) -> Vec<String> {
        let pointer = format!("/metadata/labels/{}", key.replace('/', "~1"));
        let mut found = Vec::new();
        for c in self.fed.clusters() {
            for (api_version, kind) in kinds {
                for o in c.list(api_version, kind, None) {
                    if o.pointer(&pointer).is_some() {
                        found.push(format!("{}: {kind} {}", c.zone(), o["metadata"]["name"]));
                    }
                }
            }
        }
        found
    }
}

/// Waits until `f` holds, at most 20 s (then the test fails, naming `what`).
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (bounded) for `child` to exit; a child still running after `limit`
/// is killed and the test fails: it hung.
pub fn wait_bounded(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// kube-sim's faults: the defaults (none) as `f` changes them.
pub fn faults(f: impl FnOnce(&mut kube_sim::Faults)) -> kube_sim::Faults {
    let mut faults = kube_sim::Faults::default();
    f(&mut faults);
    faults
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stderr:\n{}\nstdout:\n{}",
        stderr(out),
        stdout(out)
    );
}

/// Validates `report` against a JSON schema (one of docs/*.schema.json).
pub fn validate(schema: &str, report: &Value) {
    let schema: Value = serde_json::from_str(schema).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(report)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{report:#}");
}
