//! The rules of the config file, section by section: what each key may
//! hold, its default, and the checks across keys. Each rule reports through
//! [`Checker::problem`] and goes on, so that every problem is found in one
//! pass. The `[dns]` and `[[zones]]` rules are in [`dns`] and [`zones`].

use std::path::{Path, PathBuf};

use toml::de::DeTable;

use super::checker::{Checker, Table, span_of};
use super::values::{LABEL_VALUE_RULE, Quantity, image_problem, is_label_value, parse_quantity};
use super::{CertsConfig, CockroachConfig, Config};
use crate::certs::KeyType;
use crate::names;

mod dns;
mod zones;

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

impl Checker<'_> {
    /// The whole document: `None` when it is not TOML at all.
    pub(super) fn check(&mut self, path: &Path) -> Option<Config> {
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

        let federation = self.federation(&top);
        let cluster_domain = self.cluster_domain(&top);
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

    /// `federation`: a label value, [`names::DEFAULT_FEDERATION`] by default.
    fn federation(&mut self, top: &Table) -> String {
        let federation = self
            .string(top, "federation", "federation")
            .unwrap_or_else(|| names::DEFAULT_FEDERATION.to_string());
        if let Some(span) = span_of(top, "federation")
            && !is_label_value(&federation)
        {
            self.problem(
                span,
                format!(
                    "federation: {federation:?} must be a valid label value ({LABEL_VALUE_RULE})"
                ),
            );
        }
        federation
    }

    /// `cluster_domain`: a DNS subdomain, [`names::DEFAULT_CLUSTER_DOMAIN`] by
    /// default.
    fn cluster_domain(&mut self, top: &Table) -> String {
        let cluster_domain = self
            .string(top, "cluster_domain", "cluster_domain")
            .unwrap_or_else(|| names::DEFAULT_CLUSTER_DOMAIN.to_string());
        if let Some(span) = span_of(top, "cluster_domain")
            && !is_dns_subdomain(&cluster_domain)
        {
            self.problem(
                    span,
                    format!(
                        "cluster_domain: {cluster_domain:?} is not a DNS subdomain (dot-separated DNS-1123 labels, e.g. \"cluster.local\")"
                    ),
                );
        }
        cluster_domain
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
        self.resources(t, &mut out);
        out.templates_dir = self.path(t, "templates_dir", "cockroachdb.templates_dir");
        out
    }

    /// Container resources: each at least sensible, requests not above
    /// limits, and each defaulting to its counterpart, then to
    /// CockroachDB's own manifests' values.
    fn resources(&mut self, t: &Table, out: &mut CockroachConfig) {
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

pub(super) fn path_is_inside(inner: &Path, outer: &Path) -> bool {
    let norm = |p: &Path| -> PathBuf {
        p.components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect()
    };
    norm(inner).starts_with(norm(outer))
}
