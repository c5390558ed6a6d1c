//! "Did you mean …?": the closest of some names to one that was not found
//! (contexts, zones). Pure; used by the kube layer and by commands alike.

/// The closest name, when one is close enough to be a typo.
pub fn did_you_mean(wanted: &str, available: &[String]) -> Option<String> {
    available
        .iter()
        .map(|a| (strsim::jaro_winkler(wanted, a), a))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, a)| a.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

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
