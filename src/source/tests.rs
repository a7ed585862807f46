use super::*;
use crate::workload::{Generator, WorkloadSpec};

fn source(connector: Connector) -> (MemorySource, Recorder) {
    let recorder = Recorder::new(1);
    let clock = Clock::virtual_at(1_700_000_000_000);
    (
        MemorySource::new(connector, recorder.clone(), clock),
        recorder,
    )
}

fn workload(patients: u64, operations: u64) -> Vec<Operation> {
    let spec = WorkloadSpec {
        patients,
        operations,
        ..WorkloadSpec::default()
    };
    Generator::new(&spec, 7).collect()
}

fn load_and_commit(source: &MemorySource, ops: &[Operation]) -> Vec<Commit> {
    let mut commits = Vec::new();
    for op in ops {
        match op.phase {
            Phase::Baseline => source.load(op).expect("baseline applies"),
            Phase::Stream => commits.push(source.commit_now(op).expect("stream op applies")),
        }
    }
    commits
}

#[test]
fn starts_with_the_reference_rows() {
    let (s, _) = source(Connector::Mysql);
    assert!(s.row("concept", 5089).is_some());
    assert!(s.row("location", reference::LOCATION_OUTPATIENT).is_some());
    assert!(s.row("person", 1).is_none());
    assert_eq!(s.head_txn(), 0);
}

#[test]
fn a_generated_workload_applies_and_positions_strictly_increase() {
    for connector in [Connector::Mysql, Connector::Mariadb] {
        let (s, recorder) = source(connector);
        let s = s.with_max_binlog_size(64 * 1024);
        let ops = workload(20, 400);
        let commits = load_and_commit(&s, &ops);
        assert_eq!(commits.len(), 400);
        let history = recorder.snapshot();
        assert_eq!(
            history.commits, commits,
            "every commit is recorded, in order"
        );
        let files: std::collections::BTreeSet<_> =
            commits.iter().map(|c| c.position.file.clone()).collect();
        assert!(files.len() > 1, "64 KiB files rotate: {files:?}");
        for w in commits.windows(2) {
            assert!(
                w[0].position < w[1].position,
                "{:?} then {:?}",
                w[0].position,
                w[1].position
            );
            assert!(w[0].txn < w[1].txn);
        }
        let gtid = commits[0].gtid.clone().unwrap();
        match connector {
            Connector::Mariadb => assert!(gtid.starts_with("0-1-"), "{gtid}"),
            Connector::Mysql => assert!(gtid.contains(':'), "{gtid}"),
        }
        assert_eq!(s.head_txn(), commits.last().unwrap().txn);
        assert_eq!(s.binlog_len(), 400);
        assert_eq!(s.cursor_after(commits[9].txn), 10);
    }
}

#[test]
fn final_images_hold_the_last_after_image_of_every_row() {
    let (s, _) = source(Connector::Mariadb);
    let ops = workload(10, 200);
    load_and_commit(&s, &ops);
    let mut expected: BTreeMap<(&str, i64), Option<Arc<Row>>> = BTreeMap::new();
    for op in &ops {
        for c in &op.changes {
            let key = c.image()[0].as_int().unwrap();
            expected.insert((c.table.name, key), c.after.clone());
        }
    }
    let images = s.final_images();
    for ((table, key), after) in expected {
        assert_eq!(images[table].get(&key).cloned(), after, "{table} {key}");
    }
}

#[test]
fn a_bad_operation_is_refused_and_nothing_of_it_is_applied() {
    let (s, recorder) = source(Connector::Mysql);
    let ops = workload(5, 50);
    let (baseline, stream): (Vec<_>, Vec<_>) =
        ops.into_iter().partition(|o| o.phase == Phase::Baseline);
    load_and_commit(&s, &baseline);
    let first = stream[0].clone();
    // A stream op given to load, a baseline op given to commit.
    assert!(matches!(
        s.load(&first),
        Err(SourceError::WrongPhase { .. })
    ));
    assert!(matches!(
        s.commit_now(&baseline[0]),
        Err(SourceError::WrongPhase { .. })
    ));
    // The next op with one more change at the end, an update whose before image is not the stored row: the
    // op's valid changes must not be applied either.
    load_and_commit(&s, &stream[..1]);
    let images_before = s.final_images();
    let head_before = s.head_txn();
    let mut op = stream[1].clone();
    let stored = s.row("location", reference::LOCATION_OUTPATIENT).unwrap();
    let mut wrong = (*stored).clone();
    wrong[schema::location::name] = Value::text("not what is stored");
    op.changes.push(crate::workload::RowChange {
        table: &schema::location::TABLE,
        kind: ChangeKind::Update,
        before: Some(Arc::new(wrong)),
        after: Some(Arc::clone(&stored)),
    });
    let bad_index = op.changes.len() - 1;
    let err = s.commit_now(&op).unwrap_err();
    assert!(
        matches!(err, SourceError::BeforeImageMismatch { index, .. } if index == bad_index),
        "{err}"
    );
    assert_eq!(
        s.final_images(),
        images_before,
        "nothing of the refused op applied"
    );
    // Inserting an existing key.
    let mut dup = stream[0].clone();
    dup.seq = head_before + 1;
    dup.changes.retain(|c| c.kind == ChangeKind::Insert);
    if !dup.changes.is_empty() {
        assert!(matches!(
            s.commit_now(&dup),
            Err(SourceError::KeyExists { .. })
        ));
    }
    // Re-committing an earlier seq.
    assert!(matches!(
        s.commit_now(&stream[0]),
        Err(SourceError::OutOfOrder { .. })
    ));
    assert_eq!(s.final_images(), images_before);
    assert_eq!(s.head_txn(), head_before);
    assert_eq!(recorder.snapshot().commits.len(), 1);
    assert_eq!(s.binlog_len(), 1);
}

#[test]
fn the_snapshot_is_consistent_and_closes_loading() {
    let (s, _) = source(Connector::Mariadb);
    let ops = workload(5, 20);
    let (baseline, stream): (Vec<_>, Vec<_>) =
        ops.into_iter().partition(|o| o.phase == Phase::Baseline);
    load_and_commit(&s, &baseline[..baseline.len() - 1]);
    let snap = s.snapshot();
    assert_eq!(snap.cursor, 0);
    assert!(snap.gtid_set.starts_with("0-1-"));
    let persons = &snap
        .tables
        .iter()
        .find(|(t, _)| t.name == "person")
        .unwrap()
        .1;
    assert!(!persons.is_empty());
    assert!(snap.auto_increment["person"] > 1);
    assert!(matches!(
        s.load(baseline.last().unwrap()),
        Err(SourceError::LoadAfterSnapshot { .. })
    ));
    drop(stream);
}
