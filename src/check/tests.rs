//! Unit tests of the pure parts of `check`: the prober's line format, turning
//! logs into results, target planning, pod problems, and the three report
//! formats (text snapshot, JSON against its schema, JUnit through a real
//! JUnit parser). One test runs the probe scripts with the local busybox.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use super::probe::{self, DnsTarget, ProberTargets, TcpTarget};
use super::report;
use super::session;
use super::targets::{self, plan_targets};
use super::*;
use crate::config::Config;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const ZONES: [&str; 3] = ["us-east1-b", "us-west1-a", "us-central1-a"];

fn config() -> Config {
    let mut text = String::from("[dns]\ncloud = \"gke\"\n");
    for z in ZONES {
        text.push_str(&format!(
            "[[zones]]\nname = \"{z}\"\ncontext = \"ctx-{z}\"\n"
        ));
    }
    Config::parse(Path::new("check.toml"), &text).expect("valid config")
}

#[test]
fn parse_log_reads_every_line_kind_and_keeps_the_rest() {
    let log = probe::parse_log(
        "kube-sim: something else\n\
         BEGIN crdb-check 1\n\
         TCP us-west1-a 10.101.2.10 26257 ok 40\n\
         TCP us-central1-a 10.102.2.10 26257 fail 3010 nc: timed out\n\
         TCP us-central1-a 10.102.2.10 8080 fail 12 nc: can't connect to remote host (10.102.2.10): Connection refused\r\n\
         DNS us-west1-a crdb-check.us-west1-a.svc.cluster.local ok 10.101.2.10\n\
         DNS us-central1-a crdb-check-0.crdb-check.us-central1-a.svc.cluster.local. fail ** server can't find x: NXDOMAIN\n\
         TCP broken line\n\
         \n\
         DONE\n",
    );
    assert!(log.begun && log.done);
    assert_eq!(log.tcp.len(), 3);
    let ok = &log.tcp[&("us-west1-a".into(), "10.101.2.10".into(), 26257)];
    assert!(ok.ok);
    assert_eq!(ok.ms, 40);
    let timed_out = &log.tcp[&("us-central1-a".into(), "10.102.2.10".into(), 26257)];
    assert!(!timed_out.ok);
    assert_eq!(timed_out.message, "nc: timed out");
    assert_eq!(
        log.dns[&(
            "us-west1-a".into(),
            "crdb-check.us-west1-a.svc.cluster.local".into()
        )],
        probe::DnsLine::Resolved("10.101.2.10".into())
    );
    // A trailing dot is dropped so names match the targets.
    assert!(matches!(
        &log.dns[&(
            "us-central1-a".into(),
            "crdb-check-0.crdb-check.us-central1-a.svc.cluster.local".into()
        )],
        probe::DnsLine::Failed(m) if m.ends_with("NXDOMAIN")
    ));
    assert_eq!(
        log.other,
        vec!["kube-sim: something else", "TCP broken line"]
    );
}

#[test]
fn an_empty_or_foreign_log_has_no_results() {
    assert!(!probe::parse_log("").has_results());
    let log =
        probe::parse_log("kube-sim: pod a/crdb-check-prober is simulated and writes no log\n");
    assert!(!log.has_results() && !log.begun && !log.done);
    assert_eq!(log.other.len(), 1);
}

#[test]
fn reasons_are_readable() {
    assert!(probe::tcp_reason("nc: timed out").starts_with("timed out after 3s"));
    assert!(probe::tcp_reason("").starts_with("timed out after 3s"));
    assert!(
        probe::tcp_reason("nc: can't connect to remote host (10.0.0.1): Connection refused")
            .starts_with("connection refused")
    );
    assert_eq!(
        probe::dns_reason("** server can't find a.b.: NXDOMAIN"),
        "no such name (NXDOMAIN)"
    );
    assert!(probe::dns_reason("** server can't find a.b.: SERVFAIL").contains("SERVFAIL"));
    assert_eq!(
        probe::dns_reason("timed out after 5s"),
        "no answer within 5s"
    );
    assert_eq!(
        probe::dns_reason(";; connection timed out; no servers could be reached"),
        "no answer within 5s"
    );
}

fn targets() -> ProberTargets {
    ProberTargets {
        tcp: vec![
            TcpTarget {
                zone: "us-east1-b".into(),
                ip: ip("10.100.2.10"),
                port: 26257,
            },
            TcpTarget {
                zone: "us-west1-a".into(),
                ip: ip("10.101.2.10"),
                port: 26257,
            },
            TcpTarget {
                zone: "us-central1-a".into(),
                ip: ip("10.102.2.10"),
                port: 26257,
            },
        ],
        dns: vec![
            DnsTarget {
                zone: "us-west1-a".into(),
                name: "crdb-check.us-west1-a.svc.cluster.local".into(),
                expect: ip("10.101.2.10"),
                forwarded: true,
            },
            DnsTarget {
                zone: "us-central1-a".into(),
                name: "crdb-check.us-central1-a.svc.cluster.local".into(),
                expect: ip("10.102.2.10"),
                forwarded: true,
            },
        ],
    }
}

#[test]
fn prober_results_cover_every_target_and_a_missing_line_fails() {
    let log = probe::parse_log(
        "BEGIN crdb-check 1\n\
         TCP us-east1-b 10.100.2.10 26257 ok 0\n\
         TCP us-west1-a 10.101.2.10 26257 fail 3000 nc: timed out\n\
         DNS us-west1-a crdb-check.us-west1-a.svc.cluster.local ok 10.101.9.9\n\
         DNS us-central1-a crdb-check.us-central1-a.svc.cluster.local ok 10.102.2.10\n",
    );
    let results = prober_results("us-east1-b", &targets(), &log);
    assert_eq!(results.len(), 5);
    let by_target: BTreeMap<&str, &CheckResult> =
        results.iter().map(|r| (r.target.as_str(), r)).collect();
    let own = by_target["10.100.2.10:26257"];
    assert_eq!(
        (own.status, own.latency_ms, own.hint.as_deref()),
        (Status::Pass, Some(0), None)
    );
    let cut = by_target["10.101.2.10:26257"];
    assert_eq!(cut.status, Status::Fail);
    assert_eq!(
        cut.hint.as_deref(),
        Some(
            "pod IPs of us-east1-b cannot reach us-west1-a:26257: check routes between the clusters' pod CIDRs and firewall rules for TCP 26257"
        )
    );
    let missing = by_target["10.102.2.10:26257"];
    assert_eq!(missing.status, Status::Fail);
    assert_eq!(missing.detail, "no result (the prober did not finish)");
    let stale = by_target["crdb-check.us-west1-a.svc.cluster.local"];
    assert_eq!(stale.status, Status::Fail);
    assert!(
        stale
            .detail
            .contains("not to us-west1-a's listener 10.101.2.10")
    );
    assert_eq!(
        stale.hint.as_deref(),
        Some(
            "us-east1-b's DNS does not forward us-west1-a's names: run apply, check the kube-dns-lb address of us-west1-a"
        )
    );
    assert_eq!(
        by_target["crdb-check.us-central1-a.svc.cluster.local"].status,
        Status::Pass
    );
}

#[test]
fn dns_hints_tell_a_missing_entry_from_a_forwarding_target_that_does_not_answer() {
    let t = targets();
    let log = probe::parse_log(
        "DNS us-west1-a crdb-check.us-west1-a.svc.cluster.local fail timed out after 5s\n\
         DNS us-central1-a crdb-check.us-central1-a.svc.cluster.local fail ** server can't find x: NXDOMAIN\n",
    );
    let results = prober_results("us-east1-b", &t, &log);
    let hint = |target: &str| {
        results
            .iter()
            .find(|r| r.target == target)
            .and_then(|r| r.hint.clone())
            .unwrap()
    };
    assert_eq!(
        hint("crdb-check.us-west1-a.svc.cluster.local"),
        "us-east1-b's DNS forwards us-west1-a's names but gets no answer: check the kube-dns-lb address of us-west1-a and that us-east1-b's DNS pods reach it on port 53 (routes, firewall rules)"
    );
    assert_eq!(
        hint("crdb-check.us-central1-a.svc.cluster.local"),
        "us-east1-b's DNS does not forward us-central1-a's names: run apply, check the kube-dns-lb address of us-central1-a"
    );
}

#[test]
fn script_arguments_are_separate_plain_words() {
    let args = targets().args();
    assert_eq!(
        &args[..4],
        &["tcp", "us-east1-b", "10.100.2.10", "26257"].map(String::from)
    );
    assert_eq!(
        &args[12..15],
        &[
            "dns",
            "us-west1-a",
            "crdb-check.us-west1-a.svc.cluster.local"
        ]
        .map(String::from)
    );
    assert_eq!(args.len(), 3 * 4 + 2 * 3);
}

#[test]
#[should_panic(expected = "is not a DNS name")]
fn a_shell_word_is_never_passed_to_the_prober() {
    let t = ProberTargets {
        tcp: Vec::new(),
        dns: vec![DnsTarget {
            zone: "a".into(),
            name: "$(reboot)".into(),
            expect: ip("10.0.0.1"),
            forwarded: true,
        }],
    };
    let _ = t.args();
}

#[test]
fn dns_is_skipped_before_apply_and_probed_once_any_forwarding_exists() {
    let config = config();
    let listeners: BTreeMap<String, IpAddr> = ZONES
        .iter()
        .enumerate()
        .map(|(i, z)| (z.to_string(), ip(&format!("10.10{i}.2.10"))))
        .collect();
    let checks: BTreeSet<Check> = Check::ALL.into_iter().collect();
    let plan = |forwarded: &[&str]| {
        let forwarded: BTreeSet<String> = forwarded.iter().map(|s| s.to_string()).collect();
        plan_targets(
            &config,
            &config.zones[0],
            &listeners,
            Some(&forwarded),
            None,
            &checks,
            &[26257, 8080],
        )
    };

    // Before apply (only the user's own forwarding): skipped, with the reason.
    let (t, skipped) = plan(&["acme.internal", "."]);
    assert_eq!(t.tcp.len(), 6, "every listener, its own too, on every port");
    assert!(t.dns.is_empty());
    assert_eq!(skipped.len(), 4);
    assert!(
        skipped
            .iter()
            .all(|s| s.status == Status::Skip && s.detail == NOT_FORWARDED)
    );

    // One entry missing: both zones are probed; the missing one is marked.
    let (t, skipped) = plan(&["us-west1-a.svc.cluster.local"]);
    assert!(skipped.is_empty());
    let names: Vec<(&str, bool)> = t
        .dns
        .iter()
        .map(|d| (d.name.as_str(), d.forwarded))
        .collect();
    assert_eq!(
        names,
        [
            ("crdb-check.us-west1-a.svc.cluster.local", true),
            ("crdb-check-0.crdb-check.us-west1-a.svc.cluster.local", true),
            ("crdb-check.us-central1-a.svc.cluster.local", false),
            (
                "crdb-check-0.crdb-check.us-central1-a.svc.cluster.local",
                false
            ),
        ]
    );
    assert_eq!(t.dns[0].expect, ip("10.101.2.10"));
    let log = probe::parse_log(
        "DNS us-central1-a crdb-check.us-central1-a.svc.cluster.local fail ** server can't find x: NXDOMAIN\n",
    );
    let missing = prober_results("us-east1-b", &t, &log)
        .into_iter()
        .find(|r| r.target == "crdb-check.us-central1-a.svc.cluster.local")
        .unwrap();
    assert_eq!(
        missing.detail,
        "no such name (NXDOMAIN); us-east1-b's DNS configuration has no forwarding entry for us-central1-a's domain"
    );

    let tcp_only: BTreeSet<Check> = [Check::Tcp].into();
    let (t, skipped) = plan_targets(
        &config,
        &config.zones[0],
        &listeners,
        None,
        None,
        &tcp_only,
        &[26257],
    );
    assert_eq!((t.tcp.len(), t.dns.len(), skipped.len()), (3, 0, 0));

    // Forwarding that apply had configured and that is gone (an EKS add-on
    // update put its Corefile back): failures naming the add-on, not skips.
    let forwarded: BTreeSet<String> = ["acme.internal".to_string()].into();
    let hint = lost_forwarding_hint("us-east1-b", "coredns", Some("eks"));
    let (t, rows) = plan_targets(
        &config,
        &config.zones[0],
        &listeners,
        Some(&forwarded),
        Some(&hint),
        &checks,
        &[26257],
    );
    assert!(t.dns.is_empty());
    assert_eq!(rows.len(), 4);
    for r in &rows {
        assert_eq!(r.status, Status::Fail, "{r:?}");
        assert!(r.detail.contains("apply had configured it"), "{r:?}");
        assert!(
            r.hint.as_deref().unwrap().contains("EKS CoreDNS add-on")
                && r.hint.as_deref().unwrap().contains("run apply"),
            "{r:?}"
        );
    }
}

#[test]
fn lost_forwarding_hint_names_the_manager_or_says_someone_removed_it() {
    let other = lost_forwarding_hint("z", "coredns", Some("flux"));
    assert!(other.contains("\"flux\""), "{other}");
    let none = lost_forwarding_hint("z", "coredns", None);
    assert!(none.contains("was removed"), "{none}");
    assert!(!none.contains("add-on"), "{none}");
}

#[test]
fn selection_of_checks() {
    assert_eq!(selected(&[], &[]).len(), 4);
    assert!(selected(&[], &[]).contains(&Check::Cidr));
    assert_eq!(
        selected(&[], &[Check::Tcp, Check::Dns, Check::DnsLb]),
        [Check::Cidr].into()
    );
    assert!(!Check::Cidr.needs_probes());
    assert!(
        Check::ALL
            .iter()
            .filter(|c| **c != Check::Cidr)
            .all(|c| c.needs_probes())
    );
    assert_eq!(
        selected(&[Check::Tcp, Check::Dns], &[Check::Dns]),
        [Check::Tcp].into()
    );
    assert!(selected(&[Check::Tcp], &[Check::Tcp]).is_empty());
}

fn pod(status: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "crdb-check-listener"},
        "status": status,
    }))
    .unwrap()
}

#[test]
fn image_pull_and_scheduling_problems_are_recognised() {
    let pull = session::pod_problem(
        &pod(json!({"phase": "Pending", "containerStatuses": [{
            "name": "probe", "image": "busybox:does-not-exist", "imageID": "", "ready": false,
            "restartCount": 0,
            "state": {"waiting": {"reason": "ErrImagePull", "message": "not found"}}
        }]})),
        "busybox:does-not-exist",
    )
    .unwrap();
    assert_eq!(
        pull.problem,
        "pod crdb-check-listener cannot pull image busybox:does-not-exist (ErrImagePull: not found)"
    );
    assert!(pull.hint.contains("--image"));

    let unschedulable = session::pod_problem(
        &pod(json!({"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient cpu."
        }]})),
        "busybox:1.36",
    )
    .unwrap();
    assert!(
        unschedulable
            .problem
            .contains("cannot be scheduled (Unschedulable: 0/3 nodes")
    );
    assert!(unschedulable.hint.contains("taints"));

    assert_eq!(
        session::pod_problem(
            &pod(json!({"phase": "Running", "podIP": "10.0.0.1"})),
            "busybox:1.36"
        ),
        None
    );
}

/// Three zones: us-central1-a cut off from us-east1-b in both directions,
/// port 8080 blocked into us-west1-a, us-central1-a without forwarding yet,
/// one stale DNS answer, DNS load balancers reachable only partly, and the
/// pod range of us-central1-a inside that of us-east1-b.
fn sample_report() -> CheckReport {
    let mut results = Vec::new();
    let ips = ["10.100.2.10", "10.101.2.10", "10.102.2.10"];
    for from in ZONES {
        let mut targets = ProberTargets::default();
        let mut lines = String::from("BEGIN crdb-check 1\n");
        for (to, to_ip) in ZONES.iter().zip(ips) {
            for port in [8080, 26257] {
                targets.tcp.push(TcpTarget {
                    zone: to.to_string(),
                    ip: ip(to_ip),
                    port,
                });
                let cut = matches!(
                    (from, *to),
                    ("us-east1-b", "us-central1-a") | ("us-central1-a", "us-east1-b")
                );
                let blocked = port == 8080 && *to == "us-west1-a" && from != *to;
                if cut {
                    lines.push_str(&format!(
                        "TCP {to} {to_ip} {port} fail 3000 nc: timed out\n"
                    ));
                } else if blocked {
                    lines.push_str(&format!(
                        "TCP {to} {to_ip} {port} fail 10 nc: can't connect to remote host ({to_ip}): Connection refused\n"
                    ));
                } else {
                    let ms = if from == *to {
                        0
                    } else {
                        30 + 10 * port as u64 % 3
                    };
                    lines.push_str(&format!("TCP {to} {to_ip} {port} ok {ms}\n"));
                }
            }
            if from == *to {
                continue;
            }
            for name in probe::probe_names(to, "cluster.local") {
                if from == "us-central1-a" {
                    results.push(skipped(Check::Dns, from, to, &name, NOT_FORWARDED));
                    continue;
                }
                targets.dns.push(DnsTarget {
                    zone: to.to_string(),
                    name: name.clone(),
                    expect: ip(to_ip),
                    forwarded: true,
                });
                if from == "us-west1-a" && *to == "us-east1-b" && name.starts_with("crdb-check-0") {
                    lines.push_str(&format!(
                        "DNS {to} {name} fail ** server can't find {name}.: NXDOMAIN\n"
                    ));
                } else {
                    lines.push_str(&format!("DNS {to} {name} ok {to_ip}\n"));
                }
            }
        }
        lines.push_str("DONE\n");
        results.extend(prober_results(from, &targets, &probe::parse_log(&lines)));
    }
    for from in ZONES {
        for (to, to_ip) in ZONES.iter().zip(ips) {
            let [name, _] = probe::probe_names(to, "cluster.local");
            for protocol in ["udp", "tcp"] {
                let mut r = if from == "us-west1-a" {
                    skipped(
                        Check::DnsLb,
                        from,
                        to,
                        &name,
                        "DNS load balancer 10.151.0.10 is not reachable from here (no answer within 3s)",
                    )
                } else if from == "us-central1-a" {
                    skipped(Check::DnsLb, from, to, &name, targets::NO_DNS_LB)
                } else {
                    CheckResult {
                        check: Check::DnsLb,
                        from: from.into(),
                        to: to.to_string(),
                        target: name.clone(),
                        port: None,
                        protocol: None,
                        status: Status::Pass,
                        latency_ms: Some(2),
                        detail: format!("10.150.0.10 answers {to_ip} in 2 ms"),
                        hint: None,
                    }
                };
                r.protocol = Some(protocol.into());
                results.push(r);
            }
        }
    }
    let pod_cidrs =
        |list: &[&str]| cidr::PodCidrs::Ranges(list.iter().map(|c| c.parse().unwrap()).collect());
    results.extend(cidr::results(&[
        ("us-east1-b".into(), pod_cidrs(&["10.100.0.0/16"])),
        ("us-west1-a".into(), pod_cidrs(&["10.101.0.0/16"])),
        ("us-central1-a".into(), pod_cidrs(&["10.100.128.0/17"])),
    ]));
    CheckReport::new(
        ZONES.iter().map(|z| z.to_string()).collect(),
        vec![8080, 26257],
        results,
    )
}

#[test]
fn text_report() {
    let report = sample_report();
    assert!(!report.ok);
    insta::assert_snapshot!(report::render_text(&report));
}

#[test]
fn a_styled_text_report_is_the_plain_one_with_fail_in_red() {
    let report = sample_report();
    let plain = report::render_text(&report);
    let styled = report::render_text_styled(&report, true);
    assert_ne!(styled, plain, "colour was asked for");
    assert_eq!(console::strip_ansi_codes(&styled), plain);
    let red_fail = crate::progress::paint("FAIL", crate::progress::Paint::Fail);
    let fails_in_matrices = plain
        .lines()
        .filter(|l| l.starts_with("  "))
        .map(|l| l.split_whitespace().filter(|w| *w == "FAIL").count())
        .sum::<usize>();
    assert!(fails_in_matrices > 0);
    assert_eq!(styled.matches(&red_fail).count(), fails_in_matrices);
    assert_eq!(report::render_text_styled(&report, false), plain);
}

#[test]
fn results_are_sorted_and_counted() {
    let report = sample_report();
    assert_eq!(report.results.len(), 18 + 12 + 18 + 6);
    assert_eq!(
        report.summary,
        Summary {
            passed: 12 + 7 + 6 + 4,
            failed: 6 + 1 + 2,
            skipped: 4 + 12,
        }
    );
    let checks: Vec<Check> = report.results.iter().map(|r| r.check).collect();
    let mut sorted = checks.clone();
    sorted.sort();
    assert_eq!(checks, sorted);
    assert_eq!(report.results[0].from, "us-east1-b");
    assert_eq!(report.results[0].to, "us-east1-b");
}

fn schema() -> Value {
    let text = include_str!("../../docs/check-report.schema.json");
    serde_json::from_str(text).expect("the schema is JSON")
}

#[test]
fn json_report_matches_its_schema() {
    let validator = jsonschema::validator_for(&schema()).expect("the schema is valid");
    for report in [
        sample_report(),
        CheckReport::new(vec!["a".into()], vec![26257], Vec::new()),
    ] {
        let value: Value = serde_json::from_str(&report::render_json(&report)).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{errors:#?}");
        let back: CheckReport = serde_json::from_value(value).unwrap();
        assert_eq!(back, report);
    }
}

#[test]
fn schema_refuses_what_the_report_never_contains() {
    let validator = jsonschema::validator_for(&schema()).unwrap();
    let mut value = serde_json::to_value(sample_report()).unwrap();
    assert!(validator.is_valid(&value));
    // A failure must carry a hint.
    let failed = value["results"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|r| r["status"] == "fail")
        .unwrap();
    failed.as_object_mut().unwrap().remove("hint");
    assert!(!validator.is_valid(&value));
    let mut value = serde_json::to_value(sample_report()).unwrap();
    value["results"][0]["check"] = json!("ping");
    assert!(!validator.is_valid(&value));
}

#[test]
fn junit_report_is_read_by_a_junit_consumer() {
    let mut report = sample_report();
    // Text that must be escaped survives the round trip.
    report.results[1].detail = "a <b> & \"c\" 'd'\nline two".into();
    let xml = report::render_junit(&report);
    let suites = junit_parser::from_reader(std::io::Cursor::new(xml.as_bytes()))
        .unwrap_or_else(|e| panic!("{e}\n{xml}"));
    assert_eq!(suites.suites.len(), 4);
    let total: usize = suites.suites.iter().map(|s| s.cases.len()).sum();
    assert_eq!(total, report.results.len());
    let names: Vec<&str> = suites.suites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "crdb-multiregion.check.tcp",
            "crdb-multiregion.check.dns",
            "crdb-multiregion.check.dns-lb",
            "crdb-multiregion.check.cidr"
        ]
    );
    for (suite, check) in suites.suites.iter().zip(Check::ALL) {
        let results: Vec<&CheckResult> =
            report.results.iter().filter(|r| r.check == check).collect();
        assert_eq!(suite.cases.len(), results.len());
        assert_eq!(
            suite.failures as usize,
            results.iter().filter(|r| r.status == Status::Fail).count()
        );
        assert_eq!(
            suite.skipped as usize,
            results.iter().filter(|r| r.status == Status::Skip).count()
        );
        for (case, r) in suite.cases.iter().zip(results) {
            assert_eq!(
                case.classname.as_deref(),
                Some(format!("crdb-multiregion.check.{check}").as_str())
            );
            assert!(
                case.original_name
                    .starts_with(&format!("{} -> {} ", r.from, r.to))
            );
            match r.status {
                Status::Pass => assert!(case.status.is_success()),
                Status::Skip => assert!(case.status.is_skipped()),
                Status::Fail => {
                    assert!(case.status.is_failure());
                    assert_eq!(case.status.failure_as_ref().message, r.detail);
                }
            }
        }
    }
}

#[test]
fn junit_text_that_xml_cannot_carry_is_dropped_or_replaced() {
    let mut report = sample_report();
    report.results[1].detail = "bad\u{1}byte \u{FFFE}<x> & 'y'".into();
    report.results[1].status = Status::Fail;
    let xml = report::render_junit(&report);
    assert!(!xml.contains('\u{1}') && !xml.contains('\u{FFFE}'), "{xml}");
    let suites = junit_parser::from_reader(std::io::Cursor::new(xml.as_bytes()))
        .unwrap_or_else(|e| panic!("{e}\n{xml}"));
    let messages: Vec<String> = suites
        .suites
        .iter()
        .flat_map(|s| &s.cases)
        .filter(|c| c.status.is_failure())
        .map(|c| c.status.failure_as_ref().message.clone())
        .collect();
    assert!(
        messages.contains(&"badbyte \u{FFFD}<x> & 'y'".to_string()),
        "{messages:?}"
    );
}

/// The probe scripts under the local busybox (installed by .ci/run): a
/// listener on a free port, a prober against it, a closed port and a name.
#[test]
fn probe_scripts_run_under_busybox() {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    let Some(busybox) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("busybox"))
            .find(|p| p.is_file())
    }) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "busybox is not installed (.ci/run installs it)"
        );
        eprintln!("skipped: busybox is not installed");
        return;
    };
    // Only busybox applets on PATH, as in the probe image.
    let bin = tempfile::tempdir().unwrap();
    for applet in [
        "sh", "nc", "nslookup", "timeout", "tr", "cut", "sed", "grep", "head", "tail", "sleep",
        "true", "false",
    ] {
        std::os::unix::fs::symlink(&busybox, bin.path().join(applet)).unwrap();
    }
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (open, closed) = (free_port(), free_port());
    /// The listener's process group, killed (and reaped) on drop.
    struct Group(std::process::Child);
    impl Drop for Group {
        fn drop(&mut self) {
            // SAFETY: signals only the process group this test started.
            unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
            let _ = self.0.wait();
        }
    }
    let _listener = Group(
        Command::new(bin.path().join("sh"))
            .args(["-c", probe::LISTENER_SCRIPT, probe::LISTENER_POD])
            .arg(open.to_string())
            .env_clear()
            .env("PATH", bin.path())
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", open)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "listener never listened"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    let targets = ProberTargets {
        tcp: vec![
            TcpTarget {
                zone: "a".into(),
                ip: ip("127.0.0.1"),
                port: open,
            },
            TcpTarget {
                zone: "b".into(),
                ip: ip("127.0.0.1"),
                port: closed,
            },
        ],
        dns: vec![DnsTarget {
            zone: "b".into(),
            name: "crdb-check.b.svc.cluster.invalid".into(),
            expect: ip("127.0.0.1"),
            forwarded: true,
        }],
    };
    let out = Command::new(bin.path().join("sh"))
        .args(["-c", &probe::prober_script(), probe::PROBER_POD])
        .args(targets.args())
        .env_clear()
        .env("PATH", bin.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = probe::parse_log(&stdout);
    assert!(log.begun && log.done, "{stdout}");
    assert!(log.other.is_empty(), "{stdout}");
    let results = prober_results("a", &targets, &log);
    assert_eq!(results[0].status, Status::Pass, "{stdout}");
    assert!(results[0].latency_ms.is_some());
    assert_eq!(results[1].status, Status::Fail, "{stdout}");
    assert!(
        results[1].detail.starts_with("connection refused"),
        "{stdout}"
    );
    // An image without nc says so instead of reporting network failures.
    let partial = tempfile::tempdir().unwrap();
    for applet in [
        "sh", "nslookup", "timeout", "tr", "cut", "sed", "grep", "head", "tail",
    ] {
        std::os::unix::fs::symlink(&busybox, partial.path().join(applet)).unwrap();
    }
    let broken = Command::new(partial.path().join("sh"))
        .args(["-c", &probe::prober_script(), probe::PROBER_POD])
        .args(targets.args())
        .env_clear()
        .env("PATH", partial.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(broken.status.code(), Some(3));
    let broken = probe::parse_log(&String::from_utf8_lossy(&broken.stdout));
    assert_eq!(broken.errors, ["the image lacks: nc sleep"]);
    assert!(!broken.has_results());
    // Whatever the local resolver says, the name gets a line of its own.
    assert_ne!(results[2].detail, "no result", "{stdout}");
}
