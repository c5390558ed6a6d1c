//! The probe objects of `check` and the language they speak: the Kubernetes
//! objects created in each zone's namespace, the shell scripts the pods run,
//! the targets handed to them, and the parser of what they print.
//!
//! Pure: builds typed objects and strings, parses text. No client, no clock.
//! Every value that reaches a script is passed as a separate argument
//! (`sh -c SCRIPT NAME ARG...`), never pasted into the script text, and is
//! checked to be a plain token (zone name, IP address, DNS name or port)
//! before that.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ExecAction, Namespace, Pod, PodSecurityContext, PodSpec, Probe,
    ResourceRequirements, SeccompProfile, SecurityContext, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::config::{Config, Zone};
use crate::names;
use crate::plan::owned_labels;

/// Label on every probe object (and on a namespace `check` created).
pub const PROBE_KEY: &str = "crdb-multiregion/probe";
/// Label telling listener and prober pods apart; the Service selects listeners.
pub const ROLE_KEY: &str = "crdb-multiregion/probe-role";
pub const ROLE_LISTENER: &str = "listener";
pub const ROLE_PROBER: &str = "prober";
/// The headless Service publishing the (never ready) listener.
pub const SERVICE: &str = "crdb-check";
pub const LISTENER_POD: &str = "crdb-check-listener";
pub const PROBER_POD: &str = "crdb-check-prober";
/// The listener's hostname; with the Service as subdomain it is
/// `crdb-check-0.crdb-check.<ns>.svc.<domain>`, shaped like a CockroachDB
/// node's name (`cockroachdb-0.cockroachdb.<ns>...`).
pub const LISTENER_HOSTNAME: &str = "crdb-check-0";
pub const CONTAINER: &str = "probe";
/// Default probe image: one small public image with sh, nc and nslookup.
pub const DEFAULT_IMAGE: &str = "busybox:1.36";
/// Seconds `nc -w` waits for a TCP connection.
pub const CONNECT_TIMEOUT_SECS: u32 = 3;
/// Seconds one `nslookup` may take before it is killed.
pub const DNS_TIMEOUT_SECS: u32 = 5;
/// Version of the line format the prober prints (its `BEGIN` line).
pub const LINE_FORMAT: &str = "1";

/// `<ns>.svc.<domain>`'s probe names: the Service, and the per-pod name of the
/// not-ready listener.
pub fn probe_names(namespace: &str, cluster_domain: &str) -> [String; 2] {
    let domain = names::zone_domain(namespace, cluster_domain);
    [
        format!("{SERVICE}.{domain}"),
        format!("{LISTENER_HOSTNAME}.{SERVICE}.{domain}"),
    ]
}

/// Labels of every probe object of a zone: ours plus the probe label.
pub fn probe_labels(config: &Config, zone: &Zone) -> BTreeMap<String, String> {
    let mut labels = owned_labels(config, zone);
    labels.insert(PROBE_KEY.to_string(), "true".to_string());
    labels
}

/// Selects every probe object of the federation in a namespace.
pub fn probe_selector() -> String {
    format!("{PROBE_KEY}=true")
}

/// The zone's namespace, for when it does not exist yet.
pub fn namespace(config: &Config, zone: &Zone) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(zone.namespace.clone()),
            labels: Some(probe_labels(config, zone)),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

/// Headless Service selecting the listener, publishing it while not ready.
pub fn service(config: &Config, zone: &Zone, ports: &[u16]) -> Service {
    let mut selector = BTreeMap::new();
    selector.insert(ROLE_KEY.to_string(), ROLE_LISTENER.to_string());
    selector.insert(PROBE_KEY.to_string(), "true".to_string());
    Service {
        metadata: ObjectMeta {
            name: Some(SERVICE.to_string()),
            namespace: Some(zone.namespace.clone()),
            labels: Some(probe_labels(config, zone)),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_string()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector),
            ports: Some(
                ports
                    .iter()
                    .map(|p| ServicePort {
                        name: Some(format!("tcp-{p}")),
                        port: i32::from(*p),
                        protocol: Some("TCP".to_string()),
                        ..ServicePort::default()
                    })
                    .collect(),
            ),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The listener: `nc` servers on every checked port, deliberately never
/// ready (CockroachDB nodes must find each other before they are ready).
pub fn listener_pod(config: &Config, zone: &Zone, image: &str, ports: &[u16]) -> Pod {
    let mut command = vec![
        "sh".to_string(),
        "-c".to_string(),
        LISTENER_SCRIPT.to_string(),
        LISTENER_POD.to_string(),
    ];
    command.extend(ports.iter().map(u16::to_string));
    let mut pod = probe_pod(config, zone, LISTENER_POD, ROLE_LISTENER, image, command);
    if let Some(spec) = pod.spec.as_mut() {
        spec.hostname = Some(LISTENER_HOSTNAME.to_string());
        spec.subdomain = Some(SERVICE.to_string());
        if let Some(c) = spec.containers.first_mut() {
            c.readiness_probe = Some(Probe {
                exec: Some(ExecAction {
                    command: Some(vec!["false".to_string()]),
                }),
                period_seconds: Some(30),
                ..Probe::default()
            });
        }
    }
    pod
}

/// The prober, with its targets as arguments.
pub fn prober_pod(config: &Config, zone: &Zone, image: &str, targets: &ProberTargets) -> Pod {
    let mut command = vec![
        "sh".to_string(),
        "-c".to_string(),
        prober_script(),
        PROBER_POD.to_string(),
    ];
    command.extend(targets.args());
    probe_pod(config, zone, PROBER_POD, ROLE_PROBER, image, command)
}

fn probe_pod(
    config: &Config,
    zone: &Zone,
    name: &str,
    role: &str,
    image: &str,
    command: Vec<String>,
) -> Pod {
    let mut labels = probe_labels(config, zone);
    labels.insert(ROLE_KEY.to_string(), role.to_string());
    let quantity = |s: &str| Quantity(s.to_string());
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(zone.namespace.clone()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("Never".to_string()),
            termination_grace_period_seconds: Some(1),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            // Pass the `restricted` Pod Security Standard.
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(65534),
                run_as_group: Some(65534),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".to_string(),
                    ..SeccompProfile::default()
                }),
                ..PodSecurityContext::default()
            }),
            node_selector: Some(BTreeMap::from([(
                "kubernetes.io/os".to_string(),
                "linux".to_string(),
            )])),
            containers: vec![Container {
                name: CONTAINER.to_string(),
                image: Some(image.to_string()),
                image_pull_policy: Some("IfNotPresent".to_string()),
                command: Some(command),
                resources: Some(ResourceRequirements {
                    requests: Some(BTreeMap::from([
                        ("cpu".to_string(), quantity("10m")),
                        ("memory".to_string(), quantity("16Mi")),
                    ])),
                    limits: Some(BTreeMap::from([("memory".to_string(), quantity("64Mi"))])),
                    ..ResourceRequirements::default()
                }),
                security_context: Some(SecurityContext {
                    allow_privilege_escalation: Some(false),
                    read_only_root_filesystem: Some(true),
                    capabilities: Some(Capabilities {
                        drop: Some(vec!["ALL".to_string()]),
                        ..Capabilities::default()
                    }),
                    ..SecurityContext::default()
                }),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

/// `sh -c LISTENER_SCRIPT crdb-check-listener PORT...`: a persistent
/// `nc` server per port (`-ll -e PROG`) that accepts and closes at once.
pub const LISTENER_SCRIPT: &str = r#"for p in "$@"; do nc -ll -p "$p" -e true & done; wait"#;

/// `sh -c PROBER_SCRIPT crdb-check-prober tcp ZONE IP PORT ... dns ZONE NAME ...`.
///
/// Every probe runs in the background, so one round takes about as long as
/// the slowest probe (bounded by `nc -w` and `timeout`), whatever the number
/// of clusters. Prints one line per probe, then `DONE`:
///
/// ```text
/// BEGIN crdb-check 1
/// TCP <zone> <ip> <port> ok <ms>
/// TCP <zone> <ip> <port> fail <ms> <nc's message>
/// DNS <zone> <name> ok <ip>
/// DNS <zone> <name> fail <reason>
/// DONE
/// ```
///
/// or `ERROR <message>` and exit code 3 when a tool it needs is missing.
///
/// Latency is measured with `/proc/uptime` (centiseconds: busybox `date` has
/// no `%N`), so it has a resolution of 10 ms. A refused connection is tried
/// once more after a second (the listener may still be binding); a
/// connection that times out is not.
pub fn prober_script() -> String {
    PROBER_SCRIPT
        .replace("@CONNECT@", &CONNECT_TIMEOUT_SECS.to_string())
        .replace("@DNS@", &DNS_TIMEOUT_SECS.to_string())
        .replace("@FORMAT@", LINE_FORMAT)
}

const PROBER_SCRIPT: &str = r#"set -u
# Milliseconds since boot in $T, without a subshell (no fork in the timing).
now() {
  read -r up _ </proc/uptime
  s=${up%.*}
  c=${up#*.}
  T=$((s * 1000 + ${c#0} * 10))
}
oneline() { tr -s '\r\n\t' '   ' | cut -c1-200; }
tcp() {
  for attempt in 1 2; do
    now; start=$T
    err=$( { nc -w @CONNECT@ "$2" "$3" </dev/null >/dev/null; } 2>&1 )
    rc=$?
    now; end=$T
    if [ "$rc" -eq 0 ]; then
      echo "TCP $1 $2 $3 ok $((end - start))"
      return
    fi
    case $err in
      *refused*) [ "$attempt" = 1 ] && sleep 1 && continue ;;
    esac
    break
  done
  echo "TCP $1 $2 $3 fail $((end - start)) $(printf '%s' "$err" | oneline)"
}
dns() {
  out=$(timeout @DNS@ nslookup -type=a "$2." 2>&1)
  rc=$?
  addr=$(printf '%s\n' "$out" | sed -n '/^Name:/,$s/^Address[^:]*:[[:space:]]*\([0-9A-Fa-f.:]*\).*/\1/p' | head -n 1)
  if [ -n "$addr" ]; then
    echo "DNS $1 $2 ok $addr"
  elif [ "$rc" -gt 128 ]; then
    echo "DNS $1 $2 fail timed out after @DNS@s"
  else
    echo "DNS $1 $2 fail $(printf '%s\n' "$out" | grep -v -e '^Server:' -e '^Address' -e '^$' | tail -n 1 | oneline)"
  fi
}
echo "BEGIN crdb-check @FORMAT@"
missing=""
for tool in nc nslookup timeout sed grep tr cut head tail sleep; do
  command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ]; then
  echo "ERROR the image lacks:$missing"
  exit 3
fi
while [ $# -gt 0 ]; do
  case $1 in
    tcp) tcp "$2" "$3" "$4" & shift 4 ;;
    dns) dns "$2" "$3" & shift 3 ;;
    *) echo "ERROR unexpected argument $1"; exit 2 ;;
  esac
done
wait
echo DONE
"#;

/// A TCP target of a prober: the listener of `zone` at `ip:port`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TcpTarget {
    pub zone: String,
    pub ip: IpAddr,
    pub port: u16,
}

/// A DNS target of a prober: one of `zone`'s probe names, expected to
/// resolve to that zone's listener.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DnsTarget {
    pub zone: String,
    pub name: String,
    pub expect: IpAddr,
    /// Whether the prober's cluster has a forwarding entry for the zone's
    /// domain (named in the failure when it has not).
    pub forwarded: bool,
}

/// What one prober probes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProberTargets {
    pub tcp: Vec<TcpTarget>,
    pub dns: Vec<DnsTarget>,
}

impl ProberTargets {
    /// The script's arguments. Panics on values that are not plain tokens:
    /// they come from the validated config and from pod IPs.
    pub fn args(&self) -> Vec<String> {
        let mut out = Vec::new();
        for t in &self.tcp {
            out.extend([
                "tcp".to_string(),
                token(&t.zone),
                t.ip.to_string(),
                t.port.to_string(),
            ]);
        }
        for t in &self.dns {
            out.extend(["dns".to_string(), token(&t.zone), token(&t.name)]);
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.tcp.is_empty() && self.dns.is_empty()
    }
}

/// Zone names and DNS names are DNS labels/subdomains (validated config);
/// this keeps it so for anything handed to a shell.
fn token(s: &str) -> String {
    assert!(
        is_token(s),
        "probe argument {s:?} is not a DNS name; the config validation should have refused it"
    );
    s.to_string()
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// One TCP result line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpLine {
    pub ok: bool,
    pub ms: u64,
    /// nc's message on failure (may be empty).
    pub message: String,
}

/// One DNS result line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsLine {
    Resolved(String),
    Failed(String),
}

/// Everything a prober printed that we understand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeLog {
    /// A `BEGIN` line was seen (the script started).
    pub begun: bool,
    /// A `DONE` line was seen (every probe finished).
    pub done: bool,
    pub tcp: BTreeMap<(String, String, u16), TcpLine>,
    pub dns: BTreeMap<(String, String), DnsLine>,
    /// `ERROR` lines: the script could not probe at all (e.g. a tool
    /// missing from the image).
    pub errors: Vec<String>,
    /// Lines that are not part of the format (e.g. a runtime's own message),
    /// kept for error messages.
    pub other: Vec<String>,
}

impl ProbeLog {
    /// Whether any probe reported a result.
    pub fn has_results(&self) -> bool {
        !self.tcp.is_empty() || !self.dns.is_empty()
    }
}

/// Parses a prober's log. Unknown lines are kept in `other`, never an error:
/// a result that cannot be found is reported as "no result" by the caller.
pub fn parse_log(text: &str) -> ProbeLog {
    let mut log = ProbeLog::default();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["BEGIN", "crdb-check", ..] => log.begun = true,
            ["DONE"] => log.done = true,
            ["ERROR", rest @ ..] => log.errors.push(rest.join(" ")),
            [
                "TCP",
                zone,
                ip,
                port,
                status @ ("ok" | "fail"),
                ms,
                rest @ ..,
            ] => {
                let (Ok(port), Ok(ms)) = (port.parse::<u16>(), ms.parse::<u64>()) else {
                    log.other.push(line.to_string());
                    continue;
                };
                let ip = ip
                    .parse::<IpAddr>()
                    .map(|i| i.to_string())
                    .unwrap_or_else(|_| ip.to_string());
                log.tcp.insert(
                    (zone.to_string(), ip, port),
                    TcpLine {
                        ok: *status == "ok",
                        ms,
                        message: rest.join(" ").trim().to_string(),
                    },
                );
            }
            ["DNS", zone, name, "ok", ip, ..] => {
                log.dns.insert(
                    (zone.to_string(), name.trim_end_matches('.').to_string()),
                    DnsLine::Resolved(ip.to_string()),
                );
            }
            ["DNS", zone, name, "fail", rest @ ..] => {
                log.dns.insert(
                    (zone.to_string(), name.trim_end_matches('.').to_string()),
                    DnsLine::Failed(rest.join(" ").trim().to_string()),
                );
            }
            [""] => {}
            _ => log.other.push(line.to_string()),
        }
    }
    log
}

/// A readable reason from nc's message.
pub fn tcp_reason(message: &str) -> String {
    let m = message.to_ascii_lowercase();
    if m.contains("refused") {
        "connection refused (nothing listens there, or a firewall rejects it)".to_string()
    } else if m.contains("timed out") || m.is_empty() {
        format!(
            "timed out after {CONNECT_TIMEOUT_SECS}s (packets are dropped: no route, or a firewall drops them)"
        )
    } else if m.contains("unreachable") || m.contains("no route") {
        format!(
            "{} (no route to that address)",
            message.trim_start_matches("nc: ")
        )
    } else {
        message.trim_start_matches("nc: ").to_string()
    }
}

/// Whether nslookup's message means no answer came back at all (the
/// forwarding target did not answer), rather than a negative answer.
pub fn dns_no_answer(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("timed out") || m.contains("servfail") || m.contains("no servers could be reached")
}

/// A readable reason from nslookup's last line, e.g.
/// `** server can't find NAME: NXDOMAIN`.
pub fn dns_reason(message: &str) -> String {
    let lower = message.to_ascii_lowercase();
    if lower.contains("timed out") || lower.contains("no servers could be reached") {
        return format!("no answer within {DNS_TIMEOUT_SECS}s");
    }
    let last = message.rsplit(": ").next().unwrap_or(message).trim();
    match last {
        "NXDOMAIN" => "no such name (NXDOMAIN)".to_string(),
        "SERVFAIL" => {
            "the DNS server failed to answer (SERVFAIL: forwarding target unreachable?)".to_string()
        }
        "REFUSED" => {
            "the DNS server refused the query (REFUSED: nothing forwards this domain)".to_string()
        }
        "No answer" | "NOERROR" => "the name exists but has no A record".to_string(),
        _ if message.is_empty() => "no answer".to_string(),
        _ => message.trim_start_matches("nslookup: ").to_string(),
    }
}

/// The domains a cluster forwards (from its DNS config), for deciding
/// whether its DNS rows can be checked yet.
pub fn forwards_zone(forwarded: &BTreeSet<String>, zone_domain: &str) -> bool {
    forwarded
        .iter()
        .any(|d| d.trim_end_matches('.') == zone_domain)
}
