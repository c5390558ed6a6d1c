//! Connecting and pre-flight through the real binary: what the user sees
//! when a cluster cannot be used, exec credential plugins (concurrent,
//! bounded by `--timeout` and Ctrl-C, their own message in the error), and
//! proxies (`HTTPS_PROXY`, `NO_PROXY`, the kubeconfig's `proxy-url`) through
//! a CONNECT proxy on loopback written here.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use serde_json::json;

use super::*;

const TWO: [&str; 2] = ["us-east1-b", "us-west1-a"];

impl Env {
    /// The binary with `args`, this kubeconfig, and the environment changed
    /// by `envs` (`None` removes a variable); the proxy variables are
    /// removed unless given.
    fn command_with(
        &self,
        args: &[&str],
        kubeconfig: &Path,
        envs: &[(&str, Option<&str>)],
    ) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_crdb-multiregion"));
        cmd.current_dir(self.dir.path())
            .args(args)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .env_remove("KUBECONFIG")
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1");
        for var in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"] {
            cmd.env_remove(var);
        }
        for var in ["NO_PROXY", "no_proxy"] {
            cmd.env_remove(var);
        }
        for (k, v) in envs {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd
    }

    fn run_with(&self, args: &[&str], kubeconfig: &Path, envs: &[(&str, Option<&str>)]) -> Output {
        let out = self
            .command_with(args, kubeconfig, envs)
            .stdin(Stdio::null())
            .output()
            .expect("binary runs");
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
        out
    }

    /// kube-sim's kubeconfig as a JSON value, to change and write back
    /// (JSON is YAML, so kube reads it as written).
    fn kubeconfig_value(&self) -> Value {
        let text = std::fs::read_to_string(self.fed.kubeconfig_path()).unwrap();
        serde_saphyr::from_str(&text).unwrap()
    }

    fn write_kubeconfig(&self, name: &str, value: &Value) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, serde_json::to_string_pretty(value).unwrap()).unwrap();
        path
    }
}

fn error_lines(err: &str) -> Vec<&str> {
    err.lines().filter(|l| l.starts_with("error:")).collect()
}

/// No line of kube's own logging, and no cause said twice.
fn assert_clean_error(err: &str) {
    assert!(
        !err.contains("kube_client"),
        "a kube log line leaked:\n{err}"
    );
    assert!(!err.contains("ERROR "), "a log line leaked:\n{err}");
    let mut causes: Vec<&str> = err
        .lines()
        .skip_while(|l| *l != "Caused by:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(str::trim)
        .collect();
    let all = causes.len();
    causes.sort();
    causes.dedup();
    assert_eq!(causes.len(), all, "a cause is repeated:\n{err}");
}

#[test]
fn unreachable_cluster_is_one_error_line_naming_zone_and_context_once_then_causes() {
    let (env, config) = Env::with_config(Flavor::Gke, &ZONES);
    env.set_faults("us-west1-a", |f| f.down = true);
    let out = env.apply(&config, &["-q"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    let lines = error_lines(&err);
    assert_eq!(lines.len(), 1, "{err}");
    let line = lines[0];
    assert_eq!(
        line.matches("us-west1-a").count(),
        2,
        "zone and context once each: {err}"
    );
    assert!(
        line.contains("zone us-west1-a (context us-west1-a)"),
        "{err}"
    );
    assert!(line.contains("is not reachable"), "{err}");
    assert!(err.contains("\nCaused by:\n"), "{err}");
    assert!(err.contains("Connection refused"), "{err}");
    assert_eq!(err.matches("Connection refused").count(), 1, "{err}");
    assert!(err.contains("\nhint: "), "{err}");
    assert_clean_error(&err);
}

#[test]
fn api_server_answering_503_to_everything_fails_preflight_in_bounded_time_naming_zone_and_status() {
    let (env, config) = Env::with_config(Flavor::Gke, &TWO);
    env.set_faults("us-west1-a", |f| {
        f.error_rate = 1.0;
        f.error_code = 503;
    });
    let out = env.apply(&config, &["--preflight-timeout", "3s"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    let lines = error_lines(&err);
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("zone us-west1-a (context us-west1-a)")
            && lines[0].contains("within 3s")
            && lines[0].contains("last answered 503 Service Unavailable"),
        "{err}"
    );
    assert_clean_error(&err);
    assert!(
        env.fed
            .cluster("us-west1-a")
            .requests()
            .iter()
            .filter(|r| r.status == 503)
            .count()
            > 1,
        "kube's retry policy retried the 503s"
    );
    assert_eq!(changing_writes(&env), Vec::<String>::new());

    // kube's own log lines are there for who asks.
    let out = env.apply(&config, &["--preflight-timeout", "1s", "-v"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("kube_client"), "{}", stderr(&out));

    // 429 too, and every zone is named with what its server last said.
    env.set_faults("us-east1-b", |f| {
        f.error_rate = 1.0;
        f.error_code = 429;
    });
    let out = env.apply(&config, &["--preflight-timeout", "2s", "-q"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.starts_with("error: pre-flight failed in 2 zone(s)"),
        "{err}"
    );
    for (zone, status) in [
        ("us-east1-b", "429 Too Many Requests"),
        ("us-west1-a", "503 Service Unavailable"),
    ] {
        assert!(
            err.lines()
                .any(|l| l.starts_with(&format!("  {zone} (context {zone}): "))
                    && l.contains(&format!("last answered {status}"))),
            "{zone}: {err}"
        );
    }
    assert_clean_error(&err);
}

#[test]
fn a_500_on_version_is_reported_as_a_server_error_not_as_unreachable() {
    let (env, config) = Env::with_config(Flavor::Gke, &TWO);
    env.set_faults("us-east1-b", |f| {
        f.error_rate = 1.0;
        f.error_code = 500;
    });
    let out = env.apply(&config, &[]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    let lines = error_lines(&err);
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("zone us-east1-b (context us-east1-b)")
            && lines[0].contains("answered GET /version with 500 Internal Server Error"),
        "{err}"
    );
    assert!(!err.contains("not reachable"), "{err}");
    assert_clean_error(&err);
}

#[test]
fn a_context_that_is_not_in_the_kubeconfig_gets_a_did_you_mean() {
    let env = Env::start(Flavor::Gke, &TWO, |b| b);
    let config = env.path("config.toml");
    std::fs::write(
        &config,
        "[[zones]]\nname = \"us-east1-b\"\ncontext = \"us-east1-b\"\nregion = \"us-east1\"\n\n\
         [[zones]]\nname = \"us-west1-a\"\ncontext = \"us-wset1-a\"\nregion = \"us-west1\"\n",
    )
    .unwrap();
    let out = env.apply(&config, &["-q"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    let lines = error_lines(&err);
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("zone us-west1-a (context us-wset1-a)")
            && lines[0].contains("(did you mean \"us-west1-a\"?)"),
        "{err}"
    );
    assert_eq!(err.matches("us-wset1-a").count(), 1, "{err}");
    assert!(err.contains("\nhint: "), "{err}");
    assert_eq!(changing_writes(&env), Vec::<String>::new());
}

/// Makes `context`'s user authenticate through an exec credential plugin:
/// `/bin/sh -c SCRIPT`, where `$CREDENTIAL` in the script is the
/// ExecCredential that carries the user's token.
fn exec_plugin(kubeconfig: &mut Value, context: &str, script: &str) {
    let users = kubeconfig["users"].as_array_mut().unwrap();
    let user = users.iter_mut().find(|u| u["name"] == context).unwrap();
    let token = user["user"]["token"].as_str().unwrap().to_string();
    let credential = json!({
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {"token": token},
    });
    user["user"] = json!({"exec": {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": "/bin/sh",
        "args": ["-c", script],
        "env": [{"name": "CREDENTIAL", "value": credential.to_string()}],
    }});
}

/// Kills the plugin process that wrote its pid to `pid_file` (it was
/// started by the binary, which no longer waits for it).
struct PluginPid(PathBuf);

impl Drop for PluginPid {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0)
            && let Ok(pid) = pid.trim().parse::<i32>()
        {
            // SAFETY: signalling a process this test's plugin script started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

#[test]
fn exec_plugins_of_all_zones_run_at_the_same_time() {
    let (env, config) = Env::with_config(Flavor::Gke, &TWO);
    let dir = env.dir.path().display().to_string();
    let mut kc = env.kubeconfig_value();
    // Each plugin waits (bounded) until the other one has started: run one
    // after the other, the first gives up and fails.
    for (me, other) in [("us-east1-b", "us-west1-a"), ("us-west1-a", "us-east1-b")] {
        exec_plugin(
            &mut kc,
            me,
            &format!(
                "touch '{dir}/{me}.started'; i=0; \
                 while [ ! -e '{dir}/{other}.started' ]; do \
                   i=$((i+1)); if [ $i -gt 100 ]; then echo 'the other plugin never started' >&2; exit 1; fi; \
                   sleep 0.1; \
                 done; printf '%s' \"$CREDENTIAL\""
            ),
        );
    }
    let kubeconfig = env.write_kubeconfig("exec.kubeconfig", &kc);
    let out = env.run_with(&["diff", config.to_str().unwrap()], &kubeconfig, &[]);
    assert_exit(&out, 1);
    assert!(env.path("us-east1-b.started").exists());
    assert!(env.path("us-west1-a.started").exists());
}

#[test]
fn a_failing_exec_plugin_s_own_message_is_in_the_error_once() {
    let (env, config) = Env::with_config(Flavor::Gke, &TWO);
    let mut kc = env.kubeconfig_value();
    exec_plugin(
        &mut kc,
        "us-west1-a",
        "echo 'error: the SSO session has expired; run aws sso login' >&2; exit 3",
    );
    let kubeconfig = env.write_kubeconfig("exec.kubeconfig", &kc);
    let out = env.run_with(&["apply", config.to_str().unwrap(), "-q"], &kubeconfig, &[]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    let lines = error_lines(&err);
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("zone us-west1-a (context us-west1-a)")
            && lines[0].contains("credential plugin \"/bin/sh\" failed (exit status: 3)"),
        "{err}"
    );
    assert_eq!(
        err.matches("the SSO session has expired; run aws sso login")
            .count(),
        1,
        "{err}"
    );
    assert!(
        err.contains("\nCaused by:\n    error: the SSO session"),
        "{err}"
    );
    assert_clean_error(&err);
    assert_eq!(changing_writes(&env), Vec::<String>::new());
}

/// Whether the plugin that wrote `pid_file` has ended (waits, bounded): the
/// binary ends the plugins it gave up on.
fn plugin_ended(pid_file: &Path) -> bool {
    let pid = std::fs::read_to_string(pid_file).unwrap();
    let stat = format!("/proc/{}/stat", pid.trim());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Gone, or a zombie waiting for init to reap it.
        match std::fs::read_to_string(&stat) {
            Err(_) => return true,
            Ok(s)
                if s.rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')) =>
            {
                return true;
            }
            Ok(_) if Instant::now() > deadline => return false,
            Ok(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// A plugin for `us-west1-a` that never returns (it writes its pid first).
fn hanging_plugin(env: &Env) -> (PathBuf, PluginPid) {
    let pid_file = env.path("plugin.pid");
    let mut kc = env.kubeconfig_value();
    exec_plugin(
        &mut kc,
        "us-west1-a",
        &format!("echo $$ > '{}'; exec sleep 120", pid_file.display()),
    );
    (
        env.write_kubeconfig("exec.kubeconfig", &kc),
        PluginPid(pid_file),
    )
}

#[test]
fn an_exec_plugin_that_never_returns_is_bounded_by_timeout() {
    let (env, config) = Env::with_config(Flavor::Gke, &TWO);
    let (kubeconfig, plugin) = hanging_plugin(&env);
    let mut child = env
        .command_with(
            &["apply", config.to_str().unwrap(), "--timeout", "3s"],
            &kubeconfig,
            &[],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_bounded(&mut child, Duration::from_secs(60), "apply --timeout 3s");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("error: gave up after --timeout 3s"), "{err}");
    assert!(plugin_ended(&plugin.0), "the plugin was left running");
    assert_eq!(changing_writes(&env), Vec::<String>::new());
}

/// Starts `apply` with a plugin that never returns, sends `signal` once the
/// plugin runs, and returns the exit status and stderr; the plugin must
/// have been ended.
fn signal_while_a_plugin_hangs(signal: i32) -> (ExitStatus, String) {
    let (env, config) = Env::with_config(Flavor::Gke, &TWO);
    let (kubeconfig, plugin) = hanging_plugin(&env);
    let mut child = env
        .command_with(&["apply", config.to_str().unwrap()], &kubeconfig, &[])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !plugin.0.exists() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the plugin never started");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    let status = wait_bounded(&mut child, Duration::from_secs(30), "apply after a signal");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(plugin_ended(&plugin.0), "the plugin was left running");
    (status, err)
}

#[test]
fn an_exec_plugin_that_never_returns_is_stopped_by_ctrl_c() {
    let (status, err) = signal_while_a_plugin_hangs(libc::SIGINT);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("error: interrupted"), "{err}");
}

#[test]
fn sigterm_stops_apply_with_exit_2_as_documented() {
    let (status, err) = signal_while_a_plugin_hangs(libc::SIGTERM);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("error: terminated (SIGTERM)"), "{err}");
}

/// A CONNECT proxy on loopback that records each tunnel's target and
/// forwards it to `127.0.0.1` on the target's port (whatever the host
/// name: it stands in for the DNS the proxy would use). Threads end when
/// the proxy is dropped or their connections close (bounded by a timeout).
struct ConnectProxy {
    addr: SocketAddr,
    targets: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ConnectProxy {
    fn start() -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let targets = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (targets, stop) = (targets.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let targets = targets.clone();
                    std::thread::spawn(move || tunnel(stream, &targets));
                }
            })
        };
        ConnectProxy {
            addr,
            targets,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn targets(&self) -> Vec<String> {
        let mut t = self.targets.lock().unwrap().clone();
        t.sort();
        t.dedup();
        t
    }

    /// How many tunnels were opened (one per connection through the proxy).
    fn tunnels(&self) -> usize {
        self.targets.lock().unwrap().len()
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn tunnel(mut client: TcpStream, targets: &Mutex<Vec<String>>) {
    let limit = Some(Duration::from_secs(60));
    let _ = client.set_read_timeout(limit);
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut words = head.split_whitespace();
    let (Some("CONNECT"), Some(target)) = (words.next(), words.next()) else {
        let _ = client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n");
        return;
    };
    targets.lock().unwrap().push(target.to_string());
    let Some(port) = target
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
    else {
        let _ = client.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        return;
    };
    let Ok(upstream) = TcpStream::connect(("127.0.0.1", port)) else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n");
        return;
    };
    let _ = upstream.set_read_timeout(limit);
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .is_err()
    {
        return;
    }
    let (mut c2, mut u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut u2);
        let _ = u2.shutdown(std::net::Shutdown::Write);
    });
    let (mut u, mut c) = (upstream, client);
    let _ = std::io::copy(&mut u, &mut c);
    let _ = c.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
}

fn server_ports(kubeconfig: &Value) -> Vec<u16> {
    kubeconfig["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let server = c["cluster"]["server"].as_str().unwrap();
            server.rsplit_once(':').unwrap().1.parse().unwrap()
        })
        .collect()
}

#[test]
fn https_proxy_tunnels_to_remote_servers_while_loopback_and_no_proxy_go_direct() {
    let (env, config) = Env::with_config(Flavor::Gke, &TWO);
    let proxy = ConnectProxy::start();
    let diff = ["diff", config.to_str().unwrap(), "-q"];

    // Loopback servers are never proxied (as kubectl): a proxy in the
    // environment must not break them.
    let out = env.run_with(
        &diff,
        env.fed.kubeconfig_path(),
        &[("HTTPS_PROXY", Some(&proxy.url()))],
    );
    assert_exit(&out, 1);
    assert_eq!(proxy.targets(), Vec::<String>::new());

    // A server by name (`.invalid` never resolves: only the proxy can reach
    // it) goes through the proxy; the certificate is checked for localhost.
    let mut kc = env.kubeconfig_value();
    let ports = server_ports(&kc);
    for c in kc["clusters"].as_array_mut().unwrap() {
        let server = c["cluster"]["server"]
            .as_str()
            .unwrap()
            .replace("127.0.0.1", "kube-sim.invalid");
        c["cluster"]["server"] = json!(server);
        c["cluster"]["tls-server-name"] = json!("localhost");
    }
    let remote = env.write_kubeconfig("remote.kubeconfig", &kc);
    let out = env.run_with(&diff, &remote, &[("https_proxy", Some(&proxy.url()))]);
    assert_exit(&out, 1);
    let mut expected: Vec<String> = ports
        .iter()
        .map(|p| format!("kube-sim.invalid:{p}"))
        .collect();
    expected.sort();
    assert_eq!(proxy.targets(), expected);
    // NO_PROXY entries are matched as Go's httpproxy does (unit tests in
    // src/connect.rs); here through the binary, on servers at 0.0.0.0,
    // which is not loopback to the proxy rules but which Linux connects to
    // on this machine, so no packet leaves it either way.
    let mut kc = env.kubeconfig_value();
    for c in kc["clusters"].as_array_mut().unwrap() {
        let server = c["cluster"]["server"]
            .as_str()
            .unwrap()
            .replace("127.0.0.1", "0.0.0.0");
        c["cluster"]["server"] = json!(server);
        c["cluster"]["tls-server-name"] = json!("localhost");
    }
    let any = env.write_kubeconfig("any.kubeconfig", &kc);
    let direct = ConnectProxy::start();
    let out = env.run_with(
        &diff,
        &any,
        &[
            ("HTTPS_PROXY", Some(&direct.url())),
            ("NO_PROXY", Some("example.com,,0.0.0.0/8")),
        ],
    );
    assert_exit(&out, 1);
    assert_eq!(direct.targets(), Vec::<String>::new(), "NO_PROXY matched");
    let out = env.run_with(
        &diff,
        &any,
        &[
            ("HTTPS_PROXY", Some(&direct.url())),
            ("no_proxy", Some("example.com")),
        ],
    );
    assert_exit(&out, 1);
    let mut expected: Vec<String> = ports.iter().map(|p| format!("0.0.0.0:{p}")).collect();
    expected.sort();
    assert_eq!(direct.targets(), expected, "NO_PROXY did not match");
}

#[test]
fn kubeconfig_proxy_url_is_used_even_for_loopback_servers() {
    let (env, config) = Env::with_config(Flavor::Gke, &TWO);
    let proxy = ConnectProxy::start();
    let mut kc = env.kubeconfig_value();
    let ports = server_ports(&kc);
    for c in kc["clusters"].as_array_mut().unwrap() {
        c["cluster"]["proxy-url"] = json!(proxy.url());
    }
    let kubeconfig = env.write_kubeconfig("proxied.kubeconfig", &kc);
    let out = env.run_with(
        &["diff", config.to_str().unwrap(), "-q"],
        &kubeconfig,
        &[("NO_PROXY", Some("*"))],
    );
    assert_exit(&out, 1);
    let mut expected: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    expected.sort();
    assert_eq!(proxy.targets(), expected);
    // HTTP/2 inside the tunnel: one tunnel per cluster carries every request.
    assert_eq!(proxy.tunnels(), expected.len(), "one tunnel per cluster");
    for c in env.fed.clusters() {
        let log = c.requests();
        assert!(
            !log.is_empty() && log.iter().all(|r| r.protocol == "HTTP/2"),
            "{}: {log:?}",
            c.zone()
        );
    }
}

/// The client `connect()` builds speaks HTTP/2 to a server that offers it:
/// a round of concurrent requests shares one TCP/TLS connection, and the
/// next round reuses it (kube's default client, HTTP/1.1 only, opens one
/// connection per request in flight).
#[tokio::test]
async fn concurrent_requests_of_a_zone_share_one_http2_connection() {
    use crdb_multiregion::k8s::connect::{connect, load_kubeconfig};
    use k8s_openapi::api::core::v1::Namespace;

    let fed = kube_sim::Federation::builder()
        .zones(["us-east1-b"])
        .flavor(Flavor::Gke)
        // Long enough that the requests of a round are in flight together.
        .latency(Duration::from_millis(100))
        .start()
        .unwrap();
    let c = fed.cluster("us-east1-b");
    let kubeconfig = load_kubeconfig(Some(fed.kubeconfig_path())).unwrap();
    let conn = connect(&kubeconfig, "us-east1-b").await.unwrap();
    let api: kube::Api<Namespace> = kube::Api::all(conn.client.clone());
    for round in 0..2 {
        let gets = (0..20).map(|_| api.get("kube-system"));
        for got in futures::future::join_all(gets).await {
            got.unwrap();
        }
        assert_eq!(c.connections(), 1, "round {round}: connections opened");
    }
    let log = c.requests();
    assert_eq!(log.len(), 40);
    assert!(
        log.iter()
            .all(|r| r.protocol == "HTTP/2" && r.connection == 1),
        "{log:?}"
    );
}

/// A server that does not offer HTTP/2 gets HTTP/1.1, and the concurrent
/// requests of a round still run side by side, on connections of their own
/// (those that waited for the first connection's ALPN answer open theirs).
#[tokio::test]
async fn a_server_without_http2_gets_http1_with_requests_side_by_side() {
    use crdb_multiregion::k8s::connect::{connect, load_kubeconfig};
    use k8s_openapi::api::core::v1::Namespace;

    let fed = kube_sim::Federation::builder()
        .zones(["us-east1-b"])
        .flavor(Flavor::Gke)
        .faults(faults(|f| {
            f.latency = Duration::from_millis(100);
            f.disable_http2 = true;
        }))
        .start()
        .unwrap();
    let c = fed.cluster("us-east1-b");
    let kubeconfig = load_kubeconfig(Some(fed.kubeconfig_path())).unwrap();
    let conn = connect(&kubeconfig, "us-east1-b").await.unwrap();
    let api: kube::Api<Namespace> = kube::Api::all(conn.client.clone());
    let gets = (0..10).map(|_| api.get("kube-system"));
    for got in futures::future::join_all(gets).await {
        got.unwrap();
    }
    let log = c.requests();
    assert_eq!(log.len(), 10);
    assert!(log.iter().all(|r| r.protocol == "HTTP/1.1"), "{log:?}");
    let connections: std::collections::BTreeSet<u64> = log.iter().map(|r| r.connection).collect();
    assert!(connections.len() > 1, "{log:?}");
}
