//! Field ownership (`metadata.managedFields`) and server-side apply.
//!
//! A simplification of the real structured-merge-diff: ownership is a set of
//! leaf paths per manager, maps are merged key by key and lists are atomic
//! (owned and replaced as a whole). Conflicts arise when an apply sets a field
//! another manager owns to a different value. Pure: no store, no clock (the
//! caller passes the timestamp).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

pub type FieldPath = Vec<String>;
pub type FieldSet = BTreeSet<FieldPath>;

const IGNORED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
    "generateName",
];

/// Leaf paths of an object, leaving out identity, server-set metadata and status.
pub fn leaf_paths(obj: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    if let Some(m) = obj.as_object() {
        for (k, v) in m {
            match k.as_str() {
                "apiVersion" | "kind" | "status" => {}
                "metadata" => {
                    if let Some(md) = v.as_object() {
                        for (mk, mv) in md {
                            if !IGNORED_METADATA.contains(&mk.as_str()) {
                                collect(mv, vec!["metadata".into(), mk.clone()], &mut out);
                            }
                        }
                    }
                }
                _ => collect(v, vec![k.clone()], &mut out),
            }
        }
    }
    out
}

fn collect(v: &Value, prefix: FieldPath, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, c) in m {
                let mut p = prefix.clone();
                p.push(k.clone());
                collect(c, p, out);
            }
        }
        Value::Null => {}
        _ => {
            out.insert(prefix);
        }
    }
}

pub fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for seg in path {
        cur = cur.as_object()?.get(seg)?;
    }
    Some(cur)
}

pub fn set_at(obj: &mut Value, path: &[String], value: Value) {
    let mut cur = obj;
    for seg in &path[..path.len() - 1] {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        cur = cur
            .as_object_mut()
            .expect("just made an object")
            .entry(seg.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !cur.is_object() {
        *cur = Value::Object(Map::new());
    }
    cur.as_object_mut()
        .expect("just made an object")
        .insert(path[path.len() - 1].clone(), value);
}

/// Remove a leaf and the maps it leaves empty (never a top-level field).
pub fn remove_at(obj: &mut Value, path: &[String]) {
    fn rec(cur: &mut Value, path: &[String], depth: usize) -> bool {
        let Some(m) = cur.as_object_mut() else {
            return false;
        };
        if path.len() == 1 {
            m.remove(&path[0]);
        } else if let Some(child) = m.get_mut(&path[0])
            && rec(child, &path[1..], depth + 1)
        {
            m.remove(&path[0]);
        }
        depth >= 1 && m.is_empty()
    }
    rec(obj, path, 0);
}

fn overlaps(a: &FieldPath, b: &FieldPath) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

pub fn display_path(p: &FieldPath) -> String {
    format!(".{}", p.join("."))
}

pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Value::Object(Map::new());
    for p in set {
        let keys: Vec<String> = p.iter().map(|s| format!("f:{s}")).collect();
        let mut cur = &mut root;
        for k in keys {
            cur = cur
                .as_object_mut()
                .expect("fieldsV1 nodes are objects")
                .entry(k)
                .or_insert_with(|| Value::Object(Map::new()));
        }
    }
    root
}

pub fn from_fields_v1(v: &Value) -> FieldSet {
    fn rec(v: &Value, prefix: FieldPath, out: &mut FieldSet) {
        let Some(m) = v.as_object() else { return };
        if (m.is_empty() || m.contains_key(".")) && !prefix.is_empty() {
            out.insert(prefix.clone());
        }
        for (k, c) in m {
            if let Some(name) = k.strip_prefix("f:") {
                let mut p = prefix.clone();
                p.push(name.to_string());
                rec(c, p, out);
            }
        }
    }
    let mut out = FieldSet::new();
    rec(v, Vec::new(), &mut out);
    out
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: Option<String>,
    pub set: FieldSet,
}

pub fn parse_entries(obj: &Value) -> Vec<Entry> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|e| Entry {
                    manager: e["manager"].as_str().unwrap_or("").to_string(),
                    operation: e["operation"].as_str().unwrap_or("Update").to_string(),
                    api_version: e["apiVersion"].as_str().unwrap_or("").to_string(),
                    time: e["time"].as_str().unwrap_or("").to_string(),
                    subresource: e["subresource"].as_str().map(String::from),
                    set: from_fields_v1(&e["fieldsV1"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn render(entries: &[Entry]) -> Value {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.set.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.set),
            });
            if let Some(s) = &e.subresource {
                v["subresource"] = json!(s);
            }
            v
        })
        .collect();
    Value::Array(list)
}

fn store_entries(obj: &mut Value, entries: &[Entry]) {
    let rendered = render(entries);
    let empty = rendered.as_array().is_some_and(Vec::is_empty);
    if let Some(md) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if empty {
            md.remove("managedFields");
        } else {
            md.insert("managedFields".into(), rendered);
        }
    }
}

/// Replace `manager`'s entry for `operation` with `set`, keeping its
/// timestamp when the set did not change.
fn upsert(
    entries: &mut Vec<Entry>,
    manager: &str,
    operation: &str,
    api_version: &str,
    now: &str,
    set: FieldSet,
) {
    if let Some(e) = entries
        .iter_mut()
        .find(|e| e.manager == manager && e.operation == operation && e.subresource.is_none())
    {
        if e.set != set || e.api_version != api_version {
            e.set = set;
            e.api_version = api_version.to_string();
            e.time = now.to_string();
        }
    } else {
        entries.push(Entry {
            manager: manager.to_string(),
            operation: operation.to_string(),
            api_version: api_version.to_string(),
            time: now.to_string(),
            subresource: None,
            set,
        });
    }
}

/// Whether an applied value matches the live one. Live objects carry
/// server-side defaults the applier did not send (a container port's
/// protocol, a Service port's targetPort), so an applied value matches when
/// everything it says is in the live value: maps by key, lists element by
/// element with the same length.
fn same_value(applied: Option<&Value>, live: Option<&Value>) -> bool {
    match (applied, live) {
        (Some(a), Some(l)) => subset(a, l),
        (None, None) => true,
        _ => false,
    }
}

fn subset(a: &Value, l: &Value) -> bool {
    match (a, l) {
        (Value::Object(am), Value::Object(lm)) => am
            .iter()
            .all(|(k, av)| av.is_null() || lm.get(k).is_some_and(|lv| subset(av, lv))),
        (Value::Array(aa), Value::Array(la)) => {
            aa.len() == la.len() && aa.iter().zip(la).all(|(x, y)| subset(x, y))
        }
        _ => a == l,
    }
}

/// The result of a server-side apply before the store writes it.
pub enum ApplyOutcome {
    Ok(Value),
    /// `(manager, field path)` pairs the apply would take over.
    Conflicts(Vec<(String, String)>),
}

/// Server-side apply of `applied` (already parsed) onto `live`.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    api_version: &str,
    now: &str,
) -> ApplyOutcome {
    let applied_set = leaf_paths(applied);
    let Some(live) = live else {
        let mut obj = applied.clone();
        if let Some(m) = obj.as_object_mut() {
            m.remove("status");
        }
        let mut entries = Vec::new();
        upsert(
            &mut entries,
            manager,
            "Apply",
            api_version,
            now,
            applied_set,
        );
        store_entries(&mut obj, &entries);
        return ApplyOutcome::Ok(obj);
    };
    let mut entries = parse_entries(live);
    let mut conflicts = Vec::new();
    for e in entries.iter_mut().filter(|e| e.manager != manager) {
        let mut taken = Vec::new();
        for p in &applied_set {
            for q in e.set.iter().filter(|q| overlaps(q, p)) {
                if !same_value(value_at(applied, p), value_at(live, p)) {
                    taken.push(q.clone());
                    conflicts.push((e.manager.clone(), display_path(p)));
                }
            }
        }
        if force {
            for q in taken {
                e.set.remove(&q);
            }
        }
    }
    if !conflicts.is_empty() && !force {
        conflicts.sort();
        conflicts.dedup();
        return ApplyOutcome::Conflicts(conflicts);
    }
    let previous: FieldSet = entries
        .iter()
        .find(|e| e.manager == manager && e.operation == "Apply")
        .map(|e| e.set.clone())
        .unwrap_or_default();
    let mut merged = live.clone();
    for p in previous.difference(&applied_set) {
        let owned_by_other = entries
            .iter()
            .filter(|e| !(e.manager == manager && e.operation == "Apply"))
            .any(|e| e.set.iter().any(|q| overlaps(q, p)));
        if !owned_by_other {
            remove_at(&mut merged, p);
        }
    }
    for p in &applied_set {
        if let Some(v) = value_at(applied, p) {
            set_at(&mut merged, p, v.clone());
        }
    }
    upsert(
        &mut entries,
        manager,
        "Apply",
        api_version,
        now,
        applied_set,
    );
    store_entries(&mut merged, &entries);
    ApplyOutcome::Ok(merged)
}

/// Record ownership for a non-apply write: `manager` takes every field the
/// write changed; fields it removed are dropped from every entry.
pub fn track_update(
    live: Option<&Value>,
    candidate: &mut Value,
    manager: &str,
    api_version: &str,
    now: &str,
) {
    let new_set = leaf_paths(candidate);
    let (old_set, mut entries) = match live {
        Some(l) => (leaf_paths(l), parse_entries(l)),
        None => (FieldSet::new(), Vec::new()),
    };
    let changed: FieldSet = new_set
        .iter()
        .filter(|p| live.and_then(|l| value_at(l, p)) != value_at(candidate, p))
        .cloned()
        .collect();
    let removed: FieldSet = old_set.difference(&new_set).cloned().collect();
    if changed.is_empty() && removed.is_empty() {
        store_entries(candidate, &entries);
        return;
    }
    for e in entries.iter_mut() {
        e.set.retain(|q| {
            !changed
                .iter()
                .any(|p| overlaps(p, q) && !(e.manager == manager && e.operation == "Update"))
                && !removed.iter().any(|p| overlaps(p, q))
        });
    }
    let mut mine: FieldSet = entries
        .iter()
        .find(|e| e.manager == manager && e.operation == "Update" && e.subresource.is_none())
        .map(|e| e.set.clone())
        .unwrap_or_default();
    mine.extend(changed);
    upsert(&mut entries, manager, "Update", api_version, now, mine);
    store_entries(candidate, &entries);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(o: ApplyOutcome) -> Value {
        match o {
            ApplyOutcome::Ok(v) => v,
            ApplyOutcome::Conflicts(c) => panic!("unexpected conflicts {c:?}"),
        }
    }

    #[test]
    fn fields_v1_round_trip() {
        let obj = json!({"metadata": {"name": "x", "labels": {"a": "1"}}, "spec": {"replicas": 3, "x": {}}});
        let set = leaf_paths(&obj);
        assert_eq!(from_fields_v1(&to_fields_v1(&set)), set);
        assert_eq!(set.len(), 3);
    }

    #[test]
    fn apply_takes_and_releases_fields() {
        let first =
            json!({"metadata": {"name": "x", "labels": {"a": "1", "b": "2"}}, "data": {"k": "v"}});
        let live = ok(apply(None, &first, "m", false, "v1", "t0"));
        let second = json!({"metadata": {"name": "x", "labels": {"a": "1"}}, "data": {"k": "v"}});
        let next = ok(apply(Some(&live), &second, "m", false, "v1", "t1"));
        assert_eq!(next["metadata"]["labels"], json!({"a": "1"}));
        // A different manager setting a different value conflicts; same value shares.
        let other = json!({"metadata": {"name": "x"}, "data": {"k": "w"}});
        match apply(Some(&next), &other, "n", false, "v1", "t2") {
            ApplyOutcome::Conflicts(c) => {
                assert_eq!(c, vec![("m".to_string(), ".data.k".to_string())])
            }
            ApplyOutcome::Ok(_) => panic!("expected a conflict"),
        }
        let same = json!({"metadata": {"name": "x"}, "data": {"k": "v"}});
        ok(apply(Some(&next), &same, "n", false, "v1", "t2"));
        let forced = ok(apply(Some(&next), &other, "n", true, "v1", "t2"));
        assert_eq!(forced["data"]["k"], "w");
        let entries = parse_entries(&forced);
        let m = entries.iter().find(|e| e.manager == "m").unwrap();
        assert!(!m.set.contains(&vec!["data".to_string(), "k".to_string()]));
    }

    #[test]
    fn defaults_in_live_lists_are_not_conflicts() {
        let mut live = json!({"metadata": {"name": "x"}, "spec": {"ports": [{"port": 80, "protocol": "TCP"}]}});
        track_update(None, &mut live, "kubectl-client-side-apply", "v1", "t0");
        let cfg = json!({"metadata": {"name": "x"}, "spec": {"ports": [{"port": 80}]}});
        ok(apply(Some(&live), &cfg, "kubectl", false, "v1", "t1"));
        let other = json!({"metadata": {"name": "x"}, "spec": {"ports": [{"port": 81}]}});
        assert!(matches!(
            apply(Some(&live), &other, "kubectl", false, "v1", "t1"),
            ApplyOutcome::Conflicts(_)
        ));
    }

    #[test]
    fn reapply_is_identical() {
        let cfg = json!({"metadata": {"name": "x"}, "spec": {"replicas": 3}});
        let live = ok(apply(None, &cfg, "m", false, "apps/v1", "t0"));
        let again = ok(apply(Some(&live), &cfg, "m", false, "apps/v1", "t1"));
        assert_eq!(live, again);
    }

    #[test]
    fn updates_take_ownership() {
        let cfg = json!({"metadata": {"name": "x"}, "spec": {"replicas": 3}});
        let live = ok(apply(None, &cfg, "m", false, "apps/v1", "t0"));
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(5);
        track_update(Some(&live), &mut scaled, "kubectl", "apps/v1", "t1");
        match apply(Some(&scaled), &cfg, "m", false, "apps/v1", "t2") {
            ApplyOutcome::Conflicts(c) => assert_eq!(c[0].0, "kubectl"),
            ApplyOutcome::Ok(_) => panic!("expected a conflict"),
        }
    }
}
