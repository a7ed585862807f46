//! `final-state`: the sink's flat encounter table against the oracle's (the batch recomputation from the
//! source), row by row, naming the fields that differ. Fields are compared through their JSON form, so a field
//! added to `FlatEncounter` is compared without touching this file.

use serde::Serialize;
use serde_json::Value;

use super::EXAMPLES;
use crate::model::flat::{FlatEncounter, FlatTable};

/// Longest rendering of a value in an example; flat rows carry whole obs lists.
const VALUE_CHARS: usize = 120;

/// How a row differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowDiffKind {
    /// In the oracle, not in the sink: the pipeline never built it.
    Missing,
    /// In the sink, not in the oracle: built from changes the source does not have (or a delete it missed).
    Extra,
    /// In both, with different fields.
    Different,
}

/// One field that differs, as JSON text; `obs[17].value` names field `value` of the obs with id 17.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldDiff {
    pub field: String,
    pub sink: String,
    pub oracle: String,
}

/// One row that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowDiff {
    pub patient_id: i64,
    pub encounter_id: i64,
    pub kind: RowDiffKind,
    /// For `different`: the fields that differ.
    pub fields: Vec<FieldDiff>,
}

/// The sink against the oracle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FinalStateDiff {
    pub sink_rows: u64,
    pub oracle_rows: u64,
    /// Rows that differ in any way: missing + extra + different.
    pub count: u64,
    pub missing: u64,
    pub extra: u64,
    pub different: u64,
    /// The first few, in (patient_id, encounter_id) order.
    pub examples: Vec<RowDiff>,
    /// A command ETL's tables against its oracle (then the counts are rows of those tables).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<super::foreign::TableDiff>,
}

pub(crate) fn diff(sink: &FlatTable, oracle: &FlatTable) -> FinalStateDiff {
    let mut d = FinalStateDiff {
        sink_rows: sink.len() as u64,
        oracle_rows: oracle.len() as u64,
        ..FinalStateDiff::default()
    };
    let mut found: Vec<((i64, i64), RowDiffKind)> = Vec::new();
    for (key, want) in oracle {
        match sink.get(key) {
            None => {
                d.missing += 1;
                found.push((*key, RowDiffKind::Missing));
            }
            Some(got) if got != want => {
                d.different += 1;
                found.push((*key, RowDiffKind::Different));
            }
            Some(_) => {}
        }
    }
    for key in sink.keys().filter(|k| !oracle.contains_key(k)) {
        d.extra += 1;
        found.push((*key, RowDiffKind::Extra));
    }
    d.count = d.missing + d.extra + d.different;
    found.sort_by_key(|(k, _)| *k);
    d.examples = found
        .into_iter()
        .take(EXAMPLES)
        .map(|((patient_id, encounter_id), kind)| {
            let key = (patient_id, encounter_id);
            let fields = match (kind, sink.get(&key), oracle.get(&key)) {
                (RowDiffKind::Different, Some(s), Some(o)) => field_diffs(s, o),
                _ => Vec::new(),
            };
            RowDiff {
                patient_id,
                encounter_id,
                kind,
                fields,
            }
        })
        .collect();
    d
}

fn field_diffs(sink: &FlatEncounter, oracle: &FlatEncounter) -> Vec<FieldDiff> {
    let (Ok(Value::Object(s)), Ok(Value::Object(o))) =
        (serde_json::to_value(sink), serde_json::to_value(oracle))
    else {
        return vec![FieldDiff {
            field: "(row)".into(),
            sink: format!("{sink:?}"),
            oracle: format!("{oracle:?}"),
        }];
    };
    let mut out = Vec::new();
    for (field, ov) in &o {
        let sv = s.get(field).unwrap_or(&Value::Null);
        if sv == ov {
            continue;
        }
        match (field.as_str(), sv, ov) {
            ("obs", Value::Array(sa), Value::Array(oa)) => {
                list_diffs("obs", "obs_id", sa, oa, &mut out)
            }
            ("orders", Value::Array(sa), Value::Array(oa)) => {
                list_diffs("orders", "order_id", sa, oa, &mut out)
            }
            _ => out.push(FieldDiff {
                field: field.clone(),
                sink: render(Some(sv)),
                oracle: render(Some(ov)),
            }),
        }
    }
    out
}

/// Differences between two lists of objects matched by their id field.
fn list_diffs(name: &str, id: &str, sink: &[Value], oracle: &[Value], out: &mut Vec<FieldDiff>) {
    let by_id = |list: &[Value]| -> std::collections::BTreeMap<String, Value> {
        list.iter()
            .enumerate()
            .map(|(i, v)| {
                let key = v.get(id).map_or_else(|| format!("#{i}"), Value::to_string);
                (key, v.clone())
            })
            .collect()
    };
    let (s, o) = (by_id(sink), by_id(oracle));
    let ids: std::collections::BTreeSet<&String> = s.keys().chain(o.keys()).collect();
    for key in ids {
        match (s.get(key), o.get(key)) {
            (Some(Value::Object(sv)), Some(Value::Object(ov))) => {
                for (field, ofv) in ov {
                    let sfv = sv.get(field).unwrap_or(&Value::Null);
                    if sfv != ofv {
                        out.push(FieldDiff {
                            field: format!("{name}[{key}].{field}"),
                            sink: render(Some(sfv)),
                            oracle: render(Some(ofv)),
                        });
                    }
                }
            }
            (sv, ov) if sv != ov => out.push(FieldDiff {
                field: format!("{name}[{key}]"),
                sink: render(sv),
                oracle: render(ov),
            }),
            _ => {}
        }
    }
}

fn render(v: Option<&Value>) -> String {
    let Some(v) = v else {
        return "(absent)".into();
    };
    let text = v.to_string();
    if text.chars().count() <= VALUE_CHARS {
        return text;
    }
    let cut: String = text.chars().take(VALUE_CHARS).collect();
    format!("{cut}…")
}
