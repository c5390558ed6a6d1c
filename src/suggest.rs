//! "Did you mean …?": the closest of some names to one that was not found
//! (contexts, zones, config keys and values). Pure; used by the config, the
//! kube layer and the commands alike.

/// The closest name, when one is close enough to be a typo.
pub fn did_you_mean(wanted: &str, available: &[String]) -> Option<String> {
    available
        .iter()
        .map(|a| (strsim::jaro_winkler(wanted, a), a))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, a)| a.clone())
}

/// The closest of a fixed set of names (config keys, enum values): one
/// that differs only in case (`"GKE"` for `"gke"`), else one within a small
/// edit distance.
pub fn closest<'a>(wanted: &str, options: &[&'a str]) -> Option<&'a str> {
    if let Some(o) = options.iter().find(|o| o.eq_ignore_ascii_case(wanted)) {
        return Some(o);
    }
    options
        .iter()
        .map(|o| (strsim::levenshtein(wanted, o), *o))
        .filter(|(d, o)| *d <= 2.max(o.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, o)| o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_finds_values_in_another_case_and_typos() {
        let clouds = ["gke", "eks", "aks", "generic"];
        assert_eq!(closest("GKE", &clouds), Some("gke"));
        assert_eq!(closest("Generic", &clouds), Some("generic"));
        assert_eq!(closest("generc", &clouds), Some("generic"));
        assert_eq!(closest("udp", &["UDP", "TCP"]), Some("UDP"));
        assert_eq!(closest("openstack", &clouds), None);
        assert_eq!(closest("dri", &["dir", "ca_key", "key_type"]), Some("dir"));
    }

    #[test]
    fn did_you_mean_suggests_close_context_names_only() {
        let available = vec!["us-west1-a".to_string(), "gke_proj_us-east1-b".to_string()];
        assert_eq!(
            did_you_mean("us-wst1-a", &available).as_deref(),
            Some("us-west1-a")
        );
        assert_eq!(did_you_mean("production", &available), None);
    }
}
