//! `crdb-multiregion teardown`.

use std::io::{BufRead, IsTerminal};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::cli::{ReportFormat, TeardownArgs};
use crate::commands::{block_on, with_limits};
use crate::config::Config;
use crate::exit::Exit;
use crate::fsutil::{self, Manifest};
use crate::k8s;
use crate::progress::Progress;
use crate::teardown::{self, TeardownReport, ZoneTeardown};

pub fn run(args: &TeardownArgs) -> anyhow::Result<Exit> {
    let config = Config::load(&args.cluster.config)?;
    if !args.dry_run {
        confirm(&config, args)?;
    }
    let progress = Progress::new(args.cluster.quiet);
    let started = Instant::now();
    let limit = if args.cluster.concurrency == 0 {
        config.zones.len()
    } else {
        args.cluster.concurrency
    };
    progress.begin(config.zones.iter().map(|z| z.name.as_str()));
    let zones = block_on(with_limits(&args.cluster, async {
        let kubeconfig = k8s::load_kubeconfig(args.cluster.kubeconfig.as_deref())?;
        let semaphore = Arc::new(tokio::sync::Semaphore::new(limit.max(1)));
        let work = config.zones.iter().map(|zone| {
            let semaphore = semaphore.clone();
            let kubeconfig = &kubeconfig;
            let config = &config;
            async move {
                let _permit = semaphore.acquire().await;
                progress.step(&zone.name, "connecting");
                let z = match k8s::connect(kubeconfig, zone).await {
                    Ok(c) => {
                        teardown::teardown_zone(
                            &c,
                            config,
                            args.cluster.preflight_timeout,
                            args.cluster.wait_timeout,
                            args.dry_run,
                            progress,
                        )
                        .await
                    }
                    Err(e) => ZoneTeardown {
                        zone: zone.name.clone(),
                        context: zone.context.clone(),
                        error: Some(k8s::connect_problem(&e, &zone.context).to_string()),
                        ..ZoneTeardown::default()
                    },
                };
                progress.finish_zone(&zone.name, z.ok);
                z
            }
        });
        anyhow::Ok(futures::future::join_all(work).await)
    }));
    progress.end();
    let zones = zones???;

    let mut purged = Vec::new();
    let all_clean = zones.iter().all(|z| z.ok);
    if args.purge_local && args.dry_run {
        progress.say(
            "local",
            "dry run: local certificates and manifests are not touched",
        );
    } else if args.purge_local {
        if all_clean {
            purged = purge_local(&config, progress)?;
        } else {
            progress.say(
                "local",
                "not purging local certificates: some zones are not clean (their certificates may still be needed)",
            );
        }
    }
    let report = TeardownReport {
        dry_run: args.dry_run,
        ok: all_clean,
        zones,
        purged_local: purged,
        elapsed_seconds: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
    };
    match args.cluster.output {
        ReportFormat::Json => {
            let mut out = serde_json::to_string_pretty(&report)?;
            out.push('\n');
            crate::output::stdout(out.as_bytes())?;
        }
        ReportFormat::Text => {
            let zones: Vec<(&str, bool)> = report
                .zones
                .iter()
                .map(|z| (z.zone.as_str(), z.ok))
                .collect();
            progress.summary(&teardown::render_summary(&report), &zones);
        }
    }
    Ok(if report.zones.iter().any(|z| z.error.is_some()) {
        Exit::CouldNotRun
    } else if !report.ok {
        Exit::Failed
    } else {
        Exit::Success
    })
}

fn confirm(config: &Config, args: &TeardownArgs) -> anyhow::Result<()> {
    if args.yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "teardown deletes CockroachDB and its data in every zone; pass --yes to confirm (stdin is not a terminal, so there is no one to ask)"
        );
    }
    crate::ewriteln!(
        "This deletes CockroachDB, its data volumes and our DNS forwarding in {} cluster(s):",
        config.zones.len()
    );
    for z in &config.zones {
        crate::ewriteln!(
            "  {} (context {}, namespace {})",
            z.name,
            z.context,
            z.namespace
        );
    }
    crate::ewrite!("Type 'yes' to continue: ");
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if answer.trim() != "yes" {
        bail!("teardown cancelled");
    }
    Ok(())
}

/// Deletes the local files `plan`/`apply` wrote (as recorded in the
/// manifests of the certs and generated directories, and only while they
/// still have the content written), then the directories this leaves empty.
/// Files the tool did not write, or that were changed since, stay, and so
/// does every directory that still holds anything.
fn purge_local(config: &Config, progress: Progress) -> anyhow::Result<Vec<String>> {
    let mut removed = Vec::new();
    for dir in [&config.certs.dir, &config.generated_dir] {
        if !dir.is_dir() {
            continue;
        }
        let lock = fsutil::lock_dir(dir, fsutil::LOCK_WAIT, || {
            progress.say(
                "local",
                format!(
                    "waiting for another crdb-multiregion run to finish with {}",
                    dir.display()
                ),
            )
        })
        .with_context(|| format!("locking {}", dir.display()))?;
        let purged = Manifest::load(dir)
            .and_then(Manifest::purge)
            .with_context(|| {
                format!(
                    "removing the files crdb-multiregion wrote in {}",
                    dir.display()
                )
            })?;
        drop(lock);
        for (path, why) in &purged.kept {
            progress.say("local", format!("kept {}: {why}", path.display()));
        }
        if dir.exists() {
            progress.say(
                "local",
                format!(
                    "kept {}: it holds files crdb-multiregion did not write",
                    dir.display()
                ),
            );
        }
        removed.extend(purged.removed.iter().map(|p| p.display().to_string()));
    }
    Ok(removed)
}
