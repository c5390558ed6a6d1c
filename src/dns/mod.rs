//! Cross-cluster DNS forwarding: merge our forwarding entries into a
//! cluster's existing DNS ConfigMap data, and remove exactly those entries
//! again.
//!
//! Owns the three text formats we write (kube-dns `stubDomains` JSON in
//! [`kube_dns`], CoreDNS server blocks in the `coredns` Corefile in
//! [`corefile`], an AKS `coredns-custom` key in [`aks`]), the
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

mod aks;
mod corefile;
#[cfg(test)]
mod fixtures;
mod kube_dns;
#[cfg(test)]
mod tests;

use aks::custom_merge;
use corefile::{
    ServerBlock, block_forwards, corefile_merge, corefile_remove, parse_corefile, parse_directives,
};
use kube_dns::{kube_dns_forwards, kube_dns_merge, kube_dns_remove};

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
