//! What a command reads from the config before it plans: the templates
//! (built-in, or overridden from `cockroachdb.templates_dir`) checked by
//! rendering them once, the certificate settings and the node identities.
//! Shared by `plan`, `diff` and `apply`, so that no command imports
//! another.

use crate::certs::{CertBundle, CertSettings, NodeCert, NodeIdentity};
use crate::config::Config;
use crate::plan::{self, Facts};
use crate::render::Templates;

pub fn load_templates(config: &Config) -> anyhow::Result<Templates> {
    Ok(match &config.cockroachdb.templates_dir {
        Some(dir) => Templates::with_overrides(dir)?,
        None => Templates::builtin(),
    })
}

/// Renders every template for every zone with placeholder certificates, so
/// that a broken template is reported before certificates are created. The
/// plan it made is returned: with the real certificates put in
/// ([`plan::replace_certs`]) and the facts ([`plan::refresh_dns`]) it is
/// the plan, without rendering every object again.
pub fn check_templates(config: &Config, templates: &Templates) -> anyhow::Result<plan::Plan> {
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
    Ok(plan::plan(
        config,
        &placeholder,
        &Facts::default(),
        templates,
    )?)
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
