//! The configuration file: parsing and validation.
//!
//! Owns the TOML schema, its defaults and every validation rule. It walks the
//! spanned TOML document itself (instead of stopping at serde's first error) so
//! that it can report **every** problem with `file:line:column`, the rule that
//! was broken and, for unknown keys, the closest valid key.
//!
//! Relative paths in the file (`generated_dir`, `certs.dir`, `certs.ca_key`,
//! `cockroachdb.templates_dir`) resolve against the config file's directory,
//! so that running from another directory finds the same certificates.
//!
//! [`Config::parse`] is pure. [`Config::load`] reads one (small, regular)
//! file and, for the directories the tool writes into and may purge, looks
//! at the file system to refuse dangerous ones (see
//! [`crate::fsutil::unsafe_output_dir`]). Touches no cluster, never panics on
//! any input.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Serialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::certs::KeyType;
use crate::names;

mod values;
use values::{
    ANNOTATIONS_TOTAL_LIMIT, LABEL_VALUE_RULE, annotation_key_problem, image_problem,
    is_label_value,
};
pub use values::{Quantity, parse_quantity, shell_quote};

/// A checked configuration. Built only by [`Config::load`] / [`Config::parse`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// The file this config came from (used in messages).
    pub source: PathBuf,
    /// Name of this federation; goes into every object's labels.
    pub federation: String,
    pub cluster_domain: String,
    pub generated_dir: PathBuf,
    pub certs: CertsConfig,
    pub cockroachdb: CockroachConfig,
    pub dns: DnsConfig,
    /// Zones in file order. The first zone runs the one-time init Job.
    pub zones: Vec<Zone>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CertsConfig {
    pub dir: PathBuf,
    pub ca_key: PathBuf,
    pub key_type: KeyType,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CockroachConfig {
    pub image: String,
    pub storage: String,
    pub storage_class: Option<String>,
    /// Container resources; each defaults to its counterpart (request to
    /// limit and back), then to CockroachDB's own manifests' values.
    pub cpu_request: String,
    pub cpu_limit: String,
    pub memory_request: String,
    pub memory_limit: String,
    pub templates_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderChoice {
    Auto,
    KubeDns,
    Coredns,
    CorednsCustom,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadBalancer {
    Public,
    Internal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cloud {
    Gke,
    Eks,
    Aks,
    Generic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    Udp,
    Tcp,
}

/// The DNS load balancer's protocols when the config names none: one
/// protocol where the cloud's load balancer refuses two on one Service.
///
/// - gke: UDP. The GCP cloud provider refuses mixed-protocol LoadBalancer
///   Services (kubernetes/cloud-provider-gcp, `TestCheckMixedProtocol`).
/// - eks: TCP (forwarded with `force_tcp`), as CockroachDB's own EKS
///   manifests do. The in-tree AWS provider refuses mixed protocols
///   (kubernetes/kubernetes#105361) and the AWS Load Balancer Controller
///   makes one listener per port.
/// - aks, generic: UDP and TCP (Azure's load balancer accepts both; mixed
///   protocol Services are GA since Kubernetes 1.26).
pub fn default_protocols(cloud: Cloud) -> Vec<Protocol> {
    match cloud {
        Cloud::Gke => vec![Protocol::Udp],
        Cloud::Eks => vec![Protocol::Tcp],
        Cloud::Aks | Cloud::Generic => vec![Protocol::Udp, Protocol::Tcp],
    }
}

/// Why `cloud` cannot serve UDP and TCP on one load balancer Service, if it
/// cannot. GKE documents mixed protocols only for internal passthrough load
/// balancers (with GKE subsetting), so an internal one on gke is allowed.
pub fn mixed_protocol_refused(cloud: Cloud, lb: LoadBalancer) -> Option<&'static str> {
    match (cloud, lb) {
        (Cloud::Eks, _) => Some(
            "AWS load balancers refuse a Service with both UDP and TCP on port 53 (the in-tree provider rejects it; the AWS Load Balancer Controller makes one listener); use [\"TCP\"] (the eks default, forwarded with force_tcp)",
        ),
        (Cloud::Gke, LoadBalancer::Public) => Some(
            "GKE refuses a public load balancer Service with both UDP and TCP; use [\"UDP\"] (the gke default) or load_balancer = \"internal\" (mixed protocols need GKE subsetting there)",
        ),
        _ => None,
    }
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Udp => "UDP",
            Protocol::Tcp => "TCP",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DnsConfig {
    pub provider: ProviderChoice,
    pub load_balancer: LoadBalancer,
    pub cloud: Cloud,
    /// Protocols the DNS load balancer serves, sorted, deduplicated, non-empty.
    pub protocols: Vec<Protocol>,
    /// Extra annotations for the DNS load balancer Service.
    pub annotations: BTreeMap<String, String>,
    /// DNS server for resolving load balancer host names (`--lb-resolver`
    /// overrides it); the system resolver when unset.
    pub lb_resolver: Option<std::net::SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Zone {
    pub name: String,
    pub context: String,
    pub region: Option<String>,
    pub namespace: String,
    pub replicas: u32,
}

impl Zone {
    /// CockroachDB `--locality`: `region=<r>,zone=<z>` or `zone=<z>`.
    pub fn locality(&self) -> String {
        match &self.region {
            Some(region) => format!("region={region},zone={}", self.name),
            None => format!("zone={}", self.name),
        }
    }
}

/// One thing wrong with a config file, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("could not read config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", Invalid { path, problems })]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

struct Invalid<'a> {
    path: &'a Path,
    problems: &'a [Problem],
}

impl fmt::Display for Invalid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{} is not a valid config ({n} problem{}):",
            self.path.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for p in self.problems {
            write!(
                f,
                "\n  {}:{}:{}: {}",
                self.path.display(),
                p.line,
                p.column,
                p.message
            )?;
        }
        Ok(())
    }
}

impl ConfigError {
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid { problems, .. } => problems,
            ConfigError::Read { .. } => &[],
        }
    }
}

const TOP_KEYS: &[&str] = &[
    "federation",
    "cluster_domain",
    "generated_dir",
    "certs",
    "cockroachdb",
    "dns",
    "zones",
];
const CERTS_KEYS: &[&str] = &["dir", "ca_key", "key_type"];
const CRDB_KEYS: &[&str] = &[
    "image",
    "storage",
    "storage_class",
    "cpu_request",
    "cpu_limit",
    "memory_request",
    "memory_limit",
    "templates_dir",
];
const DNS_KEYS: &[&str] = &[
    "provider",
    "load_balancer",
    "cloud",
    "protocols",
    "annotations",
    "lb_resolver",
];
const ZONE_KEYS: &[&str] = &["name", "context", "region", "namespace", "replicas"];

impl Config {
    /// Reads and validates a config file; relative paths in it resolve
    /// against its directory, and the output directories are checked on the
    /// file system.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = crate::fsutil::read_small_text(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::check_text(path, &text, Some(config_dir(path)))
    }

    /// Validates config text; `path` is used for messages only, relative
    /// paths are kept as written and the file system is not looked at.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        Config::check_text(path, text, None)
    }

    fn check_text(path: &Path, text: &str, base: Option<&Path>) -> Result<Config, ConfigError> {
        let mut cx = Checker {
            text,
            base,
            problems: Vec::new(),
        };
        let config = cx.check(path);
        if cx.problems.is_empty()
            && let Some(config) = config
        {
            return Ok(config);
        }
        let mut problems = cx.problems;
        problems.sort_by_key(|a| (a.line, a.column));
        problems.dedup();
        Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        })
    }

    /// Zone by name.
    pub fn zone(&self, name: &str) -> Option<&Zone> {
        self.zones.iter().find(|z| z.name == name)
    }

    /// The zone that runs the one-time init Job.
    pub fn first_zone(&self) -> &Zone {
        &self.zones[0]
    }

    /// Checks the names of `--zone` flags (every command that has the flag
    /// uses this): each must be a zone of this config; a close one is
    /// suggested.
    pub fn check_zone_flags(&self, names: &[String]) -> Result<(), UnknownZone> {
        let zones: Vec<String> = self.zones.iter().map(|z| z.name.clone()).collect();
        match names.iter().find(|n| self.zone(n).is_none()) {
            None => Ok(()),
            Some(name) => Err(UnknownZone {
                name: name.clone(),
                file: self.source.clone(),
                suggestion: crate::suggest::did_you_mean(name, &zones),
                zones,
            }),
        }
    }

    /// Whether `--zone` flags `names` select `zone` (no flag selects all).
    pub fn zone_selected(names: &[String], zone: &str) -> bool {
        names.is_empty() || names.iter().any(|n| n == zone)
    }
}

/// A `--zone` flag that names no zone of the config.
#[derive(Debug, thiserror::Error)]
#[error(
    "--zone {name}: no zone {name:?} in {}{}; its zones are {}",
    .file.display(),
    .suggestion.as_ref().map(|s| format!(" (did you mean {s:?}?)")).unwrap_or_default(),
    .zones.join(", ")
)]
pub struct UnknownZone {
    pub name: String,
    pub file: PathBuf,
    pub suggestion: Option<String>,
    pub zones: Vec<String>,
}

struct Checker<'t> {
    text: &'t str,
    /// The config file's directory, when loaded from a file: relative paths
    /// resolve against it and output directories are checked on disk.
    base: Option<&'t Path>,
    problems: Vec<Problem>,
}

/// The directory of the config file, as given (empty for a bare file name,
/// so that paths stay as short as the user wrote them).
fn config_dir(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new(""))
}

type Table<'i> = DeTable<'i>;

impl<'t> Checker<'t> {
    fn problem(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, column) = line_col(self.text, span.start);
        self.problems.push(Problem {
            line,
            column,
            message: message.into(),
        });
    }

    fn check(&mut self, path: &Path) -> Option<Config> {
        let (doc, errors) = DeTable::parse_recoverable(self.text);
        if !errors.is_empty() {
            for e in errors {
                let span = e.span().unwrap_or(0..0);
                self.problem(
                    span,
                    format!("TOML syntax error: {}", e.message().trim_end()),
                );
            }
            return None;
        }
        let doc_span = doc.span();
        let top = doc.into_inner();
        self.unknown_keys(&top, TOP_KEYS, "the top level");

        let federation = self
            .string(&top, "federation", "federation")
            .unwrap_or_else(|| names::DEFAULT_FEDERATION.to_string());
        if let Some(span) = span_of(&top, "federation")
            && !is_label_value(&federation)
        {
            self.problem(
                span,
                format!(
                    "federation: {federation:?} must be a valid label value ({LABEL_VALUE_RULE})"
                ),
            );
        }
        let cluster_domain = self
            .string(&top, "cluster_domain", "cluster_domain")
            .unwrap_or_else(|| names::DEFAULT_CLUSTER_DOMAIN.to_string());
        if let Some(span) = span_of(&top, "cluster_domain")
            && !is_dns_subdomain(&cluster_domain)
        {
            self.problem(
                    span,
                    format!(
                        "cluster_domain: {cluster_domain:?} is not a DNS subdomain (dot-separated DNS-1123 labels, e.g. \"cluster.local\")"
                    ),
                );
        }
        let generated_dir = self
            .path(&top, "generated_dir", "generated_dir")
            .unwrap_or_else(|| self.resolved(PathBuf::from(names::DEFAULT_GENERATED_DIR)));

        let certs = self.certs(&top);
        self.output_dirs(&top, &generated_dir, &certs.dir);
        let cockroachdb = self.cockroachdb(&top);
        let dns = self.dns(&top);
        let zones = self.zones(&top, doc_span);

        Some(Config {
            source: path.to_path_buf(),
            federation,
            cluster_domain,
            generated_dir,
            certs,
            cockroachdb,
            dns,
            zones,
        })
    }

    fn certs(&mut self, top: &Table) -> CertsConfig {
        let mut out = CertsConfig {
            dir: self.resolved(PathBuf::from(names::DEFAULT_CERTS_DIR)),
            ca_key: self.resolved(PathBuf::from(names::DEFAULT_CA_KEY)),
            key_type: KeyType::EcdsaP256,
        };
        let Some(t) = self.table(top, "certs", "certs") else {
            return out;
        };
        self.unknown_keys(t, CERTS_KEYS, "[certs]");
        if let Some(dir) = self.path(t, "dir", "certs.dir") {
            out.dir = dir;
        }
        if let Some(key) = self.path(t, "ca_key", "certs.ca_key") {
            out.ca_key = key;
        }
        if let Some(kt) = self.choice(
            t,
            "key_type",
            "certs.key_type",
            &[
                ("ecdsa-p256", KeyType::EcdsaP256),
                ("rsa-2048", KeyType::Rsa2048),
            ],
        ) {
            out.key_type = kt;
        }
        // The CA key must stay out of the certs dir: that directory's files go
        // into Secrets, and the original's layout keeps them apart for that reason.
        if let Some(span) = span_of(t, "ca_key").or_else(|| span_of(t, "dir"))
            && path_is_inside(&out.ca_key, &out.dir)
        {
            self.problem(
                    span,
                    format!(
                        "certs.ca_key: {} is inside certs.dir {}; the CA key must be kept outside the directory whose files are copied into cluster Secrets",
                        out.ca_key.display(),
                        out.dir.display()
                    ),
                );
        }
        out
    }

    fn cockroachdb(&mut self, top: &Table) -> CockroachConfig {
        let mut out = CockroachConfig {
            image: names::DEFAULT_IMAGE.to_string(),
            storage: names::DEFAULT_STORAGE.to_string(),
            storage_class: None,
            cpu_request: names::DEFAULT_CPU.to_string(),
            cpu_limit: names::DEFAULT_CPU.to_string(),
            memory_request: names::DEFAULT_MEMORY.to_string(),
            memory_limit: names::DEFAULT_MEMORY.to_string(),
            templates_dir: None,
        };
        let Some(t) = self.table(top, "cockroachdb", "cockroachdb") else {
            return out;
        };
        self.unknown_keys(t, CRDB_KEYS, "[cockroachdb]");
        if let Some(image) = self.string(t, "image", "cockroachdb.image") {
            if let Some(problem) = image_problem(&image) {
                let span = span_of(t, "image").unwrap_or(0..0);
                self.problem(span, format!("cockroachdb.image: {image:?} {problem}"));
            }
            out.image = image;
        }
        if let Some((storage, q)) = self.quantity(t, "storage", "cockroachdb.storage") {
            // The API server refuses a PVC whose storage request is not > 0.
            if q.value <= 0.0 {
                let span = span_of(t, "storage").unwrap_or(0..0);
                self.problem(
                    span,
                    format!(
                        "cockroachdb.storage: {storage:?} must be greater than zero, e.g. \"100Gi\""
                    ),
                );
            }
            out.storage = storage;
        }
        if let Some(class) = self.string(t, "storage_class", "cockroachdb.storage_class") {
            if !is_dns_subdomain(&class) {
                let span = span_of(t, "storage_class").unwrap_or(0..0);
                self.problem(
                    span,
                    format!("cockroachdb.storage_class: {class:?} is not a valid StorageClass name (a DNS subdomain)"),
                );
            }
            out.storage_class = Some(class);
        }
        let cpu_request = self.quantity(t, "cpu_request", "cockroachdb.cpu_request");
        let cpu_limit = self.quantity(t, "cpu_limit", "cockroachdb.cpu_limit");
        let memory_request = self.quantity(t, "memory_request", "cockroachdb.memory_request");
        let memory_limit = self.quantity(t, "memory_limit", "cockroachdb.memory_limit");
        for (key, value) in [
            ("memory_request", &memory_request),
            ("memory_limit", &memory_limit),
        ] {
            if let Some((v, q)) = value
                && q.value < (1u64 << 20) as f64
            {
                let span = span_of(t, key).unwrap_or(0..0);
                self.problem(
                    span,
                    format!("cockroachdb.{key}: {v:?} must be a memory size of at least 1Mi, e.g. \"8Gi\""),
                );
            }
        }
        for (what, request, limit) in [
            ("cpu", &cpu_request, &cpu_limit),
            ("memory", &memory_request, &memory_limit),
        ] {
            // The API server: a request must be less than or equal to its limit.
            if let (Some((r, rq)), Some((l, lq))) = (request, limit)
                && rq.value > lq.value
            {
                let span = span_of(t, &format!("{what}_request")).unwrap_or(0..0);
                self.problem(
                    span,
                    format!("cockroachdb.{what}_request: {r:?} is more than {what}_limit {l:?}; a request must be less than or equal to its limit"),
                );
            }
        }
        let pick =
            |a: &Option<(String, Quantity)>, b: &Option<(String, Quantity)>, default: &str| {
                a.as_ref()
                    .or(b.as_ref())
                    .map_or_else(|| default.to_string(), |(s, _)| s.clone())
            };
        out.cpu_request = pick(&cpu_request, &cpu_limit, names::DEFAULT_CPU);
        out.cpu_limit = pick(&cpu_limit, &cpu_request, names::DEFAULT_CPU);
        out.memory_request = pick(&memory_request, &memory_limit, names::DEFAULT_MEMORY);
        out.memory_limit = pick(&memory_limit, &memory_request, names::DEFAULT_MEMORY);
        out.templates_dir = self.path(t, "templates_dir", "cockroachdb.templates_dir");
        out
    }

    fn dns(&mut self, top: &Table) -> DnsConfig {
        let mut out = DnsConfig {
            provider: ProviderChoice::Auto,
            load_balancer: LoadBalancer::Internal,
            cloud: Cloud::Gke,
            protocols: default_protocols(Cloud::Gke),
            annotations: BTreeMap::new(),
            lb_resolver: None,
        };
        let Some(t) = self.table(top, "dns", "dns") else {
            return out;
        };
        self.unknown_keys(t, DNS_KEYS, "[dns]");
        if let Some(p) = self.choice(
            t,
            "provider",
            "dns.provider",
            &[
                ("auto", ProviderChoice::Auto),
                ("kube-dns", ProviderChoice::KubeDns),
                ("coredns", ProviderChoice::Coredns),
                ("coredns-custom", ProviderChoice::CorednsCustom),
            ],
        ) {
            out.provider = p;
        }
        if let Some(lb) = self.choice(
            t,
            "load_balancer",
            "dns.load_balancer",
            &[
                ("public", LoadBalancer::Public),
                ("internal", LoadBalancer::Internal),
            ],
        ) {
            out.load_balancer = lb;
        }
        if let Some(c) = self.choice(
            t,
            "cloud",
            "dns.cloud",
            &[
                ("gke", Cloud::Gke),
                ("eks", Cloud::Eks),
                ("aks", Cloud::Aks),
                ("generic", Cloud::Generic),
            ],
        ) {
            out.cloud = c;
            out.protocols = default_protocols(c);
        }
        if let Some(v) = t.get("protocols") {
            let span = v.span();
            match v.get_ref() {
                DeValue::Array(items) => {
                    let mut set = BTreeSet::new();
                    for item in items {
                        match item.get_ref().as_str().map(str::to_ascii_uppercase).as_deref() {
                            Some("UDP") => {
                                set.insert(Protocol::Udp);
                            }
                            Some("TCP") => {
                                set.insert(Protocol::Tcp);
                            }
                            _ => self.problem(
                                item.span(),
                                format!(
                                    "dns.protocols: {} is not a protocol; expected \"UDP\" or \"TCP\"",
                                    show(item.get_ref())
                                ),
                            ),
                        }
                    }
                    if items.is_empty() {
                        self.problem(
                            span.clone(),
                            "dns.protocols: must name at least one of \"UDP\", \"TCP\"",
                        );
                    }
                    if !set.is_empty() {
                        out.protocols = set.into_iter().collect();
                    }
                    if let Some(why) = mixed_protocol_refused(out.cloud, out.load_balancer)
                        && out.protocols.len() > 1
                    {
                        self.problem(span, format!("dns.protocols: {why}"));
                    }
                }
                other => self.problem(
                    span,
                    format!(
                        "dns.protocols: expected an array such as [\"UDP\", \"TCP\"], found {}",
                        other.type_str()
                    ),
                ),
            }
        }
        if let Some(s) = self.string(t, "lb_resolver", "dns.lb_resolver") {
            match s.parse::<std::net::SocketAddr>() {
                Ok(addr) => out.lb_resolver = Some(addr),
                Err(_) => self.problem(
                    span_of(t, "lb_resolver").unwrap_or(0..0),
                    format!(
                        "dns.lb_resolver: {s:?} is not an IP:PORT (e.g. \"10.0.0.2:53\", \"[fd00::2]:53\")"
                    ),
                ),
            }
        }
        if let Some(a) = self.table(t, "annotations", "dns.annotations") {
            for (k, v) in a.iter() {
                let key = k.get_ref().to_string();
                if let Some(problem) = annotation_key_problem(&key) {
                    self.problem(
                        k.span(),
                        format!(
                            "dns.annotations: key {key:?} is not a valid annotation key: {problem}"
                        ),
                    );
                }
                match v.get_ref().as_str() {
                    Some(s) => {
                        out.annotations.insert(key, s.to_string());
                    }
                    None => self.problem(
                        v.span(),
                        format!(
                            "dns.annotations.{}: annotation values must be strings, found {}",
                            k.get_ref(),
                            v.get_ref().type_str()
                        ),
                    ),
                }
            }
        }
        let size: usize = out.annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size > ANNOTATIONS_TOTAL_LIMIT {
            let span = span_of(t, "annotations").unwrap_or(0..0);
            self.problem(
                span,
                format!("dns.annotations: {size} bytes in total; the API server accepts at most {ANNOTATIONS_TOTAL_LIMIT}"),
            );
        }
        if out.load_balancer == LoadBalancer::Internal
            && out.cloud == Cloud::Generic
            && out.annotations.is_empty()
        {
            let span = span_of(t, "load_balancer")
                .or_else(|| span_of(t, "cloud"))
                .unwrap_or(0..0);
            self.problem(
                span,
                "dns.load_balancer: \"internal\" needs cloud-specific annotations; with cloud = \"generic\" set them in [dns.annotations] or use load_balancer = \"public\"",
            );
        }
        out
    }

    fn zones(&mut self, top: &Table, doc_span: Range<usize>) -> Vec<Zone> {
        let Some(v) = top.get("zones") else {
            self.problem(
                doc_span.start..doc_span.start,
                "zones: at least one zone is required (add a [[zones]] table with name and context)",
            );
            return Vec::new();
        };
        let DeValue::Array(items) = v.get_ref() else {
            self.problem(
                v.span(),
                format!(
                    "zones: expected an array of tables ([[zones]]), found {}",
                    v.get_ref().type_str()
                ),
            );
            return Vec::new();
        };
        if items.is_empty() {
            self.problem(v.span(), "zones: at least one zone is required");
        }
        let mut zones = Vec::new();
        let mut seen_names: BTreeMap<String, usize> = BTreeMap::new();
        let mut seen_ns: BTreeMap<String, usize> = BTreeMap::new();
        let mut seen_ctx: BTreeMap<String, usize> = BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            let at = format!("zones[{i}]");
            let DeValue::Table(t) = item.get_ref() else {
                self.problem(
                    item.span(),
                    format!(
                        "{at}: expected a table, found {}",
                        item.get_ref().type_str()
                    ),
                );
                continue;
            };
            self.unknown_keys(t, ZONE_KEYS, "[[zones]]");
            let name = self.string(t, "name", &format!("{at}.name"));
            let name_span = span_of(t, "name").unwrap_or(item.span());
            match &name {
                None if t.get("name").is_none() => {
                    self.problem(item.span(), format!("{at}: missing required key `name`"))
                }
                Some(n) if !is_dns_label(n) => self.problem(
                    name_span.clone(),
                    format!("{at}.name: {n:?} is not a DNS-1123 label ({DNS_LABEL_RULE})"),
                ),
                Some(n) => {
                    if let Some(first) = seen_names.insert(n.clone(), i) {
                        self.problem(
                            name_span.clone(),
                            format!("{at}.name: duplicate zone {n:?} (also zones[{first}])"),
                        );
                    }
                }
                None => {}
            }
            let context = self.string(t, "context", &format!("{at}.context"));
            let ctx_span = span_of(t, "context").unwrap_or(item.span());
            match &context {
                None if t.get("context").is_none() => self.problem(
                    item.span(),
                    format!("{at}: missing required key `context` (the kubectl context of this zone's cluster)"),
                ),
                Some(c) if c.trim().is_empty() => self.problem(
                    ctx_span.clone(),
                    format!("{at}.context: must not be empty (the kubectl context of this zone's cluster)"),
                ),
                Some(c) if c.chars().any(char::is_control) => self.problem(
                    ctx_span.clone(),
                    format!("{at}.context: {c:?} contains a control character (a newline, say); kubectl context names are printed into generated files and must be one line"),
                ),
                Some(c) => {
                    if let Some(first) = seen_ctx.insert(c.clone(), i) {
                        self.problem(
                            ctx_span.clone(),
                            format!("{at}.context: duplicate context {c:?} (also zones[{first}]); each zone needs its own cluster"),
                        );
                    }
                }
                None => {}
            }
            let region = self.string(t, "region", &format!("{at}.region"));
            if let Some(r) = &region
                && !is_label_value(r)
            {
                let span = span_of(t, "region").unwrap_or(item.span());
                self.problem(
                        span,
                        format!("{at}.region: {r:?} must be a valid label value ({LABEL_VALUE_RULE}); it goes into --locality and labels"),
                    );
            }
            let namespace = match self.string(t, "namespace", &format!("{at}.namespace")) {
                Some(ns) => {
                    let span = span_of(t, "namespace").unwrap_or(item.span());
                    if !is_dns_label(&ns) {
                        self.problem(
                            span.clone(),
                            format!(
                                "{at}.namespace: {ns:?} is not a DNS-1123 label ({DNS_LABEL_RULE})"
                            ),
                        );
                    } else if RESERVED_NAMESPACES.contains(&ns.as_str()) {
                        self.problem(
                            span.clone(),
                            format!("{at}.namespace: {ns:?} is reserved; CockroachDB gets a namespace of its own per zone"),
                        );
                    }
                    Some((ns, span))
                }
                None => name
                    .clone()
                    .filter(|n| is_dns_label(n))
                    .map(|n| (n, name_span.clone())),
            };
            if let Some((ns, span)) = &namespace
                && is_dns_label(ns)
                && let Some(first) = seen_ns.insert(ns.clone(), i)
            {
                self.problem(
                            span.clone(),
                            format!("{at}.namespace: duplicate namespace {ns:?} (also zones[{first}]); zone namespaces must be distinct so their DNS names do not collide"),
                        );
            }
            let replicas = match t.get("replicas") {
                None => Some(names::DEFAULT_REPLICAS),
                Some(v) => match v.get_ref().as_integer() {
                    Some(int) => match i64::from_str_radix(int.as_str(), int.radix()) {
                        Ok(n) if (1..=1000).contains(&n) => Some(n as u32),
                        Ok(n) => {
                            self.problem(
                                v.span(),
                                format!(
                                    "{at}.replicas: {n} is out of range; must be between 1 and 1000"
                                ),
                            );
                            None
                        }
                        Err(_) => {
                            self.problem(v.span(), format!("{at}.replicas: number out of range"));
                            None
                        }
                    },
                    None => {
                        self.problem(
                            v.span(),
                            format!(
                                "{at}.replicas: expected an integer, found {}",
                                v.get_ref().type_str()
                            ),
                        );
                        None
                    }
                },
            };
            if let (Some(name), Some(context), Some((namespace, _)), Some(replicas)) =
                (name, context, namespace, replicas)
            {
                zones.push(Zone {
                    name,
                    context,
                    region,
                    namespace,
                    replicas,
                });
            }
        }
        zones
    }

    // ---- generic accessors: each reports its own type errors ----

    fn unknown_keys(&mut self, t: &Table, allowed: &[&str], place: &str) {
        for (k, _) in t.iter() {
            let key = k.get_ref().as_ref();
            if !allowed.contains(&key) {
                let hint = crate::suggest::closest(key, allowed)
                    .map(|c| format!(" (did you mean `{c}`?)"))
                    .unwrap_or_else(|| format!(" (valid keys: {})", allowed.join(", ")));
                self.problem(k.span(), format!("unknown key `{key}` in {place}{hint}"));
            }
        }
    }

    fn string(&mut self, t: &Table, key: &str, at: &str) -> Option<String> {
        let v = t.get(key)?;
        match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            other => {
                self.problem(
                    v.span(),
                    format!("{at}: expected a string, found {}", other.type_str()),
                );
                None
            }
        }
    }

    fn path(&mut self, t: &Table, key: &str, at: &str) -> Option<PathBuf> {
        let s = self.string(t, key, at)?;
        if s.is_empty() {
            let span = span_of(t, key).unwrap_or(0..0);
            self.problem(span, format!("{at}: must not be empty"));
            return None;
        }
        Some(self.resolved(PathBuf::from(s)))
    }

    /// `path` resolved against the config file's directory (when loaded
    /// from a file and the path is relative).
    fn resolved(&self, path: PathBuf) -> PathBuf {
        match self.base {
            Some(base) if path.is_relative() => base.join(path),
            _ => path,
        }
    }

    /// `generated_dir` and `certs.dir` are written into and purged by
    /// `teardown --purge-local`: refuse the ones where that could hit the
    /// user's own files (checked on disk, so only when loaded from a file),
    /// and the two being the same or one inside the other.
    fn output_dirs(&mut self, top: &Table, generated_dir: &Path, certs_dir: &Path) {
        let certs_span = self
            .table_quiet(top, "certs")
            .and_then(|t| span_of(t, "dir"));
        let generated_span = span_of(top, "generated_dir");
        if path_is_inside(generated_dir, certs_dir) || path_is_inside(certs_dir, generated_dir) {
            self.problem(
                generated_span.clone().or(certs_span.clone()).unwrap_or(0..0),
                format!(
                    "generated_dir {} and certs.dir {} must be separate directories, neither inside the other",
                    generated_dir.display(),
                    certs_dir.display()
                ),
            );
        }
        let Some(base) = self.base else {
            return;
        };
        for (at, dir, span) in [
            ("generated_dir", generated_dir, generated_span),
            ("certs.dir", certs_dir, certs_span),
        ] {
            if let Some(why) = crate::fsutil::unsafe_output_dir(dir, base) {
                self.problem(
                    span.unwrap_or(0..0),
                    format!(
                        "{at}: {} cannot be used: {why}; the tool writes into this directory and `teardown --purge-local` cleans it up, so use a directory of its own (e.g. \"{}\")",
                        dir.display(),
                        if at == "certs.dir" { names::DEFAULT_CERTS_DIR } else { names::DEFAULT_GENERATED_DIR }
                    ),
                );
            }
        }
    }

    /// The table under `key`, if it is one (type errors are reported elsewhere).
    fn table_quiet<'a, 'i>(&self, t: &'a Table<'i>, key: &str) -> Option<&'a Table<'i>> {
        match t.get(key)?.get_ref() {
            DeValue::Table(inner) => Some(inner),
            _ => None,
        }
    }

    fn quantity(&mut self, t: &Table, key: &str, at: &str) -> Option<(String, Quantity)> {
        let s = self.string(t, key, at)?;
        match parse_quantity(&s) {
            Ok(q) => Some((s, q)),
            Err(why) => {
                let span = span_of(t, key).unwrap_or(0..0);
                self.problem(
                    span,
                    format!("{at}: {s:?} is not a Kubernetes quantity: it {why} (examples: \"500m\", \"2\", \"8Gi\")"),
                );
                None
            }
        }
    }

    fn table<'a, 'i>(&mut self, t: &'a Table<'i>, key: &str, at: &str) -> Option<&'a Table<'i>> {
        let v = t.get(key)?;
        match v.get_ref() {
            DeValue::Table(inner) => Some(inner),
            other => {
                self.problem(
                    v.span(),
                    format!("{at}: expected a table, found {}", other.type_str()),
                );
                None
            }
        }
    }

    fn choice<T: Copy>(
        &mut self,
        t: &Table,
        key: &str,
        at: &str,
        options: &[(&str, T)],
    ) -> Option<T> {
        let s = self.string(t, key, at)?;
        if let Some((_, v)) = options.iter().find(|(name, _)| *name == s) {
            return Some(*v);
        }
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        let hint = crate::suggest::closest(&s, &names)
            .map(|c| format!(" (did you mean \"{c}\"?)"))
            .unwrap_or_default();
        let span = span_of(t, key).unwrap_or(0..0);
        self.problem(
            span,
            format!(
                "{at}: {s:?} is not one of {}{hint}",
                names
                    .iter()
                    .map(|n| format!("\"{n}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        None
    }
}

const DNS_LABEL_RULE: &str = "at most 63 characters of lowercase letters, digits and '-', starting and ending with a letter or digit";
const RESERVED_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

fn span_of(t: &Table, key: &str) -> Option<Range<usize>> {
    t.get(key).map(Spanned::span)
}

fn show(v: &DeValue) -> String {
    match v {
        DeValue::String(s) => format!("{s:?}"),
        other => other.type_str().to_string(),
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let mut line = 1;
    let mut line_start = 0;
    for (i, b) in text.bytes().enumerate().take(offset) {
        if b == b'\n' {
            line += 1;
            line_start = i + 1;
        }
    }
    let column = text
        .get(line_start..offset)
        .map(|s| s.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}

/// RFC 1123 label as Kubernetes checks it for namespaces.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Bytes of a memory quantity (rounded up), if it is one.
pub fn quantity_bytes(s: &str) -> Option<u64> {
    parse_quantity(s).ok()?.ceil_u64()
}

fn path_is_inside(inner: &Path, outer: &Path) -> bool {
    let norm = |p: &Path| -> PathBuf {
        p.components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect()
    };
    norm(inner).starts_with(norm(outer))
}

#[cfg(test)]
mod tests;
