//! The walker of the spanned TOML document: collects every [`Problem`] with
//! its line and column, and reads typed values (string, path, table,
//! quantity, one of a set of choices) reporting its own type errors, so the
//! rules in [`super::rules`] read like the rules they are.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::Problem;
use super::values::{Quantity, parse_quantity};

pub(super) type Table<'i> = DeTable<'i>;

/// Collects the problems of one config text.
pub(super) struct Checker<'t> {
    pub(super) text: &'t str,
    /// The config file's directory, when loaded from a file: relative paths
    /// resolve against it and output directories are checked on disk.
    pub(super) base: Option<&'t Path>,
    pub(super) problems: Vec<Problem>,
}

impl<'t> Checker<'t> {
    pub(super) fn new(text: &'t str, base: Option<&'t Path>) -> Self {
        Checker {
            text,
            base,
            problems: Vec::new(),
        }
    }

    /// Records a problem at the start of `span`.
    pub(super) fn problem(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, column) = line_col(self.text, span.start);
        self.problems.push(Problem {
            line,
            column,
            message: message.into(),
        });
    }

    // ---- generic accessors: each reports its own type errors ----

    pub(super) fn unknown_keys(&mut self, t: &Table, allowed: &[&str], place: &str) {
        for (k, _) in t.iter() {
            let key = k.get_ref().as_ref();
            if !allowed.contains(&key) {
                let hint = crate::suggest::closest(key, allowed)
                    .map(|c| format!(" (did you mean `{c}`?)"))
                    .unwrap_or_else(|| format!(" (valid keys: {})", allowed.join(", ")));
                self.problem(k.span(), format!("unknown key `{key}` in {place}{hint}"));
            }
        }
    }

    pub(super) fn string(&mut self, t: &Table, key: &str, at: &str) -> Option<String> {
        let v = t.get(key)?;
        match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            other => {
                self.problem(
                    v.span(),
                    format!("{at}: expected a string, found {}", other.type_str()),
                );
                None
            }
        }
    }

    pub(super) fn path(&mut self, t: &Table, key: &str, at: &str) -> Option<PathBuf> {
        let s = self.string(t, key, at)?;
        if s.is_empty() {
            let span = span_of(t, key).unwrap_or(0..0);
            self.problem(span, format!("{at}: must not be empty"));
            return None;
        }
        Some(self.resolved(PathBuf::from(s)))
    }

    /// `path` resolved against the config file's directory (when loaded
    /// from a file and the path is relative).
    pub(super) fn resolved(&self, path: PathBuf) -> PathBuf {
        match self.base {
            Some(base) if path.is_relative() => base.join(path),
            _ => path,
        }
    }

    /// The table under `key`, if it is one (type errors are reported elsewhere).
    pub(super) fn table_quiet<'a, 'i>(&self, t: &'a Table<'i>, key: &str) -> Option<&'a Table<'i>> {
        match t.get(key)?.get_ref() {
            DeValue::Table(inner) => Some(inner),
            _ => None,
        }
    }

    pub(super) fn quantity(
        &mut self,
        t: &Table,
        key: &str,
        at: &str,
    ) -> Option<(String, Quantity)> {
        let s = self.string(t, key, at)?;
        match parse_quantity(&s) {
            Ok(q) => Some((s, q)),
            Err(why) => {
                let span = span_of(t, key).unwrap_or(0..0);
                self.problem(
                    span,
                    format!("{at}: {s:?} is not a Kubernetes quantity: it {why} (examples: \"500m\", \"2\", \"8Gi\")"),
                );
                None
            }
        }
    }

    pub(super) fn table<'a, 'i>(
        &mut self,
        t: &'a Table<'i>,
        key: &str,
        at: &str,
    ) -> Option<&'a Table<'i>> {
        let v = t.get(key)?;
        match v.get_ref() {
            DeValue::Table(inner) => Some(inner),
            other => {
                self.problem(
                    v.span(),
                    format!("{at}: expected a table, found {}", other.type_str()),
                );
                None
            }
        }
    }

    pub(super) fn choice<T: Copy>(
        &mut self,
        t: &Table,
        key: &str,
        at: &str,
        options: &[(&str, T)],
    ) -> Option<T> {
        let s = self.string(t, key, at)?;
        if let Some((_, v)) = options.iter().find(|(name, _)| *name == s) {
            return Some(*v);
        }
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        let hint = crate::suggest::closest(&s, &names)
            .map(|c| format!(" (did you mean \"{c}\"?)"))
            .unwrap_or_default();
        let span = span_of(t, key).unwrap_or(0..0);
        self.problem(
            span,
            format!(
                "{at}: {s:?} is not one of {}{hint}",
                names
                    .iter()
                    .map(|n| format!("\"{n}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        None
    }
}

pub(super) fn span_of(t: &Table, key: &str) -> Option<Range<usize>> {
    t.get(key).map(Spanned::span)
}

/// A value as a problem shows it: strings quoted, others by type.
pub(super) fn show(v: &DeValue) -> String {
    match v {
        DeValue::String(s) => format!("{s:?}"),
        other => other.type_str().to_string(),
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let mut line = 1;
    let mut line_start = 0;
    for (i, b) in text.bytes().enumerate().take(offset) {
        if b == b'\n' {
            line += 1;
            line_start = i + 1;
        }
    }
    let column = text
        .get(line_start..offset)
        .map(|s| s.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}
