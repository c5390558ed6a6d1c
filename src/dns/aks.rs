//! AKS `coredns-custom`: our server blocks in the one `.server` key we own,
//! checked against the user's `.server` keys.

use super::corefile::{check_conflicts, parse_corefile, render_blocks};
use super::*;

pub(super) fn custom_merge(
    data: &BTreeMap<String, String>,
    ours: &[Forward],
    opts: &ForwardOptions,
) -> Result<BTreeMap<String, String>, DnsError> {
    let mut out = data.clone();
    out.remove(CUSTOM_SERVER_KEY);
    for (key, text) in &out {
        if key.ends_with(".server") {
            let blocks =
                parse_corefile(text).map_err(|e| e.into_error(DnsProvider::CoreDnsCustom, key))?;
            check_conflicts(&blocks, ours, DnsProvider::CoreDnsCustom, key)?;
        }
    }
    out.insert(
        CUSTOM_SERVER_KEY.to_string(),
        format!("{CUSTOM_SERVER_HEADER}\n{}", render_blocks(ours, opts)),
    );
    Ok(out)
}

#[cfg(test)]
mod tests;
