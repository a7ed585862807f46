//! What the consumer-group scenarios answer, checked from the history beyond their verdicts: the fault fired at
//! its consumer event, a kill really left no LeaveGroup behind, the rebalance really moved the partition, the
//! static member really came back without one.

use openmrs_etl_harness::history::{FaultPhase, GroupEvent, GroupEventKind, History};
use openmrs_etl_harness::run::RunOutcome;

/// When (clock ms) the event fault `fault` fired, with what it resolved to.
fn fired_on_event(h: &History, fault: usize, event: &str) -> i64 {
    let f = h
        .faults
        .iter()
        .find(|f| f.fault == Some(fault) && f.phase == FaultPhase::Event)
        .unwrap_or_else(|| panic!("fault {fault} never fired on its event: {:?}", h.faults));
    assert!(
        f.resolved.contains(&format!("(after {event})")),
        "{}",
        f.resolved
    );
    f.at_ms
}

fn partitions_of(h: &History, consumer: u32, before_ms: i64) -> Vec<(String, i32)> {
    let mut held = std::collections::BTreeSet::new();
    for e in h
        .group
        .iter()
        .filter(|e| e.consumer == consumer && e.at_ms <= before_ms)
    {
        match &e.kind {
            GroupEventKind::Assigned { partitions } => held.extend(partitions.iter().cloned()),
            GroupEventKind::Revoked { partitions } | GroupEventKind::Lost { partitions } => {
                for p in partitions {
                    held.remove(p);
                }
            }
            _ => {}
        }
    }
    held.into_iter().collect()
}

/// The member id `consumer` had at `at_ms`.
fn member_at(h: &History, consumer: u32, at_ms: i64) -> String {
    h.group
        .iter()
        .rev()
        .find(|e| e.consumer == consumer && e.at_ms <= at_ms && !e.member_id.is_empty())
        .map(|e| e.member_id.clone())
        .unwrap_or_default()
}

/// The first assignment after `after_ms` of any of `of` to a member other than `not` (a restarted consumer is a
/// new member).
fn first_assignment_elsewhere<'h>(
    h: &'h History,
    of: &[(String, i32)],
    not: &str,
    after_ms: i64,
) -> Option<&'h GroupEvent> {
    h.group.iter().find(|e| {
        e.at_ms > after_ms
            && e.member_id != not
            && matches!(&e.kind, GroupEventKind::Assigned { partitions } if partitions.iter().any(|p| of.contains(p)))
    })
}

/// A short account of the group's history for failure messages (the full one runs to megabytes).
fn outline(h: &History) -> String {
    h.group
        .iter()
        .filter(|e| !matches!(e.kind, GroupEventKind::Committed { .. }))
        .map(|e| {
            let what = match &e.kind {
                GroupEventKind::Assigned { partitions } => format!("assigned {}", partitions.len()),
                GroupEventKind::Revoked { partitions } => format!("revoked {}", partitions.len()),
                GroupEventKind::Lost { partitions } => format!("lost {}", partitions.len()),
                GroupEventKind::CommitFailed { error, .. } => format!("commit failed: {error}"),
                GroupEventKind::Left { why } => format!("left: {why}"),
                other => format!("{other:?}"),
            };
            format!(
                "{} c{} g{} {} {what}",
                e.at_ms, e.consumer, e.generation, e.member_id
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Consumer 1 was killed the moment its commit was acknowledged; every loss is a record that commit passed; and
/// the kill left no LeaveGroup: its partitions moved to consumer 2 only when its session ran out, seconds later,
/// not at once as after a clean leave.
pub fn commit_before_write_checks(o: &RunOutcome) {
    let h = &o.history;
    let killed_at = fired_on_event(h, 0, "consumer 1 commits");
    let lost = &o.report.analysis.lost;
    assert!(
        lost.count > 0,
        "the batch between commit and write must be lost"
    );
    assert_eq!(lost.count, lost.committed_before_written, "{lost:?}");
    let held = partitions_of(h, 1, killed_at);
    assert!(
        !held.is_empty(),
        "consumer 1 held nothing when it was killed"
    );
    let moved = first_assignment_elsewhere(h, &held, &member_at(h, 1, killed_at), killed_at)
        .unwrap_or_else(|| panic!("consumer 1's partitions never moved:\n{}", outline(h)));
    // session.timeout.ms is 6 s and heartbeats go every 2 s: the session ends 4-6 s after the kill.
    assert!(
        moved.at_ms - killed_at >= 3_000,
        "consumer 1's partitions moved {} ms after the kill: it left the group instead of dying\n{}",
        moved.at_ms - killed_at,
        outline(h)
    );
}

/// Consumer 1 stalled right after a write, was removed past max_poll_interval (a lost assignment), the other
/// member took its partitions, its commit after the stall was refused, and the duplicates are mostly the
/// rebalance's.
pub fn slow_consumer_checks(o: &RunOutcome) {
    let h = &o.history;
    let stalled_at = fired_on_event(h, 0, "consumer 1 writes");
    let held = partitions_of(h, 1, stalled_at);
    assert!(
        first_assignment_elsewhere(h, &held, &member_at(h, 1, stalled_at), stalled_at).is_some(),
        "consumer 1's partitions never moved:\n{}",
        outline(h)
    );
    assert!(
        h.group.iter().any(|e| e.consumer == 1
            && e.at_ms > stalled_at
            && matches!(e.kind, GroupEventKind::CommitFailed { auto: false, .. })),
        "consumer 1's commit after the stall was not refused:\n{}",
        outline(h)
    );
    // The stalled batch is read again after the rebalance; a refused commit of a partition another member kept
    // can add a replay of its own (seen once in CI, 1 of 146), never the bulk.
    let d = &o.report.analysis.duplicates;
    assert!(d.after_rebalance > 0, "{d:?}");
    assert!(d.after_rebalance > d.replayed, "{d:?}");
}

/// The static member killed and restarted within its session got its partitions back in the same generation.
pub fn static_member_checks(o: &RunOutcome) {
    let h = &o.history;
    let group = o.report.analysis.group.as_ref().expect("a group summary");
    assert_eq!(group.rebalances, 0, "{group:?}");
    let restarted = h
        .group
        .iter()
        .filter(|e| e.consumer == 1 && matches!(e.kind, GroupEventKind::Assigned { .. }))
        .count();
    assert!(
        restarted >= 2,
        "the restarted member got no assignment:\n{}",
        outline(h)
    );
}

/// The kill hit the group's coordinator (a broker), and the group felt it — a commit refused while the
/// coordinator moved, or the members' partitions lost (which one depends on whether a member had a commit to make
/// during the outage, so on timing) — and found its new coordinator: a commit acknowledged, or partitions
/// assigned in a later generation, after that (nothing lost: checked by the scenario's expectations).
pub fn coordinator_kill_checks(o: &RunOutcome) {
    let h = &o.history;
    let kill = h
        .faults
        .iter()
        .find(|f| f.action == "kill")
        .expect("the kill was recorded");
    assert!(
        kill.error.is_none() && kill.resolved.starts_with("broker "),
        "the coordinator kill: {kill:?}"
    );
    let group = o.report.analysis.group.as_ref().expect("a group summary");
    let after_kill = || h.group.iter().filter(|e| e.at_ms >= kill.at_ms);
    let Some(felt) = after_kill().find(|e| {
        matches!(
            e.kind,
            GroupEventKind::CommitFailed { .. } | GroupEventKind::Lost { .. }
        )
    }) else {
        panic!(
            "no commit refused and no partition lost after the coordinator's kill: {group:?}\n{}",
            outline(h)
        );
    };
    assert!(
        after_kill().any(|e| e.at_ms > felt.at_ms
            && (matches!(e.kind, GroupEventKind::Committed { .. })
                || (matches!(e.kind, GroupEventKind::Assigned { .. })
                    && e.generation > felt.generation))),
        "no commit acknowledged and no assignment in a later generation after the group felt the kill (at {}): {group:?}\n{}",
        felt.at_ms,
        outline(h)
    );
}
