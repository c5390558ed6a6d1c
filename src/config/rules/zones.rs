//! `[[zones]]`: at least one; per zone a DNS-1123 `name`, a kubectl
//! `context`, an optional `region`, a `namespace` (the name by default) and
//! `replicas`; names, contexts and namespaces distinct across zones.

use std::collections::BTreeMap;
use std::ops::Range;

use toml::de::{DeArray, DeValue};

use super::super::Zone;
use super::super::checker::{Checker, Table, span_of};
use super::super::values::{LABEL_VALUE_RULE, is_label_value};
use super::is_dns_label;
use crate::names;

const ZONE_KEYS: &[&str] = &["name", "context", "region", "namespace", "replicas"];
const DNS_LABEL_RULE: &str = "at most 63 characters of lowercase letters, digits and '-', starting and ending with a letter or digit";
const RESERVED_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// What earlier zones took: value -> index of the first zone with it.
#[derive(Default)]
struct Seen {
    names: BTreeMap<String, usize>,
    contexts: BTreeMap<String, usize>,
    namespaces: BTreeMap<String, usize>,
}

/// One `[[zones]]` table being checked: its index, place in messages
/// (`zones[2]`) and span.
struct ZoneAt<'a, 'i> {
    i: usize,
    at: String,
    t: &'a Table<'i>,
    span: Range<usize>,
}

impl ZoneAt<'_, '_> {
    /// The span of `key`, else of the whole table.
    fn span_of(&self, key: &str) -> Range<usize> {
        span_of(self.t, key).unwrap_or(self.span.clone())
    }
}

impl Checker<'_> {
    pub(in crate::config) fn zones(&mut self, top: &Table, doc_span: Range<usize>) -> Vec<Zone> {
        let Some(items) = self.zone_items(top, doc_span) else {
            return Vec::new();
        };
        let mut seen = Seen::default();
        let mut zones = Vec::new();
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
            let zone = ZoneAt {
                i,
                at,
                t,
                span: item.span(),
            };
            zones.extend(self.zone(&zone, &mut seen));
        }
        zones
    }

    /// The `zones` array, with a problem when it is missing, not an array
    /// or empty.
    fn zone_items<'a, 'i>(
        &mut self,
        top: &'a Table<'i>,
        doc_span: Range<usize>,
    ) -> Option<&'a DeArray<'i>> {
        let Some(v) = top.get("zones") else {
            self.problem(
                doc_span.start..doc_span.start,
                "zones: at least one zone is required (add a [[zones]] table with name and context)",
            );
            return None;
        };
        let DeValue::Array(items) = v.get_ref() else {
            self.problem(
                v.span(),
                format!(
                    "zones: expected an array of tables ([[zones]]), found {}",
                    v.get_ref().type_str()
                ),
            );
            return None;
        };
        if items.is_empty() {
            self.problem(v.span(), "zones: at least one zone is required");
        }
        Some(items)
    }

    /// One zone, `None` when a required part of it is missing or wrong
    /// (the problems are recorded).
    fn zone(&mut self, z: &ZoneAt, seen: &mut Seen) -> Option<Zone> {
        self.unknown_keys(z.t, ZONE_KEYS, "[[zones]]");
        let name = self.zone_name(z, seen);
        let context = self.zone_context(z, seen);
        let region = self.zone_region(z);
        let namespace = self.zone_namespace(z, name.as_deref(), seen);
        let replicas = self.zone_replicas(z);
        Some(Zone {
            name: name?,
            context: context?,
            region,
            namespace: namespace?,
            replicas: replicas?,
        })
    }

    fn zone_name(&mut self, z: &ZoneAt, seen: &mut Seen) -> Option<String> {
        let at = &z.at;
        let name = self.string(z.t, "name", &format!("{at}.name"));
        match &name {
            None if z.t.get("name").is_none() => {
                self.problem(z.span.clone(), format!("{at}: missing required key `name`"))
            }
            Some(n) if !is_dns_label(n) => self.problem(
                z.span_of("name"),
                format!("{at}.name: {n:?} is not a DNS-1123 label ({DNS_LABEL_RULE})"),
            ),
            Some(n) => {
                if let Some(first) = seen.names.insert(n.clone(), z.i) {
                    self.problem(
                        z.span_of("name"),
                        format!("{at}.name: duplicate zone {n:?} (also zones[{first}])"),
                    );
                }
            }
            None => {}
        }
        name
    }

    fn zone_context(&mut self, z: &ZoneAt, seen: &mut Seen) -> Option<String> {
        let at = &z.at;
        let context = self.string(z.t, "context", &format!("{at}.context"));
        let span = z.span_of("context");
        match &context {
            None if z.t.get("context").is_none() => self.problem(
                z.span.clone(),
                format!("{at}: missing required key `context` (the kubectl context of this zone's cluster)"),
            ),
            Some(c) if c.trim().is_empty() => self.problem(
                span,
                format!("{at}.context: must not be empty (the kubectl context of this zone's cluster)"),
            ),
            Some(c) if c.chars().any(char::is_control) => self.problem(
                span,
                format!("{at}.context: {c:?} contains a control character (a newline, say); kubectl context names are printed into generated files and must be one line"),
            ),
            Some(c) => {
                if let Some(first) = seen.contexts.insert(c.clone(), z.i) {
                    self.problem(
                        span,
                        format!("{at}.context: duplicate context {c:?} (also zones[{first}]); each zone needs its own cluster"),
                    );
                }
            }
            None => {}
        }
        context
    }

    fn zone_region(&mut self, z: &ZoneAt) -> Option<String> {
        let at = &z.at;
        let region = self.string(z.t, "region", &format!("{at}.region"));
        if let Some(r) = &region
            && !is_label_value(r)
        {
            self.problem(
                z.span_of("region"),
                format!("{at}.region: {r:?} must be a valid label value ({LABEL_VALUE_RULE}); it goes into --locality and labels"),
            );
        }
        region
    }

    /// The namespace given, else the zone's name (when that is a valid
    /// label); distinct across zones.
    fn zone_namespace(
        &mut self,
        z: &ZoneAt,
        name: Option<&str>,
        seen: &mut Seen,
    ) -> Option<String> {
        let at = &z.at;
        let (ns, span) = match self.string(z.t, "namespace", &format!("{at}.namespace")) {
            Some(ns) => {
                let span = z.span_of("namespace");
                self.namespace_rules(at, &ns, span.clone());
                (ns, span)
            }
            None => (
                name.filter(|n| is_dns_label(n))?.to_string(),
                z.span_of("name"),
            ),
        };
        if is_dns_label(&ns)
            && let Some(first) = seen.namespaces.insert(ns.clone(), z.i)
        {
            self.problem(
                span,
                format!("{at}.namespace: duplicate namespace {ns:?} (also zones[{first}]); zone namespaces must be distinct so their DNS names do not collide"),
            );
        }
        Some(ns)
    }

    fn namespace_rules(&mut self, at: &str, ns: &str, span: Range<usize>) {
        if !is_dns_label(ns) {
            self.problem(
                span,
                format!("{at}.namespace: {ns:?} is not a DNS-1123 label ({DNS_LABEL_RULE})"),
            );
        } else if RESERVED_NAMESPACES.contains(&ns) {
            self.problem(
                span,
                format!("{at}.namespace: {ns:?} is reserved; CockroachDB gets a namespace of its own per zone"),
            );
        }
    }

    /// `replicas`: an integer from 1 to 1000, the default when absent.
    fn zone_replicas(&mut self, z: &ZoneAt) -> Option<u32> {
        let at = &z.at;
        let Some(v) = z.t.get("replicas") else {
            return Some(names::DEFAULT_REPLICAS);
        };
        let Some(int) = v.get_ref().as_integer() else {
            self.problem(
                v.span(),
                format!(
                    "{at}.replicas: expected an integer, found {}",
                    v.get_ref().type_str()
                ),
            );
            return None;
        };
        match i64::from_str_radix(int.as_str(), int.radix()) {
            Ok(n) if (1..=1000).contains(&n) => Some(n as u32),
            Ok(n) => {
                self.problem(
                    v.span(),
                    format!("{at}.replicas: {n} is out of range; must be between 1 and 1000"),
                );
                None
            }
            Err(_) => {
                self.problem(v.span(), format!("{at}.replicas: number out of range"));
                None
            }
        }
    }
}
