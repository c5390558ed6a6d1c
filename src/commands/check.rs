//! `crdb-multiregion check`: option handling, the overall time limit and
//! Ctrl-C, and where the report goes. The work is in [`crate::check`].

use anyhow::{Context, bail};

use crate::check::run::{self, CheckOptions, Stop};
use crate::check::{self, report};
use crate::cli::{CheckArgs, CheckFormat};
use crate::commands::{block_on, signal};
use crate::config::Config;
use crate::exit::Exit;
use crate::fsutil::write_atomic;
use crate::k8s;
use crate::names;
use crate::progress::Progress;

pub fn run(args: &CheckArgs) -> anyhow::Result<Exit> {
    let config = Config::load(&args.config)?;
    config.check_zone_flags(&args.zones)?;
    let checks = check::selected(&args.only, &args.skip);
    if checks.is_empty() {
        bail!("nothing to check: --only and --skip leave no check to run");
    }
    let mut ports = args.ports.clone();
    if ports.is_empty() {
        ports.push(names::GRPC_PORT);
    }
    if args.http {
        ports.push(names::HTTP_PORT);
    }
    ports.sort_unstable();
    ports.dedup();
    let opts = CheckOptions {
        checks,
        ports,
        image: args.image.clone(),
        wait_timeout: args.wait_timeout,
        probe_timeout: args.probe_timeout,
        cleanup_timeout: run::CLEANUP_TIMEOUT,
        lb_timeout: run::LB_QUERY_TIMEOUT,
        resolver: args.lb_resolver.or(config.dns.lb_resolver),
        zones: args.zones.clone(),
    };
    let progress = Progress::new(args.quiet);
    let kubeconfig = k8s::load_kubeconfig(args.kubeconfig.as_deref())?;

    let timeout = args.timeout;
    progress.begin(config.zones.iter().map(|z| z.name.as_str()));
    let outcome = block_on(async {
        let stop = async {
            tokio::select! {
                () = tokio::time::sleep(timeout) => Stop::Timeout(timeout),
                _ = signal() => Stop::Interrupted,
            }
        };
        // Ctrl-C and SIGTERM both stop the round and still clean up; this
        // one is polled only once cleanup starts, so it waits for another
        // signal.
        let stop_cleanup = async {
            signal().await;
        };
        run::check(&config, &kubeconfig, &opts, stop, stop_cleanup, progress).await
    });
    progress.end();
    let outcome = outcome?;

    for p in &outcome.cleanup {
        crate::ewriteln!("warning: {p}");
    }
    let report = match outcome.result {
        Ok(r) => r,
        Err(e) => {
            let cleaned = if matches!(e, run::CheckError::Connect(_)) {
                // Every zone is connected before the first object is made.
                "nothing was created in any cluster"
            } else if outcome.cleanup.is_empty() {
                "probe objects were removed"
            } else {
                "some probe objects could not be removed (see the warnings above)"
            };
            return Err(anyhow::anyhow!("{e}\n({cleaned})"));
        }
    };

    let text = report::render_text(&report);
    // On stderr unless quiet; quiet text without --report has nowhere
    // else to go, so it is printed there all the same.
    if !args.quiet || (args.output == CheckFormat::Text && args.report.is_none()) {
        let shown = report::render_text_styled(&report, crate::progress::styled_stderr());
        crate::ewrite!("\n{shown}");
    }
    let data = match args.output {
        CheckFormat::Text => text,
        CheckFormat::Json => report::render_json(&report),
        CheckFormat::Junit => report::render_junit(&report),
    };
    match &args.report {
        Some(path) => write_atomic(path, data.as_bytes(), 0o644)
            .with_context(|| format!("writing the report to {}", path.display()))?,
        None if args.output != CheckFormat::Text => crate::output::stdout(data.as_bytes())?,
        None => {}
    }
    Ok(if !outcome.cleanup.is_empty() {
        Exit::CouldNotRun
    } else if !report.ok {
        Exit::Failed
    } else {
        Exit::Success
    })
}
