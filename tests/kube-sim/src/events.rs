//! core/v1 Events that the simulated controllers record, shaped as
//! client-go's event recorder writes them (`involvedObject`, `reason`,
//! `message`, `type`, `source.component`, `count`). One Event per object,
//! reason and message: a repeated failure is not written again each tick.
//! Writes go through [`Store::put_internal`]; no timing, no HTTP.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::store::{Store, fnv, name_of, now_rfc3339, uid_of};

/// Remembers which Events were recorded, so a controller that fails on
/// every tick records its failure once.
#[derive(Default)]
pub struct Recorder {
    recorded: HashSet<u64>,
}

impl Recorder {
    /// Record a Warning Event about `obj` (kind and apiVersion as given) from `component`.
    #[allow(clippy::too_many_arguments)]
    pub fn warning(
        &mut self,
        store: &mut Store,
        obj: &Value,
        api_version: &str,
        kind: &str,
        component: &str,
        reason: &str,
        message: &str,
    ) {
        self.warning_once(
            store,
            obj,
            api_version,
            kind,
            component,
            reason,
            message,
            message,
        );
    }

    /// As [`Recorder::warning`], recorded once per object, reason and `key`
    /// (for messages that name a new pod on every attempt).
    #[allow(clippy::too_many_arguments)]
    pub fn warning_once(
        &mut self,
        store: &mut Store,
        obj: &Value,
        api_version: &str,
        kind: &str,
        component: &str,
        reason: &str,
        message: &str,
        key: &str,
    ) {
        let key = fnv(format!("{}\0{reason}\0{key}", uid_of(obj)).as_bytes());
        if self.recorded.len() > 10_000 {
            self.recorded.clear();
        }
        if !self.recorded.insert(key) {
            return;
        }
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string();
        let now = now_rfc3339();
        let event = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": format!("{}.{key:016x}", name_of(obj)), "namespace": ns},
            "involvedObject": {
                "apiVersion": api_version, "kind": kind, "namespace": ns, "name": name_of(obj),
                "uid": uid_of(obj),
                "resourceVersion": obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(json!("")),
            },
            "reason": reason, "message": message, "type": "Warning",
            "source": {"component": component},
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            "reportingComponent": component, "reportingInstance": "",
        });
        store.put_internal(crate::resources::idx::EVENT, &ns, event);
    }
}
