//! `crdb-multiregion apply` and `diff`.

use std::io::Write;

use anyhow::Context;

use crate::Exit;
use crate::apply::{self, ApplyOptions, ApplyReport, Progress};
use crate::certs::{self, CertBundle, CertSettings};
use crate::cli::{ApplyArgs, ClusterArgs, ReportFormat};
use crate::cluster::{self, Action};
use crate::commands::plan::{cert_settings, check_templates, load_templates, node_identities};
use crate::config::Config;

pub fn run(args: &ApplyArgs, diff: bool) -> anyhow::Result<Exit> {
    let config = Config::load(&args.cluster.config)?;
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
        resolver: args.lb_resolver,
    };
    let report = runtime()?.block_on(with_limits(&args.cluster, async {
        let kubeconfig = cluster::load_kubeconfig(args.cluster.kubeconfig.as_deref())?;
        let clusters = apply::connect_all(&config, &kubeconfig, progress).await?;
        apply::check_removed_zones(&config, &clusters, opts.prune, progress).await?;
        let (bundle, _scratch) = certificates(&config, dry_run, progress)?;
        apply::apply(&config, &templates, &bundle, clusters, &opts, progress).await
    }))??;

    print_report(&report, args.cluster.output)?;
    Ok(if !report.ok {
        Exit::CouldNotRun
    } else if diff && report.changed {
        Exit::Failed
    } else {
        Exit::Success
    })
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Runs `work` under the overall timeout, stopping promptly on Ctrl-C or
/// SIGTERM (a cancelled CI job). Local files are only ever replaced
/// atomically, so stopping anywhere leaves none half-written; a re-run
/// converges.
pub async fn with_limits<T>(
    args: &ClusterArgs,
    work: impl std::future::Future<Output = T>,
) -> anyhow::Result<T> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::time::timeout(args.timeout, work) => r.map_err(|_| anyhow::anyhow!(
            "gave up after --timeout {}s; nothing is left half-done locally, re-run to continue",
            args.timeout.as_secs()
        )),
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!(
            "interrupted; re-run the same command to continue where it stopped"
        )),
        _ = term.recv() => Err(anyhow::anyhow!(
            "terminated (SIGTERM); re-run the same command to continue where it stopped"
        )),
    }
}

/// Certificates for the Secrets. A dry run writes nothing: when none exist
/// yet it makes throw-away ones in a scratch directory (removed on drop).
fn certificates(
    config: &Config,
    dry_run: bool,
    progress: Progress,
) -> anyhow::Result<(CertBundle, Option<Scratch>)> {
    let settings = cert_settings(config);
    let nodes = node_identities(config);
    if !dry_run {
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
        return Ok((bundle, None));
    }
    if let Ok(Some(bundle)) = certs::load_certs(&settings, &nodes) {
        return Ok((bundle, None));
    }
    progress.say(
        "certs",
        "certificates do not exist yet; apply would create them",
    );
    let scratch = Scratch(
        std::env::temp_dir().join(format!("crdb-multiregion-dry-run-{}", std::process::id())),
    );
    let temp = CertSettings {
        certs_dir: scratch.0.join("certs"),
        ca_key_path: scratch.0.join("ca").join("ca.key"),
        key_type: settings.key_type,
    };
    let (bundle, _) = certs::ensure_certs(&temp, &nodes).context("preparing certificates")?;
    Ok((bundle, Some(scratch)))
}

struct Scratch(std::path::PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn print_report(report: &ApplyReport, format: ReportFormat) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match format {
        ReportFormat::Json => {
            serde_json::to_writer_pretty(&mut stdout, report)?;
            writeln!(stdout)?;
        }
        ReportFormat::Text => {
            if report.dry_run {
                for z in &report.zones {
                    for o in &z.objects {
                        let what = match o.action {
                            Action::Created => "create",
                            Action::Configured => "change",
                            Action::Unchanged => continue,
                        };
                        writeln!(stdout, "{}: {what} {}", z.zone, o.object)?;
                        for c in &o.changes {
                            writeln!(stdout, "    ~ {c}")?;
                        }
                    }
                    if let Some(d) = z.dns
                        && d != crate::dnsconf::DnsChange::Unchanged
                    {
                        writeln!(stdout, "{}: change DNS forwarding", z.zone)?;
                    }
                    if z.dns_restarted {
                        writeln!(stdout, "{}: restart DNS", z.zone)?;
                    }
                    if let Some(i) = &z.init
                        && i.starts_with("would")
                    {
                        writeln!(stdout, "{}: {i}", z.zone)?;
                    }
                }
            }
            eprint!("{}", apply::render_summary(report));
        }
    }
    Ok(())
}
