//! Mapping between places in a scenario file and key paths, for `file:line:column: key: …` errors.

use std::ops::Range;

use toml_edit::{Document, Item, Value};

use super::ScenarioError;

/// One step of a key path.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// A scenario's text with its spans.
pub(crate) struct Located<'t> {
    text: &'t str,
    file: &'t str,
    doc: Option<Document<String>>,
}

impl<'t> Located<'t> {
    pub(crate) fn new(text: &'t str, file: &'t str) -> Located<'t> {
        Located {
            text,
            file,
            doc: Document::parse(text.to_string()).ok(),
        }
    }

    fn line_column(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let mut line = 1;
        let mut line_start = 0;
        for (i, b) in self.text.bytes().enumerate().take(offset) {
            if b == b'\n' {
                line += 1;
                line_start = i + 1;
            }
        }
        let column = self
            .text
            .get(line_start..offset)
            .map(|s| s.chars().count())
            .unwrap_or(0)
            + 1;
        (line, column)
    }

    fn error(&self, offset: usize, key: String, message: String) -> ScenarioError {
        let (line, column) = self.line_column(offset);
        ScenarioError {
            file: self.file.to_string(),
            line,
            column,
            key,
            message,
        }
    }

    /// A TOML or type error, with the key found at its place.
    pub(crate) fn serde_error(&self, e: &toml::de::Error) -> ScenarioError {
        let offset = e.span().map(|s| s.start).unwrap_or(0);
        let key = self.path_at(offset);
        let message = e.message().trim().replace('\n', "; ");
        self.error(offset, key, message)
    }

    /// An error about the key at `path`; points at its value, or at the nearest enclosing table when the key
    /// is not written (a default).
    pub(crate) fn error_at(&self, path: &[Seg], message: String) -> ScenarioError {
        let offset = self.span_of(path).map(|s| s.start).unwrap_or(0);
        self.error(offset, render_path(path), message)
    }

    fn span_of(&self, path: &[Seg]) -> Option<Range<usize>> {
        span_in_item(self.doc.as_ref()?.as_item(), path)
    }

    /// The dotted path of the deepest key whose key or value contains `offset`.
    fn path_at(&self, offset: usize) -> String {
        let Some(doc) = self.doc.as_ref() else {
            return String::new();
        };
        let mut path = String::new();
        walk_table_like(doc.as_table(), offset, &mut path);
        path
    }
}

/// Span of the deepest written part of `path` below `item`.
fn span_in_item(item: &Item, path: &[Seg]) -> Option<Range<usize>> {
    match path.split_first() {
        None => item.span(),
        Some((Seg::Key(k), rest)) => match item.as_table_like()?.get_key_value(k) {
            Some((key, value)) => span_in_item(value, rest)
                .or_else(|| value.span())
                .or_else(|| key.span()),
            None => item.span(),
        },
        Some((Seg::Index(i), rest)) => match item {
            Item::ArrayOfTables(a) => {
                let table = a.get(*i)?;
                match rest.split_first() {
                    Some((Seg::Key(k), _)) => table
                        .get_key_value(k)
                        .and_then(|(key, value)| value.span().or_else(|| key.span()))
                        .or_else(|| table.span()),
                    _ => table.span(),
                }
            }
            Item::Value(Value::Array(a)) => a.get(*i).and_then(|v| v.span()),
            _ => None,
        },
    }
}

fn contains(span: Option<Range<usize>>, offset: usize) -> bool {
    span.is_some_and(|s| s.start <= offset && offset < s.end.max(s.start + 1))
}

fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

fn walk_table_like(table: &dyn toml_edit::TableLike, offset: usize, path: &mut String) -> bool {
    for (name, _) in table.iter() {
        let Some((key, item)) = table.get_key_value(name) else {
            continue;
        };
        let len = path.len();
        push_key(path, name);
        if walk_item(item, offset, path) || contains(key.span(), offset) {
            return true;
        }
        path.truncate(len);
    }
    false
}

fn walk_item(item: &Item, offset: usize, path: &mut String) -> bool {
    match item {
        Item::Table(t) => walk_table_like(t, offset, path),
        Item::ArrayOfTables(a) => {
            for (i, t) in a.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                if walk_table_like(t, offset, path) {
                    return true;
                }
                path.truncate(len);
            }
            false
        }
        Item::Value(v) => walk_value(v, offset, path),
        Item::None => false,
    }
}

fn walk_value(value: &Value, offset: usize, path: &mut String) -> bool {
    match value {
        Value::InlineTable(t) => walk_table_like(t, offset, path) || contains(t.span(), offset),
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                if walk_value(v, offset, path) {
                    return true;
                }
                path.truncate(len);
            }
            contains(a.span(), offset)
        }
        other => contains(other.span(), offset),
    }
}

pub(crate) fn render_path(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => push_key(&mut s, k),
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}
