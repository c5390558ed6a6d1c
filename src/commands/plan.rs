//! `crdb-multiregion plan`: certificates and manifests, offline.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::inputs::{cert_settings, check_templates, load_templates, node_identities};
use crate::certs::{self, CertAction};
use crate::cli::{PlanArgs, PlanOutput};
use crate::config::Config;
use crate::exit::Exit;
use crate::fsutil::{self, Manifest};
use crate::output;
use crate::plan::{self, Facts, Object, Plan};

/// The config's zone names, comma-separated, for messages.
fn zone_list(config: &Config) -> String {
    config
        .zones
        .iter()
        .map(|z| z.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn run(args: &PlanArgs) -> anyhow::Result<Exit> {
    let config = Config::load(&args.config)?;
    let templates = load_templates(&config)?;

    let mut facts = Facts::default();
    for (zone, ip) in &args.dns_addresses {
        if config.zone(zone).is_none() {
            bail!(
                "--dns-address {zone}={ip}: no zone {zone:?} in {} (zones: {})",
                config.source.display(),
                zone_list(&config)
            );
        }
        facts
            .zones
            .entry(zone.clone())
            .or_default()
            .dns_addresses
            .push(*ip);
    }
    config.check_zone_flags(&args.zones)?;
    // Zones are mixed on one stream only when asked: by naming them with
    // --zone, or by --all-zones.
    if args.output == PlanOutput::Yaml
        && args.zones.is_empty()
        && config.zones.len() > 1
        && !args.all_zones
    {
        bail!(
            "plan -o yaml would print the objects of all {} zones ({}) on one stream, and `kubectl apply -f -` would put all of them into one cluster; print one zone with --zone ZONE and apply it with `kubectl --context <its context> apply -f -`, or pass --all-zones to print every zone (each document headed by its zone and context)",
            config.zones.len(),
            zone_list(&config)
        );
    }
    if let Some(dir) = &args.generated_dir
        && let Some(why) = fsutil::unsafe_output_dir(dir, config_dir(&config))
    {
        bail!(
            "--generated-dir {} cannot be used: {why}; the tool writes into this directory and `teardown --purge-local` cleans it up, so use a directory of its own",
            dir.display()
        );
    }
    // Every mistake in the input is reported before anything is written.
    let mut plan = check_templates(&config, &templates)?;

    let (bundle, report) = certs::ensure_certs(&cert_settings(&config), &node_identities(&config))
        .context("preparing certificates")?;
    crate::ewriteln!(
        "certificates in {}: CA {}, root client certificate {}",
        config.certs.dir.display(),
        action(&report.ca),
        action(&report.client_root)
    );
    for zone in &config.zones {
        if let Some(a) = report.nodes.get(&zone.name) {
            crate::ewriteln!("  {}: node certificate {}", zone.name, action(a));
        }
    }

    plan::replace_certs(&mut plan, &config, &bundle)?;
    plan::refresh_dns(&mut plan, &config, &facts);
    let dir = args
        .generated_dir
        .as_deref()
        .unwrap_or(&config.generated_dir);
    write_generated(dir, &plan)
        .with_context(|| format!("writing manifests under {}", dir.display()))?;
    for zone in &plan.zones {
        crate::ewriteln!("{}", output::summary_line(zone));
    }
    crate::ewriteln!("manifests written to {}", dir.display());

    if args.output == PlanOutput::Yaml {
        if std::io::stdout().is_terminal() {
            crate::ewriteln!(
                "warning: the YAML below holds the Secrets with private keys (node and root client keys); do not paste it anywhere"
            );
        }
        let mut shown = plan;
        if !args.zones.is_empty() {
            shown.zones.retain(|z| args.zones.contains(&z.zone));
        }
        output::stdout(output::yaml_stream(&shown).as_bytes())?;
    }
    Ok(Exit::Success)
}

/// The config file's directory (relative paths in it resolve against it).
pub fn config_dir(config: &Config) -> &Path {
    config.source.parent().unwrap_or(Path::new(""))
}

fn action(a: &CertAction) -> String {
    match a {
        CertAction::Created => "created".to_string(),
        CertAction::Reused => "reused".to_string(),
        CertAction::Regenerated { reason } => format!("regenerated ({reason})"),
    }
}

/// One directory per zone, one file per object, each recorded in the
/// directory's manifest. A file of ours that is no longer planned is removed
/// only when it is in the manifest with the content we wrote; anything else
/// in the directory is left alone. Holds the directory's lock meanwhile.
fn write_generated(dir: &Path, plan: &Plan) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the directory {}", dir.display()))?;
    let _lock = fsutil::lock_dir(dir, fsutil::LOCK_WAIT, || {
        eprintln!(
            "waiting for another crdb-multiregion run to finish with {}",
            dir.display()
        )
    })
    .with_context(|| format!("locking {}", dir.display()))?;
    let manifest_path = dir.join(fsutil::MANIFEST_FILE);
    let mut manifest =
        Manifest::load(dir).with_context(|| format!("reading {}", manifest_path.display()))?;
    let result = write_zones(dir, plan, &mut manifest);
    // Also after a failure: what was written is recorded.
    manifest
        .save()
        .with_context(|| format!("writing {}", manifest_path.display()))?;
    result
}

fn write_zones(dir: &Path, plan: &Plan, manifest: &mut Manifest) -> anyhow::Result<()> {
    // Every zone's files in one batch (see `fsutil::write_all_atomic`).
    let mut files: Vec<(PathBuf, Vec<u8>, u32)> = Vec::new();
    let mut wanted: Vec<(PathBuf, BTreeSet<String>)> = Vec::new();
    for zone in &plan.zones {
        let zdir = dir.join(&zone.zone);
        std::fs::create_dir_all(&zdir)
            .with_context(|| format!("creating the directory {}", zdir.display()))?;
        let mut names = BTreeSet::new();
        let objects = zone.objects.iter().enumerate().map(|(i, planned)| {
            let mode = if matches!(planned.object, Object::Secret(_)) {
                0o600
            } else {
                0o644
            };
            (
                output::file_name(i, &planned.object),
                output::object_yaml(&planned.object),
                mode,
            )
        });
        let dns = (
            output::DNS_FILE.to_string(),
            output::dns_document(zone),
            0o644,
        );
        for (name, text, mode) in objects.chain([dns]) {
            files.push((zdir.join(&name), text.into_bytes(), mode));
            names.insert(name);
        }
        wanted.push((zdir, names));
    }
    // The manifests are made again by every `plan` from the config and the
    // certificates, and any that differs byte for byte from what it should
    // be (one cut short by a crash) is rewritten: no sync (see
    // docs/benchmarks.md, "What plan writes and syncs").
    let fsutil::Written {
        in_place,
        mut listed,
        error,
    } = fsutil::write_all_atomic(&files, fsutil::Durability::Unsynced);
    // What is in place is recorded (from what was written, not read back),
    // also when a later file failed.
    for ((path, bytes, _), in_place) in files.iter().zip(&in_place) {
        if *in_place {
            manifest.record(path, bytes);
        }
    }
    if let Some((path, e)) = error {
        return Err(anyhow::Error::new(e).context(format!("writing {}", path.display())));
    }
    // Files of ours no longer planned: from the listing taken before the
    // writes (under the lock, so no other run changed it since; every file
    // this run added is wanted).
    for (zdir, names) in wanted {
        let before = match listed.remove(&zdir) {
            Some(before) => before,
            None => {
                fsutil::list_names(&zdir).with_context(|| format!("listing {}", zdir.display()))?
            }
        };
        for name in before {
            let path = zdir.join(&name);
            let wanted = name.to_str().is_some_and(|n| names.contains(n));
            if !wanted && manifest.is_ours(&path) {
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
                manifest.forget(&path);
            }
        }
    }
    Ok(())
}
