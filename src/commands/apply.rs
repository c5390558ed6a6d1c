//! `crdb-multiregion apply` and `diff`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::IpAddr;

use anyhow::Context;

use super::inputs::{cert_settings, check_templates, load_templates, node_identities};
use crate::apply::{self, ApplyOptions, ApplyReport};
use crate::certs::{self, CertBundle};
use crate::cli::{ApplyArgs, ReportFormat};
use crate::commands::{block_on, with_limits};
use crate::config::Config;
use crate::exit::Exit;
use crate::k8s::{self, Action};
use crate::progress::Progress;

pub fn run(args: &ApplyArgs, diff: bool) -> anyhow::Result<Exit> {
    let config = Config::load(&args.cluster.config)?;
    config.check_zone_flags(&args.zones)?;
    let templates = load_templates(&config)?;
    let rendered = check_templates(&config, &templates)?;
    let dry_run = args.dry_run || diff;
    let progress = Progress::new(args.cluster.quiet);
    let mut opts = ApplyOptions {
        dry_run,
        prune: args.prune,
        wait_timeout: args.cluster.wait_timeout,
        concurrency: if args.cluster.concurrency == 0 {
            config.zones.len()
        } else {
            args.cluster.concurrency
        },
        resolver: args.lb_resolver.or(config.dns.lb_resolver),
        allow_unhealthy: args.allow_unhealthy,
        gated: std::env::var_os(apply::UNGATED_ENV).is_none(),
        other_zones: BTreeMap::new(),
    };
    progress.begin(
        config
            .zones
            .iter()
            .filter(|z| Config::zone_selected(&args.zones, &z.name))
            .map(|z| z.name.as_str()),
    );
    let result = block_on(with_limits(&args.cluster, async {
        let kubeconfig = k8s::load_kubeconfig(args.cluster.kubeconfig.as_deref())?;
        let clusters = apply::connect_all(
            &config,
            &args.zones,
            &kubeconfig,
            args.cluster.preflight_timeout,
            progress,
        )
        .await?;
        if !args.zones.is_empty() {
            opts.other_zones =
                other_zones(&config, &args.zones, &kubeconfig, opts.resolver, progress).await?;
        }
        let removed = apply::check_removed_zones(&config, &clusters, opts.prune, progress).await?;
        let preview =
            preview_certificates(&config, &clusters, dry_run, args.replace_ca, progress).await?;
        let prepared = apply::check_changes(
            &config, rendered, &preview, &clusters, removed, &opts, progress,
        )
        .await?;
        let bundle = if dry_run {
            preview
        } else {
            write_certificates(&config, progress)?
        };
        let report = apply::apply(&config, &bundle, clusters, &prepared, &opts, progress).await?;
        anyhow::Ok(report)
    }));
    progress.end();
    let report = result???;

    print_report(&report, args.cluster.output, progress)?;
    Ok(if !report.ok {
        Exit::CouldNotRun
    } else if diff && report.changed {
        Exit::Failed
    } else {
        Exit::Success
    })
}

/// `--zone`: the DNS load balancer addresses of the zones that are not
/// applied, read from their clusters (nothing is written there): the
/// applied zones' DNS forwarding needs every other zone's. Refuses, before
/// anything is changed, when one cannot be read or has no address yet.
async fn other_zones(
    config: &Config,
    selected: &[String],
    kubeconfig: &kube::config::Kubeconfig,
    resolver: Option<std::net::SocketAddr>,
    progress: Progress,
) -> anyhow::Result<BTreeMap<String, Vec<IpAddr>>> {
    let others: Vec<&crate::config::Zone> = config
        .zones
        .iter()
        .filter(|z| !Config::zone_selected(selected, &z.name))
        .collect();
    let reads = others.iter().map(|zone| async move {
        let c = k8s::connect(kubeconfig, zone)
            .await
            .map_err(|e| k8s::connect_problem(&e, &zone.context).to_string())?;
        k8s::dns_lb_addresses(&c, resolver)
            .await
            .map_err(|e| e.to_string())
    });
    let mut found = BTreeMap::new();
    let mut problems = String::new();
    for (zone, r) in others.iter().zip(futures::future::join_all(reads).await) {
        match r {
            Ok(ips) if ips.is_empty() => write!(
                problems,
                "\n  {} (context {}): its DNS load balancer (Service kube-system/{}) has no address; apply that zone first",
                zone.name,
                zone.context,
                crate::names::DNS_LB_SERVICE
            )?,
            Ok(ips) => {
                progress.say(
                    &zone.name,
                    format!(
                        "DNS load balancer address {} (read only: not in --zone)",
                        ips.iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                found.insert(zone.name.clone(), ips);
            }
            Err(e) => write!(
                problems,
                "\n  {} (context {}): {e}",
                zone.name, zone.context
            )?,
        }
    }
    if !problems.is_empty() {
        anyhow::bail!(
            "--zone {}: the DNS forwarding of the zones applied needs the DNS load balancer address of every other zone, and some could not be had:{problems}\nNothing was changed. Run apply without --zone to apply every zone.",
            selected.join(" --zone ")
        );
    }
    Ok(found)
}

/// Certificates for the Secrets, without writing: what `ensure_certs` would
/// do (that is all a dry run uses). Its CA is compared with the clusters'
/// (a foreign one stops here, before anything is written).
async fn preview_certificates(
    config: &Config,
    clusters: &[(k8s::Cluster, k8s::ClusterInfo)],
    dry_run: bool,
    replace_ca: bool,
    progress: Progress,
) -> anyhow::Result<CertBundle> {
    let settings = cert_settings(config);
    let nodes = node_identities(config);
    let (preview, report) =
        certs::preview_certs(&settings, &nodes).context("preparing certificates")?;
    let ca_file = settings.certs_dir.join(certs::CA_CERT_FILE);
    let local = match report.ca {
        certs::CertAction::Reused => format!(
            "{}, SHA-256 {}",
            ca_file.display(),
            certs::fingerprint(&preview.ca_crt).unwrap_or_default()
        ),
        _ => format!(
            "there is no CA in {} yet; a new one would be created",
            settings.certs_dir.display()
        ),
    };
    apply::check_ca(clusters, &preview.ca_crt, &local, replace_ca, progress).await?;
    if dry_run {
        for (what, action) in std::iter::once(("CA", &report.ca)).chain(std::iter::once((
            "root client certificate",
            &report.client_root,
        ))) {
            if *action != certs::CertAction::Reused {
                progress.say("certs", format!("{what}: would be {action}"));
            }
        }
        for (zone, action) in &report.nodes {
            if *action != certs::CertAction::Reused {
                progress.say(zone, format!("node certificate: would be {action}"));
            }
        }
    }
    Ok(preview)
}

/// For a real run, after every pre-flight check: the certificates made or
/// reused on disk.
fn write_certificates(config: &Config, progress: Progress) -> anyhow::Result<CertBundle> {
    let settings = cert_settings(config);
    let nodes = node_identities(config);
    let (bundle, report) =
        certs::ensure_certs(&settings, &nodes).context("preparing certificates")?;
    if report.ca == certs::CertAction::Created {
        progress.say(
            "certs",
            format!(
                "created a new CA; keep {} safe",
                config.certs.ca_key.display()
            ),
        );
    }
    Ok(bundle)
}

fn print_report(
    report: &ApplyReport,
    format: ReportFormat,
    progress: Progress,
) -> anyhow::Result<()> {
    let mut stdout = String::new();
    match format {
        ReportFormat::Json => {
            stdout = serde_json::to_string_pretty(&report_json(report)?)?;
            stdout.push('\n');
        }
        ReportFormat::Text => {
            if report.dry_run {
                stdout = render_changes(report);
            }
            let zones: Vec<(&str, bool)> = report
                .zones
                .iter()
                .map(|z| (z.zone.as_str(), z.ok))
                .collect();
            progress.summary(&apply::render_summary(report), &zones);
        }
    }
    crate::output::stdout(stdout.as_bytes())?;
    Ok(())
}

/// The report as JSON (docs/apply-report.schema.json). A dry run says what
/// would happen: `would-create` and `would-configure` for objects,
/// `would-create` and `would-update` for the DNS config.
pub fn report_json(report: &ApplyReport) -> anyhow::Result<serde_json::Value> {
    let mut value = serde_json::to_value(report)?;
    if report.dry_run {
        let would = |v: &mut serde_json::Value| {
            let word = match v.as_str() {
                Some("created") => "would-create",
                Some("configured") => "would-configure",
                Some("updated") => "would-update",
                _ => return,
            };
            *v = serde_json::Value::from(word);
        };
        for zone in value["zones"].as_array_mut().into_iter().flatten() {
            would(&mut zone["dns"]);
            for object in zone["objects"].as_array_mut().into_iter().flatten() {
                would(&mut object["action"]);
            }
        }
    }
    Ok(value)
}

/// What a dry run would change, per zone: each object to create, each to
/// change with its unified diff, the consequences, DNS and init.
pub fn render_changes(report: &ApplyReport) -> String {
    let mut out = String::new();
    for z in &report.zones {
        for o in &z.objects {
            let what = match o.action {
                Action::Created => "create",
                Action::Configured => "change",
                Action::Unchanged => continue,
            };
            let _ = writeln!(out, "{}: {what} {}", z.zone, o.describe());
            out.push_str(&o.diff);
            for w in &o.warnings {
                let _ = writeln!(out, "{}: warning: {w}", z.zone);
            }
        }
        if let Some(d) = z.dns
            && d != crate::k8s::dns_configmap::DnsChange::Unchanged
        {
            let _ = writeln!(out, "{}: change DNS forwarding", z.zone);
        }
        if z.dns_restarted {
            let _ = writeln!(out, "{}: restart DNS", z.zone);
        }
        if let Some(i) = z.init
            && i == apply::InitOutcome::WouldRun
        {
            let _ = writeln!(out, "{}: {i}", z.zone);
        }
    }
    out
}
