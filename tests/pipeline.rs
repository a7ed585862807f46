//! The ETL pipeline through its public interface: the decoder on real Debezium output, the flat encounter
//! table, the sink's independence from delivery order, and consumers against an embedded cluster.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{bounded, client, partition};
use openmrs_etl_harness::broker::{Cluster, NewTopic};
use openmrs_etl_harness::clock::Clock;
use openmrs_etl_harness::history::{ChangeOp, ConsumedChange, History, Recorder, SourceRef};
use openmrs_etl_harness::model::flat::{self, RowImages, SYNTHETIC_ENCOUNTER_BASE};
use openmrs_etl_harness::model::schema::{self, encounter, obs, orders, patient, person, visit};
use openmrs_etl_harness::model::value::{datetime_ms, days_from_civil};
use openmrs_etl_harness::model::{Row, Value};
use openmrs_etl_harness::pipeline::{
    decode, Batch, DecodeProblem, Decoded, MemorySink, Pipeline, PipelineConfig, SinkRecord,
};
use openmrs_etl_harness::rng::SeededRng;
use openmrs_etl_harness::workload::{ChangeKind, Generator, Operation, WorkloadSpec};
use rskafka::client::partition::Compression;
use serde_json::{json, Value as Json};

// ---------------------------------------------------------------------------------------------------------
// Decoder on the real connector's output

struct Fixture {
    topic: String,
    offset: i64,
    kind: String,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

fn fixtures(table: &str) -> Vec<Fixture> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/debezium/mariadb")
        .join(format!("dbserver1.openmrs.{table}"));
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| {
            let j: Json = serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
            let bytes = |k: &str| j[k].as_str().map(|s| s.as_bytes().to_vec());
            Fixture {
                topic: j["topic"].as_str().unwrap().to_string(),
                offset: j["offset"].as_i64().unwrap(),
                kind: j["kind"].as_str().unwrap().to_string(),
                key: bytes("key"),
                value: bytes("value"),
            }
        })
        .collect()
}

fn decode_fixture(f: &Fixture) -> Decoded {
    decode(&f.topic, 0, f.offset, f.key.as_deref(), f.value.as_deref())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Whether a decoded value has the variant its column type calls for.
fn typed_right(ty: schema::SqlType, v: &Value) -> bool {
    use schema::SqlType::*;
    matches!(
        (ty, v),
        (_, Value::Null)
            | (Int, Value::Int(_))
            | (Boolean, Value::Bool(_))
            | (Double, Value::Double(_))
            | (Varchar(_) | Char(_) | Text, Value::Text(_))
            | (Date, Value::Date(_))
            | (Datetime, Value::Datetime(_))
            | (Time, Value::Time(_))
    )
}

#[test]
fn decoder_reads_every_fixture_record_of_the_five_tables() {
    for table in ["person", "patient", "encounter", "obs", "orders"] {
        let def = schema::table(table).unwrap();
        let records = fixtures(table);
        let kinds: Vec<&str> = records.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(
            kinds,
            ["r", "c", "u"]
                .iter()
                .chain(if table == "obs" {
                    &["u", "d", "tombstone"][..]
                } else {
                    &["d", "tombstone"][..]
                })
                .copied()
                .collect::<Vec<_>>(),
            "{table}"
        );
        for f in &records {
            match (decode_fixture(f), f.kind.as_str()) {
                (Decoded::Tombstone { table: t, key }, "tombstone") => {
                    assert_eq!(t, table);
                    assert!(key > 100, "{table} tombstone key {key}");
                }
                (Decoded::Change { change, image }, kind) => {
                    assert_eq!(change.op.letter(), kind, "{table}@{}", f.offset);
                    assert_eq!(change.table, table);
                    assert_eq!(image.len(), def.columns.len());
                    let pk = def.primary_key()[0];
                    assert_eq!(image[pk], Value::Int(change.key));
                    for (c, v) in def.columns.iter().zip(image.iter()) {
                        assert!(typed_right(c.ty, v), "{table}.{} = {v:?}", c.name);
                    }
                    // Snapshot reads carry no GTID; streamed changes carry MariaDB's domain-server-seq.
                    assert_eq!(change.source.snapshot, kind == "r");
                    assert_eq!(change.source.gtid.is_some(), kind != "r", "{table} {kind}");
                    assert_eq!(&*change.source.file, "binlog.000001");
                    assert!(change.source_ts_ms > 1_700_000_000_000);
                }
                (d, kind) => panic!("{table}@{}: {kind} decoded as {d:?}", f.offset),
            }
        }
    }
}

fn at(year: i64, month: u32, day: u32, h: i64, m: i64) -> i64 {
    datetime_ms(year, month, day) + (h * 60 + m) * 60_000
}

#[test]
fn decoded_images_equal_the_source_rows() {
    // person 101 as fixture-rows.sql inserted it (snapshot read).
    let mut expected = person::TABLE.empty_row();
    expected[person::person_id] = Value::Int(101);
    expected[person::gender] = Value::text("F");
    expected[person::birthdate] = Value::Date(days_from_civil(1984, 3, 12) as i32);
    expected[person::creator] = Value::Int(1);
    expected[person::date_created] = Value::Datetime(at(2024, 1, 15, 9, 30));
    expected[person::uuid] = Value::text("a1b2c3d4-0101-4000-8000-000000000101");
    let Decoded::Change { image, change } = decode_fixture(&fixtures("person")[0]) else {
        panic!("not a change")
    };
    assert_eq!(change.op, ChangeOp::Read);
    assert_eq!(*image, expected);

    // person 102 after `UPDATE person SET birthdate…, dead = 1, death_date…`: a TINYINT(1) read back as a bool.
    let Decoded::Change { image, .. } = decode_fixture(&fixtures("person")[2]) else {
        panic!("not a change")
    };
    assert_eq!(image[person::dead], Value::Bool(true));
    assert_eq!(
        image[person::death_date],
        Value::Datetime(at(2024, 3, 1, 0, 0))
    );
    assert_eq!(
        image[person::birthdate],
        Value::Date(days_from_civil(1990, 7, 2) as i32)
    );

    // obs 402 after its update; then its delete carries the before image.
    let obs_records = fixtures("obs");
    let Decoded::Change { image, .. } = decode_fixture(&obs_records[2]) else {
        panic!("not a change")
    };
    let mut o = obs::TABLE.empty_row();
    for (c, v) in [
        (obs::obs_id, Value::Int(402)),
        (obs::person_id, Value::Int(102)),
        (obs::concept_id, Value::Int(856)),
        (obs::encounter_id, Value::Int(202)),
        (obs::order_id, Value::Int(302)),
        (obs::obs_datetime, Value::Datetime(at(2024, 2, 1, 10, 15))),
        (obs::location_id, Value::Int(4)),
        (obs::value_numeric, Value::Double(72.25)),
        (obs::comments, Value::text("rechecked")),
        (obs::creator, Value::Int(1)),
        (obs::date_created, Value::Datetime(at(2024, 2, 1, 10, 16))),
        (
            obs::uuid,
            Value::text("a1b2c3d4-0402-4000-8000-000000000402"),
        ),
        (obs::status, Value::text("AMENDED")),
    ] {
        o[c] = v;
    }
    assert_eq!(*image, o);
    let Decoded::Change { image, change } = decode_fixture(&obs_records[4]) else {
        panic!("not a change")
    };
    assert_eq!(change.op, ChangeOp::Delete);
    assert_eq!(*image, o, "a delete's image is the row as it was");
}

#[test]
fn decoder_reads_the_mysql_flavour_and_schemaless_json() {
    let f = &fixtures("obs")[1];
    let mariadb = decode_fixture(f);
    let mut v: Json = serde_json::from_slice(f.value.as_ref().unwrap()).unwrap();
    v["payload"]["source"]["connector"] = json!("mysql");
    v["payload"]["source"]["gtid"] = json!("3e11fa47-71ca-11e1-9e33-c80aa9429562:23");
    let mysql = decode(
        &f.topic,
        0,
        f.offset,
        f.key.as_deref(),
        Some(v.to_string().as_bytes()),
    )
    .unwrap();
    let (
        Decoded::Change {
            change: a,
            image: ia,
        },
        Decoded::Change {
            change: b,
            image: ib,
        },
    ) = (&mariadb, &mysql)
    else {
        panic!("not changes")
    };
    assert_eq!(ia, ib);
    assert_eq!(
        b.source.gtid.as_deref(),
        Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:23")
    );
    assert_eq!(
        (a.op, a.key, &a.source.file, a.source.pos),
        (b.op, b.key, &b.source.file, b.source.pos)
    );

    // schemas.enable=false: the envelope and the key struct at the top level.
    let bare_value = v["payload"].to_string();
    let key: Json = serde_json::from_slice(f.key.as_ref().unwrap()).unwrap();
    let bare = decode(
        &f.topic,
        0,
        f.offset,
        Some(key["payload"].to_string().as_bytes()),
        Some(bare_value.as_bytes()),
    )
    .unwrap();
    assert_eq!(bare, mysql);
}

#[test]
fn decoder_refuses_a_value_that_does_not_fit_its_column() {
    let f = &fixtures("obs")[1];
    let mut v: Json = serde_json::from_slice(f.value.as_ref().unwrap()).unwrap();
    v["payload"]["after"]["voided"] = json!("no");
    let e = decode(
        &f.topic,
        2,
        77,
        f.key.as_deref(),
        Some(v.to_string().as_bytes()),
    )
    .unwrap_err();
    assert_eq!(
        (e.topic.as_str(), e.partition, e.offset),
        (f.topic.as_str(), 2, 77)
    );
    assert!(
        matches!(
            e.problem,
            DecodeProblem::BadValue {
                column: "voided",
                ..
            }
        ),
        "{e}"
    );
    v["payload"]["after"]
        .as_object_mut()
        .unwrap()
        .remove("status");
    let e = decode(
        &f.topic,
        0,
        1,
        f.key.as_deref(),
        Some(v.to_string().as_bytes()),
    )
    .unwrap_err();
    assert!(
        matches!(
            e.problem,
            DecodeProblem::MissingColumn {
                column: "status",
                ..
            } | DecodeProblem::BadValue { .. }
        ),
        "{e}"
    );
    let e = decode(
        &f.topic,
        0,
        1,
        Some(br#"{"obs_id":999}"#),
        f.value.as_deref(),
    )
    .unwrap_err();
    assert!(
        matches!(e.problem, DecodeProblem::KeyMismatch { key: 999, .. }),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------------------
// Hand-made rows and changes

fn row(table: &schema::TableDef, values: &[(usize, Value)]) -> Arc<Row> {
    let mut r = table.empty_row();
    for (c, v) in values {
        r[*c] = v.clone();
    }
    Arc::new(r)
}

fn person_row(id: i64, gender: &str) -> Arc<Row> {
    row(
        &person::TABLE,
        &[
            (person::person_id, Value::Int(id)),
            (person::gender, Value::text(gender)),
            (person::birthdate, Value::Date(5_000)),
            (person::uuid, Value::text(format!("uuid-{id}"))),
        ],
    )
}

fn patient_row(id: i64) -> Arc<Row> {
    row(&patient::TABLE, &[(patient::patient_id, Value::Int(id))])
}

fn visit_row(id: i64, patient: i64, visit_type: i64) -> Arc<Row> {
    row(
        &visit::TABLE,
        &[
            (visit::visit_id, Value::Int(id)),
            (visit::patient_id, Value::Int(patient)),
            (visit::visit_type_id, Value::Int(visit_type)),
        ],
    )
}

fn encounter_row(id: i64, patient: i64, visit: Option<i64>, voided: bool) -> Arc<Row> {
    row(
        &encounter::TABLE,
        &[
            (encounter::encounter_id, Value::Int(id)),
            (encounter::patient_id, Value::Int(patient)),
            (encounter::encounter_type, Value::Int(5)),
            (encounter::encounter_datetime, Value::Datetime(1_000 * id)),
            (encounter::visit_id, visit.map_or(Value::Null, Value::Int)),
            (encounter::voided, Value::Bool(voided)),
        ],
    )
}

fn obs_row(id: i64, person: i64, enc: Option<i64>, numeric: f64, voided: bool) -> Arc<Row> {
    row(
        &obs::TABLE,
        &[
            (obs::obs_id, Value::Int(id)),
            (obs::person_id, Value::Int(person)),
            (obs::concept_id, Value::Int(5089)),
            (obs::encounter_id, enc.map_or(Value::Null, Value::Int)),
            (obs::obs_datetime, Value::Datetime(7)),
            (obs::value_numeric, Value::Double(numeric)),
            (obs::voided, Value::Bool(voided)),
        ],
    )
}

fn order_row(id: i64, enc: i64, patient: i64, voided: bool) -> Arc<Row> {
    row(
        &orders::TABLE,
        &[
            (orders::order_id, Value::Int(id)),
            (orders::encounter_id, Value::Int(enc)),
            (orders::patient_id, Value::Int(patient)),
            (orders::concept_id, Value::Int(856)),
            (orders::voided, Value::Bool(voided)),
        ],
    )
}

/// Builds sink records with increasing source positions and per-topic offsets.
#[derive(Default)]
struct Changes {
    pos: u64,
    offsets: BTreeMap<String, i64>,
}

impl Changes {
    fn topic(table: &str) -> String {
        format!("dbserver1.openmrs.{table}")
    }

    fn next_offset(&mut self, table: &str) -> i64 {
        let o = self.offsets.entry(Changes::topic(table)).or_insert(0);
        *o += 1;
        *o - 1
    }

    fn change(&mut self, table: &'static str, op: ChangeOp, image: Arc<Row>) -> SinkRecord {
        self.pos += 100;
        let def = schema::table(table).unwrap();
        let key = image[def.primary_key()[0]].as_int().unwrap();
        SinkRecord {
            topic: Changes::topic(table),
            partition: 0,
            offset: self.next_offset(table),
            decoded: Decoded::Change {
                change: ConsumedChange {
                    table: def.name,
                    key,
                    op,
                    source: SourceRef {
                        snapshot: false,
                        file: "binlog.000001".into(),
                        pos: self.pos,
                        row: 0,
                        gtid: None,
                    },
                    source_ts_ms: 0,
                },
                image,
            },
        }
    }

    fn upsert(&mut self, table: &'static str, image: Arc<Row>) -> SinkRecord {
        self.change(table, ChangeOp::Create, image)
    }

    fn tombstone(&mut self, table: &'static str, key: i64) -> SinkRecord {
        SinkRecord {
            topic: Changes::topic(table),
            partition: 0,
            offset: self.next_offset(table),
            decoded: Decoded::Tombstone {
                table: schema::table(table).unwrap().name,
                key,
            },
        }
    }
}

fn apply(sink: &MemorySink, records: Vec<SinkRecord>) {
    sink.apply_batch(
        1,
        Batch {
            records,
            next_offsets: Vec::new(),
        },
    );
    assert_eq!(
        sink.flat_table(),
        flat::build(&sink.images()),
        "the incremental flat table equals the batch build"
    );
}

fn obs_ids(sink: &MemorySink, key: (i64, i64)) -> Vec<i64> {
    sink.flat_table()
        .get(&key)
        .map(|r| r.obs.iter().map(|o| o.obs_id).collect())
        .unwrap_or_default()
}

#[test]
fn obs_before_its_encounter_waits_then_joins() {
    let sink = MemorySink::new();
    let mut c = Changes::default();
    apply(
        &sink,
        vec![
            c.upsert("person", person_row(1, "F")),
            c.upsert("patient", patient_row(1)),
        ],
    );
    apply(
        &sink,
        vec![c.upsert("obs", obs_row(10, 1, Some(100), 61.5, false))],
    );
    assert!(
        sink.flat_table().is_empty(),
        "the obs waits for its encounter"
    );
    apply(&sink, vec![c.upsert("visit", visit_row(50, 1, 3))]);
    apply(
        &sink,
        vec![c.upsert("encounter", encounter_row(100, 1, Some(50), false))],
    );
    let table = sink.flat_table();
    let r = &table[&(1, 100)];
    assert_eq!(r.obs.len(), 1);
    assert_eq!(r.obs[0].value.as_deref(), Some("61.5"));
    assert_eq!(r.obs[0].value_type, "numeric");
    assert_eq!(r.visit_type_id, Some(3));
    assert_eq!(r.gender.as_deref(), Some("F"));
    assert_eq!(r.patient_uuid.as_deref(), Some("uuid-1"));
}

#[test]
fn encounter_without_patient_row_has_no_flat_row_until_the_patient_arrives() {
    let sink = MemorySink::new();
    let mut c = Changes::default();
    apply(
        &sink,
        vec![c.upsert("encounter", encounter_row(100, 1, None, false))],
    );
    assert!(sink.flat_table().is_empty());
    apply(&sink, vec![c.upsert("patient", patient_row(1))]);
    let table = sink.flat_table();
    assert_eq!(table.len(), 1);
    assert_eq!(table[&(1, 100)].gender, None, "no person row yet");
    apply(&sink, vec![c.upsert("person", person_row(1, "M"))]);
    assert_eq!(sink.flat_table()[&(1, 100)].gender.as_deref(), Some("M"));
}

#[test]
fn voided_encounter_disappears() {
    let sink = MemorySink::new();
    let mut c = Changes::default();
    apply(
        &sink,
        vec![
            c.upsert("person", person_row(1, "F")),
            c.upsert("patient", patient_row(1)),
            c.upsert("encounter", encounter_row(100, 1, None, false)),
            c.upsert("obs", obs_row(10, 1, Some(100), 1.0, false)),
            c.upsert("orders", order_row(20, 100, 1, false)),
        ],
    );
    assert_eq!(sink.flat_table()[&(1, 100)].orders.len(), 1);
    // OpenMRS voids the obs and orders, then the encounter.
    apply(
        &sink,
        vec![
            c.change(
                "obs",
                ChangeOp::Update,
                obs_row(10, 1, Some(100), 1.0, true),
            ),
            c.change("orders", ChangeOp::Update, order_row(20, 100, 1, true)),
        ],
    );
    let r = &sink.flat_table()[&(1, 100)];
    assert!(r.obs.is_empty() && r.orders.is_empty());
    apply(
        &sink,
        vec![c.change(
            "encounter",
            ChangeOp::Update,
            encounter_row(100, 1, None, true),
        )],
    );
    assert!(sink.flat_table().is_empty());
}

#[test]
fn obs_edit_is_a_new_obs_and_the_old_one_voided() {
    let sink = MemorySink::new();
    let mut c = Changes::default();
    apply(
        &sink,
        vec![
            c.upsert("person", person_row(1, "F")),
            c.upsert("patient", patient_row(1)),
            c.upsert("encounter", encounter_row(100, 1, None, false)),
            c.upsert("obs", obs_row(10, 1, Some(100), 80.0, false)),
        ],
    );
    apply(
        &sink,
        vec![c.upsert("obs", obs_row(11, 1, Some(100), 82.5, false))],
    );
    assert_eq!(
        obs_ids(&sink, (1, 100)),
        [10, 11],
        "between insert and void both show"
    );
    apply(
        &sink,
        vec![c.change(
            "obs",
            ChangeOp::Update,
            obs_row(10, 1, Some(100), 80.0, true),
        )],
    );
    assert_eq!(obs_ids(&sink, (1, 100)), [11]);
    assert_eq!(
        sink.flat_table()[&(1, 100)].obs[0].value.as_deref(),
        Some("82.5")
    );
}

#[test]
fn person_change_updates_every_encounter_row() {
    let sink = MemorySink::new();
    let mut c = Changes::default();
    apply(
        &sink,
        vec![
            c.upsert("person", person_row(1, "F")),
            c.upsert("patient", patient_row(1)),
            c.upsert("encounter", encounter_row(100, 1, None, false)),
            c.upsert("encounter", encounter_row(101, 1, None, false)),
            c.upsert("obs", obs_row(12, 1, None, 5.0, false)),
            c.upsert("person", person_row(2, "M")),
            c.upsert("patient", patient_row(2)),
            c.upsert("encounter", encounter_row(200, 2, None, false)),
        ],
    );
    let loose = (1, SYNTHETIC_ENCOUNTER_BASE + 12);
    assert_eq!(
        obs_ids(&sink, loose),
        [12],
        "an obs without encounter gets a synthetic one"
    );
    let mut dead = (*person_row(1, "F")).clone();
    dead[person::dead] = Value::Bool(true);
    dead[person::death_date] = Value::Datetime(99);
    apply(
        &sink,
        vec![c.change("person", ChangeOp::Update, Arc::new(dead))],
    );
    let table = sink.flat_table();
    for key in [(1, 100), (1, 101), loose] {
        assert!(table[&key].dead, "{key:?}");
        assert_eq!(table[&key].death_date, Some(99));
    }
    assert!(!table[&(2, 200)].dead, "another patient is untouched");
}

#[test]
fn obs_and_order_deletes_and_tombstones() {
    let sink = MemorySink::new();
    let mut c = Changes::default();
    let group = row(
        &obs::TABLE,
        &[
            (obs::obs_id, Value::Int(30)),
            (obs::person_id, Value::Int(1)),
            (obs::concept_id, Value::Int(1284)),
            (obs::encounter_id, Value::Int(100)),
        ],
    );
    let mut member = (*obs_row(31, 1, Some(100), 0.0, false)).clone();
    member[obs::obs_group_id] = Value::Int(30);
    member[obs::value_numeric] = Value::Null;
    member[obs::value_coded] = Value::Int(123);
    apply(
        &sink,
        vec![
            c.upsert("person", person_row(1, "F")),
            c.upsert("patient", patient_row(1)),
            c.upsert("encounter", encounter_row(100, 1, None, false)),
            c.upsert("obs", Arc::new(member)),
            c.upsert("obs", obs_row(10, 1, Some(100), 1.0, false)),
            c.upsert("orders", order_row(20, 100, 1, false)),
        ],
    );
    let m = &sink.flat_table()[&(1, 100)].obs[1];
    assert_eq!(
        (m.value.as_deref(), m.value_type, m.parent_concept_id),
        (Some("123"), "coded", None)
    );
    apply(&sink, vec![c.upsert("obs", group.clone())]);
    assert_eq!(
        sink.flat_table()[&(1, 100)].obs[2].parent_concept_id,
        Some(1284),
        "the group arrived later"
    );

    apply(
        &sink,
        vec![c.change(
            "obs",
            ChangeOp::Delete,
            obs_row(10, 1, Some(100), 1.0, false),
        )],
    );
    apply(&sink, vec![c.tombstone("obs", 10)]);
    assert_eq!(obs_ids(&sink, (1, 100)), [30, 31]);
    apply(
        &sink,
        vec![c.change("orders", ChangeOp::Delete, order_row(20, 100, 1, false))],
    );
    assert!(sink.flat_table()[&(1, 100)].orders.is_empty());
    assert!(!sink.images()["obs"].contains_key(&10));

    // Compaction kept a tombstone but not its delete: the tombstone removes the row it follows.
    apply(&sink, vec![c.tombstone("obs", 31)]);
    assert_eq!(obs_ids(&sink, (1, 100)), [30]);
    // A tombstone replayed from before the image held (lower offset) changes nothing.
    let replayed_tombstone = SinkRecord {
        offset: 0,
        ..c.tombstone("obs", 30)
    };
    apply(&sink, vec![replayed_tombstone]);
    assert_eq!(obs_ids(&sink, (1, 100)), [30]);
}

#[test]
fn older_changes_are_ignored_and_deletes_block_resurrection() {
    let sink = MemorySink::new();
    let mut c = Changes::default();
    let create = c.upsert("person", person_row(1, "F"));
    let update = c.change("person", ChangeOp::Update, person_row(1, "M"));
    let delete = c.change("person", ChangeOp::Delete, person_row(1, "M"));
    apply(&sink, vec![update.clone(), create.clone()]);
    assert_eq!(
        sink.images()["person"][&1][person::gender],
        Value::text("M")
    );
    apply(&sink, vec![delete.clone(), create.clone(), update]);
    assert!(
        !sink.images().contains_key("person"),
        "a replayed create cannot resurrect a deleted row"
    );
    // A snapshot read orders before any streamed change, whatever its binlog position.
    let mut snapshot = c.upsert("person", person_row(2, "F"));
    let late = c.change("person", ChangeOp::Update, person_row(2, "M"));
    if let Decoded::Change { change, .. } = &mut snapshot.decoded {
        change.op = ChangeOp::Read;
        change.source.snapshot = true;
        change.source.pos = u64::MAX;
    }
    apply(&sink, vec![late, snapshot]);
    assert_eq!(
        sink.images()["person"][&2][person::gender],
        Value::text("M")
    );
}

#[test]
fn offsets_move_with_the_batch_that_carries_them() {
    let sink = MemorySink::new();
    let mut c = Changes::default();
    sink.apply_batch(
        2,
        Batch {
            records: vec![c.upsert("person", person_row(1, "F"))],
            next_offsets: vec![("dbserver1.openmrs.person".into(), 0, 1)],
        },
    );
    assert_eq!(
        sink.offsets()[&("dbserver1.openmrs.person".to_string(), 0)],
        1
    );
    assert_eq!(sink.applied_per_consumer()[&2], 1);
}

// ---------------------------------------------------------------------------------------------------------
// Generated workload: interleavings and replays

/// Tables whose changes the tests carry (the flat table reads these).
const FLAT_TABLES: [&str; 6] = ["person", "patient", "visit", "encounter", "obs", "orders"];

/// The generator's operations as Debezium-ordered changes: (table, key, op, source position, image).
struct SourceChange {
    table: &'static str,
    key: i64,
    op: ChangeOp,
    source: SourceRef,
    image: Arc<Row>,
    at_ms: i64,
}

fn source_changes(ops: &[Operation]) -> Vec<SourceChange> {
    let mut out = Vec::new();
    for op in ops {
        for (i, ch) in op.changes.iter().enumerate() {
            if !FLAT_TABLES.contains(&ch.table.name) {
                continue;
            }
            let image = ch.image().clone();
            let key = image[ch.table.primary_key()[0]].as_int().unwrap();
            out.push(SourceChange {
                table: ch.table.name,
                key,
                op: match ch.kind {
                    ChangeKind::Insert => ChangeOp::Create,
                    ChangeKind::Update => ChangeOp::Update,
                    ChangeKind::Delete => ChangeOp::Delete,
                },
                source: SourceRef {
                    snapshot: false,
                    file: "binlog.000001".into(),
                    pos: 4 + op.seq * 1_000,
                    row: i as u32,
                    gtid: Some(format!("0-1-{}", op.seq).into()),
                },
                image: Arc::new(image),
                at_ms: op.at_ms,
            });
        }
    }
    out
}

/// The source's final state: what the batch job (the oracle) would read.
fn final_images(changes: &[SourceChange]) -> RowImages {
    let mut images = RowImages::new();
    for ch in changes {
        let rows = images.entry(ch.table).or_default();
        if ch.op == ChangeOp::Delete {
            rows.remove(&ch.key);
        } else {
            rows.insert(ch.key, ch.image.clone());
        }
    }
    images.retain(|_, rows| !rows.is_empty());
    images
}

const PARTITIONS: i64 = 3;

/// Each change as the records on its topic: the change, then a tombstone after a delete.
fn to_records(changes: &[SourceChange]) -> BTreeMap<(String, i32), Vec<SinkRecord>> {
    let mut topics: BTreeMap<(String, i32), Vec<SinkRecord>> = BTreeMap::new();
    for ch in changes {
        let tp = (
            Changes::topic(ch.table),
            ch.key.rem_euclid(PARTITIONS) as i32,
        );
        let log = topics.entry(tp.clone()).or_default();
        let mut push = |decoded| {
            let offset = log.len() as i64;
            log.push(SinkRecord {
                topic: tp.0.clone(),
                partition: tp.1,
                offset,
                decoded,
            })
        };
        push(Decoded::Change {
            change: ConsumedChange {
                table: ch.table,
                key: ch.key,
                op: ch.op,
                source: ch.source.clone(),
                source_ts_ms: ch.at_ms,
            },
            image: ch.image.clone(),
        });
        if ch.op == ChangeOp::Delete {
            push(Decoded::Tombstone {
                table: ch.table,
                key: ch.key,
            });
        }
    }
    topics
}

fn workload(seed: u64, operations: u64) -> Vec<Operation> {
    let spec = WorkloadSpec {
        patients: 30,
        operations,
        ..WorkloadSpec::default()
    };
    Generator::new(&spec, seed).collect()
}

/// Feeds partitions to a sink in a seeded interleaving, in small batches, optionally replaying an earlier
/// stretch of a partition (as a consumer restarted from an older offset would).
fn feed(
    sink: &MemorySink,
    logs: &BTreeMap<(String, i32), Vec<SinkRecord>>,
    seed: u64,
    replay: bool,
) {
    let mut rng = SeededRng::new(seed, "interleaving");
    let mut cursors: Vec<(&(String, i32), &Vec<SinkRecord>, usize)> =
        logs.iter().map(|(k, v)| (k, v, 0)).collect();
    let mut replayed = !replay;
    while cursors.iter().any(|(_, log, at)| *at < log.len()) {
        let live: Vec<usize> = (0..cursors.len())
            .filter(|i| cursors[*i].2 < cursors[*i].1.len())
            .collect();
        let i = *rng.pick(&live);
        let (tp, log, at) = &mut cursors[i];
        let n = (1 + rng.below(8) as usize).min(log.len() - *at);
        let mut records: Vec<SinkRecord> = log[*at..*at + n].to_vec();
        if !replayed && *at > 20 && rng.chance(0.2) {
            // Replay from an older offset before going on.
            let from = rng.below(*at as u64) as usize;
            records = log[from..*at + n].to_vec();
            replayed = true;
        }
        *at += n;
        sink.apply_batch(
            1 + i as u32 % 2,
            Batch {
                records,
                next_offsets: vec![(tp.0.clone(), tp.1, *at as i64)],
            },
        );
    }
    assert!(replayed, "the test replayed a segment");
    if replay {
        // A late duplicate delivery after everything (a stalled consumer's batch, or a partition whose keys moved
        // when partitions were added): older stretches of some partitions arrive again, carrying no offsets.
        for _ in 0..3 {
            let (_, log) = logs
                .iter()
                .nth(rng.below(logs.len() as u64) as usize)
                .unwrap();
            let from = rng.below(log.len() as u64) as usize;
            let to = from + rng.below((log.len() - from) as u64) as usize;
            sink.apply_batch(
                3,
                Batch {
                    records: log[from..to].to_vec(),
                    next_offsets: Vec::new(),
                },
            );
        }
    }
}

#[test]
fn sink_result_is_independent_of_interleaving_and_replays() {
    let ops = workload(7, 1_500);
    let changes = source_changes(&ops);
    assert!(
        changes.iter().any(|c| c.op == ChangeOp::Delete),
        "the workload purges some obs"
    );
    let logs = to_records(&changes);
    let oracle = flat::build(&final_images(&changes));
    assert!(oracle.len() > 50, "a real table: {} rows", oracle.len());

    let mut results = Vec::new();
    for (seed, replay, sink) in [
        (1, false, MemorySink::new()),
        (2, true, MemorySink::new()),
        (3, true, MemorySink::new()),
        (2, true, MemorySink::eager()),
        (3, true, MemorySink::eager()),
    ] {
        feed(&sink, &logs, seed, replay);
        let table = sink.flat_table();
        assert_eq!(table, flat::build(&sink.images()), "seed {seed}");
        assert_eq!(sink.images(), final_images(&changes), "seed {seed}");
        let ends: BTreeMap<(String, i32), i64> = logs
            .iter()
            .map(|(k, v)| (k.clone(), v.len() as i64))
            .collect();
        assert_eq!(sink.offsets(), ends);
        results.push(table);
    }
    for table in &results {
        assert!(
            table == &oracle,
            "streamed table differs from the batch build of the source"
        );
    }
}

// ---------------------------------------------------------------------------------------------------------
// Consumers against an embedded cluster

fn json_of(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Int(i) => json!(i),
        Value::Bool(b) => json!(*b as i16),
        Value::Double(d) => json!(d),
        Value::Text(t) => json!(&**t),
        Value::Date(d) => json!(d),
        Value::Datetime(ms) => json!(ms),
        Value::Time(us) => json!(us),
    }
}

fn row_json(table: &schema::TableDef, row: &Row) -> Json {
    Json::Object(
        table
            .columns
            .iter()
            .zip(row)
            .map(|(c, v)| (c.name.to_string(), json_of(v)))
            .collect(),
    )
}

/// A Debezium-shaped record (schemas on, a trimmed schema: the decoder reads the payload).
fn debezium_record(ch: &SourceChange, tombstone: bool) -> rskafka::record::Record {
    let def = schema::table(ch.table).unwrap();
    let pk = def.columns[def.primary_key()[0]].name;
    let key = json!({"schema": {"type": "struct", "name": format!("dbserver1.openmrs.{}.Key", ch.table)},
                     "payload": {pk: ch.key}});
    let value = (!tombstone).then(|| {
        let (before, after) = match ch.op {
            ChangeOp::Delete => (Some(row_json(def, &ch.image)), None),
            // The decoder reads only `after` for c/u/r: leave `before` out of the test's records.
            _ => (None, Some(row_json(def, &ch.image))),
        };
        json!({"schema": {"type": "struct", "name": format!("dbserver1.openmrs.{}.Envelope", ch.table)},
               "payload": {"before": before, "after": after,
                   "source": {"version": "3.2.0.Final", "connector": "mysql", "name": "dbserver1",
                              "ts_ms": ch.at_ms, "snapshot": "false", "db": "openmrs", "table": ch.table,
                              "server_id": 1, "gtid": ch.source.gtid.as_deref(), "file": &*ch.source.file,
                              "pos": ch.source.pos, "row": ch.source.row},
                   "op": ch.op.letter(), "ts_ms": ch.at_ms}})
        .to_string()
        .into_bytes()
    });
    rskafka::record::Record {
        key: Some(key.to_string().into_bytes()),
        value,
        headers: Default::default(),
        timestamp: rskafka::chrono::DateTime::from_timestamp_millis(ch.at_ms).unwrap(),
    }
}

const TOPIC_PARTITIONS: i32 = 2;

/// Produces the changes to their topics (partition = key mod 2); returns records produced per partition.
async fn produce(
    client: &rskafka::client::Client,
    changes: &[SourceChange],
) -> BTreeMap<(String, i32), i64> {
    let mut per: BTreeMap<(String, i32), Vec<rskafka::record::Record>> = BTreeMap::new();
    for ch in changes {
        let tp = (
            Changes::topic(ch.table),
            ch.key.rem_euclid(TOPIC_PARTITIONS as i64) as i32,
        );
        per.entry(tp.clone())
            .or_default()
            .push(debezium_record(ch, false));
        if ch.op == ChangeOp::Delete {
            per.entry(tp).or_default().push(debezium_record(ch, true));
        }
    }
    let mut counts = BTreeMap::new();
    for ((topic, p), records) in per {
        let pc = partition(client, &topic, p).await;
        counts.insert((topic.clone(), p), records.len() as i64);
        for chunk in records.chunks(200) {
            bounded(
                "produce",
                pc.produce(chunk.to_vec(), Compression::NoCompression),
            )
            .await
            .unwrap();
        }
    }
    counts
}

async fn cluster_with_topics(partitions: i32) -> Cluster {
    let mut builder = Cluster::builder();
    builder.brokers(1);
    for t in FLAT_TABLES {
        builder.topic(NewTopic::new(Changes::topic(t), partitions));
    }
    bounded("cluster start", builder.start()).await.unwrap()
}

fn config(cluster: &Cluster, consumers: u32, partitions: i32) -> PipelineConfig {
    PipelineConfig {
        consumers,
        topics: FLAT_TABLES
            .iter()
            .map(|t| (Changes::topic(t), partitions))
            .collect(),
        bootstrap: cluster.bootstrap_servers(),
        group: None,
        command: None,
    }
}

async fn wait_caught_up(pipeline: &Pipeline) {
    bounded("pipeline catches up", async {
        let ends = pipeline.end_offsets().await.unwrap();
        while !pipeline.caught_up(&ends) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// Every produced offset consumed exactly once, and nothing else.
fn assert_exactly_once(history: &History, produced: &BTreeMap<(String, i32), i64>) {
    let mut seen = BTreeSet::new();
    for c in &history.consumed {
        assert!(
            seen.insert((c.topic.to_string(), c.partition, c.offset)),
            "{}/{}@{} consumed twice",
            c.topic,
            c.partition,
            c.offset
        );
    }
    let expected: BTreeSet<_> = produced
        .iter()
        .flat_map(|((t, p), n)| (0..*n).map(move |o| (t.clone(), *p, o)))
        .collect();
    assert_eq!(seen, expected);
    let seqs: Vec<u64> = history.consumed.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
}

#[test]
fn assignment_deals_sorted_partitions_round_robin() {
    let config = PipelineConfig {
        consumers: 2,
        topics: vec![("b".into(), 3), ("a".into(), 2)],
        bootstrap: String::new(),
        group: None,
        command: None,
    };
    let a = config.assignment();
    assert_eq!(
        a[0],
        [
            ("a".to_string(), 0),
            ("b".to_string(), 0),
            ("b".to_string(), 2)
        ]
    );
    assert_eq!(a[1], [("a".to_string(), 1), ("b".to_string(), 1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_reach_the_end_and_consume_every_record_once_across_a_restart() {
    let cluster = cluster_with_topics(TOPIC_PARTITIONS).await;
    let kafka = client(&cluster.bootstrap_servers()).await;
    let ops = workload(11, 600);
    let changes = source_changes(&ops);
    let (first, second) = changes.split_at(changes.len() / 2);
    let mut produced = produce(&kafka, first).await;

    let sink = Arc::new(MemorySink::new());
    let recorder = Recorder::new(11);
    let mut pipeline = bounded(
        "pipeline start",
        Pipeline::start(
            config(&cluster, 2, TOPIC_PARTITIONS),
            sink.clone(),
            recorder.clone(),
            Clock::real(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        pipeline
            .assignment()
            .iter()
            .map(Vec::len)
            .collect::<Vec<_>>(),
        [6, 6]
    );
    wait_caught_up(&pipeline).await;
    assert_eq!(sink.flat_table(), flat::build(&final_images(first)));

    // Consumer 1 dies; the rest of the workload arrives; its replacement resumes from the sink's offsets.
    pipeline.kill_consumer(1).await.unwrap();
    assert!(!pipeline.is_running(1) && pipeline.is_running(2));
    for (tp, n) in produce(&kafka, second).await {
        *produced.entry(tp).or_default() += n;
    }
    pipeline.restart_consumer(1).await.unwrap();
    wait_caught_up(&pipeline).await;
    pipeline.shutdown().await;

    let history = recorder.snapshot();
    assert_exactly_once(&history, &produced);
    let by_consumer: BTreeSet<u32> = history.consumed.iter().map(|c| c.consumer).collect();
    assert_eq!(by_consumer, BTreeSet::from([1, 2]));
    assert!(
        history.consumed.iter().any(|c| c.tombstone_key.is_some()),
        "tombstones are recorded too"
    );
    assert_eq!(sink.images(), final_images(&changes));
    assert_eq!(sink.flat_table(), flat::build(&final_images(&changes)));
    assert!(history.retention_gaps.is_empty());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_out_of_range_records_a_retention_gap_and_continues_at_the_log_start() {
    let cluster = cluster_with_topics(1).await;
    let kafka = client(&cluster.bootstrap_servers()).await;
    let ops = workload(5, 0);
    let changes = source_changes(&ops);
    let person_changes: Vec<&SourceChange> = changes
        .iter()
        .filter(|c| c.table == "person")
        .take(10)
        .collect();
    assert_eq!(person_changes.len(), 10);
    let topic = Changes::topic("person");
    let pc = partition(&kafka, &topic, 0).await;
    let records = person_changes
        .iter()
        .map(|c| debezium_record(c, false))
        .collect();
    bounded("produce", pc.produce(records, Compression::NoCompression))
        .await
        .unwrap();
    bounded("delete records", pc.delete_records(4, 5_000))
        .await
        .unwrap();

    let sink = Arc::new(MemorySink::new());
    let recorder = Recorder::new(5);
    let pipeline = bounded(
        "pipeline start",
        Pipeline::start(
            config(&cluster, 1, 1),
            sink.clone(),
            recorder.clone(),
            Clock::real(),
        ),
    )
    .await
    .unwrap();
    wait_caught_up(&pipeline).await;
    pipeline.shutdown().await;

    let history = recorder.snapshot();
    assert_eq!(
        history.retention_gaps.len(),
        1,
        "{:?}",
        history.retention_gaps
    );
    let gap = &history.retention_gaps[0];
    assert_eq!(
        (
            gap.topic.as_str(),
            gap.partition,
            gap.requested,
            gap.log_start_offset,
            gap.consumer
        ),
        (topic.as_str(), 0, 0, 4, 1)
    );
    let offsets: Vec<i64> = history.consumed.iter().map(|c| c.offset).collect();
    assert_eq!(offsets, (4..10).collect::<Vec<_>>());
    assert_eq!(sink.offsets()[&(topic.clone(), 0)], 10);
    let held: BTreeSet<i64> = sink.images()["person"].keys().copied().collect();
    let expected: BTreeSet<i64> = person_changes[4..].iter().map(|c| c.key).collect();
    assert_eq!(held, expected, "the rows after the gap, and only those");
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_dead_cluster_is_an_error_not_a_hang() {
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = unused.local_addr().unwrap();
    drop(unused);
    let started = tokio::time::timeout(
        Duration::from_secs(30),
        Pipeline::start(
            PipelineConfig {
                consumers: 1,
                topics: vec![("t".into(), 1)],
                bootstrap: addr.to_string(),
                group: None,
                command: None,
            },
            Arc::new(MemorySink::new()),
            Recorder::new(0),
            Clock::real(),
        ),
    )
    .await
    .expect("start gives up within the request deadline");
    let e = started.err().expect("no broker there");
    assert!(e.to_string().contains(&addr.to_string()), "{e}");
}
