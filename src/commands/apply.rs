//! `crdb-multiregion apply` and `diff`.

use std::fmt::Write;

use anyhow::Context;

use crate::Exit;
use crate::apply::{self, ApplyOptions, ApplyReport, Progress};
use crate::certs::{self, CertBundle};
use crate::cli::{ApplyArgs, ReportFormat};
use crate::cluster::{self, Action};
use crate::commands::plan::{cert_settings, check_templates, load_templates, node_identities};
use crate::commands::{block_on, with_limits};
use crate::config::Config;

/// `zones` (diff's `--zone`) limits the report, and so the exit code, to
/// those zones; every zone is still read and dry-run.
pub fn run(args: &ApplyArgs, diff: bool, zones: &[String]) -> anyhow::Result<Exit> {
    let config = Config::load(&args.cluster.config)?;
    crate::commands::plan::check_zone_flags(&config, zones)?;
    let templates = load_templates(&config)?;
    check_templates(&config, &templates)?;
    let dry_run = args.dry_run || diff;
    let progress = Progress {
        quiet: args.cluster.quiet,
    };
    let opts = ApplyOptions {
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
    };
    let report = block_on(with_limits(&args.cluster, async {
        let kubeconfig = cluster::load_kubeconfig(args.cluster.kubeconfig.as_deref())?;
        let clusters = apply::connect_all(
            &config,
            &kubeconfig,
            args.cluster.preflight_timeout,
            progress,
        )
        .await?;
        apply::check_removed_zones(&config, &clusters, opts.prune, progress).await?;
        let preview =
            preview_certificates(&config, &clusters, dry_run, args.replace_ca, progress).await?;
        let prepared =
            apply::check_changes(&config, &templates, &preview, &clusters, &opts, progress).await?;
        let bundle = if dry_run {
            preview
        } else {
            write_certificates(&config, progress)?
        };
        apply::apply(
            &config, &templates, &bundle, clusters, &prepared, &opts, progress,
        )
        .await
    }))???;
    let report = if zones.is_empty() {
        report
    } else {
        only_zones(report, zones)
    };

    print_report(&report, args.cluster.output)?;
    Ok(if !report.ok {
        Exit::CouldNotRun
    } else if diff && report.changed {
        Exit::Failed
    } else {
        Exit::Success
    })
}

/// The report of `zones` only, its `ok` and `changed` about them alone.
pub fn only_zones(mut report: ApplyReport, zones: &[String]) -> ApplyReport {
    report.zones.retain(|z| zones.contains(&z.zone));
    report.ok = report.zones.iter().all(|z| z.ok);
    report.changed = report.zones.iter().any(|z| !z.unchanged());
    report
}

/// Certificates for the Secrets, without writing: what `ensure_certs` would
/// do (that is all a dry run uses). Its CA is compared with the clusters'
/// (a foreign one stops here, before anything is written).
async fn preview_certificates(
    config: &Config,
    clusters: &[(cluster::Cluster, cluster::ClusterInfo)],
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

fn print_report(report: &ApplyReport, format: ReportFormat) -> anyhow::Result<()> {
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
            crate::ewrite!("{}", apply::render_summary(report));
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
            && d != crate::dnsconf::DnsChange::Unchanged
        {
            let _ = writeln!(out, "{}: change DNS forwarding", z.zone);
        }
        if z.dns_restarted {
            let _ = writeln!(out, "{}: restart DNS", z.zone);
        }
        if let Some(i) = &z.init
            && i.starts_with("would")
        {
            let _ = writeln!(out, "{}: {i}", z.zone);
        }
    }
    out
}
