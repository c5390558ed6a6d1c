//! The configuration file: parsing and validation.
//!
//! Owns the TOML schema, its defaults and every validation rule. It walks the
//! spanned TOML document itself (instead of stopping at serde's first error) so
//! that it can report **every** problem with `file:line:column`, the rule that
//! was broken and, for unknown keys, the closest valid key.
//!
//! Relative paths in the file (`generated_dir`, `certs.dir`, `certs.ca_key`,
//! `cockroachdb.templates_dir`) resolve against the config file's directory,
//! so that running from another directory finds the same certificates.
//!
//! [`Config::parse`] is pure. [`Config::load`] reads one (small, regular)
//! file and, for the directories the tool writes into and may purge, looks
//! at the file system to refuse dangerous ones (see
//! [`crate::fsutil::unsafe_output_dir`]). Touches no cluster, never panics on
//! any input.
//!
//! Parts: [`types`] (the checked configuration and its errors), `checker`
//! (the spanned-TOML walker that collects problems), `rules` (each
//! section's rules) and `values` (what a value may contain once it is in a
//! Kubernetes object).

use std::path::Path;

mod checker;
mod rules;
mod types;
mod values;

use checker::Checker;
#[cfg(test)]
use checker::line_col;
pub use rules::{is_dns_subdomain, quantity_bytes};
pub use types::*;
pub use values::shell_quote;

impl Config {
    /// Reads and validates a config file; relative paths in it resolve
    /// against its directory, and the output directories are checked on the
    /// file system.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = crate::fsutil::read_small_text(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::check_text(path, &text, Some(config_dir(path)))
    }

    /// Validates config text; `path` is used for messages only, relative
    /// paths are kept as written and the file system is not looked at.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        Config::check_text(path, text, None)
    }

    fn check_text(path: &Path, text: &str, base: Option<&Path>) -> Result<Config, ConfigError> {
        let mut cx = Checker::new(text, base);
        let config = cx.check(path);
        if cx.problems.is_empty()
            && let Some(config) = config
        {
            return Ok(config);
        }
        let mut problems = cx.problems;
        problems.sort_by_key(|a| (a.line, a.column));
        problems.dedup();
        Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        })
    }

    /// Zone by name.
    pub fn zone(&self, name: &str) -> Option<&Zone> {
        self.zones.iter().find(|z| z.name == name)
    }

    /// The zone that runs the one-time init Job.
    pub fn first_zone(&self) -> &Zone {
        &self.zones[0]
    }

    /// Checks the names of `--zone` flags (every command that has the flag
    /// uses this): each must be a zone of this config; a close one is
    /// suggested.
    pub fn check_zone_flags(&self, names: &[String]) -> Result<(), UnknownZone> {
        let zones: Vec<String> = self.zones.iter().map(|z| z.name.clone()).collect();
        match names.iter().find(|n| self.zone(n).is_none()) {
            None => Ok(()),
            Some(name) => Err(UnknownZone {
                name: name.clone(),
                file: self.source.clone(),
                suggestion: crate::suggest::did_you_mean(name, &zones),
                zones,
            }),
        }
    }

    /// Whether `--zone` flags `names` select `zone` (no flag selects all).
    pub fn zone_selected(names: &[String], zone: &str) -> bool {
        names.is_empty() || names.iter().any(|n| n == zone)
    }
}

/// The directory of the config file, as given (empty for a bare file name,
/// so that paths stay as short as the user wrote them).
fn config_dir(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new(""))
}

#[cfg(test)]
mod tests;
