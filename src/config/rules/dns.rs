//! `[dns]`: which DNS server to configure, the DNS load balancer (public or
//! internal, the cloud whose annotations and protocol limits apply, its
//! protocols and extra annotations) and the resolver for its host name.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::ops::Range;

use toml::Spanned;
use toml::de::DeValue;

use super::super::checker::{Checker, Table, show, span_of};
use super::super::values::{ANNOTATIONS_TOTAL_LIMIT, annotation_key_problem};
use super::super::{
    Cloud, DnsConfig, LoadBalancer, Protocol, ProviderChoice, default_protocols,
    mixed_protocol_refused,
};

const DNS_KEYS: &[&str] = &[
    "provider",
    "load_balancer",
    "cloud",
    "protocols",
    "annotations",
    "lb_resolver",
];

impl Checker<'_> {
    pub(in crate::config) fn dns(&mut self, top: &Table) -> DnsConfig {
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
        self.dns_choices(t, &mut out);
        if let Some(v) = t.get("protocols") {
            self.protocols(v, &mut out);
        }
        out.lb_resolver = self.lb_resolver(t);
        if let Some(a) = self.table(t, "annotations", "dns.annotations") {
            out.annotations = self.annotations(a);
        }
        self.annotations_size(t, &out.annotations);
        self.internal_needs_annotations(t, &out);
        out
    }

    /// `provider`, `load_balancer` and `cloud` (which also sets the
    /// default protocols).
    fn dns_choices(&mut self, t: &Table, out: &mut DnsConfig) {
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
    }

    /// `protocols`: a non-empty array of "UDP"/"TCP" (any case) that the
    /// cloud's load balancer accepts on one Service.
    fn protocols(&mut self, v: &Spanned<DeValue>, out: &mut DnsConfig) {
        let span = v.span();
        let DeValue::Array(items) = v.get_ref() else {
            self.problem(
                span,
                format!(
                    "dns.protocols: expected an array such as [\"UDP\", \"TCP\"], found {}",
                    v.get_ref().type_str()
                ),
            );
            return;
        };
        let set: BTreeSet<Protocol> = items.iter().filter_map(|i| self.protocol(i)).collect();
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

    fn protocol(&mut self, item: &Spanned<DeValue>) -> Option<Protocol> {
        match item
            .get_ref()
            .as_str()
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            Some("UDP") => Some(Protocol::Udp),
            Some("TCP") => Some(Protocol::Tcp),
            _ => {
                self.problem(
                    item.span(),
                    format!(
                        "dns.protocols: {} is not a protocol; expected \"UDP\" or \"TCP\"",
                        show(item.get_ref())
                    ),
                );
                None
            }
        }
    }

    /// `lb_resolver`: an IP:PORT.
    fn lb_resolver(&mut self, t: &Table) -> Option<SocketAddr> {
        let s = self.string(t, "lb_resolver", "dns.lb_resolver")?;
        match s.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.problem(
                    span_of(t, "lb_resolver").unwrap_or(0..0),
                    format!(
                        "dns.lb_resolver: {s:?} is not an IP:PORT (e.g. \"10.0.0.2:53\", \"[fd00::2]:53\")"
                    ),
                );
                None
            }
        }
    }

    /// `[dns.annotations]`: valid keys, string values.
    fn annotations(&mut self, a: &Table) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
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
                    out.insert(key, s.to_string());
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
        out
    }

    /// The API server's limit on all annotations of an object together.
    fn annotations_size(&mut self, t: &Table, annotations: &BTreeMap<String, String>) {
        let size: usize = annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size > ANNOTATIONS_TOTAL_LIMIT {
            let span = span_of(t, "annotations").unwrap_or(0..0);
            self.problem(
                span,
                format!("dns.annotations: {size} bytes in total; the API server accepts at most {ANNOTATIONS_TOTAL_LIMIT}"),
            );
        }
    }

    /// An internal load balancer on a generic cloud is only internal
    /// through annotations the user gives.
    fn internal_needs_annotations(&mut self, t: &Table, out: &DnsConfig) {
        if out.load_balancer == LoadBalancer::Internal
            && out.cloud == Cloud::Generic
            && out.annotations.is_empty()
        {
            let span: Range<usize> = span_of(t, "load_balancer")
                .or_else(|| span_of(t, "cloud"))
                .unwrap_or(0..0);
            self.problem(
                span,
                "dns.load_balancer: \"internal\" needs cloud-specific annotations; with cloud = \"generic\" set them in [dns.annotations] or use load_balancer = \"public\"",
            );
        }
    }
}
