//! Checkers and report, validated the way Jepsen's kafka_test.clj validates its checker: tiny histories built by
//! hand. A clean history reports nothing; each mutation of it (one loss, one duplicate, one reorder, one gap,
//! one corrupted sink row, …) is reported as exactly that anomaly and nothing else; losses are explained by the
//! event log; the report judges the findings against several `[expect]` settings.

use openmrs_etl_harness::check::{self, Analysis, FinalStates, Liveness, LossCause, RowDiffKind};
use openmrs_etl_harness::history::{
    BinlogPosition, BrokerId, ChangeOp, ChangeRecord, ClusterEvent, ClusterEventKind, Commit,
    Consumed, ConsumedChange, DeletionReason, History, ProduceOutcome, Produced, RetentionGap,
    SourceRef, TruncationReason,
};
use openmrs_etl_harness::model::flat::{FlatEncounter, FlatObs};
use openmrs_etl_harness::model::OpKind;
use openmrs_etl_harness::report::{Report, RunInfo, RunMode};
use openmrs_etl_harness::scenario::{Count, CountVar, Expect, Relation, Scenario};

const BINLOG: &str = "mysql-bin.000003";

fn topic(table: &str) -> String {
    format!("dbserver1.openmrs.{table}")
}

fn commit(txn: u64, kind: Option<OpKind>, changes: &[(&'static str, i64, ChangeOp)]) -> Commit {
    Commit {
        txn,
        snapshot: kind.is_none(),
        kind,
        patient_id: Some(1),
        position: BinlogPosition {
            file: BINLOG.into(),
            pos: 154 + 1000 * txn,
        },
        gtid: None,
        server_id: 184054,
        committed_at_ms: 1_000 * (txn as i64 + 1),
        changes: changes
            .iter()
            .map(|&(table, key, op)| ChangeRecord { table, key, op })
            .collect(),
    }
}

/// Builds a history the way the recorder would, one delivery at a time.
struct Build {
    h: History,
}

impl Build {
    fn commit(commits: &[Commit], txn: u64) -> &Commit {
        let i = commits
            .binary_search_by_key(&txn, |c| c.txn)
            .unwrap_or_else(|_| panic!("no commit {txn} in the fixture"));
        &commits[i]
    }

    /// Acknowledges the change `(txn, index)` at `offset` of partition 0 of its table's topic.
    fn ack(&mut self, txn: u64, index: u32, offset: i64) {
        let c = Build::commit(&self.h.commits, txn);
        let ch = &c.changes[index as usize];
        self.h.produced.push(Produced {
            change: Some(openmrs_etl_harness::history::ChangeId { txn, index }),
            tombstone: false,
            topic: topic(ch.table).into(),
            outcome: ProduceOutcome::Acked {
                partition: 0,
                offset,
            },
            sent_at_ms: c.committed_at_ms + 5,
        });
    }

    fn ack_tombstone(&mut self, table: &str, offset: i64, sent_at_ms: i64) {
        self.h.produced.push(Produced {
            change: None,
            tombstone: true,
            topic: topic(table).into(),
            outcome: ProduceOutcome::Acked {
                partition: 0,
                offset,
            },
            sent_at_ms,
        });
    }

    /// A consumer reads the change `(txn, index)` at `offset`.
    fn read(&mut self, txn: u64, index: u32, offset: i64) {
        let c = Build::commit(&self.h.commits, txn);
        let ch = &c.changes[index as usize];
        let seq = self.h.consumed.len() as u64;
        self.h.consumed.push(Consumed {
            seq,
            consumer: 1,
            topic: topic(ch.table).into(),
            partition: 0,
            offset,
            change: Some(ConsumedChange {
                table: ch.table,
                key: ch.key,
                op: ch.op,
                source: SourceRef {
                    snapshot: c.snapshot,
                    file: c.position.file.as_str().into(),
                    pos: c.position.pos,
                    row: index,
                    gtid: None,
                },
                source_ts_ms: c.committed_at_ms,
            }),
            tombstone_key: None,
            at_ms: c.committed_at_ms + 40 + 10 * seq as i64,
            record_timestamp_ms: c.committed_at_ms + 5,
        });
    }

    fn read_tombstone(&mut self, table: &str, key: i64, offset: i64, at_ms: i64) {
        let seq = self.h.consumed.len() as u64;
        self.h.consumed.push(Consumed {
            seq,
            consumer: 1,
            topic: topic(table).into(),
            partition: 0,
            offset,
            change: None,
            tombstone_key: Some(key),
            at_ms,
            record_timestamp_ms: at_ms - 30,
        });
    }
}

/// Snapshot of person 1; txn 1 a vitals encounter with two obs; txn 2 edits obs 100 and adds obs 102; txn 3
/// purges obs 101 (a delete and its tombstone). Every change acknowledged and read once, in order.
fn clean() -> History {
    let mut b = Build {
        h: History {
            seed: 42,
            ..History::default()
        },
    };
    b.h.commits = vec![
        commit(0, None, &[("person", 1, ChangeOp::Read)]),
        commit(
            1,
            Some(OpKind::Vitals),
            &[
                ("encounter", 10, ChangeOp::Create),
                ("obs", 100, ChangeOp::Create),
                ("obs", 101, ChangeOp::Create),
            ],
        ),
        commit(
            2,
            Some(OpKind::EditObs),
            &[
                ("obs", 100, ChangeOp::Update),
                ("obs", 102, ChangeOp::Create),
            ],
        ),
        commit(3, Some(OpKind::PurgeObs), &[("obs", 101, ChangeOp::Delete)]),
    ];
    b.ack(0, 0, 0);
    b.ack(1, 0, 0);
    b.ack(1, 1, 0);
    b.ack(1, 2, 1);
    b.ack(2, 0, 2);
    b.ack(2, 1, 3);
    b.ack(3, 0, 4);
    b.ack_tombstone("obs", 5, 4_006);
    b.read(0, 0, 0);
    b.read(1, 0, 0);
    b.read(1, 1, 0);
    b.read(1, 2, 1);
    b.read(2, 0, 2);
    b.read(2, 1, 3);
    b.read(3, 0, 4);
    b.read_tombstone("obs", 101, 5, 4_200);
    b.h.end_offsets = vec![
        (topic("person"), 0, 1),
        (topic("encounter"), 0, 1),
        (topic("obs"), 0, 6),
    ];
    b.h
}

fn finals() -> FinalStates {
    let obs = |obs_id: i64, value: &str| FlatObs {
        obs_id,
        voided: false,
        concept_id: 5089,
        obs_datetime: 2_000,
        value: Some(value.into()),
        value_type: "numeric",
        obs_group_id: None,
        parent_concept_id: None,
    };
    let row = FlatEncounter {
        patient_id: 1,
        encounter_id: 10,
        location_id: Some(7),
        visit_id: None,
        encounter_datetime: Some(2_000),
        encounter_type: Some(5),
        gender: Some("F".into()),
        birthdate: Some(9_000),
        dead: false,
        death_date: None,
        patient_uuid: Some("3f1c".into()),
        visit_type_id: None,
        obs: vec![obs(100, "71.5"), obs(102, "36.6")],
        orders: vec![],
    };
    let table: std::collections::BTreeMap<_, _> = [((1, 10), row)].into_iter().collect();
    FinalStates {
        sink: table.clone(),
        oracle: table,
        foreign: None,
    }
}

fn analyse(h: &History) -> Analysis {
    check::all(h, &finals(), &Liveness::Quiesced)
}

/// The anomaly counts, by checker name: what "exactly that anomaly and nothing else" is asserted against.
fn anomalies(a: &Analysis) -> Vec<(&'static str, u64)> {
    [
        ("lost", a.lost.count),
        ("duplicates", a.duplicates.count),
        ("reordered", a.reordered.count),
        ("offset_gaps", a.offset_gaps.count),
        ("phantoms", a.phantoms.count),
        ("retention_lost", a.retention_loss.count),
        ("final_state", a.final_state.count),
        ("liveness", u64::from(a.liveness != Liveness::Quiesced)),
    ]
    .into_iter()
    .filter(|&(_, n)| n > 0)
    .collect()
}

fn info(mode: RunMode) -> RunInfo {
    RunInfo {
        scenario: "tiny".into(),
        path: "scenarios/tiny.toml".into(),
        seed: 42,
        backend: "embedded".into(),
        mode,
        harness_version: "0.0.0-test".into(),
        wall_ms: 1_234,
    }
}

fn expect(toml_text: &str) -> Expect {
    toml::from_str(toml_text).unwrap_or_else(|e| panic!("{toml_text}: {e}"))
}

fn report(h: &History, a: &Analysis, expect_text: &str) -> Report {
    Report::new(info(RunMode::RealTime), &expect(expect_text), a, h)
}

#[test]
fn clean_history_reports_no_anomaly() {
    let h = clean();
    let a = analyse(&h);
    assert_eq!(anomalies(&a), vec![]);
    assert_eq!(a.source.commits, 3);
    assert_eq!(a.source.snapshot_reads, 1);
    assert_eq!(a.source.changes, 7);
    assert_eq!(a.source.by_table["obs"]["c"], 3);
    assert_eq!(a.source.by_table["obs"]["u"], 1);
    assert_eq!(a.source.by_table["obs"]["d"], 1);
    assert_eq!(a.consumed.records, 8);
    assert_eq!(a.consumed.tombstones, 1);
    assert_eq!(a.consumed.changes_delivered, 7);
    let r = report(&h, &a, "");
    assert!(r.passed(), "{}", r.terminal());
    assert_eq!(r.exit_code(), 0);
    let latency = r.metrics.latency_ms.as_ref().expect("latency measured");
    assert_eq!(latency.samples, 7);
    // Deliveries are at commit + 40 + 10 × seq ms: 40 for the first, 100 for the seventh.
    assert_eq!((latency.p50, latency.max), (70, 100));
}

#[test]
fn a_change_never_produced_is_a_loss_and_nothing_else() {
    let mut h = clean();
    h.commits[2].changes.push(ChangeRecord {
        table: "obs",
        key: 103,
        op: ChangeOp::Create,
    });
    h.produced.push(Produced {
        change: Some(openmrs_etl_harness::history::ChangeId { txn: 2, index: 2 }),
        tombstone: false,
        topic: topic("obs").into(),
        outcome: ProduceOutcome::Failed {
            error: "NOT_ENOUGH_REPLICAS".into(),
        },
        sent_at_ms: 3_005,
    });
    let a = analyse(&h);
    assert_eq!(anomalies(&a), vec![("lost", 1)]);
    assert_eq!(a.lost.never_produced, 1);
    let e = &a.lost.examples[0];
    assert_eq!(
        (e.change.table.as_str(), e.change.key, e.change.txn),
        ("obs", 103, 2)
    );
    assert_eq!(e.cause, LossCause::NeverProduced);
    assert_eq!(e.produce_error.as_deref(), Some("NOT_ENOUGH_REPLICAS"));
}

#[test]
fn an_acked_record_nobody_read_is_an_unexplained_loss_and_an_offset_gap() {
    let mut h = clean();
    // obs 102's create, at obs/0 offset 3.
    h.consumed
        .retain(|c| !(*c.topic == *topic("obs") && c.offset == 3));
    let a = analyse(&h);
    assert_eq!(anomalies(&a), vec![("lost", 1), ("offset_gaps", 1)]);
    assert_eq!(a.lost.unexplained, 1);
    assert_eq!(a.lost.examples[0].acked[0].offset, 3);
    let g = &a.offset_gaps.examples[0];
    assert_eq!(
        (g.topic.as_str(), g.partition, g.start, g.end),
        (topic("obs").as_str(), 0, 3, 4)
    );
}

#[test]
fn a_replay_is_a_duplicate_and_not_a_reorder() {
    let mut h = clean();
    // A consumer restarts and reads obs 100's create again after everything else.
    let mut again = h.consumed[2].clone();
    again.seq = h.consumed.len() as u64;
    again.at_ms += 5_000;
    h.consumed.push(again);
    let a = analyse(&h);
    assert_eq!(anomalies(&a), vec![("duplicates", 1)]);
    assert_eq!(a.duplicates.changes, 1);
    let d = &a.duplicates.examples[0];
    assert_eq!((d.change.key, d.first.seq, d.again.seq), (100, 2, 8));
}

#[test]
fn a_row_changed_out_of_order_is_one_reorder() {
    let mut h = clean();
    // obs 100's update (seq 4) is consumed before its create (seq 2).
    h.consumed[2].seq = 4;
    h.consumed[4].seq = 2;
    let a = analyse(&h);
    assert_eq!(anomalies(&a), vec![("reordered", 1)]);
    let r = &a.reordered.examples[0];
    assert_eq!((r.table.as_str(), r.key), ("obs", 100));
    assert_eq!((r.later.txn, r.later.op), (2, "u"));
    assert_eq!((r.earlier.txn, r.earlier.op), (1, "c"));
    assert_eq!((r.later_delivery.seq, r.earlier_delivery.seq), (2, 4));
}

#[test]
fn an_unread_tombstone_is_an_offset_gap_and_nothing_else() {
    let mut h = clean();
    h.consumed.retain(|c| c.change.is_some());
    let a = analyse(&h);
    assert_eq!(anomalies(&a), vec![("offset_gaps", 1)]);
    let g = &a.offset_gaps.examples[0];
    assert_eq!((g.start, g.end), (5, 6));
}

#[test]
fn offsets_past_the_last_read_are_a_gap() {
    let mut h = clean();
    h.end_offsets[1].2 = 3;
    let a = analyse(&h);
    assert_eq!(anomalies(&a), vec![("offset_gaps", 2)]);
    assert_eq!(a.offset_gaps.examples[0].topic, topic("encounter"));
}

#[test]
fn a_corrupted_sink_row_is_a_final_state_difference_naming_the_fields() {
    let h = clean();
    let mut f = finals();
    let row = f.sink.get_mut(&(1, 10)).unwrap();
    row.location_id = Some(8);
    row.obs[1].value = Some("37.9".into());
    let a = check::all(&h, &f, &Liveness::Quiesced);
    assert_eq!(anomalies(&a), vec![("final_state", 1)]);
    assert_eq!(a.final_state.different, 1);
    let d = &a.final_state.examples[0];
    assert_eq!(d.kind, RowDiffKind::Different);
    let fields: Vec<(&str, &str, &str)> = d
        .fields
        .iter()
        .map(|f| (f.field.as_str(), f.sink.as_str(), f.oracle.as_str()))
        .collect();
    assert_eq!(
        fields,
        vec![
            ("location_id", "8", "7"),
            ("obs[102].value", "\"37.9\"", "\"36.6\"")
        ]
    );
}

#[test]
fn missing_and_extra_rows_are_told_apart() {
    let h = clean();
    let mut f = finals();
    let row = f.sink.remove(&(1, 10)).unwrap();
    f.sink.insert(
        (1, 11),
        FlatEncounter {
            encounter_id: 11,
            ..row
        },
    );
    let a = check::all(&h, &f, &Liveness::Quiesced);
    assert_eq!(
        (
            a.final_state.missing,
            a.final_state.extra,
            a.final_state.count
        ),
        (1, 1, 2)
    );
    let kinds: Vec<RowDiffKind> = a.final_state.examples.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, vec![RowDiffKind::Missing, RowDiffKind::Extra]);
}

#[test]
fn a_record_the_source_never_committed_is_a_phantom() {
    let mut h = clean();
    let mut ghost = h.consumed[5].clone();
    ghost.seq = h.consumed.len() as u64;
    ghost.offset = 6;
    if let Some(c) = ghost.change.as_mut() {
        c.source.pos = 99_999;
    }
    h.consumed.push(ghost);
    h.end_offsets[2].2 = 7;
    let a = analyse(&h);
    assert_eq!(anomalies(&a), vec![("phantoms", 1)]);
    let p = &a.phantoms.examples[0];
    assert_eq!(p.delivery.offset, 6);
    assert_eq!(p.claimed.as_ref().map(|c| c.binlog_pos), Some(99_999));
}

/// acks=1: obs 102's create was acknowledged at obs/0 offset 3 by a leader that died before replicating it; the
/// new leader wrote the delete at offset 3, and the old leader truncated [3, 4) when it came back.
fn truncated_history() -> History {
    let mut h = clean();
    for p in h.produced.iter_mut() {
        if let (Some(id), ProduceOutcome::Acked { offset, .. }) = (p.change, &mut p.outcome) {
            if id.txn == 3 {
                *offset = 3;
            }
        } else if p.tombstone {
            p.outcome = ProduceOutcome::Acked {
                partition: 0,
                offset: 4,
            };
        }
    }
    h.consumed
        .retain(|c| !(*c.topic == *topic("obs") && c.offset == 3));
    for (i, c) in h.consumed.iter_mut().enumerate() {
        c.seq = i as u64;
        if *c.topic == *topic("obs") && c.offset >= 4 {
            c.offset -= 1;
        }
    }
    h.end_offsets[2].2 = 5;
    h.cluster_events.push(ClusterEvent {
        at_ms: 3_500,
        kind: ClusterEventKind::Truncated {
            topic: topic("obs"),
            partition: 0,
            broker: BrokerId(2),
            start_offset: 3,
            end_offset: 4,
            reason: TruncationReason::DivergingEpoch,
        },
    });
    h
}

#[test]
fn a_loss_matched_to_a_truncation_is_lost_by_the_cluster() {
    let h = truncated_history();
    let a = analyse(&h);
    assert_eq!(anomalies(&a), vec![("lost", 1)]);
    assert_eq!(a.lost.truncated_acked, 1);
    let e = &a.lost.examples[0];
    assert_eq!(e.cause, LossCause::TruncatedAcked);
    assert_eq!((e.change.key, e.acked[0].offset), (102, 3));
    assert_eq!(a.cluster.truncations, 1);
}

#[test]
fn a_loss_inside_a_consumer_retention_gap_is_a_retention_loss() {
    let mut h = clean();
    // Retention deleted obs/0 offsets 0 and 1 before the consumer got there: it asked for 0, the log began at 2.
    h.consumed
        .retain(|c| !(*c.topic == *topic("obs") && c.offset < 2));
    h.retention_gaps.push(RetentionGap {
        consumer: 1,
        topic: topic("obs"),
        partition: 0,
        requested: 0,
        log_start_offset: 2,
        at_ms: 2_100,
    });
    let a = analyse(&h);
    assert_eq!(anomalies(&a), vec![("lost", 2), ("retention_lost", 2)]);
    assert_eq!(a.lost.retention, 2);
    let which: Vec<(u64, u32, i64)> = a
        .retention_loss
        .changes
        .iter()
        .map(|c| (c.txn, c.index, c.key))
        .collect();
    assert_eq!(which, vec![(1, 1, 100), (1, 2, 101)]);
    assert_eq!((a.offset_gaps.count, a.offset_gaps.deleted), (0, 2));
    assert_eq!(a.retention_loss.consumer_gaps, 1);
}

#[test]
fn a_loss_inside_a_deleted_segment_is_a_retention_loss() {
    let mut h = clean();
    h.consumed
        .retain(|c| !(*c.topic == *topic("obs") && c.offset < 2));
    h.cluster_events.push(ClusterEvent {
        at_ms: 2_100,
        kind: ClusterEventKind::SegmentDeleted {
            topic: topic("obs"),
            partition: 0,
            start_offset: 0,
            end_offset: 2,
            reason: DeletionReason::RetentionTime,
        },
    });
    let a = analyse(&h);
    assert_eq!(anomalies(&a), vec![("lost", 2), ("retention_lost", 2)]);
    assert_eq!(
        a.lost
            .examples
            .iter()
            .filter(|e| e.cause == LossCause::Retention)
            .count(),
        2
    );
}

#[test]
fn a_superseded_record_below_a_compaction_point_is_compacted_not_unexplained() {
    let mut h = clean();
    // Compaction removed obs 100's create (offset 0): its update at offset 2 supersedes it.
    h.consumed
        .retain(|c| !(*c.topic == *topic("obs") && c.offset == 0));
    h.cluster_events.push(ClusterEvent {
        at_ms: 3_500,
        kind: ClusterEventKind::Compacted {
            topic: topic("obs"),
            partition: 0,
            end_offset: 1,
            records_removed: 1,
            tombstones_removed: 0,
        },
    });
    let a = analyse(&h);
    assert_eq!(anomalies(&a), vec![("lost", 1)]);
    assert_eq!((a.lost.compacted, a.offset_gaps.compacted), (1, 1));
}

#[test]
fn report_verdicts_follow_expect() {
    let h = truncated_history();
    let a = analyse(&h);
    let cases = [
        ("", false),
        ("lost = 1", true),
        ("lost = \"= truncated_acked\"", true),
        ("lost = \"<= truncated_acked\"", true),
        ("lost = \"< truncated_acked\"", false),
        ("lost = \">0\"", true),
        ("lost = \"any\"\nfinal_state = \"differs\"", false),
        ("lost = \"any\"\nreordered = \"any\"", true),
    ];
    for (text, passes) in cases {
        let r = report(&h, &a, text);
        assert_eq!(r.passed(), passes, "[expect] {text:?}\n{}", r.terminal());
        assert_eq!(r.exit_code(), if passes { 0 } else { 1 }, "{text:?}");
    }
    let r = report(&h, &a, "lost = \"= truncated_acked\"");
    let lost = r.verdicts.iter().find(|v| v.invariant == "lost").unwrap();
    assert_eq!(lost.expected, "= truncated_acked");
    assert_eq!(lost.relative_to.as_deref(), Some("truncated_acked = 1"));
}

#[test]
fn relations_can_fail_when_losses_are_not_the_clusters() {
    // One cluster loss and one change never produced: "= truncated_acked" no longer holds.
    let mut h = truncated_history();
    h.commits[3].changes.push(ChangeRecord {
        table: "obs",
        key: 104,
        op: ChangeOp::Create,
    });
    let a = analyse(&h);
    assert_eq!((a.lost.count, a.lost.truncated_acked), (2, 1));
    assert!(!report(&h, &a, "lost = \"= truncated_acked\"").passed());
    assert!(report(&h, &a, "lost = \">= truncated_acked\"").passed());
}

#[test]
fn gaps_phantoms_and_liveness_fail_whatever_expect_says() {
    let mut h = clean();
    h.end_offsets[0].2 = 2;
    let a = analyse(&h);
    assert!(!report(&h, &a, "lost = \"any\"").passed());
    let h = clean();
    let a = check::all(
        &h,
        &finals(),
        &Liveness::TimedOut {
            waited_ms: 60_000,
            pending: vec!["consumer 1: obs/0 at 4 of 6".into()],
        },
    );
    assert_eq!(anomalies(&a), vec![("liveness", 1)]);
    let r = report(&h, &a, "lost = \"any\"");
    assert_eq!(r.exit_code(), 1);
    assert!(r
        .terminal()
        .contains("pending: consumer 1: obs/0 at 4 of 6"));
}

#[test]
fn count_relations_parse_and_render_back() {
    for (text, count) in [
        (
            "= truncated_acked",
            Count::Relation(Relation::Eq, CountVar::TruncatedAcked),
        ),
        (
            "<= truncated_acked",
            Count::Relation(Relation::Le, CountVar::TruncatedAcked),
        ),
        (
            ">= retention_lost",
            Count::Relation(Relation::Ge, CountVar::RetentionLost),
        ),
    ] {
        assert_eq!(Count::parse(text), Some(count), "{text}");
        assert_eq!(count.to_string(), text);
    }
    assert_eq!(
        Count::parse("=truncated_acked"),
        Count::parse("= truncated_acked")
    );
    assert_eq!(Count::parse("<5"), Some(Count::AtMost(4)));
    assert_eq!(Count::parse("=5"), Some(Count::Exactly(5)));
    assert_eq!(Count::parse("= lost_forever"), None);
    assert_eq!(Count::parse("<0"), None);

    let text = "name = \"t\"\n[expect]\nlost = \"= truncated_acked\"\nretention_lost = \"<= retention_lost\"\n";
    let s = Scenario::parse(text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    let e = s.expectations();
    assert_eq!(
        e.lost,
        Count::Relation(Relation::Eq, CountVar::TruncatedAcked)
    );
    let again = Scenario::parse(&s.to_toml(), "resolved.toml").unwrap();
    assert_eq!(again.expectations(), e);
    let err = Scenario::parse("name = \"t\"\n[expect]\nlost = \"= nothing\"\n", "t.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("t.toml:3:") && err.contains("found \"= nothing\""),
        "{err}"
    );
}

#[test]
fn json_carries_everything() {
    let h = truncated_history();
    let a = analyse(&h);
    let j = report(&h, &a, "").to_json();
    assert_eq!(j["passed"], false);
    assert_eq!(j["info"]["mode"], "real-time");
    assert_eq!(j["analysis"]["lost"]["truncated_acked"], 1);
    assert_eq!(
        j["analysis"]["lost"]["examples"][0]["cause"],
        "truncated_acked"
    );
    assert_eq!(
        j["reproduce"],
        "etl-harness run scenarios/tiny.toml --seed 42"
    );
    assert!(j["metrics"]["latency_ms"]["p99"].is_u64());
}

/// A small failing run: one cluster loss (allowed by the relation) and one reorder (not allowed).
fn failing() -> (History, Analysis) {
    let mut h = truncated_history();
    h.consumed[2].seq = 4;
    h.consumed[4].seq = 2;
    let a = analyse(&h);
    (h, a)
}

#[test]
fn stable_text_snapshot() {
    let (h, a) = failing();
    let r = report(&h, &a, "lost = \"= truncated_acked\"");
    insta::assert_snapshot!("stable_text_real_time", r.stable_text());
    let d = Report::new(
        info(RunMode::Deterministic),
        &expect("lost = \"= truncated_acked\""),
        &a,
        &h,
    );
    insta::assert_snapshot!("stable_text_deterministic", d.stable_text());
}

#[test]
fn terminal_snapshot() {
    let (h, a) = failing();
    let r = report(&h, &a, "lost = \"= truncated_acked\"");
    insta::assert_snapshot!("terminal_failing", r.terminal());
}

#[test]
fn stable_text_holds_nothing_timing_decides() {
    let (h, a) = failing();
    let base = report(&h, &a, "lost = \"= truncated_acked\"").stable_text();
    // Same seed, different timings and consumed counts: a replay, later deliveries, another wall time.
    let mut h2 = h.clone();
    for c in h2.consumed.iter_mut() {
        c.at_ms += 777;
    }
    let mut again = h2.consumed[0].clone();
    again.seq = h2.consumed.len() as u64;
    h2.consumed.push(again);
    let a2 = analyse(&h2);
    let mut other = info(RunMode::RealTime);
    other.wall_ms = 99_999;
    let r2 = Report::new(other, &expect("lost = \"= truncated_acked\""), &a2, &h2);
    assert_eq!(r2.stable_text(), base);
}

/// A million changes and two million deliveries (each change read twice): no anomaly but the duplicates, and
/// the time it takes (printed, not asserted). `cargo test --test check -- --ignored --nocapture`
#[test]
#[ignore]
fn scale_million_changes() {
    let mut h = History::default();
    let per_commit = 10;
    let commits = 100_000u64;
    for txn in 1..=commits {
        let changes: Vec<(&'static str, i64, ChangeOp)> = (0..per_commit)
            .map(|i| ("obs", (txn * per_commit + i) as i64, ChangeOp::Create))
            .collect();
        h.commits.push(commit(txn, Some(OpKind::Vitals), &changes));
    }
    let mut offset = 0i64;
    let mut b = Build { h };
    for txn in 1..=commits {
        for i in 0..per_commit as u32 {
            b.ack(txn, i, offset);
            offset += 1;
        }
    }
    for round in 0..2 {
        let mut offset = 0i64;
        for txn in 1..=commits {
            for i in 0..per_commit as u32 {
                b.read(txn, i, offset);
                offset += 1;
            }
        }
        let _ = round;
    }
    b.h.end_offsets = vec![(topic("obs"), 0, offset)];
    let h = b.h;
    let started = std::time::Instant::now();
    let a = check::all(&h, &FinalStates::default(), &Liveness::Quiesced);
    let checked = started.elapsed();
    let r = Report::new(info(RunMode::RealTime), &Expect::default(), &a, &h);
    let total = started.elapsed();
    assert_eq!(anomalies(&a), vec![("duplicates", 1_000_000)]);
    assert!(r.passed());
    println!(
        "check::all over {} changes, {} deliveries: {checked:?}; with the report: {total:?}",
        a.source.changes, a.consumed.records
    );
}
