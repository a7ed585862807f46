//! A small ordered JSON tree for the records whose field order matters and whose volume does not (schema
//! changes, schema history, rendered schemas), written compact (JsonConverter) or pretty the way Jackson's
//! default pretty printer writes Debezium's schema history.

use std::fmt::Write as _;

use crate::model::value::write_json_string;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(&'static str, Json)>),
}

impl Json {
    pub(crate) fn str(s: impl Into<String>) -> Json {
        Json::Str(s.into())
    }

    pub(crate) fn opt_str(s: Option<impl Into<String>>) -> Json {
        s.map(|s| Json::Str(s.into())).unwrap_or(Json::Null)
    }

    pub(crate) fn compact(&self) -> String {
        let mut out = String::new();
        self.write_compact(&mut out);
        out
    }

    pub(crate) fn write_compact(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Json::Str(s) => write_json_string(out, s),
            Json::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_compact(out);
                }
                out.push(']');
            }
            Json::Obj(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_json_string(out, k);
                    out.push(':');
                    v.write_compact(out);
                }
                out.push('}');
            }
        }
    }

    /// Jackson's `DefaultPrettyPrinter`: objects indent two spaces per object level, arrays stay inline
    /// (`[ a, b ]`, `[ ]`), names and values are separated by ` : `.
    pub(crate) fn pretty(&self) -> String {
        let mut out = String::new();
        self.write_pretty(&mut out, 0);
        out
    }

    fn write_pretty(&self, out: &mut String, depth: usize) {
        match self {
            Json::Arr(items) if items.is_empty() => out.push_str("[ ]"),
            Json::Arr(items) => {
                out.push_str("[ ");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.write_pretty(out, depth);
                }
                out.push_str(" ]");
            }
            Json::Obj(fields) if fields.is_empty() => out.push_str("{ }"),
            Json::Obj(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push('\n');
                    indent(out, depth + 1);
                    write_json_string(out, k);
                    out.push_str(" : ");
                    v.write_pretty(out, depth + 1);
                }
                out.push('\n');
                indent(out, depth);
                out.push('}');
            }
            scalar => scalar.write_compact(out),
        }
    }
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

/// A Kafka Connect schema field, in JsonConverter's key order: type, optional, name, version, parameters,
/// default, field (and the struct's own `fields` / array `items` first).
#[derive(Debug, Clone)]
pub(crate) struct SchemaField {
    pub ty: &'static str,
    pub optional: bool,
    pub name: Option<String>,
    pub version: Option<i64>,
    pub parameters: Option<Json>,
    pub default: Option<Json>,
    pub field: Option<String>,
    pub fields: Option<Vec<SchemaField>>,
    pub items: Option<Box<SchemaField>>,
}

impl SchemaField {
    pub(crate) fn new(ty: &'static str, optional: bool, field: &str) -> SchemaField {
        SchemaField {
            ty,
            optional,
            name: None,
            version: None,
            parameters: None,
            default: None,
            field: Some(field.to_string()),
            fields: None,
            items: None,
        }
    }

    pub(crate) fn structure(fields: Vec<SchemaField>, optional: bool) -> SchemaField {
        SchemaField {
            fields: Some(fields),
            field: None,
            ..SchemaField::new("struct", optional, "")
        }
    }

    pub(crate) fn array(items: SchemaField, optional: bool, field: &str) -> SchemaField {
        SchemaField {
            items: Some(Box::new(items)),
            ..SchemaField::new("array", optional, field)
        }
    }

    pub(crate) fn named(mut self, name: impl Into<String>, version: Option<i64>) -> SchemaField {
        self.name = Some(name.into());
        self.version = version;
        self
    }

    pub(crate) fn field(mut self, field: &str) -> SchemaField {
        self.field = Some(field.to_string());
        self
    }

    pub(crate) fn no_field(mut self) -> SchemaField {
        self.field = None;
        self
    }

    pub(crate) fn default(mut self, default: Json) -> SchemaField {
        self.default = Some(default);
        self
    }

    pub(crate) fn parameters(mut self, parameters: Json) -> SchemaField {
        self.parameters = Some(parameters);
        self
    }

    pub(crate) fn to_json(&self) -> Json {
        let mut o: Vec<(&'static str, Json)> = vec![("type", Json::str(self.ty))];
        if let Some(items) = &self.items {
            o.push(("items", items.to_json()));
        }
        if let Some(fields) = &self.fields {
            o.push((
                "fields",
                Json::Arr(fields.iter().map(|f| f.to_json()).collect()),
            ));
        }
        o.push(("optional", Json::Bool(self.optional)));
        if let Some(name) = &self.name {
            o.push(("name", Json::str(name.clone())));
        }
        if let Some(v) = self.version {
            o.push(("version", Json::Int(v)));
        }
        if let Some(p) = &self.parameters {
            o.push(("parameters", p.clone()));
        }
        if let Some(d) = &self.default {
            o.push(("default", d.clone()));
        }
        if let Some(f) = &self.field {
            o.push(("field", Json::str(f.clone())));
        }
        Json::Obj(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_matches_jacksons_layout() {
        let doc = Json::Obj(vec![
            ("source", Json::Obj(vec![("server", Json::str("s"))])),
            (
                "changes",
                Json::Arr(vec![Json::Obj(vec![
                    ("type", Json::str("DROP")),
                    ("names", Json::Arr(vec![Json::str("a")])),
                    ("none", Json::Arr(vec![])),
                ])]),
            ),
        ]);
        assert_eq!(
            doc.pretty(),
            "{\n  \"source\" : {\n    \"server\" : \"s\"\n  },\n  \"changes\" : [ {\n    \"type\" : \"DROP\",\n    \"names\" : [ \"a\" ],\n    \"none\" : [ ]\n  } ]\n}"
        );
        assert_eq!(
            doc.compact(),
            r#"{"source":{"server":"s"},"changes":[{"type":"DROP","names":["a"],"none":[]}]}"#
        );
    }
}
