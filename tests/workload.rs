//! The workload generator through its public interface: determinism, realism (snapshot), referential
//! integrity of the whole stream, and the configured mix.

use std::collections::{BTreeMap, HashMap};

use openmrs_etl_harness::model::schema::{self, TableDef};
use openmrs_etl_harness::model::{OpKind, Row, Value};
use openmrs_etl_harness::workload::reference::reference_rows;
use openmrs_etl_harness::workload::{
    sql, ChangeKind, Generator, Mix, Operation, Phase, WorkloadSpec,
};
use proptest::prelude::*;

fn jsonl(spec: &WorkloadSpec, seed: u64, take: usize) -> String {
    let mut out = String::new();
    for op in Generator::new(spec, seed).take(take) {
        sql::write_operation_json(&mut out, &op);
    }
    out
}

#[test]
fn first_50_operations_snapshot() {
    let spec = WorkloadSpec {
        patients: 5,
        operations: 100,
        ..WorkloadSpec::default()
    };
    insta::assert_snapshot!(jsonl(&spec, 42, 50));
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let spec = WorkloadSpec {
        patients: 20,
        operations: 2000,
        ..WorkloadSpec::default()
    };
    let a = jsonl(&spec, 9, usize::MAX);
    assert_eq!(a, jsonl(&spec, 9, usize::MAX));
    assert_ne!(a, jsonl(&spec, 10, usize::MAX));
}

/// The database as the stream leaves it: table -> primary key -> row.
#[derive(Default)]
struct Db {
    tables: HashMap<&'static str, BTreeMap<Vec<i64>, Row>>,
}

fn key_of(table: &TableDef, row: &Row) -> Vec<i64> {
    table
        .primary_key()
        .into_iter()
        .map(|i| row[i].as_int().unwrap_or(i64::MIN))
        .collect()
}

fn key_str(v: &[i64]) -> String {
    format!("{v:?}")
}

impl Db {
    fn with_reference() -> Db {
        let mut db = Db::default();
        for (table, rows) in reference_rows() {
            for row in rows {
                db.tables
                    .entry(table.name)
                    .or_default()
                    .insert(key_of(table, &row), row);
            }
        }
        db
    }

    fn get(&self, table: &str, id: &Value) -> Option<&Row> {
        self.tables.get(table)?.get(&vec![id.as_int()?])
    }

    /// Applies one transaction, checking each change against the current state.
    fn apply(&mut self, op: &Operation) -> Result<(), String> {
        for c in &op.changes {
            let t = c.table;
            let rows = self.tables.entry(t.name).or_default();
            match c.kind {
                ChangeKind::Insert => {
                    let row = c.after.as_deref().cloned().ok_or("insert without after")?;
                    if row.len() != t.columns.len() {
                        return Err(format!("{} row has {} values", t.name, row.len()));
                    }
                    let k = key_of(t, &row);
                    if rows.insert(k.clone(), row).is_some() {
                        return Err(format!(
                            "#{} duplicate key {} {}",
                            op.seq,
                            t.name,
                            key_str(&k)
                        ));
                    }
                }
                ChangeKind::Update => {
                    let (before, after) = (
                        c.before.as_deref().ok_or("no before")?,
                        c.after.as_deref().cloned().ok_or("no after")?,
                    );
                    let k = key_of(t, before);
                    let current = rows.get(&k).ok_or(format!(
                        "#{} update of missing {} {}",
                        op.seq,
                        t.name,
                        key_str(&k)
                    ))?;
                    if current != before {
                        return Err(format!(
                            "#{} update before-image of {} {} is not the stored row",
                            op.seq,
                            t.name,
                            key_str(&k)
                        ));
                    }
                    if before == &after {
                        return Err(format!("#{} no-op update of {}", op.seq, t.name));
                    }
                    rows.insert(k, after);
                }
                ChangeKind::Delete => {
                    let before = c.before.as_deref().ok_or("no before")?;
                    let k = key_of(t, before);
                    if rows.remove(&k).as_ref() != Some(before) {
                        return Err(format!(
                            "#{} delete of {} {} does not match the stored row",
                            op.seq,
                            t.name,
                            key_str(&k)
                        ));
                    }
                }
            }
        }
        self.check_transaction(op)
    }

    /// Invariants that hold after every committed transaction.
    fn check_transaction(&self, op: &Operation) -> Result<(), String> {
        for c in &op.changes {
            let t = c.table;
            let Some(row) = c.after.as_deref() else {
                // A delete: nothing may still refer to the row.
                let id = &c.image()[0];
                for other in schema::ALL_TABLES {
                    for (i, col) in other.columns.iter().enumerate() {
                        if col.references == Some((t.name, t.columns[0].name)) {
                            if let Some(rows) = self.tables.get(other.name) {
                                if rows.values().any(|r| &r[i] == id) {
                                    return Err(format!(
                                        "#{} deleted {} {id:?} is still referenced by {}",
                                        op.seq, t.name, other.name
                                    ));
                                }
                            }
                        }
                    }
                }
                continue;
            };
            for (i, col) in t.columns.iter().enumerate() {
                if let (Some((target, _)), false) = (col.references, row[i].is_null()) {
                    if self.get(target, &row[i]).is_none() {
                        return Err(format!(
                            "#{} {}.{} = {:?} refers to a missing {target}",
                            op.seq, t.name, col.name, row[i]
                        ));
                    }
                }
                if !col.nullable && row[i].is_null() {
                    return Err(format!(
                        "#{} {}.{} is NULL but NOT NULL",
                        op.seq, t.name, col.name
                    ));
                }
            }
            if let Some(v) = t.column_index("voided") {
                if row[v] == Value::Bool(true) {
                    for m in ["voided_by", "date_voided", "void_reason"] {
                        if row[t.column_index(m).unwrap()].is_null() {
                            return Err(format!("#{} voided {} lacks {m}", op.seq, t.name));
                        }
                    }
                }
            }
            match t.name {
                "obs" => {
                    use schema::obs;
                    if self.get("person", &row[obs::person_id]).is_none() {
                        return Err(format!("#{} obs person missing", op.seq));
                    }
                    if !row[obs::obs_group_id].is_null() {
                        let parent = self
                            .get("obs", &row[obs::obs_group_id])
                            .ok_or("group parent missing")?;
                        if parent[obs::encounter_id] != row[obs::encounter_id] {
                            return Err(format!(
                                "#{} obs group parent in another encounter",
                                op.seq
                            ));
                        }
                    }
                    if !row[obs::previous_version].is_null() {
                        let old = self
                            .get("obs", &row[obs::previous_version])
                            .ok_or("previous version missing")?;
                        if old[obs::voided] != Value::Bool(true) {
                            return Err(format!(
                                "#{} previous_version {:?} is not voided",
                                op.seq,
                                row[obs::previous_version]
                            ));
                        }
                    }
                }
                "encounter"
                    if self
                        .get("patient", &row[schema::encounter::patient_id])
                        .is_none() =>
                {
                    return Err(format!("#{} encounter.patient_id is not a patient", op.seq));
                }
                "orders" => {
                    use schema::orders;
                    if !row[orders::previous_order_id].is_null() {
                        let prev = self
                            .get("orders", &row[orders::previous_order_id])
                            .ok_or("previous order missing")?;
                        if prev[orders::date_stopped].is_null() {
                            return Err(format!(
                                "#{} predecessor of a {:?} order has no date_stopped",
                                op.seq,
                                row[orders::order_action]
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn check_stream(spec: &WorkloadSpec, seed: u64) -> Result<BTreeMap<OpKind, u64>, String> {
    let mut db = Db::with_reference();
    let mut generator = Generator::new(spec, seed);
    let mut kinds = BTreeMap::new();
    let mut last_at = i64::MIN;
    for op in generator.by_ref() {
        if op.changes.is_empty() {
            return Err(format!("#{} {:?} has no changes", op.seq, op.kind));
        }
        if op.at_ms < last_at {
            return Err(format!("#{} goes back in time", op.seq));
        }
        last_at = op.at_ms;
        db.apply(&op)?;
        if op.phase == Phase::Stream {
            *kinds.entry(op.kind).or_insert(0) += 1;
        }
    }
    for (table, n) in generator.row_counts() {
        let have = db.tables.get(table).map(|t| t.len()).unwrap_or(0) as i64
            - reference_rows()
                .iter()
                .find(|(t, _)| t.name == *table)
                .map(|(_, r)| r.len() as i64)
                .unwrap_or(0);
        if have != *n {
            return Err(format!(
                "generator counts {n} {table} rows, the stream leaves {have}"
            ));
        }
    }
    Ok(kinds)
}

fn mix_strategy() -> impl Strategy<Value = Mix> {
    proptest::collection::vec(0u32..20, OpKind::ALL.len()).prop_map(|w| {
        let f = |i: usize| w[i] as f64;
        let mix = Mix {
            register_patient: f(0),
            start_visit: f(1),
            stop_visit: f(2),
            vitals: f(3) + 1.0,
            lab_results: f(4),
            diagnosis: f(5),
            new_order: f(6),
            revise_order: f(7),
            discontinue_order: f(8),
            edit_obs: f(9),
            void_encounter: f(10),
            update_demographics: f(11),
            purge_obs: f(12),
        };
        // Only feasible mixes: what consumes open visits and active orders must not outrun what creates them.
        Mix {
            stop_visit: mix.stop_visit.min(mix.start_visit),
            start_visit: mix
                .start_visit
                .min(mix.stop_visit.min(mix.start_visit) + mix.register_patient),
            discontinue_order: mix.discontinue_order.min(mix.new_order),
            // Each void consumes an encounter; only vitals, lab results, diagnoses and new orders create them.
            void_encounter: mix
                .void_encounter
                .min(mix.vitals + mix.lab_results + mix.diagnosis + mix.new_order),
            // A revision needs an active drug order and leaves one; discontinuations and voided encounters take
            // them away. Where they take (nearly) as many as new orders make, the pool sits at zero and revisions
            // cannot keep their share (seen: new 1, discontinue 1, voids 10 of 22 encounters, revise at 9% of the
            // configured 15%): revisions only where at least half of the new orders stay active.
            revise_order: {
                let creators = mix.vitals + mix.lab_results + mix.diagnosis + mix.new_order;
                let discontinue = mix.discontinue_order.min(mix.new_order);
                let voided = mix.void_encounter.min(creators) * mix.new_order / creators;
                if mix.new_order >= 2.0
                    && mix.new_order - discontinue - voided >= 0.5 * mix.new_order
                {
                    mix.revise_order
                } else {
                    0.0
                }
            },
            ..mix
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24), ..ProptestConfig::default() })]

    #[test]
    fn integrity_holds_for_any_seed_and_size(seed in any::<u64>(), patients in 0u64..40, operations in 0u64..1500,
                                             hot in 0u64..5, mix in mix_strategy()) {
        let spec = WorkloadSpec { patients, operations, mix, hot_patients: hot, hot_share: if hot > 0 { 0.5 } else { 0.0 }, ..WorkloadSpec::default() };
        if let Err(e) = check_stream(&spec, seed) {
            prop_assert!(false, "seed {seed}: {e}\nreproduce: etl-harness generate --seed {seed} --patients {patients} --operations {operations} --format jsonl");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("RATIO_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(3), ..ProptestConfig::default() })]

    #[test]
    fn ratios_follow_the_mix_on_large_workloads(seed in any::<u64>(), mix in mix_strategy()) {
        let spec = WorkloadSpec { patients: 200, operations: 10_000, mix: mix.clone(), ..WorkloadSpec::default() };
        let kinds = check_stream(&spec, seed).map_err(|e| TestCaseError::fail(format!("seed {seed}: {e}")))?;
        let total: u64 = kinds.values().sum();
        prop_assert_eq!(total, 10_000);
        for kind in OpKind::ALL {
            let share = *kinds.get(&kind).unwrap_or(&0) as f64 / total as f64;
            prop_assert!((share - mix.share(kind)).abs() <= 0.05,
                "seed {}: {:?} share {:.3}, configured {:.3}", seed, kind, share, mix.share(kind));
        }
    }
}

#[test]
fn default_mix_is_met_within_five_percent_and_obs_dominates() {
    let spec = WorkloadSpec {
        patients: 300,
        operations: 20_000,
        ..WorkloadSpec::default()
    };
    let kinds = check_stream(&spec, 5).unwrap();
    let total: u64 = kinds.values().sum();
    for kind in OpKind::ALL {
        let share = *kinds.get(&kind).unwrap_or(&0) as f64 / total as f64;
        assert!(
            (share - spec.mix.share(kind)).abs() <= 0.05,
            "{kind:?}: {share:.3} vs {:.3}",
            spec.mix.share(kind)
        );
        // Tighter than the contract: the default mix is met to within one point.
        assert!(
            (share - spec.mix.share(kind)).abs() <= 0.01,
            "{kind:?}: {share:.3} vs {:.3}",
            spec.mix.share(kind)
        );
    }
    let mut g = Generator::new(&spec, 5);
    g.by_ref().for_each(drop);
    let counts = g.row_counts();
    let obs = counts["obs"];
    for (table, n) in counts {
        if *table != "obs" {
            assert!(obs > 3 * n, "obs ({obs}) should dominate {table} ({n})");
        }
    }
}
