//! Cross-cluster DNS forwarding: merge our forwarding entries into a
//! cluster's existing DNS ConfigMap data, and remove exactly those entries
//! again.
//!
//! Owns the three text formats we write (kube-dns `stubDomains` JSON, CoreDNS
//! server blocks in the `coredns` Corefile, an AKS `coredns-custom` key), the
//! ownership markers that let [`remove`] find our entries without outside
//! state, and conflict detection against entries the user wrote.
//!
//! Must not: do I/O, read the clock, or change a single byte the user wrote.
//! Every function takes a ConfigMap's `data` and returns new `data`; fetching,
//! backing up and applying the ConfigMap, and restarting DNS belong to the
//! apply/teardown glue. CockroachDB's `setup.py` replaced the whole `kube-dns`
//! ConfigMap and deleted it on teardown; this module exists so we never do.
//!
//! # How each provider records what is ours
//!
//! * **kube-dns** (`kube-dns` ConfigMap). Our domains are spliced into the
//!   `stubDomains` JSON object as text, appended after the user's last member
//!   (`, "<domain>": ["<ip>", ...]`, or one per line with the user's
//!   indentation when the object's closing brace is on a line of its own), so
//!   the user's bytes, key order and formatting are untouched. Which domains
//!   are ours is recorded in one extra key, [`KUBE_DNS_OWNERSHIP_KEY`],
//!   holding `{"domains":[...],"createdStubDomains":bool}`. kube-dns and
//!   node-local-dns read only the keys `stubDomains`, `upstreamNameservers`
//!   and `federations` of this ConfigMap (k8s.io/dns `pkg/dns/config/sync.go`:
//!   `processUpdate` looks up exactly those three) and ignore every other
//!   key, so the record changes nothing about resolution. `createdStubDomains`
//!   says whether `stubDomains` was absent before we added it, so [`remove`]
//!   deletes the key again instead of leaving `{}` behind.
//! * **CoreDNS** (`coredns` ConfigMap, key `Corefile`). Our server blocks are
//!   appended at the end between [`BEGIN_MARKER`] and [`END_MARKER`] comment
//!   lines, after a blank line. Whether the original Corefile ended with a
//!   newline is encoded in whether ours does: if it did not, we append
//!   `"\n\n" + section` without a final newline, so [`remove`] knows which
//!   separator it added.
//! * **AKS** (`coredns-custom` ConfigMap). AKS imports every key ending in
//!   `.server` as extra server blocks; we own exactly one key,
//!   [`CUSTOM_SERVER_KEY`], and delete it on removal.
//!
//! # Guarantees
//!
//! * `remove(p, &merge(p, x, ours, o)?)? == *x`, byte for byte, for every `x`
//!   [`merge`] accepts (tested on realistic configurations of all three).
//! * `merge` is idempotent, and re-merging with other addresses replaces our
//!   entries: merge first removes ours, then adds the new ones.
//! * `merge` with no forwards is `remove`.
//! * If the user edits the data after we merged: user entries are never
//!   removed or rewritten. kube-dns: [`remove`] deletes our domains' members
//!   from the JSON by their textual position (it parses the JSON, it does not
//!   search for our formatting), keeping every other member's bytes; the
//!   result equals the pre-merge bytes whenever our members are still the
//!   last ones with the separators we wrote, and otherwise only whitespace
//!   that surrounded our members may differ. CoreDNS: everything outside our
//!   markers is kept; a blank line we added is removed only if still there.
//! * The user already forwarding one of our domains (or, for CoreDNS, already
//!   declaring a server block for it) is a [`DnsError::Conflict`]: we never
//!   overwrite it. Malformed input is an error that says where, never a
//!   panic.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// kube-dns: the key holding the stub domains JSON object.
pub const STUB_DOMAINS_KEY: &str = "stubDomains";
/// kube-dns: the key holding the upstream nameservers JSON array.
pub const UPSTREAM_NAMESERVERS_KEY: &str = "upstreamNameservers";
/// kube-dns: our ownership record (ignored by kube-dns, see the module docs).
pub const KUBE_DNS_OWNERSHIP_KEY: &str = "crdb-multiregion.managed-stub-domains";
/// CoreDNS: the key holding the Corefile.
pub const COREFILE_KEY: &str = "Corefile";
/// AKS `coredns-custom`: the one `.server` key we own.
pub const CUSTOM_SERVER_KEY: &str = "crdb-multiregion.server";
/// First line of our section in a Corefile.
pub const BEGIN_MARKER: &str = "# BEGIN crdb-multiregion (managed; do not edit)";
/// Last line of our section in a Corefile.
pub const END_MARKER: &str = "# END crdb-multiregion";
/// First line of our AKS `.server` key.
const CUSTOM_SERVER_HEADER: &str =
    "# Managed by crdb-multiregion; do not edit. Removed by teardown.";
/// CoreDNS `forward` accepts at most this many upstreams.
pub const MAX_FORWARD_SERVERS: usize = 15;
/// Default `cache` TTL in our CoreDNS server blocks, in seconds.
pub const DEFAULT_CACHE_SECONDS: u32 = 30;

/// Which DNS server a cluster runs, and so which ConfigMap we edit.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum DnsProvider {
    /// kube-dns (GKE standard clusters): `kube-dns` ConfigMap, `stubDomains`.
    #[serde(rename = "kube-dns")]
    KubeDns,
    /// CoreDNS with an editable Corefile (EKS, kubeadm, most others).
    #[serde(rename = "coredns")]
    CoreDns,
    /// AKS CoreDNS: the Corefile is managed; extra `.server` keys go in
    /// `coredns-custom`.
    #[serde(rename = "coredns-custom")]
    CoreDnsCustom,
}

impl DnsProvider {
    /// Every provider, in order.
    pub const ALL: [DnsProvider; 3] = [Self::KubeDns, Self::CoreDns, Self::CoreDnsCustom];

    /// The ConfigMap in `kube-system` this provider is configured through.
    pub fn configmap_name(self) -> &'static str {
        match self {
            Self::KubeDns => "kube-dns",
            Self::CoreDns => "coredns",
            Self::CoreDnsCustom => "coredns-custom",
        }
    }
}

impl fmt::Display for DnsProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.configmap_name())
    }
}

impl FromStr for DnsProvider {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.configmap_name() == s)
            .ok_or_else(|| {
                format!("unknown DNS provider {s:?}; expected kube-dns, coredns or coredns-custom")
            })
    }
}

/// Queries for `domain` (and its subdomains) go to `servers` (port 53).
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Forward {
    /// e.g. `us-west1-a.svc.cluster.local`; `.` is the root (everything else).
    pub domain: String,
    /// In the order given; CoreDNS randomises, dnsmasq tries them in turn.
    pub servers: Vec<IpAddr>,
}

/// How our CoreDNS server blocks forward. kube-dns (dnsmasq) has no per-domain
/// transport or cache setting, so it ignores these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ForwardOptions {
    /// Forward over TCP only (`force_tcp`): the remote DNS load balancer is
    /// TCP-only, as an EKS NLB for TCP is.
    pub force_tcp: bool,
    /// `cache <n>` in our blocks; 0 leaves the `cache` plugin out.
    pub cache_seconds: u32,
}

impl Default for ForwardOptions {
    fn default() -> Self {
        Self {
            force_tcp: false,
            cache_seconds: DEFAULT_CACHE_SECONDS,
        }
    }
}

/// Why forwarding could not be merged, removed or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The user already forwards (or serves) one of our domains.
    #[error(
        "ConfigMap `{configmap}`: {location} already {what}; crdb-multiregion does not manage that entry and will not overwrite it (remove it, for example a leftover of CockroachDB's setup.py, then re-run)"
    )]
    Conflict {
        configmap: &'static str,
        location: String,
        domain: String,
        what: String,
    },
    /// A JSON value (kube-dns) is not valid JSON.
    #[error(
        "ConfigMap `{configmap}` key `{key}` is not valid JSON (line {line}, column {column}): {problem}"
    )]
    InvalidJson {
        configmap: &'static str,
        key: String,
        line: usize,
        column: usize,
        problem: String,
    },
    /// A JSON value (kube-dns) is valid JSON of the wrong shape.
    #[error("ConfigMap `{configmap}` key `{key}` must be {expected}: {problem}")]
    JsonShape {
        configmap: &'static str,
        key: String,
        expected: &'static str,
        problem: String,
    },
    /// A Corefile (or AKS `.server`/`.override` key) we cannot parse.
    #[error(
        "ConfigMap `{configmap}` key `{key}`, line {line}: cannot parse the Corefile: {problem}"
    )]
    Corefile {
        configmap: &'static str,
        key: String,
        line: usize,
        problem: String,
    },
    /// Our BEGIN/END markers were edited into an inconsistent state.
    #[error(
        "ConfigMap `{configmap}` key `{key}`: the section crdb-multiregion manages is damaged ({problem}); restore the ConfigMap from the backup, or fix the `{BEGIN_MARKER}` / `{END_MARKER}` lines by hand"
    )]
    DamagedSection {
        configmap: &'static str,
        key: String,
        problem: String,
    },
    /// Our kube-dns ownership record is unreadable.
    #[error(
        "ConfigMap `kube-dns` key `{KUBE_DNS_OWNERSHIP_KEY}` (crdb-multiregion's record of the stub domains it added) is unreadable: {problem}"
    )]
    OwnershipRecord { problem: String },
    /// The `coredns` ConfigMap has no Corefile to add to.
    #[error(
        "ConfigMap `coredns` has no `{COREFILE_KEY}` key, so there is no CoreDNS configuration to add forwarding to"
    )]
    MissingCorefile,
    /// One of our forwarding domains is not a DNS name.
    #[error("forwarding domain {domain:?} is not a valid DNS name: {problem}")]
    InvalidDomain { domain: String, problem: String },
    /// The same domain twice in our forwards.
    #[error("forwarding domain `{domain}` is listed more than once")]
    DuplicateDomain { domain: String },
    /// A forward without servers.
    #[error("forwarding for `{domain}` lists no nameserver addresses")]
    NoServers { domain: String },
    /// A forward with more servers than CoreDNS accepts.
    #[error(
        "forwarding for `{domain}` lists {count} nameserver addresses; CoreDNS `forward` accepts at most {MAX_FORWARD_SERVERS}"
    )]
    TooManyServers { domain: String, count: usize },
}

// ---------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------

/// Merge our forwarding entries into a ConfigMap's existing `data`, never
/// touching user entries. Our previous entries (if any) are replaced; with an
/// empty `ours` this is [`remove`].
pub fn merge(
    provider: DnsProvider,
    data: &BTreeMap<String, String>,
    ours: &[Forward],
    opts: &ForwardOptions,
) -> Result<BTreeMap<String, String>, DnsError> {
    let limit = match provider {
        DnsProvider::KubeDns => None,
        DnsProvider::CoreDns | DnsProvider::CoreDnsCustom => Some(MAX_FORWARD_SERVERS),
    };
    let ours = prepare(ours, limit)?;
    if ours.is_empty() {
        return remove(provider, data);
    }
    match provider {
        DnsProvider::KubeDns => kube_dns_merge(data, &ours),
        DnsProvider::CoreDns => {
            let mut out = data.clone();
            let text = data.get(COREFILE_KEY).ok_or(DnsError::MissingCorefile)?;
            out.insert(COREFILE_KEY.to_string(), corefile_merge(text, &ours, opts)?);
            Ok(out)
        }
        DnsProvider::CoreDnsCustom => custom_merge(data, &ours, opts),
    }
}

/// Remove exactly what [`merge`] added: `remove(merge(x)) == x` byte for byte.
/// Data without our entries is returned unchanged.
pub fn remove(
    provider: DnsProvider,
    data: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, DnsError> {
    match provider {
        DnsProvider::KubeDns => kube_dns_remove(data),
        DnsProvider::CoreDns => {
            let mut out = data.clone();
            if let Some(text) = data.get(COREFILE_KEY) {
                out.insert(COREFILE_KEY.to_string(), corefile_remove(text)?);
            }
            Ok(out)
        }
        DnsProvider::CoreDnsCustom => {
            let mut out = data.clone();
            out.remove(CUSTOM_SERVER_KEY);
            Ok(out)
        }
    }
}

/// What forwarding is configured, ours and the user's, in document order
/// (for AKS, in key order). Only plain-DNS upstreams given as IP addresses
/// are listed (a port, if any, is dropped); upstreams that are files
/// (`/etc/resolv.conf`), host names or DNS-over-TLS are left out, and so is a
/// forward left with none. Forwarding of everything else is reported with
/// domain `.`: kube-dns `upstreamNameservers`, CoreDNS `forward .` in a `.`
/// server block.
pub fn parse_forwards(
    provider: DnsProvider,
    data: &BTreeMap<String, String>,
) -> Result<Vec<Forward>, DnsError> {
    match provider {
        DnsProvider::KubeDns => kube_dns_forwards(data),
        DnsProvider::CoreDns => match data.get(COREFILE_KEY) {
            None => Ok(Vec::new()),
            Some(text) => {
                let blocks = parse_corefile(text)
                    .map_err(|e| e.into_error(DnsProvider::CoreDns, COREFILE_KEY))?;
                Ok(blocks
                    .iter()
                    .flat_map(block_forwards)
                    .map(|(f, _)| f)
                    .collect())
            }
        },
        DnsProvider::CoreDnsCustom => {
            let mut out = Vec::new();
            for (key, text) in data {
                if key.ends_with(".server") {
                    let blocks = parse_corefile(text)
                        .map_err(|e| e.into_error(DnsProvider::CoreDnsCustom, key))?;
                    out.extend(blocks.iter().flat_map(block_forwards).map(|(f, _)| f));
                } else if key.ends_with(".override") {
                    // Plugins AKS imports into its `.:53` server block.
                    let body = parse_directives(text)
                        .map_err(|e| e.into_error(DnsProvider::CoreDnsCustom, key))?;
                    let block = ServerBlock {
                        keys: vec![".:53".to_string()],
                        line: 1,
                        body,
                    };
                    out.extend(block_forwards(&block).into_iter().map(|(f, _)| f));
                }
            }
            Ok(out)
        }
    }
}

/// Whether `data` currently contains entries written by [`merge`].
pub fn has_ours(provider: DnsProvider, data: &BTreeMap<String, String>) -> bool {
    match provider {
        DnsProvider::KubeDns => data.contains_key(KUBE_DNS_OWNERSHIP_KEY),
        DnsProvider::CoreDns => data
            .get(COREFILE_KEY)
            .is_some_and(|t| t.lines().any(|l| l.trim() == BEGIN_MARKER)),
        DnsProvider::CoreDnsCustom => data.contains_key(CUSTOM_SERVER_KEY),
    }
}

/// The forwarding entries of `data` that [`merge`] wrote, found through the
/// ownership markers only. Empty when there are none, and when the markers
/// are damaged: then nothing can be attributed to us (a user's domain must
/// never be taken for ours), and [`remove`] reports the damage.
pub fn our_forwards(provider: DnsProvider, data: &BTreeMap<String, String>) -> Vec<Forward> {
    if !has_ours(provider, data) {
        return Vec::new();
    }
    let Ok(all) = parse_forwards(provider, data) else {
        return Vec::new();
    };
    let Ok(theirs) = remove(provider, data).and_then(|d| parse_forwards(provider, &d)) else {
        return Vec::new();
    };
    all.into_iter().filter(|f| !theirs.contains(f)).collect()
}

/// The domains among `ours` (the zone domains a federation forwards) that
/// `data` forwards although `original` (the data before our first merge, from
/// the backup) did not: our forwarding, whatever state the ownership markers
/// are in. Sorted. Used to refuse to call a cluster clean while our
/// forwarding targets remain after a user damaged the markers.
pub fn leftover_domains(
    provider: DnsProvider,
    data: &BTreeMap<String, String>,
    ours: &BTreeSet<String>,
    original: Option<&BTreeMap<String, String>>,
) -> Result<Vec<String>, DnsError> {
    let before: BTreeSet<String> = match original {
        Some(o) => parse_forwards(provider, o)
            .unwrap_or_default()
            .into_iter()
            .map(|f| f.domain)
            .collect(),
        None => BTreeSet::new(),
    };
    let now: BTreeSet<String> = parse_forwards(provider, data)?
        .into_iter()
        .map(|f| f.domain)
        .collect();
    Ok(now
        .into_iter()
        .filter(|d| ours.contains(d) && !before.contains(d))
        .collect())
}

/// A stable digest of our forwarding (domains, servers and options), `None`
/// when there is none. Recorded on the DNS ConfigMap and on the DNS
/// Deployment's pod template, so a restart that was interrupted is noticed
/// and redone. FNV-1a over a canonical text: stable across builds and
/// platforms (std's hasher is not guaranteed to be).
pub fn forwarding_digest(forwards: &[Forward], opts: &ForwardOptions) -> Option<String> {
    if forwards.is_empty() {
        return None;
    }
    let mut sorted: Vec<Forward> = forwards
        .iter()
        .map(|f| Forward {
            domain: normalize_domain(&f.domain),
            servers: f.servers.clone(),
        })
        .collect();
    sorted.sort();
    let mut text = format!(
        "force_tcp={} cache={}\n",
        opts.force_tcp, opts.cache_seconds
    );
    for f in &sorted {
        text.push_str(&f.domain);
        for s in &f.servers {
            text.push(' ');
            text.push_str(&s.to_string());
        }
        text.push('\n');
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    Some(format!("{hash:016x}"))
}

/// dnsmasq arguments for `forwards`, as kube-dns's dnsmasq-nanny translates
/// `stubDomains` (`--server=/<domain>/<ip>`) and `upstreamNameservers`
/// (domain `.`: `--server=<ip>`).
pub fn dnsmasq_servers(forwards: &[Forward]) -> Vec<String> {
    forwards
        .iter()
        .flat_map(|f| {
            f.servers.iter().map(move |ip| {
                if f.domain == "." {
                    format!("--server={ip}")
                } else {
                    format!("--server=/{}/{ip}", f.domain)
                }
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Our forwards: validation and normalisation
// ---------------------------------------------------------------------------

/// Lower case, no trailing dot; the root is `.`.
fn normalize_domain(domain: &str) -> String {
    let d = domain.trim();
    let d = d.strip_suffix('.').unwrap_or(d);
    if d.is_empty() {
        ".".to_string()
    } else {
        d.to_ascii_lowercase()
    }
}

fn check_domain(original: &str, domain: &str) -> Result<(), DnsError> {
    let bad = |problem: &str| {
        Err(DnsError::InvalidDomain {
            domain: original.to_string(),
            problem: problem.to_string(),
        })
    };
    if domain == "." {
        return bad(
            "the root domain would forward every query; name a zone such as us-west1-a.svc.cluster.local",
        );
    }
    if domain.len() > 253 {
        return bad("longer than 253 characters");
    }
    for label in domain.split('.') {
        if label.is_empty() {
            return bad("empty label (two dots in a row, or a leading dot)");
        }
        if label.len() > 63 {
            return bad("a label is longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return bad("labels may contain only letters, digits and '-'");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a label starts or ends with '-'");
        }
    }
    Ok(())
}

/// Validate, normalise and sort our forwards by domain.
fn prepare(ours: &[Forward], limit: Option<usize>) -> Result<Vec<Forward>, DnsError> {
    let mut sorted = BTreeMap::new();
    for f in ours {
        let domain = normalize_domain(&f.domain);
        check_domain(&f.domain, &domain)?;
        if f.servers.is_empty() {
            return Err(DnsError::NoServers { domain });
        }
        if let Some(max) = limit
            && f.servers.len() > max
        {
            return Err(DnsError::TooManyServers {
                domain,
                count: f.servers.len(),
            });
        }
        if sorted.insert(domain.clone(), f.servers.clone()).is_some() {
            return Err(DnsError::DuplicateDomain { domain });
        }
    }
    Ok(sorted
        .into_iter()
        .map(|(domain, servers)| Forward { domain, servers })
        .collect())
}

fn ip_list(servers: &[IpAddr]) -> String {
    servers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `1.2.3.4`, `1.2.3.4:53`, `::1`, `[::1]:53` (optionally `dns://`-prefixed)
/// to an IP; anything else (file, host name, other transport) to `None`.
fn server_ip(server: &str) -> Option<IpAddr> {
    let s = server.strip_prefix("dns://").unwrap_or(server);
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    s.parse::<SocketAddr>().ok().map(|a| a.ip())
}

// ---------------------------------------------------------------------------
// kube-dns: stubDomains JSON, spliced as text
// ---------------------------------------------------------------------------

/// The value of [`KUBE_DNS_OWNERSHIP_KEY`].
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Ownership {
    /// Our domains, as written into `stubDomains`.
    domains: Vec<String>,
    /// `stubDomains` did not exist before we added it.
    created_stub_domains: bool,
}

/// One `"key": value` member of a JSON object, by byte offsets.
struct Member {
    key: String,
    /// Offset of the key's opening quote.
    start: usize,
    /// Offset of the value's first byte.
    value_start: usize,
    /// Offset just past the value.
    end: usize,
}

/// A top-level JSON object, by byte offsets.
struct JsonObject {
    /// Offset of `{`.
    open: usize,
    members: Vec<Member>,
}

fn kube_dns_err_json(key: &str, e: &serde_json::Error) -> DnsError {
    let full = e.to_string();
    let problem = match full.rfind(" at line ") {
        Some(i) => full[..i].to_string(),
        None => full,
    };
    DnsError::InvalidJson {
        configmap: "kube-dns",
        key: key.to_string(),
        line: e.line(),
        column: e.column(),
        problem,
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Parse and check `stubDomains` the way kube-dns does (a JSON object of
/// domain -> list of strings), then locate its members in the text.
fn parse_stub_domains(text: &str) -> Result<JsonObject, DnsError> {
    const EXPECTED: &str = "a JSON object mapping each domain to a list of nameserver strings";
    let shape = |problem: String| DnsError::JsonShape {
        configmap: "kube-dns",
        key: STUB_DOMAINS_KEY.to_string(),
        expected: EXPECTED,
        problem,
    };
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| kube_dns_err_json(STUB_DOMAINS_KEY, &e))?;
    let serde_json::Value::Object(map) = &value else {
        return Err(shape(format!("found {}", json_kind(&value))));
    };
    for (domain, servers) in map {
        let ok = matches!(servers, serde_json::Value::Array(a) if a.iter().all(serde_json::Value::is_string));
        if !ok {
            return Err(shape(format!(
                "`{domain}` maps to {}, not a list of strings",
                json_kind(servers)
            )));
        }
    }
    scan_object(text).ok_or_else(|| shape("could not locate the object's members".to_string()))
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// `b[i]` is `"`; returns the offset past the closing quote.
fn skip_string(b: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    loop {
        match b.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

/// Offset just past the JSON value starting at `i`.
fn skip_value(b: &[u8], mut i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            loop {
                match b.get(i)? {
                    b'"' => {
                        i = skip_string(b, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let start = i;
            while !matches!(
                b.get(i),
                None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            ) {
                i += 1;
            }
            (i > start).then_some(i)
        }
    }
}

/// Locate the members of the top-level object in already-validated JSON.
fn scan_object(text: &str) -> Option<JsonObject> {
    let b = text.as_bytes();
    let open = skip_ws(b, 0);
    if b.get(open) != Some(&b'{') {
        return None;
    }
    let mut members = Vec::new();
    let mut i = open + 1;
    loop {
        i = skip_ws(b, i);
        match b.get(i)? {
            b'}' => return Some(JsonObject { open, members }),
            b',' => i += 1,
            b'"' => {
                let start = i;
                let key_end = skip_string(b, i)?;
                let key: String = serde_json::from_str(text.get(start..key_end)?).ok()?;
                i = skip_ws(b, key_end);
                if b.get(i) != Some(&b':') {
                    return None;
                }
                let value_start = skip_ws(b, i + 1);
                let end = skip_value(b, value_start)?;
                members.push(Member {
                    key,
                    start,
                    value_start,
                    end,
                });
                i = end;
            }
            _ => return None,
        }
    }
}

/// Our members, `"<domain>": ["<ip>", "<ip>"]` each, joined by `sep`.
fn render_stub_members(ours: &[Forward], sep: &str) -> String {
    ours.iter()
        .map(|f| {
            let servers: Vec<String> = f
                .servers
                .iter()
                .map(|ip| serde_json::Value::String(ip.to_string()).to_string())
                .collect();
            format!(
                "{}: [{}]",
                serde_json::Value::String(f.domain.clone()),
                servers.join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join(sep)
}

/// The separator our members get in `text`: `", "`, or, when the user's
/// object puts its closing brace on a line of its own, a comma, a newline and
/// the indentation of the user's last member, so ours line up with theirs.
fn member_separator(text: &str, last: &Member) -> String {
    let line_start = text[..last.start].rfind('\n').map_or(0, |p| p + 1);
    let indent = &text[line_start..last.start];
    let rest = text[last.end..].trim_start_matches([' ', '\t']);
    let newline = if rest.starts_with("\r\n") {
        "\r\n"
    } else if rest.starts_with('\n') {
        "\n"
    } else {
        return ", ".to_string();
    };
    if indent.bytes().all(|b| b == b' ' || b == b'\t') {
        format!(",{newline}{indent}")
    } else {
        ", ".to_string()
    }
}

/// Delete the members `drop` selects, each with the separator before it (or,
/// for a leading member, the whitespace before the next kept one); every
/// other byte is kept. Returns the new text and how many members remain.
fn remove_members(text: &str, obj: &JsonObject, drop: impl Fn(&str) -> bool) -> (String, usize) {
    let kept: Vec<usize> = (0..obj.members.len())
        .filter(|&i| !drop(&obj.members[i].key))
        .collect();
    if kept.len() == obj.members.len() {
        return (text.to_string(), kept.len());
    }
    let m = &obj.members;
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..m[0].start]);
    for (n, &k) in kept.iter().enumerate() {
        if n > 0 {
            out.push_str(&text[m[k - 1].end..m[k].start]);
        }
        out.push_str(&text[m[k].start..m[k].end]);
    }
    out.push_str(&text[m[m.len() - 1].end..]);
    (out, kept.len())
}

fn kube_dns_remove(data: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>, DnsError> {
    let Some(record) = data.get(KUBE_DNS_OWNERSHIP_KEY) else {
        return Ok(data.clone());
    };
    let record: Ownership =
        serde_json::from_str(record).map_err(|e| DnsError::OwnershipRecord {
            problem: e.to_string(),
        })?;
    let ours: BTreeSet<String> = record.domains.iter().map(|d| normalize_domain(d)).collect();
    let mut out = data.clone();
    out.remove(KUBE_DNS_OWNERSHIP_KEY);
    if let Some(text) = data.get(STUB_DOMAINS_KEY) {
        let obj = parse_stub_domains(text)?;
        let (new, remaining) = remove_members(text, &obj, |k| ours.contains(&normalize_domain(k)));
        if record.created_stub_domains && remaining == 0 {
            out.remove(STUB_DOMAINS_KEY);
        } else {
            out.insert(STUB_DOMAINS_KEY.to_string(), new);
        }
    }
    Ok(out)
}

fn kube_dns_merge(
    data: &BTreeMap<String, String>,
    ours: &[Forward],
) -> Result<BTreeMap<String, String>, DnsError> {
    let mut out = kube_dns_remove(data)?;
    let created = !out.contains_key(STUB_DOMAINS_KEY);
    let new = match out.get(STUB_DOMAINS_KEY) {
        None => format!("{{{}}}", render_stub_members(ours, ", ")),
        Some(text) => {
            let obj = parse_stub_domains(text)?;
            for m in &obj.members {
                let domain = normalize_domain(&m.key);
                if ours.iter().any(|f| f.domain == domain) {
                    let servers: Vec<String> =
                        serde_json::from_str(&text[m.value_start..m.end]).unwrap_or_default();
                    return Err(DnsError::Conflict {
                        configmap: "kube-dns",
                        location: format!("key `{STUB_DOMAINS_KEY}`"),
                        domain,
                        what: format!("forwards `{}` to {}", m.key, servers.join(", ")),
                    });
                }
            }
            // After the user's last member (or inside an empty object), so
            // every user byte stays where it was.
            let (at, lead, sep) = match obj.members.last() {
                Some(last) => {
                    let sep = member_separator(text, last);
                    (last.end, sep.clone(), sep)
                }
                None => (obj.open + 1, String::new(), ", ".to_string()),
            };
            let members = render_stub_members(ours, &sep);
            format!("{}{lead}{members}{}", &text[..at], &text[at..])
        }
    };
    let record = Ownership {
        domains: ours.iter().map(|f| f.domain.clone()).collect(),
        created_stub_domains: created,
    };
    out.insert(STUB_DOMAINS_KEY.to_string(), new);
    out.insert(
        KUBE_DNS_OWNERSHIP_KEY.to_string(),
        serde_json::to_string(&record).expect("a struct of strings and a bool serialises"),
    );
    Ok(out)
}

fn kube_dns_forwards(data: &BTreeMap<String, String>) -> Result<Vec<Forward>, DnsError> {
    let mut out = Vec::new();
    if let Some(text) = data.get(STUB_DOMAINS_KEY) {
        let obj = parse_stub_domains(text)?;
        for m in &obj.members {
            let servers: Vec<String> = serde_json::from_str(&text[m.value_start..m.end])
                .map_err(|e| kube_dns_err_json(STUB_DOMAINS_KEY, &e))?;
            let servers: Vec<IpAddr> = servers.iter().filter_map(|s| server_ip(s)).collect();
            if !servers.is_empty() {
                out.push(Forward {
                    domain: normalize_domain(&m.key),
                    servers,
                });
            }
        }
    }
    if let Some(text) = data.get(UPSTREAM_NAMESERVERS_KEY) {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| kube_dns_err_json(UPSTREAM_NAMESERVERS_KEY, &e))?;
        let servers: Vec<String> =
            serde_json::from_value(value.clone()).map_err(|_| DnsError::JsonShape {
                configmap: "kube-dns",
                key: UPSTREAM_NAMESERVERS_KEY.to_string(),
                expected: "a JSON list of nameserver strings",
                problem: format!("found {}", json_kind(&value)),
            })?;
        let servers: Vec<IpAddr> = servers.iter().filter_map(|s| server_ip(s)).collect();
        if !servers.is_empty() {
            out.push(Forward {
                domain: ".".to_string(),
                servers,
            });
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// CoreDNS: Corefile parsing (enough of the Caddyfile syntax to find server
// blocks and `forward` directives)
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct Token {
    text: String,
    line: usize,
    quoted: bool,
}

impl Token {
    fn is_open(&self) -> bool {
        !self.quoted && self.text == "{"
    }
    fn is_close(&self) -> bool {
        !self.quoted && self.text == "}"
    }
}

#[derive(Debug)]
struct Directive {
    name: String,
    args: Vec<String>,
    line: usize,
}

#[derive(Debug)]
struct ServerBlock {
    /// Zone keys as written, e.g. `.:53`, `example.com`, `dns://foo:53`.
    keys: Vec<String>,
    line: usize,
    /// Top-level directives (sub-blocks are parsed for syntax, not kept).
    body: Vec<Directive>,
}

/// A parse error before we know which ConfigMap key it came from.
struct ParseError {
    line: usize,
    problem: String,
}

impl ParseError {
    fn new(line: usize, problem: impl Into<String>) -> Self {
        Self {
            line,
            problem: problem.into(),
        }
    }

    fn into_error(self, provider: DnsProvider, key: &str) -> DnsError {
        DnsError::Corefile {
            configmap: provider.configmap_name(),
            key: key.to_string(),
            line: self.line,
            problem: self.problem,
        }
    }
}

/// Split into tokens as CoreDNS's Caddyfile lexer does: whitespace
/// separated; `"..."` quoted (a backslash escapes only `"`); `#` outside
/// quotes comments out the rest of the line, even inside a word.
fn tokenize(text: &str) -> Result<Vec<Token>, ParseError> {
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c == '\n' {
            line += 1;
            chars.next();
        } else if c.is_whitespace() {
            chars.next();
        } else if c == '#' {
            while chars.peek().is_some_and(|&c| c != '\n') {
                chars.next();
            }
        } else if c == '"' {
            let start = line;
            chars.next();
            let mut s = String::new();
            let mut escaped = false;
            loop {
                let Some(ch) = chars.next() else {
                    return Err(ParseError::new(start, "quoted string is never closed"));
                };
                if !escaped && ch == '\\' {
                    escaped = true;
                    continue;
                }
                if !escaped && ch == '"' {
                    break;
                }
                if ch == '\n' {
                    line += 1;
                }
                if escaped && ch != '"' {
                    s.push('\\');
                }
                s.push(ch);
                escaped = false;
            }
            tokens.push(Token {
                text: s,
                line: start,
                quoted: true,
            });
        } else {
            let mut s = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == '#' {
                    break;
                }
                s.push(c);
                chars.next();
            }
            tokens.push(Token {
                text: s,
                line,
                quoted: false,
            });
        }
    }
    Ok(tokens)
}

/// Directives until the `}` that closes the server block opened at line
/// `opened` (or, with `None`, until the end of input). As in Caddy, a
/// directive runs to the end of its line, plus any `{ ... }` it opens (nested
/// braces are counted, not parsed, so depth costs no stack).
fn parse_block(
    toks: &[Token],
    i: &mut usize,
    opened: Option<usize>,
) -> Result<Vec<Directive>, ParseError> {
    let mut out = Vec::new();
    loop {
        let Some(t) = toks.get(*i) else {
            return match opened {
                Some(line) => Err(ParseError::new(line, "`{` opened here is never closed")),
                None => Ok(out),
            };
        };
        if t.is_close() {
            if opened.is_none() {
                return Err(ParseError::new(t.line, "`}` without a matching `{`"));
            }
            *i += 1;
            return Ok(out);
        }
        if t.is_open() {
            return Err(ParseError::new(
                t.line,
                "`{` where a plugin name was expected",
            ));
        }
        let line = t.line;
        let name = t.text.clone();
        *i += 1;
        let mut args = Vec::new();
        let mut nesting = 0usize;
        let mut open_line = line;
        while let Some(t) = toks.get(*i) {
            if t.is_open() {
                if nesting == 0 {
                    open_line = t.line;
                }
                nesting += 1;
            } else if nesting == 0 && t.line != line {
                break;
            } else if t.is_close() {
                if nesting == 0 {
                    return Err(ParseError::new(
                        t.line,
                        format!(
                            "`}}` on the same line as plugin `{name}`; a closing brace must be on its own line"
                        ),
                    ));
                }
                nesting -= 1;
            } else if nesting == 0 {
                args.push(t.text.clone());
            }
            *i += 1;
        }
        if nesting > 0 {
            return Err(ParseError::new(
                open_line,
                "`{` opened here is never closed",
            ));
        }
        out.push(Directive { name, args, line });
    }
}

/// The server blocks of a Corefile (top-level `import` lines and snippets
/// are skipped). As in Caddy, a block's keys end at the end of their line
/// unless the last one ends with a comma.
fn parse_corefile(text: &str) -> Result<Vec<ServerBlock>, ParseError> {
    let toks = tokenize(text)?;
    let mut i = 0;
    let mut blocks = Vec::new();
    while let Some(t) = toks.get(i) {
        if t.is_close() {
            return Err(ParseError::new(t.line, "`}` without a matching `{`"));
        }
        if t.is_open() {
            return Err(ParseError::new(
                t.line,
                "`{` without a server block key (zone) before it",
            ));
        }
        let line = t.line;
        if !t.quoted && t.text == "import" {
            i += 1;
            while toks.get(i).is_some_and(|t| t.line == line) {
                i += 1;
            }
            continue;
        }
        let mut keys: Vec<String> = Vec::new();
        let mut key_line = line;
        while let Some(t) = toks.get(i) {
            let continued = keys.last().is_some_and(|k| k.ends_with(','));
            if t.is_open() || (t.line != key_line && !continued) {
                break;
            }
            if t.is_close() {
                return Err(ParseError::new(t.line, "`}` without a matching `{`"));
            }
            keys.push(t.text.clone());
            key_line = t.line;
            i += 1;
        }
        if !toks.get(i).is_some_and(Token::is_open) {
            return Err(ParseError::new(
                line,
                format!(
                    "server block `{}` is not followed by `{{`; crdb-multiregion can only add a block to a Corefile whose server blocks are all in braces",
                    keys.join(" ")
                ),
            ));
        }
        i += 1;
        let body = parse_block(&toks, &mut i, Some(line))?;
        let snippet = keys.len() == 1 && keys[0].starts_with('(') && keys[0].ends_with(')');
        if !snippet {
            let keys = keys
                .iter()
                .flat_map(|k| k.split(','))
                .filter(|k| !k.is_empty())
                .map(str::to_string)
                .collect();
            blocks.push(ServerBlock { keys, line, body });
        }
    }
    Ok(blocks)
}

/// Plugin lines without a surrounding server block (an AKS `.override` key).
fn parse_directives(text: &str) -> Result<Vec<Directive>, ParseError> {
    let toks = tokenize(text)?;
    let mut i = 0;
    parse_block(&toks, &mut i, None)
}

/// The zone a server block key serves on plain DNS port 53 (no port means
/// the default, 53), normalised; `None` for other ports and transports.
fn zone_of(key: &str) -> Option<String> {
    let rest = match key.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("dns") => rest,
        Some(_) => return None,
        None => key,
    };
    let host = match rest.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            if port.parse::<u32>() != Ok(53) {
                return None;
            }
            host
        }
        _ => rest,
    };
    Some(normalize_domain(host))
}

/// The forwards a server block configures, with the line of each `forward`.
fn block_forwards(block: &ServerBlock) -> Vec<(Forward, usize)> {
    let mut out = Vec::new();
    for zone in block.keys.iter().filter_map(|k| zone_of(k)) {
        for d in block.body.iter().filter(|d| d.name == "forward") {
            let Some((from, to)) = d.args.split_first() else {
                continue;
            };
            let from = normalize_domain(from.strip_prefix("dns://").unwrap_or(from));
            let domain = if from == "." { zone.clone() } else { from };
            let servers: Vec<IpAddr> = to.iter().filter_map(|s| server_ip(s)).collect();
            if !servers.is_empty() {
                out.push((Forward { domain, servers }, d.line));
            }
        }
    }
    out
}

/// The user's blocks must neither serve nor forward any of our domains.
fn check_conflicts(
    blocks: &[ServerBlock],
    ours: &[Forward],
    provider: DnsProvider,
    key: &str,
) -> Result<(), DnsError> {
    let wanted: BTreeSet<&str> = ours.iter().map(|f| f.domain.as_str()).collect();
    for block in blocks {
        for k in &block.keys {
            if let Some(zone) = zone_of(k)
                && wanted.contains(zone.as_str())
            {
                return Err(DnsError::Conflict {
                    configmap: provider.configmap_name(),
                    location: format!("key `{key}`, line {},", block.line),
                    what: format!("has a server block for `{k}`"),
                    domain: zone,
                });
            }
        }
        for (f, line) in block_forwards(block) {
            if wanted.contains(f.domain.as_str()) {
                return Err(DnsError::Conflict {
                    configmap: provider.configmap_name(),
                    location: format!("key `{key}`, line {line},"),
                    what: format!("forwards `{}` to {}", f.domain, ip_list(&f.servers)),
                    domain: f.domain,
                });
            }
        }
    }
    Ok(())
}

/// Our server blocks, each ending in a newline.
fn render_blocks(ours: &[Forward], opts: &ForwardOptions) -> String {
    let mut s = String::new();
    for f in ours {
        let servers: Vec<String> = f.servers.iter().map(ToString::to_string).collect();
        s.push_str(&format!("{}:53 {{\n    errors\n", f.domain));
        if opts.cache_seconds > 0 {
            s.push_str(&format!("    cache {}\n", opts.cache_seconds));
        }
        s.push_str(&format!("    forward . {}", servers.join(" ")));
        if opts.force_tcp {
            s.push_str(" {\n        force_tcp\n    }\n");
        } else {
            s.push('\n');
        }
        s.push_str("}\n");
    }
    s
}

/// Byte offsets of our section: start of the BEGIN line, end of the END
/// line's text (before its newline, if any).
fn find_section(text: &str) -> Result<Option<(usize, usize)>, DnsError> {
    let damaged = |problem: &str| DnsError::DamagedSection {
        configmap: "coredns",
        key: COREFILE_KEY.to_string(),
        problem: problem.to_string(),
    };
    let mut begin = None;
    let mut end = None;
    let mut offset = 0;
    for line in text.split('\n') {
        let trimmed = line.trim();
        if trimmed == BEGIN_MARKER {
            if begin.is_some() {
                return Err(damaged("the BEGIN marker appears twice"));
            }
            begin = Some(offset);
        } else if trimmed == END_MARKER {
            if begin.is_none() {
                return Err(damaged("an END marker comes before any BEGIN marker"));
            }
            if end.is_some() {
                return Err(damaged("the END marker appears twice"));
            }
            end = Some(offset + line.len());
        }
        offset += line.len() + 1;
    }
    match (begin, end) {
        (None, _) => Ok(None),
        (Some(_), None) => Err(damaged("a BEGIN marker without an END marker")),
        (Some(b), Some(e)) => Ok(Some((b, e))),
    }
}

/// The Corefile without our section and the separator [`corefile_merge`]
/// added before it.
fn corefile_remove(text: &str) -> Result<String, DnsError> {
    let Some((b, e)) = find_section(text)? else {
        return Ok(text.to_string());
    };
    let bytes = text.as_bytes();
    let blank_line_before = b >= 2 && bytes[b - 2] == b'\n' && bytes[b - 1] == b'\n';
    if bytes.get(e) == Some(&b'\n') {
        // Merged into a Corefile that ended with a newline (or was empty):
        // "\n" (a blank line) + section + "\n".
        let start = if blank_line_before { b - 1 } else { b };
        Ok(format!("{}{}", &text[..start], &text[e + 1..]))
    } else {
        // Our END line is the last line, without a newline: the original did
        // not end with one and we added "\n\n" before the section.
        let start = if blank_line_before {
            b - 2
        } else {
            b.saturating_sub(1)
        };
        Ok(text[..start].to_string())
    }
}

fn corefile_merge(text: &str, ours: &[Forward], opts: &ForwardOptions) -> Result<String, DnsError> {
    let base = corefile_remove(text)?;
    let blocks =
        parse_corefile(&base).map_err(|e| e.into_error(DnsProvider::CoreDns, COREFILE_KEY))?;
    check_conflicts(&blocks, ours, DnsProvider::CoreDns, COREFILE_KEY)?;
    let section = format!("{BEGIN_MARKER}\n{}{END_MARKER}", render_blocks(ours, opts));
    Ok(if base.is_empty() {
        format!("{section}\n")
    } else if base.ends_with('\n') {
        format!("{base}\n{section}\n")
    } else {
        format!("{base}\n\n{section}")
    })
}

// ---------------------------------------------------------------------------
// AKS coredns-custom
// ---------------------------------------------------------------------------

fn custom_merge(
    data: &BTreeMap<String, String>,
    ours: &[Forward],
    opts: &ForwardOptions,
) -> Result<BTreeMap<String, String>, DnsError> {
    let mut out = data.clone();
    out.remove(CUSTOM_SERVER_KEY);
    for (key, text) in &out {
        if key.ends_with(".server") {
            let blocks =
                parse_corefile(text).map_err(|e| e.into_error(DnsProvider::CoreDnsCustom, key))?;
            check_conflicts(&blocks, ours, DnsProvider::CoreDnsCustom, key)?;
        }
    }
    out.insert(
        CUSTOM_SERVER_KEY.to_string(),
        format!("{CUSTOM_SERVER_HEADER}\n{}", render_blocks(ours, opts)),
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // ---- fixtures ----------------------------------------------------------

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn fwd(domain: &str, servers: &[&str]) -> Forward {
        Forward {
            domain: domain.to_string(),
            servers: servers.iter().map(|s| s.parse().unwrap()).collect(),
        }
    }

    /// What us-east1-b forwards: the two OTHER zones, deliberately unsorted.
    fn ours() -> Vec<Forward> {
        vec![
            fwd("us-west1-a.svc.cluster.local", &["10.0.0.1"]),
            fwd("us-central1-a.svc.cluster.local", &["10.0.1.1", "fd00::53"]),
        ]
    }

    /// The same zones after their load balancers got new addresses.
    fn ours_moved() -> Vec<Forward> {
        vec![
            fwd("us-west1-a.svc.cluster.local", &["10.0.0.9"]),
            fwd("us-central1-a.svc.cluster.local", &["10.0.1.9"]),
        ]
    }

    const GKE_STUB_DOMAINS: &str = "{\"acme.internal\": [\"10.99.0.10\"]}\n";
    const GKE_UPSTREAMS: &str = "[\"8.8.8.8\", \"8.8.4.4\"]\n";
    const PRETTY_STUB_DOMAINS: &str = r#"{
  "acme.internal": [
    "10.99.0.10",
    "10.99.0.11"
  ],
  "corp.example.com": ["172.16.0.53:5353", "ns1.corp.example.com"]
}
"#;

    fn gke_kube_dns() -> BTreeMap<String, String> {
        data(&[
            (STUB_DOMAINS_KEY, GKE_STUB_DOMAINS),
            (UPSTREAM_NAMESERVERS_KEY, GKE_UPSTREAMS),
        ])
    }

    fn kube_dns_fixtures() -> Vec<(&'static str, BTreeMap<String, String>)> {
        vec![
            ("empty ConfigMap", data(&[])),
            (
                "no stubDomains key",
                data(&[(UPSTREAM_NAMESERVERS_KEY, GKE_UPSTREAMS)]),
            ),
            ("empty object", data(&[(STUB_DOMAINS_KEY, "{}")])),
            (
                "empty object with spaces",
                data(&[(STUB_DOMAINS_KEY, "  {\n}\n")]),
            ),
            ("GKE with user stub domain", gke_kube_dns()),
            (
                "pretty multi-line",
                data(&[(STUB_DOMAINS_KEY, PRETTY_STUB_DOMAINS)]),
            ),
            (
                "closing brace on its own line",
                data(&[(
                    STUB_DOMAINS_KEY,
                    "{\"acme.internal\": [\"10.99.0.10\"]\n}\n",
                )]),
            ),
            (
                "tab indented",
                data(&[(
                    STUB_DOMAINS_KEY,
                    "{\n\t\"acme.internal\": [\"10.99.0.10\"]\r\n}",
                )]),
            ),
            (
                "escaped key, no whitespace",
                data(&[(
                    STUB_DOMAINS_KEY,
                    r#"{"caf\u00e9.internal":["10.1.1.1"],"b.internal":[]}"#,
                )]),
            ),
        ]
    }

    const EKS_COREFILE: &str = r#".:53 {
    errors
    health {
        lameduck 5s
      }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
      pods insecure
      fallthrough in-addr.arpa ip6.arpa
    }
    prometheus :9153
    forward . /etc/resolv.conf
    cache 30
    loop
    reload
    loadbalance
}
"#;

    const USER_BLOCK: &str = r#"consul.local:53 {
    errors
    cache 30
    forward . 10.150.0.1 10.150.0.2
}
"#;

    const AKS_MAIN_COREFILE: &str = r#".:53 {
    errors
    ready
    health {
      lameduck 5s
    }
    kubernetes cluster.local in-addr.arpa ip6.arpa {
      pods insecure
      fallthrough in-addr.arpa ip6.arpa
      ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf
    cache 30
    loop
    reload
    loadbalance
    import custom/*.override
}
import custom/*.server
"#;

    fn corefile(text: &str) -> BTreeMap<String, String> {
        data(&[(COREFILE_KEY, text)])
    }

    fn coredns_fixtures() -> Vec<(&'static str, BTreeMap<String, String>)> {
        let no_newline = EKS_COREFILE.trim_end();
        let with_user = format!("{EKS_COREFILE}{USER_BLOCK}");
        let with_user_no_newline = format!("{EKS_COREFILE}{}", USER_BLOCK.trim_end());
        let blank_lines = format!("{EKS_COREFILE}\n\n");
        let crlf = EKS_COREFILE.replace('\n', "\r\n");
        vec![
            ("EKS default", corefile(EKS_COREFILE)),
            ("EKS default without trailing newline", corefile(no_newline)),
            ("EKS plus user server block", corefile(&with_user)),
            (
                "user block without trailing newline",
                corefile(&with_user_no_newline),
            ),
            ("trailing blank lines", corefile(&blank_lines)),
            ("CRLF line endings", corefile(&crlf)),
            (
                "AKS main Corefile with imports",
                corefile(AKS_MAIN_COREFILE),
            ),
            ("empty Corefile", corefile("")),
            ("only a newline", corefile("\n")),
        ]
    }

    const AKS_USER_SERVER: &str = r#"acme.internal:53 {
    errors
    cache 30
    forward . 10.99.0.10
}
"#;

    fn custom_fixtures() -> Vec<(&'static str, BTreeMap<String, String>)> {
        vec![
            ("no coredns-custom entries", data(&[])),
            (
                "user .server and .override",
                data(&[
                    ("acme.server", AKS_USER_SERVER),
                    ("logging.override", "log\n"),
                ]),
            ),
            (
                "only an .override",
                data(&[("upstream.override", "forward . 1.1.1.1\n")]),
            ),
        ]
    }

    fn all_fixtures() -> Vec<(DnsProvider, &'static str, BTreeMap<String, String>)> {
        let mut out = Vec::new();
        for (name, d) in kube_dns_fixtures() {
            out.push((DnsProvider::KubeDns, name, d));
        }
        for (name, d) in coredns_fixtures() {
            out.push((DnsProvider::CoreDns, name, d));
        }
        for (name, d) in custom_fixtures() {
            out.push((DnsProvider::CoreDnsCustom, name, d));
        }
        out
    }

    fn option_sets() -> [ForwardOptions; 2] {
        [
            ForwardOptions::default(),
            ForwardOptions {
                force_tcp: true,
                cache_seconds: 0,
            },
        ]
    }

    // ---- the round-trip contract, for every provider -------------------------

    #[test]
    fn remove_after_merge_restores_every_fixture_byte_for_byte() {
        for (provider, name, x) in all_fixtures() {
            for opts in option_sets() {
                let merged = merge(provider, &x, &ours(), &opts).unwrap();
                assert_ne!(merged, x, "{provider} / {name}: merge changed nothing");
                assert!(has_ours(provider, &merged), "{provider} / {name}");
                assert!(!has_ours(provider, &x), "{provider} / {name}");
                let restored = remove(provider, &merged).unwrap();
                assert_eq!(restored, x, "{provider} / {name}: remove(merge(x)) != x");
                assert!(!has_ours(provider, &restored), "{provider} / {name}");
            }
        }
    }

    #[test]
    fn merge_is_idempotent() {
        for (provider, name, x) in all_fixtures() {
            for opts in option_sets() {
                let once = merge(provider, &x, &ours(), &opts).unwrap();
                let twice = merge(provider, &once, &ours(), &opts).unwrap();
                assert_eq!(twice, once, "{provider} / {name}");
            }
        }
    }

    #[test]
    fn merge_with_new_addresses_replaces_ours() {
        for (provider, name, x) in all_fixtures() {
            let opts = ForwardOptions::default();
            let old = merge(provider, &x, &ours(), &opts).unwrap();
            let moved = merge(provider, &old, &ours_moved(), &opts).unwrap();
            assert_eq!(
                moved,
                merge(provider, &x, &ours_moved(), &opts).unwrap(),
                "{provider} / {name}"
            );
            let forwards = parse_forwards(provider, &moved).unwrap();
            assert!(forwards.contains(&fwd("us-west1-a.svc.cluster.local", &["10.0.0.9"])));
            assert!(
                !forwards
                    .iter()
                    .any(|f| f.servers.contains(&"10.0.0.1".parse().unwrap()))
            );
            assert_eq!(remove(provider, &moved).unwrap(), x, "{provider} / {name}");
        }
    }

    #[test]
    fn merge_with_no_forwards_is_remove() {
        for (provider, name, x) in all_fixtures() {
            let opts = ForwardOptions::default();
            assert_eq!(
                merge(provider, &x, &[], &opts).unwrap(),
                x,
                "{provider} / {name}"
            );
            let merged = merge(provider, &x, &ours(), &opts).unwrap();
            assert_eq!(
                merge(provider, &merged, &[], &opts).unwrap(),
                x,
                "{provider} / {name}"
            );
        }
    }

    #[test]
    fn parse_forwards_lists_the_users_and_ours() {
        for (provider, name, x) in all_fixtures() {
            let before = parse_forwards(provider, &x).unwrap();
            let merged = merge(provider, &x, &ours(), &ForwardOptions::default()).unwrap();
            let after = parse_forwards(provider, &merged).unwrap();
            for f in before.iter().chain(&ours()) {
                assert!(
                    after.contains(f),
                    "{provider} / {name}: {f:?} missing from {after:?}"
                );
            }
            assert_eq!(
                after.len(),
                before.len() + 2,
                "{provider} / {name}: {after:?}"
            );
        }
    }

    #[test]
    fn parse_forwards_reads_realistic_user_configs() {
        assert_eq!(
            parse_forwards(DnsProvider::KubeDns, &gke_kube_dns()).unwrap(),
            vec![
                fwd("acme.internal", &["10.99.0.10"]),
                fwd(".", &["8.8.8.8", "8.8.4.4"]),
            ]
        );
        // Ports are dropped; host names cannot be represented and are skipped.
        assert_eq!(
            parse_forwards(
                DnsProvider::KubeDns,
                &data(&[(STUB_DOMAINS_KEY, PRETTY_STUB_DOMAINS)])
            )
            .unwrap(),
            vec![
                fwd("acme.internal", &["10.99.0.10", "10.99.0.11"]),
                fwd("corp.example.com", &["172.16.0.53"]),
            ]
        );
        // `forward . /etc/resolv.conf` names no address.
        let eks = corefile(&format!("{EKS_COREFILE}{USER_BLOCK}"));
        assert_eq!(
            parse_forwards(DnsProvider::CoreDns, &eks).unwrap(),
            vec![fwd("consul.local", &["10.150.0.1", "10.150.0.2"])]
        );
        let aks = &custom_fixtures()[1].1;
        assert_eq!(
            parse_forwards(DnsProvider::CoreDnsCustom, aks).unwrap(),
            vec![fwd("acme.internal", &["10.99.0.10"])]
        );
        let upstream = &custom_fixtures()[2].1;
        assert_eq!(
            parse_forwards(DnsProvider::CoreDnsCustom, upstream).unwrap(),
            vec![fwd(".", &["1.1.1.1"])]
        );
        let odd = corefile(
            "dns://Example.COM.:53, other.org {\n  forward . dns://10.1.1.1:5353 [fd00::1]:53 tls://9.9.9.9\n}\n\
             tls://secure.org {\n  forward . 10.2.2.2\n}\nhigh.port:5300 {\n  forward . 10.3.3.3\n}\n",
        );
        assert_eq!(
            parse_forwards(DnsProvider::CoreDns, &odd).unwrap(),
            vec![
                fwd("example.com", &["10.1.1.1", "fd00::1"]),
                fwd("other.org", &["10.1.1.1", "fd00::1"]),
            ]
        );
    }

    // ---- kube-dns ------------------------------------------------------------

    #[test]
    fn kube_dns_merged_output() {
        let merged = merge(
            DnsProvider::KubeDns,
            &gke_kube_dns(),
            &ours(),
            &ForwardOptions::default(),
        )
        .unwrap();
        insta::assert_snapshot!(merged[STUB_DOMAINS_KEY], @r#"
            {"acme.internal": ["10.99.0.10"], "us-central1-a.svc.cluster.local": ["10.0.1.1", "fd00::53"], "us-west1-a.svc.cluster.local": ["10.0.0.1"]}
            "#);
        insta::assert_snapshot!(merged[KUBE_DNS_OWNERSHIP_KEY], @r#"
            {"domains":["us-central1-a.svc.cluster.local","us-west1-a.svc.cluster.local"],"createdStubDomains":false}
            "#);
        assert_eq!(merged[UPSTREAM_NAMESERVERS_KEY], GKE_UPSTREAMS);

        let pretty = merge(
            DnsProvider::KubeDns,
            &data(&[(STUB_DOMAINS_KEY, PRETTY_STUB_DOMAINS)]),
            &ours(),
            &ForwardOptions::default(),
        )
        .unwrap();
        insta::assert_snapshot!(pretty[STUB_DOMAINS_KEY], @r#"
            {
              "acme.internal": [
                "10.99.0.10",
                "10.99.0.11"
              ],
              "corp.example.com": ["172.16.0.53:5353", "ns1.corp.example.com"],
              "us-central1-a.svc.cluster.local": ["10.0.1.1", "fd00::53"],
              "us-west1-a.svc.cluster.local": ["10.0.0.1"]
            }
            "#);

        let created = merge(
            DnsProvider::KubeDns,
            &data(&[]),
            &ours(),
            &ForwardOptions::default(),
        )
        .unwrap();
        insta::assert_snapshot!(format!("{created:#?}"), @r#"
            {
                "crdb-multiregion.managed-stub-domains": "{\"domains\":[\"us-central1-a.svc.cluster.local\",\"us-west1-a.svc.cluster.local\"],\"createdStubDomains\":true}",
                "stubDomains": "{\"us-central1-a.svc.cluster.local\": [\"10.0.1.1\", \"fd00::53\"], \"us-west1-a.svc.cluster.local\": [\"10.0.0.1\"]}",
            }
            "#);
    }

    /// setup.py replaced the whole `kube-dns` ConfigMap, dropping the user's
    /// stub domains and upstream nameservers.
    #[test]
    fn setup_py_overwrote_user_stub_domains() {
        let merged = merge(
            DnsProvider::KubeDns,
            &gke_kube_dns(),
            &ours(),
            &ForwardOptions::default(),
        )
        .unwrap();
        let stub: serde_json::Value = serde_json::from_str(&merged[STUB_DOMAINS_KEY]).unwrap();
        assert_eq!(stub["acme.internal"], serde_json::json!(["10.99.0.10"]));
        assert_eq!(
            stub["us-west1-a.svc.cluster.local"],
            serde_json::json!(["10.0.0.1"])
        );
        assert_eq!(merged[UPSTREAM_NAMESERVERS_KEY], GKE_UPSTREAMS);
    }

    /// setup.py's stub domains carry no ownership record: they are the user's
    /// now, and we refuse to overwrite them rather than guess.
    #[test]
    fn setup_py_leftover_stub_domains_are_a_conflict() {
        let leftover = data(&[(
            STUB_DOMAINS_KEY,
            r#"{"us-west1-a.svc.cluster.local": ["10.0.0.1"]}"#,
        )]);
        let err = merge(
            DnsProvider::KubeDns,
            &leftover,
            &ours(),
            &ForwardOptions::default(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, DnsError::Conflict { domain, .. } if domain == "us-west1-a.svc.cluster.local")
        );
        insta::assert_snapshot!(err.to_string(), @"ConfigMap `kube-dns`: key `stubDomains` already forwards `us-west1-a.svc.cluster.local` to 10.0.0.1; crdb-multiregion does not manage that entry and will not overwrite it (remove it, for example a leftover of CockroachDB's setup.py, then re-run)");
        assert!(!has_ours(DnsProvider::KubeDns, &leftover));
        assert_eq!(remove(DnsProvider::KubeDns, &leftover).unwrap(), leftover);
    }

    #[test]
    fn kube_dns_conflict_ignores_case_and_trailing_dot() {
        let user = data(&[(
            STUB_DOMAINS_KEY,
            r#"{"acme.internal": ["10.99.0.10"], "US-Central1-A.svc.cluster.local.": ["10.9.9.9"]}"#,
        )]);
        let err = merge(
            DnsProvider::KubeDns,
            &user,
            &ours(),
            &ForwardOptions::default(),
        )
        .unwrap_err();
        match err {
            DnsError::Conflict { domain, what, .. } => {
                assert_eq!(domain, "us-central1-a.svc.cluster.local");
                assert!(what.contains("10.9.9.9"), "{what}");
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
    }

    #[test]
    fn kube_dns_remove_after_user_reformatted_still_drops_only_ours() {
        let merged = merge(
            DnsProvider::KubeDns,
            &gke_kube_dns(),
            &ours(),
            &ForwardOptions::default(),
        )
        .unwrap();
        // The user (or a tool) re-serialises the JSON: our fixed format is gone.
        let value: serde_json::Value = serde_json::from_str(&merged[STUB_DOMAINS_KEY]).unwrap();
        let mut edited = merged.clone();
        edited.insert(
            STUB_DOMAINS_KEY.to_string(),
            serde_json::to_string_pretty(&value).unwrap(),
        );
        let removed = remove(DnsProvider::KubeDns, &edited).unwrap();
        let stub: serde_json::Value = serde_json::from_str(&removed[STUB_DOMAINS_KEY]).unwrap();
        assert_eq!(stub, serde_json::json!({"acme.internal": ["10.99.0.10"]}));
        assert!(!removed.contains_key(KUBE_DNS_OWNERSHIP_KEY));
        assert_eq!(removed[UPSTREAM_NAMESERVERS_KEY], GKE_UPSTREAMS);
    }

    #[test]
    fn kube_dns_entry_added_by_user_after_merge_survives_remove() {
        for (name, x) in [("existing key", gke_kube_dns()), ("created key", data(&[]))] {
            let merged = merge(
                DnsProvider::KubeDns,
                &x,
                &ours(),
                &ForwardOptions::default(),
            )
            .unwrap();
            let text = &merged[STUB_DOMAINS_KEY];
            let close = text.rfind('}').unwrap();
            let edited_text = format!(
                "{}, \"late.internal\": [\"10.5.5.5\"]{}",
                &text[..close],
                &text[close..]
            );
            let mut edited = merged.clone();
            edited.insert(STUB_DOMAINS_KEY.to_string(), edited_text);
            let removed = remove(DnsProvider::KubeDns, &edited).unwrap();
            let forwards = parse_forwards(DnsProvider::KubeDns, &removed).unwrap();
            assert!(
                forwards.contains(&fwd("late.internal", &["10.5.5.5"])),
                "{name}"
            );
            assert!(
                !forwards
                    .iter()
                    .any(|f| f.domain.ends_with("svc.cluster.local")),
                "{name}: {forwards:?}"
            );
        }
    }

    #[test]
    fn kube_dns_user_deleting_one_of_ours_is_fine() {
        let merged = merge(
            DnsProvider::KubeDns,
            &gke_kube_dns(),
            &ours(),
            &ForwardOptions::default(),
        )
        .unwrap();
        let mut edited = merged.clone();
        edited.insert(
            STUB_DOMAINS_KEY.to_string(),
            r#"{"acme.internal": ["10.99.0.10"], "us-west1-a.svc.cluster.local": ["10.0.0.1"]}"#
                .to_string(),
        );
        let removed = remove(DnsProvider::KubeDns, &edited).unwrap();
        assert_eq!(
            removed[STUB_DOMAINS_KEY],
            r#"{"acme.internal": ["10.99.0.10"]}"#
        );
    }

    #[test]
    fn kube_dns_ignores_forward_options_and_server_limit() {
        let many: Vec<String> = (1..=20).map(|i| format!("10.0.0.{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let forwards = [fwd("big.svc.cluster.local", &many)];
        let a = merge(
            DnsProvider::KubeDns,
            &data(&[]),
            &forwards,
            &ForwardOptions::default(),
        );
        let b = merge(
            DnsProvider::KubeDns,
            &data(&[]),
            &forwards,
            &ForwardOptions {
                force_tcp: true,
                cache_seconds: 5,
            },
        );
        assert_eq!(a.unwrap(), b.unwrap());
        assert!(matches!(
            merge(
                DnsProvider::CoreDns,
                &corefile(EKS_COREFILE),
                &forwards,
                &ForwardOptions::default()
            ),
            Err(DnsError::TooManyServers { count: 20, .. })
        ));
    }

    #[test]
    fn kube_dns_malformed_json_says_where() {
        let trailing_comma = data(&[(
            STUB_DOMAINS_KEY,
            "{\n  \"acme.internal\": [\"10.99.0.10\"],\n}\n",
        )]);
        let err = merge(
            DnsProvider::KubeDns,
            &trailing_comma,
            &ours(),
            &ForwardOptions::default(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, DnsError::InvalidJson { key, line: 3, column: 1, .. } if key == STUB_DOMAINS_KEY),
            "{err:?}"
        );
        insta::assert_snapshot!(err.to_string(), @"ConfigMap `kube-dns` key `stubDomains` is not valid JSON (line 3, column 1): trailing comma");
        assert!(parse_forwards(DnsProvider::KubeDns, &trailing_comma).is_err());

        let array = data(&[(STUB_DOMAINS_KEY, "[\"10.0.0.1\"]")]);
        let err = merge(
            DnsProvider::KubeDns,
            &array,
            &ours(),
            &ForwardOptions::default(),
        )
        .unwrap_err();
        insta::assert_snapshot!(err.to_string(), @"ConfigMap `kube-dns` key `stubDomains` must be a JSON object mapping each domain to a list of nameserver strings: found an array");

        let string_value = data(&[(STUB_DOMAINS_KEY, r#"{"acme.internal": "10.99.0.10"}"#)]);
        let err = merge(
            DnsProvider::KubeDns,
            &string_value,
            &ours(),
            &ForwardOptions::default(),
        )
        .unwrap_err();
        insta::assert_snapshot!(err.to_string(), @"ConfigMap `kube-dns` key `stubDomains` must be a JSON object mapping each domain to a list of nameserver strings: `acme.internal` maps to a string, not a list of strings");

        let empty = data(&[(STUB_DOMAINS_KEY, "")]);
        assert!(matches!(
            merge(
                DnsProvider::KubeDns,
                &empty,
                &ours(),
                &ForwardOptions::default()
            ),
            Err(DnsError::InvalidJson { .. })
        ));
    }

    #[test]
    fn kube_dns_broken_upstreams_do_not_block_merge() {
        // We never touch upstreamNameservers, so its content is not our business
        // when merging; reading it for `check` reports the problem.
        let x = data(&[
            (STUB_DOMAINS_KEY, GKE_STUB_DOMAINS),
            (UPSTREAM_NAMESERVERS_KEY, "8.8.8.8"),
        ]);
        let merged = merge(
            DnsProvider::KubeDns,
            &x,
            &ours(),
            &ForwardOptions::default(),
        )
        .unwrap();
        assert_eq!(remove(DnsProvider::KubeDns, &merged).unwrap(), x);
        assert!(matches!(
            parse_forwards(DnsProvider::KubeDns, &x),
            Err(DnsError::InvalidJson { .. })
        ));
        let wrong_shape = data(&[(UPSTREAM_NAMESERVERS_KEY, r#"{"a": 1}"#)]);
        assert!(matches!(
            parse_forwards(DnsProvider::KubeDns, &wrong_shape),
            Err(DnsError::JsonShape { .. })
        ));
    }

    #[test]
    fn kube_dns_unreadable_ownership_record_is_an_error() {
        let mut merged = merge(
            DnsProvider::KubeDns,
            &gke_kube_dns(),
            &ours(),
            &ForwardOptions::default(),
        )
        .unwrap();
        merged.insert(KUBE_DNS_OWNERSHIP_KEY.to_string(), "us-west1-a".to_string());
        let err = remove(DnsProvider::KubeDns, &merged).unwrap_err();
        assert!(matches!(err, DnsError::OwnershipRecord { .. }), "{err:?}");
        assert!(
            merge(
                DnsProvider::KubeDns,
                &merged,
                &ours(),
                &ForwardOptions::default()
            )
            .is_err()
        );
    }

    // ---- CoreDNS -----------------------------------------------------------------

    #[test]
    fn coredns_merged_output() {
        let merged = merge(
            DnsProvider::CoreDns,
            &corefile(EKS_COREFILE),
            &ours(),
            &ForwardOptions::default(),
        )
        .unwrap();
        insta::assert_snapshot!(merged[COREFILE_KEY], @r#"
            .:53 {
                errors
                health {
                    lameduck 5s
                  }
                ready
                kubernetes cluster.local in-addr.arpa ip6.arpa {
                  pods insecure
                  fallthrough in-addr.arpa ip6.arpa
                }
                prometheus :9153
                forward . /etc/resolv.conf
                cache 30
                loop
                reload
                loadbalance
            }

            # BEGIN crdb-multiregion (managed; do not edit)
            us-central1-a.svc.cluster.local:53 {
                errors
                cache 30
                forward . 10.0.1.1 fd00::53
            }
            us-west1-a.svc.cluster.local:53 {
                errors
                cache 30
                forward . 10.0.0.1
            }
            # END crdb-multiregion
            "#);

        let tcp = merge(
            DnsProvider::CoreDns,
            &corefile(EKS_COREFILE.trim_end()),
            &ours(),
            &ForwardOptions {
                force_tcp: true,
                cache_seconds: 10,
            },
        )
        .unwrap();
        let tail = &tcp[COREFILE_KEY][EKS_COREFILE.trim_end().len()..];
        insta::assert_snapshot!(format!("{tail:?}"), @r#"
            "\n\n# BEGIN crdb-multiregion (managed; do not edit)\nus-central1-a.svc.cluster.local:53 {\n    errors\n    cache 10\n    forward . 10.0.1.1 fd00::53 {\n        force_tcp\n    }\n}\nus-west1-a.svc.cluster.local:53 {\n    errors\n    cache 10\n    forward . 10.0.0.1 {\n        force_tcp\n    }\n}\n# END crdb-multiregion"
            "#);
    }

    #[test]
    fn coredns_user_text_after_our_section_survives_remove() {
        let merged = merge(
            DnsProvider::CoreDns,
            &corefile(EKS_COREFILE),
            &ours(),
            &ForwardOptions::default(),
        )
        .unwrap();
        let edited = corefile(&format!("{}{USER_BLOCK}", merged[COREFILE_KEY]));
        let removed = remove(DnsProvider::CoreDns, &edited).unwrap();
        assert_eq!(removed[COREFILE_KEY], format!("{EKS_COREFILE}{USER_BLOCK}"));
        // And a re-merge moves our section back to the end.
        let remerged = merge(
            DnsProvider::CoreDns,
            &edited,
            &ours(),
            &ForwardOptions::default(),
        )
        .unwrap();
        assert!(remerged[COREFILE_KEY].trim_end().ends_with(END_MARKER));
        assert!(remerged[COREFILE_KEY].contains(USER_BLOCK));
    }

    #[test]
    fn coredns_conflict_with_user_server_block() {
        for key in [
            "us-west1-a.svc.cluster.local:53",
            "us-west1-a.svc.cluster.local",
            "dns://US-WEST1-A.svc.cluster.local.:53",
            "acme.internal, us-west1-a.svc.cluster.local",
        ] {
            let text = format!("{EKS_COREFILE}{key} {{\n    forward . 10.9.9.9\n}}\n");
            let err = merge(
                DnsProvider::CoreDns,
                &corefile(&text),
                &ours(),
                &ForwardOptions::default(),
            )
            .unwrap_err();
            match &err {
                DnsError::Conflict {
                    domain, location, ..
                } => {
                    assert_eq!(domain, "us-west1-a.svc.cluster.local", "{key}");
                    assert!(location.contains("line 18"), "{key}: {location}");
                }
                other => panic!("{key}: expected a conflict, got {other:?}"),
            }
        }
        let text = format!(
            "{EKS_COREFILE}us-west1-a.svc.cluster.local:53 {{\n    forward . 10.9.9.9\n}}\n"
        );
        let err = merge(
            DnsProvider::CoreDns,
            &corefile(&text),
            &ours(),
            &ForwardOptions::default(),
        )
        .unwrap_err();
        insta::assert_snapshot!(err.to_string(), @"ConfigMap `coredns`: key `Corefile`, line 18, already has a server block for `us-west1-a.svc.cluster.local:53`; crdb-multiregion does not manage that entry and will not overwrite it (remove it, for example a leftover of CockroachDB's setup.py, then re-run)");
    }

    #[test]
    fn coredns_conflict_with_user_forward_of_our_domain() {
        let text = format!(
            "{EKS_COREFILE}svc.cluster.local:53 {{\n    forward us-central1-a.svc.cluster.local 10.9.9.9\n}}\n"
        );
        let err = merge(
            DnsProvider::CoreDns,
            &corefile(&text),
            &ours(),
            &ForwardOptions::default(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, DnsError::Conflict { domain, what, .. }
                if domain == "us-central1-a.svc.cluster.local" && what.contains("10.9.9.9")),
            "{err:?}"
        );
    }

    #[test]
    fn coredns_blocks_on_other_ports_or_transports_do_not_conflict() {
        let text = format!(
            "{EKS_COREFILE}us-west1-a.svc.cluster.local:5353 {{\n    forward . 10.9.9.9\n}}\n\
             tls://us-west1-a.svc.cluster.local {{\n    forward . 10.9.9.9\n}}\n"
        );
        let x = corefile(&text);
        let merged = merge(
            DnsProvider::CoreDns,
            &x,
            &ours(),
            &ForwardOptions::default(),
        )
        .unwrap();
        assert_eq!(remove(DnsProvider::CoreDns, &merged).unwrap(), x);
    }

    #[test]
    fn coredns_unparsable_corefiles_say_where() {
        let cases = [
            ("unclosed block", ".:53 {\n    errors\n    health {\n", 3),
            ("stray close", ".:53 {\n    errors\n}\n}\n", 4),
            ("no braces", ".:53\nerrors\nforward . 8.8.8.8\n", 1),
            ("open without key", "{\n    errors\n}\n", 1),
            ("brace as plugin", ".:53 {\n    {\n}\n", 2),
            ("one-line block", "example.org { errors }\n", 1),
            (
                "keys on a line of their own",
                "a.org\nb.org {\n    errors\n}\n",
                1,
            ),
            (
                "unterminated quote",
                ".:53 {\n    errors\n    rewrite name \"a b\n}\n",
                3,
            ),
        ];
        for (name, text, line) in cases {
            let err = merge(
                DnsProvider::CoreDns,
                &corefile(text),
                &ours(),
                &ForwardOptions::default(),
            )
            .unwrap_err();
            assert!(
                matches!(&err, DnsError::Corefile { line: l, .. } if *l == line),
                "{name}: {err:?}"
            );
            assert!(
                parse_forwards(DnsProvider::CoreDns, &corefile(text)).is_err(),
                "{name}"
            );
        }
        let err = merge(
            DnsProvider::CoreDns,
            &corefile(".:53 {\n    health {\n"),
            &ours(),
            &ForwardOptions::default(),
        )
        .unwrap_err();
        insta::assert_snapshot!(err.to_string(), @"ConfigMap `coredns` key `Corefile`, line 2: cannot parse the Corefile: `{` opened here is never closed");
    }

    #[test]
    fn coredns_deep_nesting_does_not_overflow_the_stack() {
        let depth = 100_000;
        let open = format!(".:53 {{\n    a {}\n", "{\n".repeat(depth));
        let err = parse_forwards(DnsProvider::CoreDns, &corefile(&open)).unwrap_err();
        assert!(
            matches!(&err, DnsError::Corefile { line: 2, problem, .. } if problem.contains("never closed")),
            "{err:?}"
        );
        let closed = format!("{open}{}}}\n", "}\n".repeat(depth));
        assert_eq!(
            parse_forwards(DnsProvider::CoreDns, &corefile(&closed)).unwrap(),
            vec![]
        );
    }

    #[test]
    fn coredns_parsing_follows_caddyfile_rules() {
        // Keys continue onto the next line after a trailing comma; `#` starts
        // a comment even inside a word; quotes and escapes are tokens.
        let text = "acme.internal,\n  us-west1-a.svc.cluster.local\n{\n    forward . 10.9.9.9#old: 10.8.8.8\n    rewrite name \"a \\\"b\\\" c\" d\n}\n";
        assert_eq!(
            parse_forwards(DnsProvider::CoreDns, &corefile(text)).unwrap(),
            vec![
                fwd("acme.internal", &["10.9.9.9"]),
                fwd("us-west1-a.svc.cluster.local", &["10.9.9.9"]),
            ]
        );
        let err = merge(
            DnsProvider::CoreDns,
            &corefile(text),
            &ours(),
            &ForwardOptions::default(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, DnsError::Conflict { domain, .. } if domain == "us-west1-a.svc.cluster.local"),
            "{err:?}"
        );
        // Snippets and top-level imports are not server blocks.
        let text = "(common) {\n    errors\n}\nimport custom/*.server\n.:53 {\n    import common\n    forward . 10.1.1.1\n}\n";
        assert_eq!(
            parse_forwards(DnsProvider::CoreDns, &corefile(text)).unwrap(),
            vec![fwd(".", &["10.1.1.1"])]
        );
    }

    #[test]
    fn coredns_damaged_markers_are_errors() {
        let merged = merge(
            DnsProvider::CoreDns,
            &corefile(EKS_COREFILE),
            &ours(),
            &ForwardOptions::default(),
        )
        .unwrap();
        let text = &merged[COREFILE_KEY];
        let no_end = text.replace(END_MARKER, "# the end");
        let no_begin = text.replace(BEGIN_MARKER, "# the beginning");
        let twice = format!("{text}{text}");
        for (name, bad) in [("no END", no_end), ("no BEGIN", no_begin), ("twice", twice)] {
            let err = remove(DnsProvider::CoreDns, &corefile(&bad)).unwrap_err();
            assert!(
                matches!(err, DnsError::DamagedSection { .. }),
                "{name}: {err:?}"
            );
            assert!(
                merge(
                    DnsProvider::CoreDns,
                    &corefile(&bad),
                    &ours(),
                    &ForwardOptions::default()
                )
                .is_err()
            );
        }
    }

    #[test]
    fn coredns_without_corefile() {
        let x = data(&[("other", "x")]);
        assert_eq!(
            merge(
                DnsProvider::CoreDns,
                &x,
                &ours(),
                &ForwardOptions::default()
            )
            .unwrap_err(),
            DnsError::MissingCorefile
        );
        assert_eq!(remove(DnsProvider::CoreDns, &x).unwrap(), x);
        assert_eq!(parse_forwards(DnsProvider::CoreDns, &x).unwrap(), vec![]);
        assert!(!has_ours(DnsProvider::CoreDns, &x));
    }

    // ---- AKS coredns-custom ---------------------------------------------------------

    #[test]
    fn aks_custom_merged_output() {
        let x = &custom_fixtures()[1].1;
        let merged = merge(
            DnsProvider::CoreDnsCustom,
            x,
            &ours(),
            &ForwardOptions {
                force_tcp: true,
                cache_seconds: 30,
            },
        )
        .unwrap();
        assert_eq!(merged["acme.server"], AKS_USER_SERVER);
        assert_eq!(merged["logging.override"], "log\n");
        insta::assert_snapshot!(merged[CUSTOM_SERVER_KEY], @r#"
            # Managed by crdb-multiregion; do not edit. Removed by teardown.
            us-central1-a.svc.cluster.local:53 {
                errors
                cache 30
                forward . 10.0.1.1 fd00::53 {
                    force_tcp
                }
            }
            us-west1-a.svc.cluster.local:53 {
                errors
                cache 30
                forward . 10.0.0.1 {
                    force_tcp
                }
            }
            "#);
    }

    #[test]
    fn aks_custom_conflict_with_user_server_key() {
        let x = data(&[(
            "zones.server",
            "us-central1-a.svc.cluster.local:53 {\n    forward . 10.9.9.9\n}\n",
        )]);
        let err = merge(
            DnsProvider::CoreDnsCustom,
            &x,
            &ours(),
            &ForwardOptions::default(),
        )
        .unwrap_err();
        insta::assert_snapshot!(err.to_string(), @"ConfigMap `coredns-custom`: key `zones.server`, line 1, already has a server block for `us-central1-a.svc.cluster.local:53`; crdb-multiregion does not manage that entry and will not overwrite it (remove it, for example a leftover of CockroachDB's setup.py, then re-run)");
    }

    #[test]
    fn aks_custom_unparsable_user_server_key_names_the_key() {
        let x = data(&[(
            "broken.server",
            "acme.internal:53 {\n    forward . 10.1.1.1\n",
        )]);
        let err = merge(
            DnsProvider::CoreDnsCustom,
            &x,
            &ours(),
            &ForwardOptions::default(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, DnsError::Corefile { configmap: "coredns-custom", key, line: 1, .. } if key == "broken.server"),
            "{err:?}"
        );
    }

    // ---- our own input, helpers ---------------------------------------------------------

    #[test]
    fn invalid_forwards_are_rejected_before_anything_is_written() {
        let opts = ForwardOptions::default();
        let x = gke_kube_dns();
        for bad in [
            "",
            ".",
            "a..b",
            "-a.example",
            "a b.example",
            "a{.example",
            "\"q\".example",
        ] {
            for provider in DnsProvider::ALL {
                let err = merge(provider, &x, &[fwd(bad, &["10.0.0.1"])], &opts).unwrap_err();
                assert!(
                    matches!(err, DnsError::InvalidDomain { .. }),
                    "{bad:?}: {err:?}"
                );
            }
        }
        let long_label = format!("{}.example", "a".repeat(64));
        assert!(matches!(
            merge(
                DnsProvider::KubeDns,
                &x,
                &[fwd(&long_label, &["10.0.0.1"])],
                &opts
            ),
            Err(DnsError::InvalidDomain { .. })
        ));
        assert!(matches!(
            merge(DnsProvider::KubeDns, &x, &[fwd("a.example", &[])], &opts),
            Err(DnsError::NoServers { .. })
        ));
        let dup = [
            fwd("A.example.", &["10.0.0.1"]),
            fwd("a.example", &["10.0.0.2"]),
        ];
        assert_eq!(
            merge(DnsProvider::CoreDns, &corefile(EKS_COREFILE), &dup, &opts).unwrap_err(),
            DnsError::DuplicateDomain {
                domain: "a.example".to_string()
            }
        );
    }

    #[test]
    fn our_domains_are_normalised_and_sorted() {
        let shouty = [
            fwd("US-WEST1-A.svc.cluster.local.", &["10.0.0.1"]),
            fwd("us-central1-a.svc.cluster.local", &["10.0.1.1", "fd00::53"]),
        ];
        for (provider, name, x) in all_fixtures() {
            let opts = ForwardOptions::default();
            assert_eq!(
                merge(provider, &x, &shouty, &opts).unwrap(),
                merge(provider, &x, &ours(), &opts).unwrap(),
                "{provider} / {name}"
            );
        }
    }

    #[test]
    fn malformed_inputs_never_panic() {
        // Every prefix of every fixture and of its merged form, in the key
        // each provider reads, through every entry point.
        let mut texts: Vec<String> = Vec::new();
        for (provider, _, x) in all_fixtures() {
            texts.extend(x.values().cloned());
            let merged = merge(provider, &x, &ours(), &ForwardOptions::default()).unwrap();
            texts.extend(merged.values().cloned());
        }
        for text in &texts {
            for end in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
                let t = &text[..end];
                for key in [
                    STUB_DOMAINS_KEY,
                    KUBE_DNS_OWNERSHIP_KEY,
                    COREFILE_KEY,
                    "x.server",
                    "x.override",
                ] {
                    let d = data(&[(key, t)]);
                    for provider in DnsProvider::ALL {
                        let _ = merge(provider, &d, &ours(), &ForwardOptions::default());
                        let _ = remove(provider, &d);
                        let _ = parse_forwards(provider, &d);
                        let _ = has_ours(provider, &d);
                    }
                }
            }
        }
    }

    #[test]
    fn dnsmasq_servers_translate_like_kube_dns() {
        let forwards = [
            fwd("us-west1-a.svc.cluster.local", &["10.0.0.1", "fd00::53"]),
            fwd(".", &["8.8.8.8"]),
        ];
        assert_eq!(
            dnsmasq_servers(&forwards),
            vec![
                "--server=/us-west1-a.svc.cluster.local/10.0.0.1",
                "--server=/us-west1-a.svc.cluster.local/fd00::53",
                "--server=8.8.8.8",
            ]
        );
        let merged = merge(
            DnsProvider::KubeDns,
            &gke_kube_dns(),
            &ours(),
            &ForwardOptions::default(),
        )
        .unwrap();
        insta::assert_snapshot!(
            dnsmasq_servers(&parse_forwards(DnsProvider::KubeDns, &merged).unwrap()).join("\n"),
            @r#"
                --server=/acme.internal/10.99.0.10
                --server=/us-central1-a.svc.cluster.local/10.0.1.1
                --server=/us-central1-a.svc.cluster.local/fd00::53
                --server=/us-west1-a.svc.cluster.local/10.0.0.1
                --server=8.8.8.8
                --server=8.8.4.4
                "#
        );
    }

    #[test]
    fn provider_names() {
        for (p, name) in [
            (DnsProvider::KubeDns, "kube-dns"),
            (DnsProvider::CoreDns, "coredns"),
            (DnsProvider::CoreDnsCustom, "coredns-custom"),
        ] {
            assert_eq!(p.configmap_name(), name);
            assert_eq!(p.to_string(), name);
            assert_eq!(name.parse::<DnsProvider>().unwrap(), p);
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{name}\""));
        }
        assert!("CoreDNS".parse::<DnsProvider>().is_err());
    }

    // ---- damaged ownership markers (a user's hand edit) ----------------------

    fn our_domains() -> BTreeSet<String> {
        ours().into_iter().map(|f| f.domain).collect()
    }

    /// The user deletes our BEGIN line and adds a block of their own after
    /// our section.
    fn corefile_without_begin_marker() -> (BTreeMap<String, String>, BTreeMap<String, String>) {
        let original = corefile(&format!("{EKS_COREFILE}{USER_BLOCK}"));
        let merged = merge(
            DnsProvider::CoreDns,
            &original,
            &ours(),
            &Default::default(),
        )
        .unwrap();
        let text = merged[COREFILE_KEY].replace(&format!("{BEGIN_MARKER}\n"), "");
        (
            original,
            corefile(&format!(
                "{text}acme.internal:53 {{\n    forward . 10.99.0.10\n}}\n"
            )),
        )
    }

    #[test]
    fn damaged_markers_never_make_a_users_domain_ours() {
        let (_, damaged) = corefile_without_begin_marker();
        assert!(!has_ours(DnsProvider::CoreDns, &damaged));
        assert_eq!(
            our_forwards(DnsProvider::CoreDns, &damaged),
            Vec::<Forward>::new()
        );
        // An END marker without BEGIN: nothing is ours either, never
        // `consul.local` or the user's `acme.internal`.
        let original = corefile(&format!("{EKS_COREFILE}{USER_BLOCK}"));
        let merged = merge(
            DnsProvider::CoreDns,
            &original,
            &ours(),
            &Default::default(),
        )
        .unwrap();
        let no_end = corefile(&merged[COREFILE_KEY].replace(END_MARKER, "# end"));
        assert!(remove(DnsProvider::CoreDns, &no_end).is_err());
        assert_eq!(
            our_forwards(DnsProvider::CoreDns, &no_end),
            Vec::<Forward>::new()
        );
        // Intact markers: exactly our two domains.
        let mut found: Vec<String> = our_forwards(DnsProvider::CoreDns, &merged)
            .into_iter()
            .map(|f| f.domain)
            .collect();
        found.sort();
        assert_eq!(found, our_domains().into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn our_forwarding_is_found_after_the_markers_were_removed_by_hand() {
        let (original, damaged) = corefile_without_begin_marker();
        assert_eq!(
            leftover_domains(
                DnsProvider::CoreDns,
                &damaged,
                &our_domains(),
                Some(&original)
            )
            .unwrap(),
            our_domains().into_iter().collect::<Vec<_>>()
        );
        // kube-dns: the ownership record deleted, our stub domains still there.
        let original = gke_kube_dns();
        let mut merged = merge(
            DnsProvider::KubeDns,
            &original,
            &ours(),
            &Default::default(),
        )
        .unwrap();
        merged.remove(KUBE_DNS_OWNERSHIP_KEY);
        assert!(!has_ours(DnsProvider::KubeDns, &merged));
        assert_eq!(
            leftover_domains(
                DnsProvider::KubeDns,
                &merged,
                &our_domains(),
                Some(&original)
            )
            .unwrap(),
            our_domains().into_iter().collect::<Vec<_>>()
        );
        // A domain the user forwarded before apply is never counted as ours,
        // and a clean config has nothing left over.
        let theirs: BTreeSet<String> = ["acme.internal".to_string()].into();
        assert_eq!(
            leftover_domains(DnsProvider::KubeDns, &merged, &theirs, Some(&original)).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            leftover_domains(
                DnsProvider::KubeDns,
                &original,
                &our_domains(),
                Some(&original)
            )
            .unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn forwarding_digest_is_stable_and_follows_every_change() {
        let opts = ForwardOptions::default();
        let mut reversed = ours();
        reversed.reverse();
        assert_eq!(
            forwarding_digest(&ours(), &opts),
            forwarding_digest(&reversed, &opts)
        );
        assert_eq!(
            forwarding_digest(&ours(), &opts).as_deref(),
            Some("f88bc4f8ede7ddbf"),
            "FNV-1a of the canonical text, computed independently; recorded in clusters, so it must not change between builds"
        );
        assert_ne!(
            forwarding_digest(&ours(), &opts),
            forwarding_digest(&ours_moved(), &opts)
        );
        let tcp = ForwardOptions {
            force_tcp: true,
            ..opts
        };
        assert_ne!(
            forwarding_digest(&ours(), &opts),
            forwarding_digest(&ours(), &tcp)
        );
        assert_eq!(forwarding_digest(&[], &opts), None);
    }
}
