//! `crdb-multiregion plan`: certificates and manifests, offline.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, bail};

use crate::Exit;
use crate::certs::{self, CertAction, CertBundle, CertSettings, NodeCert, NodeIdentity};
use crate::cli::{PlanArgs, PlanOutput};
use crate::config::Config;
use crate::fsutil::write_atomic;
use crate::output;
use crate::plan::{self, Facts, Object, Plan};
use crate::render::Templates;

pub fn run(args: &PlanArgs) -> anyhow::Result<Exit> {
    let config = Config::load(&args.config)?;
    let templates = load_templates(&config)?;

    let mut facts = Facts::default();
    for (zone, ip) in &args.dns_addresses {
        if config.zone(zone).is_none() {
            bail!(
                "--dns-address {zone}={ip}: no zone {zone:?} in {} (zones: {})",
                config.source.display(),
                config
                    .zones
                    .iter()
                    .map(|z| z.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        facts
            .zones
            .entry(zone.clone())
            .or_default()
            .dns_addresses
            .push(*ip);
    }
    // Every mistake in the input is reported before anything is written.
    check_templates(&config, &templates)?;

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

    let plan = plan::plan(&config, &bundle, &facts, &templates)?;
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
        output::stdout(output::yaml_stream(&plan).as_bytes())?;
    }
    Ok(Exit::Success)
}

pub fn load_templates(config: &Config) -> anyhow::Result<Templates> {
    Ok(match &config.cockroachdb.templates_dir {
        Some(dir) => Templates::with_overrides(dir)?,
        None => Templates::builtin(),
    })
}

/// Renders every template for every zone with placeholder certificates, so
/// that a broken template is reported before certificates are created.
pub fn check_templates(config: &Config, templates: &Templates) -> anyhow::Result<()> {
    let placeholder = CertBundle {
        ca_crt: String::new(),
        client_root_crt: String::new(),
        client_root_key: String::new(),
        nodes: config
            .zones
            .iter()
            .map(|z| {
                (
                    z.name.clone(),
                    NodeCert {
                        crt: String::new(),
                        key: String::new(),
                    },
                )
            })
            .collect(),
    };
    plan::plan(config, &placeholder, &Facts::default(), templates)?;
    Ok(())
}

pub fn cert_settings(config: &Config) -> CertSettings {
    CertSettings {
        certs_dir: config.certs.dir.clone(),
        ca_key_path: config.certs.ca_key.clone(),
        key_type: config.certs.key_type,
    }
}

pub fn node_identities(config: &Config) -> Vec<NodeIdentity> {
    config
        .zones
        .iter()
        .map(|z| NodeIdentity {
            zone: z.name.clone(),
            namespace: z.namespace.clone(),
            cluster_domain: config.cluster_domain.clone(),
        })
        .collect()
}

fn action(a: &CertAction) -> String {
    match a {
        CertAction::Created => "created".to_string(),
        CertAction::Reused => "reused".to_string(),
        CertAction::Regenerated { reason } => format!("regenerated ({reason})"),
    }
}

/// One directory per zone, one file per object. Files of ours that are no
/// longer planned are removed; anything else in the directory is left alone.
fn write_generated(dir: &Path, plan: &Plan) -> anyhow::Result<()> {
    for zone in &plan.zones {
        let zdir = dir.join(&zone.zone);
        std::fs::create_dir_all(&zdir)?;
        let mut wanted = BTreeSet::new();
        for (i, planned) in zone.objects.iter().enumerate() {
            let name = output::file_name(i, &planned.object);
            let mode = if matches!(planned.object, Object::Secret(_)) {
                0o600
            } else {
                0o644
            };
            write_atomic(
                &zdir.join(&name),
                output::object_yaml(&planned.object).as_bytes(),
                mode,
            )?;
            wanted.insert(name);
        }
        write_atomic(
            &zdir.join(output::DNS_FILE),
            output::dns_document(zone).as_bytes(),
            0o644,
        )?;
        wanted.insert(output::DNS_FILE.to_string());
        for entry in std::fs::read_dir(&zdir)? {
            let path = entry?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let ours = name.len() > 3
                && name.as_bytes()[..2].iter().all(u8::is_ascii_digit)
                && name.ends_with(".yaml");
            if ours && !wanted.contains(name) {
                std::fs::remove_file(&path)?;
            }
        }
    }
    Ok(())
}
