//! Errors: [`ApiError`] is what a simulated API server answers (rendered as a
//! Kubernetes `Status` object), [`StartError`] is why a federation could not
//! start. Must not format HTTP responses (the server does).

use serde_json::{Value, json};

use crate::resources::ResourceDef;

/// A failed API request, as the real API server would report it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: String,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason: reason.to_string(),
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    fn details_for(res: &ResourceDef, name: &str) -> Value {
        let mut d = json!({"name": name, "kind": res.plural});
        if !res.group.is_empty() {
            d["group"] = json!(res.group);
        }
        d
    }

    pub fn not_found(res: &ResourceDef, name: &str) -> Self {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", res.qualified()),
        )
        .with_details(Self::details_for(res, name))
    }

    pub fn namespace_not_found(ns: &str) -> Self {
        ApiError::new(404, "NotFound", format!("namespaces \"{ns}\" not found"))
            .with_details(json!({"name": ns, "kind": "namespaces"}))
    }

    pub fn already_exists(res: &ResourceDef, name: &str) -> Self {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", res.qualified()),
        )
        .with_details(Self::details_for(res, name))
    }

    pub fn stale(res: &ResourceDef, name: &str) -> Self {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                res.qualified()
            ),
        )
        .with_details(Self::details_for(res, name))
    }

    /// Server-side apply conflicts: `(manager, field path)` pairs.
    pub fn apply_conflict(res: &ResourceDef, name: &str, conflicts: &[(String, String)]) -> Self {
        let lines: Vec<String> = conflicts
            .iter()
            .map(|(m, p)| format!("- conflict with \"{m}\": {p}"))
            .collect();
        let message = if conflicts.len() == 1 {
            format!(
                "Apply failed with 1 conflict: conflict with \"{}\": {}",
                conflicts[0].0, conflicts[0].1
            )
        } else {
            format!(
                "Apply failed with {} conflicts: {}",
                conflicts.len(),
                lines.join("\n")
            )
        };
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|(m, p)| {
                json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{m}\""), "field": p})
            })
            .collect();
        let mut details = Self::details_for(res, name);
        details["causes"] = json!(causes);
        ApiError::new(409, "Conflict", message).with_details(details)
    }

    pub fn invalid(res: &ResourceDef, name: &str, field: &str, why: &str) -> Self {
        let mut details = json!({"name": name, "kind": res.kind});
        if !res.group.is_empty() {
            details["group"] = json!(res.group);
        }
        details["causes"] =
            json!([{"reason": "FieldValueInvalid", "message": why, "field": field}]);
        ApiError::new(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {field}: {why}", res.kind),
        )
        .with_details(details)
    }

    pub fn terminating(res: &ResourceDef, name: &str, ns: &str) -> Self {
        let msg = format!(
            "unable to create new content in namespace {ns} because it is being terminated"
        );
        let mut details = Self::details_for(res, name);
        details["causes"] = json!([{"reason": "NamespaceTerminating", "message": msg, "field": "metadata.namespace"}]);
        ApiError::new(
            403,
            "Forbidden",
            format!("{} \"{name}\" is forbidden: {msg}", res.qualified()),
        )
        .with_details(details)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(403, "Forbidden", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn method_not_allowed() -> Self {
        ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    pub fn path_not_found(path: &str) -> Self {
        ApiError::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    pub fn unsupported_media_type(ct: &str) -> Self {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {ct:?})"
            ),
        )
    }

    pub fn gone(message: impl Into<String>) -> Self {
        ApiError::new(410, "Expired", message)
    }

    pub fn unauthorized() -> Self {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    /// An error injected by the fault settings.
    pub fn injected(code: u16) -> Self {
        let reason = match code {
            429 => "TooManyRequests",
            500 => "InternalError",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "InternalError",
        };
        ApiError::new(
            code,
            reason,
            format!("kube-sim injected fault ({code} {reason})"),
        )
    }

    pub fn to_status(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }
}

/// Why a federation could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no zones given: a federation needs at least one zone")]
    NoZones,
    #[error("zone {0:?} is given twice (zones and contexts must be unique)")]
    DuplicateZone(String),
    #[error("zone spec {0:?} is invalid: expected `zone` or `zone=context` with non-empty parts")]
    InvalidZone(String),
    #[error("could not create the certificate authority for zone {zone}")]
    Certificate {
        zone: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("could not set up TLS for zone {zone}")]
    Tls {
        zone: String,
        #[source]
        source: rustls::Error,
    },
    #[error("could not listen on {what}")]
    Bind {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("could not write the kubeconfig {path}")]
    Kubeconfig {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not start the simulator runtime")]
    Runtime(#[source] std::io::Error),
    #[error("could not set up the real network")]
    Network(#[from] crate::network::NetworkError),
}
