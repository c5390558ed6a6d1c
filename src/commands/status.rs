//! `crdb-multiregion status`: options, the time limit and where the report
//! goes. The work is in [`crate::status`].

use std::collections::BTreeMap;
use std::time::Duration;

use crate::cli::{ReportFormat, StatusArgs};
use crate::commands::{block_on, with_limits_for};
use crate::config::Config;
use crate::exit::Exit;
use crate::k8s;
use crate::status::{self, StatusOptions};

/// Beyond each zone's own bound, how long the whole command may take (the
/// zones are read at the same time, so this is only a safety net).
const OVERALL_MARGIN: Duration = Duration::from_secs(10);

pub fn run(args: &StatusArgs) -> anyhow::Result<Exit> {
    let config = Config::load(&args.config)?;
    config.check_zone_flags(&args.zones)?;
    let shown: Vec<String> = if args.zones.is_empty() {
        config.zones.iter().map(|z| z.name.clone()).collect()
    } else {
        args.zones.clone()
    };
    let kubeconfig = k8s::load_kubeconfig(args.kubeconfig.as_deref())?;
    let opts = StatusOptions {
        zone_timeout: args.timeout,
        resolver: args.lb_resolver.or(config.dns.lb_resolver),
    };
    let gathered = block_on(with_limits_for(
        args.timeout + OVERALL_MARGIN,
        status::gather(&config, &kubeconfig, &shown, &opts),
    ))??;
    let local: BTreeMap<String, _> = shown
        .iter()
        .map(|z| (z.clone(), status::read_local_certs(&config.certs.dir, z)))
        .collect();
    let report = status::evaluate(
        &config,
        &gathered,
        &shown,
        &local,
        time::OffsetDateTime::now_utc(),
    );
    let text = match args.output {
        ReportFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
        ReportFormat::Text => status::render_text(&report),
    };
    crate::output::stdout(text.as_bytes())?;
    Ok(if report.zones.iter().any(|z| z.could_not_connect) {
        Exit::CouldNotRun
    } else if report.ok {
        Exit::Success
    } else {
        Exit::Failed
    })
}
