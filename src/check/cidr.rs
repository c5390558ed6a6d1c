//! The `cidr` check: pod IPs can only be routed between clusters whose pod
//! ranges do not overlap. This module owns the check's CIDR type (a thin
//! wrapper of [`ipnet::IpNet`] that keeps this check's parse errors and
//! clears host bits), reading a cluster's pod ranges from its Nodes
//! (`spec.podCIDRs`, else `spec.podCIDR`), and turning every zone's ranges
//! into one result per ordered pair of zones. Pure: the Nodes are listed by
//! [`super::run`]; no I/O here.
//!
//! What it sees are the ranges allocated to Nodes now, not the cluster's
//! whole cluster CIDR (the API does not expose it): two clusters whose
//! cluster CIDRs overlap only where no Node has a range yet pass until one
//! does.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;

use super::{Check, CheckResult, Status};

/// The `target` of every `cidr` result.
pub const TARGET: &str = "pod CIDRs";

/// An IPv4 or IPv6 network: its address with the host bits cleared, and the
/// prefix length. Ordered by family, then address, then prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr(IpNet);

/// Why a string is not a CIDR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("{0:?} has no prefix length (ADDRESS/LENGTH)")]
    NoPrefix(String),
    #[error("{0:?} does not start with an IPv4 or IPv6 address")]
    Address(String),
    #[error("{text:?} has prefix length {prefix:?}, not a number from 0 to {max}")]
    Prefix {
        text: String,
        prefix: String,
        max: u8,
    },
}

impl Cidr {
    /// Whether the two networks share an address. Two prefixes share one
    /// exactly when one contains the other; families never overlap.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other) || other.contains(self)
    }

    /// Whether every address of `other` is in `self`.
    pub fn contains(&self, other: &Cidr) -> bool {
        self.0.contains(&other.0)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `10.100.0.0/16`, `fd00:10:100::/56`. Host bits are cleared
    /// (`10.100.1.7/16` is `10.100.0.0/16`), as Go's `net.ParseCIDR` does.
    /// The prefix length is plain decimal digits (no sign, no exponent).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let (addr, prefix) = text
            .split_once('/')
            .ok_or_else(|| CidrError::NoPrefix(text.to_string()))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| CidrError::Address(text.to_string()))?;
        let bad_prefix = || CidrError::Prefix {
            text: text.to_string(),
            prefix: prefix.to_string(),
            max: if addr.is_ipv4() { 32 } else { 128 },
        };
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad_prefix());
        }
        let prefix: u8 = prefix.parse().map_err(|_| bad_prefix())?;
        let net = IpNet::new(addr, prefix).map_err(|_| bad_prefix())?;
        Ok(Cidr(net.trunc()))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a zone's Nodes say about its pod ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodCidrs {
    /// Listing the Nodes failed: why.
    Unlisted(String),
    /// No Node carries a pod CIDR (or there is no Node).
    Missing,
    /// A Node's pod CIDR is not a CIDR.
    Invalid { node: String, error: CidrError },
    /// The ranges, sorted, without duplicates or ranges inside another.
    Ranges(Vec<Cidr>),
}

/// The pod ranges of a cluster's Nodes: `spec.podCIDRs`, else
/// `spec.podCIDR`, of every Node that has one. Nodes without one (not
/// allocated yet) are left out; when none has one, [`PodCidrs::Missing`].
pub fn from_nodes(nodes: &[Node]) -> PodCidrs {
    let mut ranges = Vec::new();
    for node in nodes {
        let Some(spec) = &node.spec else { continue };
        let texts: Vec<&String> = match (&spec.pod_cidrs, &spec.pod_cidr) {
            (Some(list), _) if !list.is_empty() => list.iter().collect(),
            (_, Some(one)) if !one.is_empty() => vec![one],
            _ => continue,
        };
        for text in texts {
            match text.parse::<Cidr>() {
                Ok(c) => ranges.push(c),
                Err(error) => {
                    return PodCidrs::Invalid {
                        node: node.metadata.name.clone().unwrap_or_default(),
                        error,
                    };
                }
            }
        }
    }
    if ranges.is_empty() {
        return PodCidrs::Missing;
    }
    PodCidrs::Ranges(compact(ranges))
}

/// Sorted, without duplicates and without ranges inside another one.
pub fn compact(mut ranges: Vec<Cidr>) -> Vec<Cidr> {
    ranges.sort();
    ranges.dedup();
    let all = ranges.clone();
    ranges.retain(|c| !all.iter().any(|o| o != c && o.contains(c)));
    ranges
}

/// `10.100.0.0/24, 10.100.1.0/24, 10.100.2.0/24 and 7 more`.
pub fn list(ranges: &[Cidr]) -> String {
    const SHOWN: usize = 3;
    let shown: Vec<String> = ranges.iter().take(SHOWN).map(ToString::to_string).collect();
    if ranges.len() > SHOWN {
        format!("{} and {} more", shown.join(", "), ranges.len() - SHOWN)
    } else {
        shown.join(", ")
    }
}

/// Why the pairs of a zone are not checked, if they are not.
fn skip_reason(zone: &str, cidrs: &PodCidrs) -> Option<String> {
    match cidrs {
        PodCidrs::Unlisted(reason) => Some(format!("cannot list nodes in {zone}: {reason}")),
        PodCidrs::Missing => Some(format!(
            "no Node of {zone} has a podCIDR: its CNI assigns pod IPs without node pod ranges (as AWS VPC CNI and Calico or Cilium with their own IPAM do), so overlaps cannot be seen from the API"
        )),
        PodCidrs::Invalid { node, error } => Some(format!(
            "Node {node} of {zone} has an invalid podCIDR: {error}"
        )),
        PodCidrs::Ranges(_) => None,
    }
}

/// Hint for overlapping pod ranges.
pub fn cidr_hint(a: &str, b: &str, x: &Cidr, y: &Cidr) -> String {
    format!(
        "clusters {a} and {b} use overlapping pod ranges ({x}, {y}): pod IPs cannot be routed between them; recreate one cluster with a distinct pod CIDR"
    )
}

/// One result per ordered pair of distinct zones (`zones` in config order):
/// fail when any range of `from` overlaps any range of `to`, pass when none
/// does, skip when either zone's ranges are unknown. Overlap is symmetric, so
/// an overlap fails both `a -> b` and `b -> a`, like a cut fails both TCP
/// directions.
pub fn results(zones: &[(String, PodCidrs)]) -> Vec<CheckResult> {
    let mut out = Vec::new();
    for (from, from_cidrs) in zones {
        for (to, to_cidrs) in zones {
            if from == to {
                continue;
            }
            let mut result = CheckResult {
                check: Check::Cidr,
                from: from.clone(),
                to: to.clone(),
                target: TARGET.to_string(),
                port: None,
                protocol: None,
                status: Status::Skip,
                latency_ms: None,
                detail: String::new(),
                hint: None,
            };
            let (PodCidrs::Ranges(a), PodCidrs::Ranges(b)) = (from_cidrs, to_cidrs) else {
                result.detail = skip_reason(from, from_cidrs)
                    .or_else(|| skip_reason(to, to_cidrs))
                    .unwrap_or_default();
                out.push(result);
                continue;
            };
            let overlapping: Vec<(&Cidr, &Cidr)> = a
                .iter()
                .flat_map(|x| b.iter().map(move |y| (x, y)))
                .filter(|(x, y)| x.overlaps(y))
                .collect();
            match overlapping.first() {
                None => {
                    result.status = Status::Pass;
                    result.detail =
                        format!("no overlap: {from} uses {}, {to} uses {}", list(a), list(b));
                }
                Some((x, y)) => {
                    result.status = Status::Fail;
                    result.detail = format!("{from}'s pod range {x} overlaps {to}'s {y}");
                    if overlapping.len() > 1 {
                        result.detail.push_str(&format!(
                            " (and {} more overlapping pair(s) of ranges)",
                            overlapping.len() - 1
                        ));
                    }
                    result.hint = Some(cidr_hint(from, to, x, y));
                }
            }
            out.push(result);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_ipv4_and_ipv6_and_clears_host_bits() {
        assert_eq!(c("10.100.0.0/16").to_string(), "10.100.0.0/16");
        assert_eq!(c(" 10.100.7.9/16 ").to_string(), "10.100.0.0/16");
        assert_eq!(c("10.1.2.3/32").to_string(), "10.1.2.3/32");
        assert_eq!(c("10.1.2.3/0").to_string(), "0.0.0.0/0");
        assert_eq!(c("fd00:10:100::1/56").to_string(), "fd00:10:100::/56");
        assert_eq!(c("fd00::ff/128").to_string(), "fd00::ff/128");
        assert_eq!(c("fd00::ff/0").to_string(), "::/0");
    }

    #[test]
    fn refuses_what_is_not_a_cidr() {
        for bad in [
            "",
            "10.100.0.0",
            "10.100.0.0/",
            "10.100.0.0/33",
            "10.100.0.0/+8",
            "10.100.0.0/-1",
            "10.100.0.0/1e1",
            "10.100.0.0/16/8",
            "10.100.0/16",
            "fd00::/129",
            "fd00::/999999999999",
            "example.com/16",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?} parsed");
        }
        assert_eq!(
            "10.0.0.0/33".parse::<Cidr>().unwrap_err().to_string(),
            "\"10.0.0.0/33\" has prefix length \"33\", not a number from 0 to 32"
        );
    }

    #[test]
    fn overlap_is_shared_addresses_under_the_shorter_prefix() {
        let overlap = |a: &str, b: &str| {
            let (a, b) = (c(a), c(b));
            assert_eq!(a.overlaps(&b), b.overlaps(&a), "{a} {b}: not symmetric");
            a.overlaps(&b)
        };
        assert!(overlap("10.100.0.0/16", "10.100.0.0/16"));
        assert!(overlap("10.100.0.0/16", "10.100.128.0/17"));
        assert!(overlap("10.0.0.0/8", "10.255.255.255/32"));
        assert!(overlap("0.0.0.0/0", "192.168.0.0/16"));
        assert!(!overlap("10.100.0.0/16", "10.101.0.0/16"));
        assert!(!overlap("10.100.0.0/24", "10.100.1.0/24"));
        // Adjacent halves touch but do not overlap.
        assert!(!overlap("10.0.0.0/9", "10.128.0.0/9"));
        assert!(overlap("fd00:10::/48", "fd00:10:0:5::/64"));
        assert!(!overlap("fd00:10::/48", "fd00:11::/48"));
        assert!(overlap("::/0", "fd00::/8"));
        // Families never overlap, not even ::/0 and 0.0.0.0/0.
        assert!(!overlap("::/0", "0.0.0.0/0"));
        assert!(!overlap("::ffff:10.100.0.0/112", "10.100.0.0/16"));
        assert!(c("10.0.0.0/8").contains(&c("10.1.0.0/16")));
        assert!(!c("10.1.0.0/16").contains(&c("10.0.0.0/8")));
    }

    fn node(name: &str, spec: serde_json::Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
    }

    #[test]
    fn ranges_come_from_pod_cidrs_else_pod_cidr() {
        let nodes = [
            node(
                "dual",
                json!({"podCIDR": "10.9.9.0/24", "podCIDRs": ["10.100.1.0/24", "fd00:100:1::/64"]}),
            ),
            node("single", json!({"podCIDR": "10.100.0.0/24"})),
            node("unallocated", json!({})),
            // Inside another range, and a duplicate: both dropped.
            node("inside", json!({"podCIDRs": ["10.100.1.128/25"]})),
            node("again", json!({"podCIDRs": ["10.100.0.0/24"]})),
        ];
        let PodCidrs::Ranges(r) = from_nodes(&nodes) else {
            panic!("{:?}", from_nodes(&nodes));
        };
        let r: Vec<String> = r.iter().map(ToString::to_string).collect();
        assert_eq!(r, ["10.100.0.0/24", "10.100.1.0/24", "fd00:100:1::/64"]);
        assert_eq!(from_nodes(&[]), PodCidrs::Missing);
        assert_eq!(from_nodes(&[node("n", json!({}))]), PodCidrs::Missing);
        assert_eq!(
            from_nodes(&[node("n", json!({"podCIDR": "", "podCIDRs": []}))]),
            PodCidrs::Missing
        );
        assert!(matches!(
            from_nodes(&[node("bad", json!({"podCIDR": "10.100.0.0"}))]),
            PodCidrs::Invalid { node, .. } if node == "bad"
        ));
    }

    fn zones(list: &[(&str, PodCidrs)]) -> Vec<(String, PodCidrs)> {
        list.iter()
            .map(|(z, c)| (z.to_string(), c.clone()))
            .collect()
    }

    fn ranges(list: &[&str]) -> PodCidrs {
        PodCidrs::Ranges(list.iter().map(|s| c(s)).collect())
    }

    #[test]
    fn only_the_pairs_of_overlapping_zones_fail_in_both_directions() {
        let rs = results(&zones(&[
            ("a", ranges(&["10.100.0.0/16"])),
            ("b", ranges(&["10.101.0.0/16", "fd00::/64"])),
            ("c", ranges(&["10.100.128.0/17"])),
        ]));
        assert_eq!(rs.len(), 6);
        let failed: Vec<(&str, &str)> = rs
            .iter()
            .filter(|r| r.status == Status::Fail)
            .map(|r| (r.from.as_str(), r.to.as_str()))
            .collect();
        assert_eq!(failed, [("a", "c"), ("c", "a")]);
        assert!(
            rs.iter()
                .all(|r| r.check == Check::Cidr && r.target == TARGET)
        );
        assert!(
            rs.iter()
                .filter(|r| r.status == Status::Pass)
                .all(|r| r.hint.is_none())
        );
        let ac = &rs[1];
        assert_eq!(
            ac.detail,
            "a's pod range 10.100.0.0/16 overlaps c's 10.100.128.0/17"
        );
        assert_eq!(
            ac.hint.as_deref(),
            Some(
                "clusters a and c use overlapping pod ranges (10.100.0.0/16, 10.100.128.0/17): pod IPs cannot be routed between them; recreate one cluster with a distinct pod CIDR"
            )
        );
        assert_eq!(
            rs[0].detail,
            "no overlap: a uses 10.100.0.0/16, b uses 10.101.0.0/16, fd00::/64"
        );
    }

    #[test]
    fn unknown_ranges_skip_the_pairs_of_that_zone_with_the_reason() {
        let rs = results(&zones(&[
            ("a", ranges(&["10.100.0.0/16"])),
            ("eks", PodCidrs::Missing),
            (
                "locked",
                PodCidrs::Unlisted("nodes is forbidden: User \"ci\" cannot list".into()),
            ),
        ]));
        let by_pair = |from: &str, to: &str| {
            rs.iter()
                .find(|r| r.from == from && r.to == to)
                .unwrap()
                .clone()
        };
        assert!(
            rs.iter()
                .all(|r| r.status == Status::Skip && r.hint.is_none())
        );
        assert!(
            by_pair("a", "eks")
                .detail
                .starts_with("no Node of eks has a podCIDR")
        );
        assert!(by_pair("a", "eks").detail.contains("AWS VPC CNI"));
        assert_eq!(
            by_pair("eks", "a").detail,
            by_pair("a", "eks").detail,
            "both directions name the zone without ranges"
        );
        assert_eq!(
            by_pair("a", "locked").detail,
            "cannot list nodes in locked: nodes is forbidden: User \"ci\" cannot list"
        );
        // The `from` zone's reason comes first.
        assert!(
            by_pair("locked", "eks")
                .detail
                .starts_with("cannot list nodes in locked")
        );
    }

    #[test]
    fn many_ranges_are_abbreviated_and_every_overlap_counted() {
        let many: Vec<String> = (0..5).map(|i| format!("10.100.{i}.0/24")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let rs = results(&zones(&[
            ("a", ranges(&many)),
            ("b", ranges(&["10.100.0.0/23"])),
        ]));
        assert_eq!(
            rs[0].detail,
            "a's pod range 10.100.0.0/24 overlaps b's 10.100.0.0/23 (and 1 more overlapping pair(s) of ranges)"
        );
        assert_eq!(
            list(&compact(many.iter().map(|s| c(s)).collect())),
            "10.100.0.0/24, 10.100.1.0/24, 10.100.2.0/24 and 2 more"
        );
    }
}
