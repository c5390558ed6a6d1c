//! Connecting to one zone's cluster through the user's kubeconfig.
//!
//! Owns: finding and reading the kubeconfig (every error names the path),
//! choosing the zone's context (with a did-you-mean), the proxy as kubectl
//! chooses it, running exec credential plugins off the async threads (so
//! zones connect concurrently and `--timeout` and Ctrl-C stay in charge),
//! and the client's layers: kube's retry policy for 429/503/504 around a
//! record of what the server answered to each attempt, for error messages.
//! The HTTP stack under them (HTTP/2 by ALPN, one connection per cluster
//! for concurrent requests) is [`transport`]'s.
//!
//! Must not: call the API (pre-flight in [`super::preflight`] does), print, or decide
//! what a failure means for a command.

use std::error::Error as StdError;
use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use kube::Client;
use kube::client::retry::RetryPolicy;
use kube::config::{ExecInteractiveMode, KubeConfigOptions, Kubeconfig};

mod transport;

/// Where the kubeconfig path came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeconfigSource {
    /// `--kubeconfig`.
    Flag,
    /// `$HOME/.kube/config`, as `KUBECONFIG` is not set.
    Default,
}

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("kubeconfig {} does not exist{}", .path.display(), match .from {
        KubeconfigSource::Flag => " (given with --kubeconfig)",
        KubeconfigSource::Default => " (the default path, as KUBECONFIG is not set)",
    })]
    Missing {
        path: PathBuf,
        from: KubeconfigSource,
    },
    #[error("none of the kubeconfig files listed in KUBECONFIG exists: {}", list_paths(.paths))]
    NoneInEnv { paths: Vec<PathBuf> },
    #[error("no kubeconfig: KUBECONFIG is not set and there is no home directory")]
    NoHome,
    #[error("could not read kubeconfig {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
}

impl KubeconfigError {
    /// What to do about it.
    pub fn hint(&self) -> String {
        match self {
            KubeconfigError::Missing {
                from: KubeconfigSource::Flag,
                ..
            } => "pass the path of an existing kubeconfig to --kubeconfig".into(),
            KubeconfigError::Missing { .. } | KubeconfigError::NoHome => {
                "pass --kubeconfig PATH or set KUBECONFIG; your cloud's CLI writes one (gcloud container clusters get-credentials, aws eks update-kubeconfig, az aks get-credentials)".into()
            }
            KubeconfigError::NoneInEnv { .. } => {
                "fix KUBECONFIG (paths separated by ':') or pass --kubeconfig PATH".into()
            }
            KubeconfigError::Read { .. } => {
                "check that `kubectl config view` can read it".into()
            }
        }
    }
}

fn list_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The kubeconfig: `--kubeconfig`, else `KUBECONFIG` (several paths, merged
/// in order; missing ones are skipped as kubectl does), else
/// `~/.kube/config`.
pub fn load_kubeconfig(path: Option<&Path>) -> Result<Kubeconfig, KubeconfigError> {
    let (paths, from) = match path {
        Some(p) => (vec![p.to_path_buf()], Some(KubeconfigSource::Flag)),
        None => match std::env::var_os("KUBECONFIG") {
            Some(v) if std::env::split_paths(&v).any(|p| !p.as_os_str().is_empty()) => (
                std::env::split_paths(&v)
                    .filter(|p| !p.as_os_str().is_empty())
                    .collect(),
                None,
            ),
            _ => (
                vec![
                    std::env::home_dir()
                        .ok_or(KubeconfigError::NoHome)?
                        .join(".kube")
                        .join("config"),
                ],
                Some(KubeconfigSource::Default),
            ),
        },
    };
    let existing: Vec<&PathBuf> = paths.iter().filter(|p| p.exists()).collect();
    if existing.is_empty() {
        return Err(match from {
            Some(from) => KubeconfigError::Missing {
                path: paths[0].clone(),
                from,
            },
            None => KubeconfigError::NoneInEnv { paths },
        });
    }
    let mut merged: Option<Kubeconfig> = None;
    for p in existing {
        let read = Kubeconfig::read_from(p).map_err(|e| KubeconfigError::Read {
            path: p.clone(),
            // kube's ReadConfig repeats the path; its io::Error says the rest.
            source: match e {
                kube::config::KubeconfigError::ReadConfig(io, _) => Box::new(io),
                other => Box::new(other),
            },
        })?;
        merged = Some(match merged {
            None => read,
            Some(m) => m.merge(read).map_err(|e| KubeconfigError::Read {
                path: p.clone(),
                source: Box::new(e),
            })?,
        });
    }
    Ok(merged.unwrap_or_default())
}

/// Why a zone's client could not be built. Messages name neither zone nor
/// context: whoever reports it adds them once.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("the context is not in the kubeconfig{}; contexts there: {}",
        .suggestion.as_ref().map(|s| format!(" (did you mean {s:?}?)")).unwrap_or_default(),
        if .available.is_empty() { "none".to_string() } else { .available.join(", ") })]
    NoContext {
        context: String,
        suggestion: Option<String>,
        available: Vec<String>,
    },
    #[error("could not start the credential plugin {command:?}")]
    PluginStart {
        command: String,
        install_hint: Option<String>,
        #[source]
        source: std::io::Error,
    },
    #[error("the credential plugin {command:?} failed ({status})")]
    PluginFailed {
        command: String,
        status: String,
        #[source]
        output: PluginOutput,
    },
    #[error("the credential plugin {command:?} gave no usable credentials")]
    PluginOther {
        command: String,
        #[source]
        source: kube::client::AuthError,
    },
    #[error("invalid proxy URL {url:?} (from {from})")]
    Proxy { url: String, from: &'static str },
    #[error("could not use the kubeconfig's settings for this context")]
    Config {
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("could not build a client")]
    Client {
        #[source]
        source: kube::Error,
    },
}

impl ConnectError {
    /// What to do about it.
    pub fn hint(&self, context: &str) -> String {
        match self {
            ConnectError::NoContext { .. } => {
                "set the zone's `context` in the config to a name from `kubectl config get-contexts -o name`".into()
            }
            ConnectError::PluginStart { install_hint, .. } => install_hint
                .clone()
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|| {
                    "install the plugin or fix `command` of the user's `exec` in the kubeconfig"
                        .into()
                }),
            ConnectError::PluginFailed { .. } | ConnectError::PluginOther { .. } => format!(
                "run `kubectl --context {context} get ns` to see the plugin's own advice (often: log in again)"
            ),
            ConnectError::Proxy { .. } => {
                "use http://HOST:PORT (or https://) in proxy-url or HTTPS_PROXY".into()
            }
            ConnectError::Config { .. } | ConnectError::Client { .. } => format!(
                "check that `kubectl --context {context} get ns` works with the same kubeconfig and environment (HTTPS_PROXY, NO_PROXY)"
            ),
        }
    }
}

/// A credential plugin's stderr, as its own error so it reads as the cause.
#[derive(Debug)]
pub struct PluginOutput(pub String);

impl std::fmt::Display for PluginOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.trim().is_empty() {
            f.write_str("it wrote nothing on stderr")
        } else {
            f.write_str(self.0.trim())
        }
    }
}

impl StdError for PluginOutput {}

/// A connected client and what it has seen.
pub struct Connection {
    pub client: Client,
    /// The API server URL of the context.
    pub server: String,
    pub seen: LastSeen,
}

/// What the server last answered (or how the last attempt failed), over
/// every attempt including those kube's retry layer made.
#[derive(Debug, Clone, Default)]
pub struct LastSeen(Arc<Mutex<Seen>>);

#[derive(Debug, Default)]
struct Seen {
    last: Option<String>,
    attempts: u32,
}

impl LastSeen {
    fn record(&self, what: String) {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        seen.last = Some(what);
        seen.attempts += 1;
    }

    /// E.g. `503 Service Unavailable (3 attempts)`; `None` before any answer.
    pub fn describe(&self) -> Option<String> {
        let seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        seen.last.as_ref().map(|l| {
            format!(
                "{l} ({} attempt{})",
                seen.attempts,
                if seen.attempts == 1 { "" } else { "s" }
            )
        })
    }
}

/// Builds the client of `context`. The exec credential plugin (if any) runs
/// on a blocking thread, so several zones' plugins run at once and a
/// plugin that never returns does not hold up the caller's timeout.
pub async fn connect(kubeconfig: &Kubeconfig, context: &str) -> Result<Connection, ConnectError> {
    let Some(named) = kubeconfig.contexts.iter().find(|c| c.name == context) else {
        let available: Vec<String> = kubeconfig.contexts.iter().map(|c| c.name.clone()).collect();
        return Err(ConnectError::NoContext {
            context: context.to_string(),
            suggestion: crate::suggest::did_you_mean(context, &available),
            available,
        });
    };
    let ctx = named.context.clone().unwrap_or_default();
    let mut kubeconfig = kubeconfig.clone();
    // client-go's `IfAvailable` (and an unset mode) is interactive only when
    // stdin is a terminal; kube treats it as always interactive, which hands
    // the plugin our stderr and loses its message. `Never` captures it.
    let mut plugin: Option<(String, Option<String>)> = None;
    let user = ctx.user.clone().unwrap_or_default();
    for auth in kubeconfig.auth_infos.iter_mut().filter(|a| a.name == user) {
        if let Some(exec) = auth.auth_info.as_mut().and_then(|i| i.exec.as_mut()) {
            if exec.interactive_mode != Some(ExecInteractiveMode::Always)
                && !std::io::IsTerminal::is_terminal(&std::io::stdin())
            {
                exec.interactive_mode = Some(ExecInteractiveMode::Never);
            }
            plugin = Some((
                exec.command.clone().unwrap_or_default(),
                exec.install_hint.clone(),
            ));
        }
    }
    let cluster_proxy = kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == ctx.cluster)
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.proxy_url.clone());
    let options = KubeConfigOptions {
        context: Some(context.to_string()),
        ..KubeConfigOptions::default()
    };
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|source| ConnectError::Config { source })?;
    let server = config.cluster_url.to_string();
    let server = server.trim_end_matches('/').to_string();
    config.proxy_url = proxy_for(&config.cluster_url, cluster_proxy.as_deref(), &|k| {
        std::env::var(k).ok()
    })?;
    config.connect_timeout = Some(std::time::Duration::from_secs(10));
    config.read_timeout = Some(std::time::Duration::from_secs(60));
    // Retries are added outside the recorder below, with kube's own policy.
    config.default_retry = false;

    let seen = LastSeen::default();
    let recorder = seen.clone();
    let built = tokio::task::spawn_blocking(move || {
        transport::client_builder(config).map(|b| {
            b.with_layer(&RecordLayer(recorder))
                .with_layer(&tower::buffer::BufferLayer::new(1024))
                .with_layer(&tower::retry::RetryLayer::new(RetryPolicy::server_retry()))
                .build()
        })
    })
    .await;
    let client = match built {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => return Err(client_error(e, plugin)),
        Err(join) => {
            return Err(ConnectError::Client {
                source: kube::Error::Service(Box::new(join)),
            });
        }
    };
    Ok(Connection {
        client,
        server,
        seen,
    })
}

fn client_error(e: kube::Error, plugin: Option<(String, Option<String>)>) -> ConnectError {
    use kube::client::AuthError;
    let (command, install_hint) = plugin.unwrap_or_default();
    match e {
        kube::Error::Auth(AuthError::AuthExecStart(source)) => ConnectError::PluginStart {
            command,
            install_hint,
            source,
        },
        kube::Error::Auth(AuthError::AuthExecRun { out, .. }) => ConnectError::PluginFailed {
            command,
            status: out.status.to_string(),
            output: PluginOutput(tail(&String::from_utf8_lossy(&out.stderr), 20)),
        },
        kube::Error::Auth(
            source @ (AuthError::AuthExecParse(_)
            | AuthError::ExecPluginFailed
            | AuthError::AuthExec(_)
            | AuthError::MalformedTokenExpirationDate(_)),
        ) if !command.is_empty() => ConnectError::PluginOther { command, source },
        other => ConnectError::Client { source: other },
    }
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The proxy for `server`, as kubectl (client-go) picks it: the cluster's
/// `proxy-url` when set; otherwise `HTTPS_PROXY`/`https_proxy` for an https
/// server (`HTTP_PROXY`/`http_proxy` for http), except for `localhost`,
/// loopback addresses and hosts matched by `NO_PROXY`/`no_proxy` (Go's
/// `golang.org/x/net/http/httpproxy`: `*`, IPs, CIDRs, domains with or
/// without a leading `.` or `*.`, optional `:port`; empty entries ignored).
pub fn proxy_for(
    server: &http::Uri,
    kubeconfig_proxy: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<http::Uri>, ConnectError> {
    let nonempty = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    let parse = |url: &str, from: &'static str| {
        let url = url.trim();
        let with_scheme = if url.contains("://") {
            url.to_string()
        } else {
            format!("http://{url}")
        };
        with_scheme
            .parse::<http::Uri>()
            .ok()
            .filter(|u| u.host().is_some())
            .ok_or(ConnectError::Proxy {
                url: url.to_string(),
                from,
            })
    };
    if let Some(p) = kubeconfig_proxy.filter(|p| !p.trim().is_empty()) {
        return parse(p, "the kubeconfig's proxy-url").map(Some);
    }
    let https = server.scheme_str() != Some("http");
    let (proxy, from) = if https {
        match nonempty("HTTPS_PROXY").or_else(|| nonempty("https_proxy")) {
            Some(p) => (p, "HTTPS_PROXY"),
            None => return Ok(None),
        }
    } else {
        match nonempty("HTTP_PROXY").or_else(|| nonempty("http_proxy")) {
            Some(p) => (p, "HTTP_PROXY"),
            None => return Ok(None),
        }
    };
    let host = server
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let port = server.port_u16().unwrap_or(if https { 443 } else { 80 });
    let no_proxy = nonempty("NO_PROXY")
        .or_else(|| nonempty("no_proxy"))
        .unwrap_or_default();
    if bypasses_proxy(&host, port, &no_proxy) {
        return Ok(None);
    }
    parse(&proxy, from).map(Some)
}

/// `NO_PROXY` as Go reads it, written so that kube's stricter parser reads
/// it the same: empty entries dropped, `*.example.com` as `.example.com`,
/// and `*` among other entries as `*` alone. kube refuses the whole list
/// on an empty entry (a trailing comma is common), and it parses `NO_PROXY`
/// whenever a proxy is set, before this module chooses the proxy itself.
pub fn normalized_no_proxy(value: &str) -> String {
    let entries: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| {
            e.strip_prefix('*')
                .filter(|r| r.starts_with('.'))
                .unwrap_or(e)
        })
        .collect();
    if entries.contains(&"*") {
        return "*".to_string();
    }
    entries.join(",")
}

/// Go's `useProxy`, negated: whether `host:port` is reached directly.
fn bypasses_proxy(host: &str, port: u16, no_proxy: &str) -> bool {
    let ip = host.parse::<IpAddr>().ok();
    if host == "localhost" || ip.is_some_and(|ip| ip.is_loopback()) {
        return true;
    }
    if no_proxy.trim() == "*" {
        return true;
    }
    for entry in no_proxy.split(',') {
        let entry = entry.trim().to_ascii_lowercase();
        if entry.is_empty() {
            continue;
        }
        if entry == "*" {
            return true;
        }
        if let Ok(net) = entry.parse::<ipnet::IpNet>() {
            if ip.is_some_and(|ip| net.contains(&ip)) {
                return true;
            }
            continue;
        }
        if let Ok(e) = entry
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            if ip == Some(e) {
                return true;
            }
            continue;
        }
        let (name, entry_port) = match entry.rsplit_once(':') {
            Some((n, p)) if !n.contains(':') => match p.parse::<u16>() {
                Ok(p) => (n.to_string(), Some(p)),
                Err(_) => (entry.clone(), None),
            },
            _ => (entry.clone(), None),
        };
        if entry_port.is_some_and(|p| p != port) {
            continue;
        }
        if let Ok(e) = name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            if ip == Some(e) {
                return true;
            }
            continue;
        }
        let name = name.strip_prefix('*').unwrap_or(&name);
        let matched = if let Some(suffix) = name.strip_prefix('.') {
            host.ends_with(&format!(".{suffix}"))
        } else {
            host == name || host.ends_with(&format!(".{name}"))
        };
        if matched {
            return true;
        }
    }
    false
}

/// Records each attempt's status (or transport error) into a [`LastSeen`].
#[derive(Clone)]
struct RecordLayer(LastSeen);

impl<S> tower::Layer<S> for RecordLayer {
    type Service = Record<S>;
    fn layer(&self, inner: S) -> Record<S> {
        Record {
            inner,
            seen: self.0.clone(),
        }
    }
}

#[derive(Clone)]
struct Record<S> {
    inner: S,
    seen: LastSeen,
}

type BoxError = Box<dyn StdError + Send + Sync>;

impl<S, Req, B> tower::Service<Req> for Record<S>
where
    S: tower::Service<Req, Response = http::Response<B>, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = http::Response<B>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<B>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let seen = self.seen.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let result = fut.await;
            match &result {
                Ok(response) => {
                    let s = response.status();
                    seen.record(format!(
                        "{} {}",
                        s.as_u16(),
                        s.canonical_reason().unwrap_or_default()
                    ));
                }
                Err(e) => seen.record(crate::output::one_line(e.as_ref())),
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    fn proxy(server: &str, kubeconfig: Option<&str>, vars: &[(&str, &str)]) -> Option<String> {
        proxy_for(&server.parse().unwrap(), kubeconfig, &env(vars))
            .unwrap()
            .map(|u| u.to_string())
    }

    #[test]
    fn https_proxy_applies_to_https_servers_only() {
        let vars = [("HTTPS_PROXY", "http://proxy:3128")];
        assert_eq!(
            proxy("https://api.example.com", None, &vars).as_deref(),
            Some("http://proxy:3128/")
        );
        assert_eq!(proxy("http://api.example.com", None, &vars), None);
        assert_eq!(
            proxy(
                "https://api.example.com",
                None,
                &[("https_proxy", "proxy:8080")]
            )
            .as_deref(),
            Some("http://proxy:8080/"),
            "lower case, and no scheme means http"
        );
        assert_eq!(
            proxy("https://api.example.com", None, &[("HTTPS_PROXY", "")]),
            None
        );
    }

    #[test]
    fn kubeconfig_proxy_url_wins_over_the_environment_and_no_proxy() {
        let vars = [("HTTPS_PROXY", "http://env:1"), ("NO_PROXY", "*")];
        assert_eq!(
            proxy("https://127.0.0.1:6443", Some("http://kc:2"), &vars).as_deref(),
            Some("http://kc:2/")
        );
    }

    #[test]
    fn loopback_and_no_proxy_entries_bypass_the_environment_proxy() {
        let p = |server: &str, no_proxy: &str| {
            proxy(
                server,
                None,
                &[("HTTPS_PROXY", "http://proxy:3128"), ("NO_PROXY", no_proxy)],
            )
            .is_none()
        };
        assert!(p("https://127.0.0.1:6443", ""));
        assert!(p("https://[::1]:6443", ""));
        assert!(p("https://localhost:6443", ""));
        assert!(p("https://api.example.com", "*"));
        assert!(p("https://api.example.com", "example.com"));
        assert!(p("https://example.com", "example.com"));
        assert!(p("https://api.example.com", ".example.com"));
        assert!(!p("https://example.com", ".example.com"));
        assert!(p("https://api.example.com", "*.example.com"));
        assert!(!p("https://notexample.com", "example.com"));
        assert!(p("https://10.1.2.3", "10.0.0.0/8"));
        assert!(!p("https://11.1.2.3", "10.0.0.0/8"));
        assert!(p("https://10.1.2.3:6443", "10.1.2.3"));
        assert!(p("https://api.example.com:6443", "api.example.com:6443"));
        assert!(!p("https://api.example.com:6443", "api.example.com:443"));
        assert!(p("https://API.Example.com", "other,, example.com ,"));
        assert!(!p("https://api.example.com", "other.com,"));
    }

    #[test]
    fn no_proxy_is_normalised_to_what_kube_can_parse_with_go_s_meaning() {
        assert_eq!(
            normalized_no_proxy(" localhost,127.0.0.1,, *.svc ,"),
            "localhost,127.0.0.1,.svc"
        );
        assert_eq!(normalized_no_proxy("a.com,*,b.com"), "*");
        assert_eq!(normalized_no_proxy(","), "");
        assert_eq!(normalized_no_proxy("10.0.0.0/8"), "10.0.0.0/8");
        for v in [
            " localhost,127.0.0.1,, *.svc ,",
            "a.com,*",
            "10.0.0.0/8,[::1]",
        ] {
            let n = normalized_no_proxy(v);
            for host in ["localhost", "x.svc", "a.com", "10.1.2.3"] {
                assert_eq!(
                    bypasses_proxy(host, 443, v),
                    bypasses_proxy(host, 443, &n),
                    "{v:?} -> {n:?} changes {host}"
                );
            }
        }
    }

    #[test]
    fn a_proxy_that_is_not_a_url_is_an_error_naming_its_source() {
        let e = proxy_for(
            &"https://api.example.com".parse().unwrap(),
            None,
            &env(&[("HTTPS_PROXY", "http://")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("HTTPS_PROXY"), "{e}");
    }
}
