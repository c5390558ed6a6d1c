//! Manifest templates: the built-in set (embedded from `templates/`), user
//! overrides from a directory, rendering with minijinja, and turning the
//! rendered YAML into typed, strictly checked Kubernetes objects.
//!
//! Pure apart from reading an override directory once in
//! [`Templates::with_overrides`]. Knows nothing about zones or clusters: the
//! planner builds the context.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Built-in templates, by file name.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "namespace.yaml",
        include_str!("../templates/namespace.yaml"),
    ),
    ("rbac.yaml", include_str!("../templates/rbac.yaml")),
    ("services.yaml", include_str!("../templates/services.yaml")),
    ("pdb.yaml", include_str!("../templates/pdb.yaml")),
    ("dns-lb.yaml", include_str!("../templates/dns-lb.yaml")),
    (
        "external-name.yaml",
        include_str!("../templates/external-name.yaml"),
    ),
    (
        "statefulset.yaml",
        include_str!("../templates/statefulset.yaml"),
    ),
    ("init-job.yaml", include_str!("../templates/init-job.yaml")),
];

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("could not read the templates directory {}", dir.display())]
    ReadDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{} does not override any built-in template (built-in names: {known})",
        path.display()
    )]
    UnknownOverride { path: PathBuf, known: String },
    #[error("template {name} line {line}: {message}")]
    Template {
        name: String,
        line: usize,
        message: String,
    },
    #[error("template {name} line {line}: rendered text is not valid YAML: {message}")]
    Yaml {
        name: String,
        line: usize,
        message: String,
    },
    #[error("template {name} line {line}: rendered document is not a valid {kind}: {message}")]
    Invalid {
        name: String,
        line: usize,
        kind: String,
        message: String,
    },
}

/// Where a template came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Builtin,
    File(PathBuf),
}

/// One rendered YAML document and the line of the template output it starts on.
#[derive(Debug, Clone)]
pub struct Document {
    pub template: String,
    pub line: usize,
    pub value: Value,
}

/// The template set used by the planner.
#[derive(Debug, Clone)]
pub struct Templates {
    sources: BTreeMap<String, (String, Origin)>,
}

impl Templates {
    pub fn builtin() -> Templates {
        Templates {
            sources: BUILTIN
                .iter()
                .map(|(name, text)| (name.to_string(), (text.to_string(), Origin::Builtin)))
                .collect(),
        }
    }

    /// Built-ins, with every `<name>.yaml` in `dir` replacing the built-in of
    /// the same name. A file that matches no built-in is an error (a typo
    /// would otherwise silently change nothing).
    pub fn with_overrides(dir: &Path) -> Result<Templates, RenderError> {
        let mut t = Templates::builtin();
        let read_err = |source| RenderError::ReadDir {
            dir: dir.to_path_buf(),
            source,
        };
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(read_err)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(read_err)?;
        entries.sort();
        for path in entries {
            if !path.is_file() {
                continue;
            }
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)
            else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            if !t.sources.contains_key(&name) {
                return Err(RenderError::UnknownOverride {
                    path,
                    known: BUILTIN
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            let text = std::fs::read_to_string(&path).map_err(read_err)?;
            t.sources.insert(name, (text, Origin::File(path)));
        }
        Ok(t)
    }

    #[cfg(test)]
    pub fn origin(&self, name: &str) -> Option<&Origin> {
        self.sources.get(name).map(|(_, o)| o)
    }

    /// Renders one template and splits it into YAML documents.
    pub fn render(&self, name: &str, ctx: &minijinja::Value) -> Result<Vec<Document>, RenderError> {
        let (source, _) = self
            .sources
            .get(name)
            .ok_or_else(|| RenderError::Template {
                name: name.to_string(),
                line: 0,
                message: "no such template".to_string(),
            })?;
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        let template_err = |e: minijinja::Error| RenderError::Template {
            name: name.to_string(),
            line: e.line().unwrap_or(0),
            message: e
                .detail()
                .map(str::to_string)
                .unwrap_or_else(|| e.kind().to_string()),
        };
        env.add_template(name, source).map_err(template_err)?;
        let text = env
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .map_err(template_err)?;
        split_documents(&text)
            .into_iter()
            .filter(|(_, doc)| !doc.trim().is_empty())
            .map(|(line, doc)| {
                let value: Value = serde_saphyr::from_str(&doc).map_err(|e| RenderError::Yaml {
                    name: name.to_string(),
                    line,
                    message: e.to_string(),
                })?;
                Ok(Document {
                    template: name.to_string(),
                    line,
                    value,
                })
            })
            .filter(|d| {
                !matches!(
                    d,
                    Ok(Document {
                        value: Value::Null,
                        ..
                    })
                )
            })
            .collect()
    }
}

/// Splits a YAML stream at `---` lines; returns (1-based start line, text).
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    for (i, line) in text.lines().enumerate() {
        if line.trim_end() == "---" {
            docs.push((start, std::mem::take(&mut current)));
            start = i + 2;
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    docs.push((start, current));
    docs
}

/// Deserializes a rendered document into `T` and rejects any field that `T`
/// does not know (Kubernetes would reject it with strict field validation,
/// or silently drop it otherwise): the typed round trip must give the input back.
pub fn strict_typed<T>(doc: &Document, kind: &str) -> Result<T, RenderError>
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let invalid = |message: String| RenderError::Invalid {
        name: doc.template.clone(),
        line: doc.line,
        kind: kind.to_string(),
        message,
    };
    let typed: T = serde_json::from_value(doc.value.clone()).map_err(|e| invalid(e.to_string()))?;
    let back = serde_json::to_value(&typed).map_err(|e| invalid(e.to_string()))?;
    let mut unknown = Vec::new();
    unknown_fields(&doc.value, &back, String::new(), &mut unknown);
    if !unknown.is_empty() {
        return Err(invalid(format!("unknown field(s): {}", unknown.join(", "))));
    }
    Ok(typed)
}

/// Paths present in `input` but missing from the typed round trip `back`.
fn unknown_fields(input: &Value, back: &Value, path: String, out: &mut Vec<String>) {
    match (input, back) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match b.get(k) {
                    Some(bv) => unknown_fields(v, bv, p, out),
                    // Nulls and empty values are dropped by the typed objects;
                    // they carry no information, so they are not unknown.
                    None if is_empty(v) => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                unknown_fields(x, y, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Service;

    fn doc(v: Value) -> Document {
        Document {
            template: "t.yaml".into(),
            line: 3,
            value: v,
        }
    }

    #[test]
    fn strict_typed_rejects_unknown_fields() {
        let v = serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "x"},
            "spec": {"clusterIP": "None", "publishNotReadyAdresses": true}
        });
        let err = strict_typed::<Service>(&doc(v), "Service").unwrap_err();
        assert_eq!(
            err.to_string(),
            "template t.yaml line 3: rendered document is not a valid Service: unknown field(s): spec.publishNotReadyAdresses"
        );
    }

    #[test]
    fn strict_typed_rejects_wrong_types() {
        let v = serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"ports": [{"port": "a lot"}]}});
        let err = strict_typed::<Service>(&doc(v), "Service").unwrap_err();
        assert!(err.to_string().contains("not a valid Service"), "{err}");
    }

    #[test]
    fn documents_report_their_start_line() {
        let docs = split_documents("a: 1\n---\nb: 2\nc: 3\n---\n");
        assert_eq!(docs[0].0, 1);
        assert_eq!(docs[1].0, 3);
    }

    #[test]
    fn template_errors_name_the_template_and_line() {
        let mut t = Templates::builtin();
        t.sources.insert(
            "pdb.yaml".into(),
            ("a: 1\nb: {{ nope }}\n".into(), Origin::Builtin),
        );
        let err = t.render("pdb.yaml", &minijinja::context! {}).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("template pdb.yaml line 2:"), "{text}");
    }

    #[test]
    fn yaml_errors_name_the_template_and_document_line() {
        let mut t = Templates::builtin();
        t.sources.insert(
            "pdb.yaml".into(),
            ("a: 1\n---\nb: [unclosed\n".into(), Origin::Builtin),
        );
        let err = t.render("pdb.yaml", &minijinja::context! {}).unwrap_err();
        assert!(matches!(err, RenderError::Yaml { line: 3, .. }), "{err}");
    }

    #[test]
    fn overrides_replace_builtins_and_reject_unknown_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pdb.yaml"), "x: {{ 1 + 1 }}\n").unwrap();
        let t = Templates::with_overrides(dir.path()).unwrap();
        assert_eq!(
            t.origin("pdb.yaml"),
            Some(&Origin::File(dir.path().join("pdb.yaml")))
        );
        let docs = t.render("pdb.yaml", &minijinja::context! {}).unwrap();
        assert_eq!(docs[0].value, serde_json::json!({"x": 2}));

        std::fs::write(dir.path().join("statefulset.yml"), "x: 1\n").unwrap();
        let err = Templates::with_overrides(dir.path()).unwrap_err();
        assert!(
            err.to_string()
                .contains("statefulset.yml does not override"),
            "{err}"
        );
    }
}
