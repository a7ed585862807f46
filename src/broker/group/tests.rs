//! The classic group protocol step by step: joins, the initial delay, syncs, fencing, expiry, static members,
//! commits; and a property over random request sequences.

use super::*;
use proptest::prelude::*;

const NO_DELAY: GroupConfig = GroupConfig {
    min_session_timeout_ms: 6_000,
    max_session_timeout_ms: 1_800_000,
    initial_rebalance_delay_ms: 0,
};

fn request(member_id: &str, client: &str) -> JoinRequest {
    JoinRequest {
        member_id: member_id.to_string(),
        group_instance_id: None,
        client_id: client.to_string(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        protocol_type: "consumer".into(),
        protocols: vec![
            ("range".into(), Bytes::from_static(b"r")),
            ("cooperative-sticky".into(), Bytes::from_static(b"c")),
        ],
        require_known_member_id: true,
    }
}

/// A dynamic member's two-step join (MEMBER_ID_REQUIRED, then with its id); returns its id and what the second
/// join gave.
fn join_dynamic(g: &mut Group, now: i64, client: &str) -> (String, JoinOutcome, Vec<Completion>) {
    let (first, done) = g.join(now, request("", client));
    assert!(done.is_empty());
    let JoinOutcome::Done(Err(JoinError { error, member_id })) = first else {
        panic!("a first join must get MEMBER_ID_REQUIRED, got {first:?}");
    };
    assert_eq!(error, ResponseError::MemberIdRequired);
    assert!(member_id.starts_with(&format!("{client}-")), "{member_id}");
    let (second, done) = g.join(now, request(&member_id, client));
    (member_id, second, done)
}

fn joined(done: &[Completion]) -> BTreeMap<String, JoinResponse> {
    done.iter()
        .filter_map(|c| match c {
            Completion::Join {
                member_id,
                result: Ok(r),
            } => Some((member_id.clone(), r.clone())),
            _ => None,
        })
        .collect()
}

/// Two members in a Stable group of generation 1 (the first joined first and leads), with assignments "a0"/"a1".
fn stable_pair() -> (Group, String, String) {
    let mut g = Group::new("etl", GroupConfig::default());
    let (a, out, _) = join_dynamic(&mut g, 0, "c1");
    assert_eq!(out, JoinOutcome::Waiting);
    let (b, out, _) = join_dynamic(&mut g, 100, "c2");
    assert_eq!(out, JoinOutcome::Waiting);
    let done = g.tick(6_000);
    let answers = joined(&done);
    assert_eq!(answers.len(), 2);
    let (out, _) = g.sync(6_010, &b, None, 1, vec![]);
    assert_eq!(out, SyncOutcome::Waiting);
    let (out, done) = g.sync(
        6_020,
        &a,
        None,
        1,
        vec![
            (a.clone(), Bytes::from_static(b"a0")),
            (b.clone(), Bytes::from_static(b"a1")),
        ],
    );
    assert_eq!(out, SyncOutcome::Done(Ok(Bytes::from_static(b"a0"))));
    assert_eq!(
        done,
        vec![Completion::Sync {
            member_id: b.clone(),
            result: Ok(Bytes::from_static(b"a1"))
        }]
    );
    assert_eq!(g.state(), GroupState::Stable);
    (g, a, b)
}

#[test]
fn a_first_join_needs_a_member_id_and_then_completes_a_generation() {
    let mut g = Group::new("etl", NO_DELAY);
    let (a, out, done) = join_dynamic(&mut g, 0, "consumer-1");
    // No initial delay: the join phase ends at once with the only member as leader.
    assert_eq!(out, JoinOutcome::Waiting);
    let answers = joined(&done);
    let r = &answers[&a];
    assert_eq!(r.generation_id, 1);
    assert_eq!(r.leader, a);
    assert_eq!(r.protocol_name, "range");
    assert_eq!(r.protocol_type, "consumer");
    assert_eq!(r.members, vec![(a.clone(), None, Bytes::from_static(b"r"))]);
    assert_eq!(g.state(), GroupState::CompletingRebalance);
    let (out, _) = g.sync(1, &a, None, 1, vec![(a.clone(), Bytes::from_static(b"x"))]);
    assert_eq!(out, SyncOutcome::Done(Ok(Bytes::from_static(b"x"))));
    assert_eq!(g.state(), GroupState::Stable);
    // Member ids are deterministic.
    let mut again = Group::new("etl", NO_DELAY);
    assert_eq!(join_dynamic(&mut again, 0, "consumer-1").0, a);
}

#[test]
fn the_initial_delay_waits_and_extends_for_each_new_member_up_to_the_rebalance_timeout() {
    let mut g = Group::new("etl", GroupConfig::default());
    let (a, _, _) = join_dynamic(&mut g, 0, "c1");
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(g.next_deadline_ms(), Some(3_000));
    let (b, _, _) = join_dynamic(&mut g, 100, "c2");
    assert!(g.tick(2_999).is_empty());
    // A member joined during the delay: it waits another delay.
    assert!(g.tick(3_000).is_empty());
    assert_eq!(g.next_deadline_ms(), Some(6_000));
    let answers = joined(&g.tick(6_000));
    assert_eq!(answers.keys().cloned().collect::<Vec<_>>(), {
        let mut ids = vec![a.clone(), b.clone()];
        ids.sort();
        ids
    });
    assert_eq!(answers[&a].leader, a, "the first to join leads");
    assert_eq!(answers[&a].members.len(), 2, "the leader sees every member");
    assert!(answers[&b].members.is_empty(), "a follower sees none");
}

#[test]
fn heartbeats_are_fenced_by_member_generation_and_rebalance() {
    let (mut g, a, b) = stable_pair();
    assert_eq!(g.heartbeat(7_000, &a, None, 1), Ok(()));
    assert_eq!(
        g.heartbeat(7_000, &a, None, 0),
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        g.heartbeat(7_000, "nobody", None, 1),
        Err(ResponseError::UnknownMemberId)
    );
    // A third member starts a rebalance: the others learn it from their heartbeats.
    let (c, out, _) = join_dynamic(&mut g, 7_100, "c3");
    assert_eq!(out, JoinOutcome::Waiting);
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(7_200, &b, None, 1),
        Err(ResponseError::RebalanceInProgress)
    );
    // A commit of the old generation is still accepted while the group prepares.
    let offset = |o| CommittedOffset {
        offset: o,
        leader_epoch: -1,
        metadata: None,
        commit_timestamp_ms: 7_250,
    };
    assert_eq!(
        g.commit(7_250, &b, None, 1, vec![(("t".into(), 1), offset(42))]),
        Ok(())
    );
    // Everyone rejoins: generation 2 without waiting for the deadline.
    assert_eq!(g.join(7_300, request(&a, "c1")).0, JoinOutcome::Waiting);
    let (out, done) = g.join(7_400, request(&b, "c2"));
    assert_eq!(out, JoinOutcome::Waiting);
    let answers = joined(&done);
    assert_eq!(answers.len(), 3);
    assert!(answers
        .values()
        .all(|r| r.generation_id == 2 && r.leader == a));
    assert!(answers.contains_key(&c));
    // Between JoinGroup and SyncGroup a commit is refused; a heartbeat is fine.
    assert_eq!(
        g.commit(7_500, &b, None, 2, vec![(("t".into(), 1), offset(43))]),
        Err(ResponseError::RebalanceInProgress)
    );
    assert_eq!(g.heartbeat(7_500, &b, None, 2), Ok(()));
    assert_eq!(g.committed("t", 1).map(|c| c.offset), Some(42));
}

#[test]
fn an_expired_session_rebalances_and_the_deadline_removes_who_did_not_rejoin() {
    let (mut g, a, b) = stable_pair();
    // b stops heartbeating; a keeps on.
    for t in (7_000..=16_000).step_by(3_000) {
        assert_eq!(g.heartbeat(t, &a, None, 1), Ok(()));
        assert!(g.tick(t).is_empty());
    }
    // b's last sign of life was its SyncGroup at 6010 (session 10 s).
    assert!(g.tick(16_019).is_empty());
    g.tick(16_020);
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(16_100, &b, None, 1),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        g.heartbeat(16_100, &a, None, 1),
        Err(ResponseError::RebalanceInProgress)
    );
    let (out, done) = g.join(16_200, request(&a, "c1"));
    assert_eq!(out, JoinOutcome::Waiting);
    let answers = joined(&done);
    assert_eq!(answers[&a].generation_id, 2);
    assert_eq!(answers[&a].members.len(), 1);

    // Next: a rebalance a member never rejoins ends at the rebalance timeout (30 s) without it.
    let (mut g, a, b) = stable_pair();
    join_dynamic(&mut g, 7_000, "c3");
    assert!(g.join(7_100, request(&a, "c1")).1.is_empty());
    // b keeps heartbeating (each answer tells it to rejoin) but never rejoins.
    for t in (8_000..37_000).step_by(3_000) {
        assert_eq!(
            g.heartbeat(t, &b, None, 1),
            Err(ResponseError::RebalanceInProgress)
        );
        assert!(g.tick(t).is_empty());
    }
    assert!(g.tick(36_999).is_empty());
    let answers = joined(&g.tick(37_000));
    assert_eq!(answers.len(), 2);
    assert!(!answers.contains_key(&b));
    assert_eq!(g.generation(), 2);
}

#[test]
fn a_static_member_rejoining_takes_its_place_without_a_rebalance_and_fences_its_old_id() {
    let static_request = |member_id: &str| JoinRequest {
        group_instance_id: Some("etl-0".into()),
        require_known_member_id: false,
        ..request(member_id, "c1")
    };
    let mut g = Group::new("etl", NO_DELAY);
    let (first, done) = g.join(0, static_request(""));
    assert_eq!(
        first,
        JoinOutcome::Waiting,
        "a static member needs no second join"
    );
    let old = joined(&done).keys().next().cloned().expect("joined");
    let (out, _) = g.sync(
        1,
        &old,
        Some("etl-0"),
        1,
        vec![(old.clone(), Bytes::from_static(b"p"))],
    );
    assert_eq!(out, SyncOutcome::Done(Ok(Bytes::from_static(b"p"))));
    // The process restarts and joins again under the same instance id, with a new member id.
    let (out, done) = g.join(5_000, static_request(""));
    assert!(done.is_empty());
    let JoinOutcome::Done(Ok(r)) = out else {
        panic!("a Stable group answers a returning static member at once: {out:?}");
    };
    assert_ne!(r.member_id, old);
    assert_eq!(r.generation_id, 1, "no rebalance");
    assert_eq!(r.leader, r.member_id, "it keeps the leadership");
    assert_eq!(g.state(), GroupState::Stable);
    let (out, _) = g.sync(5_001, &r.member_id, Some("etl-0"), 1, vec![]);
    assert_eq!(
        out,
        SyncOutcome::Done(Ok(Bytes::from_static(b"p"))),
        "and its assignment"
    );
    assert_eq!(
        g.heartbeat(5_002, &old, Some("etl-0"), 1),
        Err(ResponseError::FencedInstanceId)
    );
    // Leaving by instance id alone.
    let (results, _) = g.leave(6_000, &[(String::new(), Some("etl-0".into()))]);
    assert_eq!(results, vec![Ok(())]);
    assert_eq!(g.state(), GroupState::Empty);
    assert_eq!(g.generation(), 2);
}

#[test]
fn commits_are_fenced_and_simple_commits_need_an_empty_group() {
    let offset = |o| CommittedOffset {
        offset: o,
        leader_epoch: 3,
        metadata: Some("m".into()),
        commit_timestamp_ms: 0,
    };
    let mut g = Group::new("simple", NO_DELAY);
    assert_eq!(
        g.commit(0, "", None, -1, vec![(("t".into(), 0), offset(10))]),
        Ok(())
    );
    assert_eq!(g.committed("t", 0), Some(&offset(10)));
    let (a, _, _) = join_dynamic(&mut g, 1, "c1");
    g.sync(2, &a, None, 1, vec![]);
    assert_eq!(
        g.commit(3, "", None, -1, vec![(("t".into(), 0), offset(11))]),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        g.commit(3, &a, None, 0, vec![(("t".into(), 0), offset(11))]),
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        g.commit(3, &a, None, 1, vec![(("t".into(), 0), offset(12))]),
        Ok(())
    );
    assert_eq!(g.committed("t", 0).map(|c| c.offset), Some(12));
    assert_eq!(g.delete(), Err(ResponseError::NonEmptyGroup));
    assert_eq!(
        g.delete_offsets(&[("t".into(), 0)]),
        Err(ResponseError::GroupSubscribedToTopic)
    );
    let (results, _) = g.leave(4, &[(a.clone(), None)]);
    assert_eq!(results, vec![Ok(())]);
    assert_eq!(g.state(), GroupState::Empty);
    assert_eq!(g.delete(), Ok(()));
    assert_eq!(g.state(), GroupState::Dead);
    let (out, _) = g.join(5, request("", "c1"));
    assert_eq!(
        out,
        JoinOutcome::Done(Err(JoinError::new(ResponseError::CoordinatorNotAvailable)))
    );
}

#[test]
fn bad_joins_are_refused_and_the_protocol_goes_by_votes() {
    let mut g = Group::new("etl", NO_DELAY);
    let refused = |g: &mut Group, r: JoinRequest| match g.join(0, r).0 {
        JoinOutcome::Done(Err(e)) => e.error,
        other => panic!("accepted: {other:?}"),
    };
    let short = JoinRequest {
        session_timeout_ms: 5_999,
        ..request("", "c")
    };
    assert_eq!(refused(&mut g, short), ResponseError::InvalidSessionTimeout);
    let none = JoinRequest {
        protocols: vec![],
        ..request("", "c")
    };
    assert_eq!(
        refused(&mut g, none),
        ResponseError::InconsistentGroupProtocol
    );

    // Two members prefer cooperative-sticky, one range: cooperative-sticky wins.
    let prefers_sticky = |member_id: &str, client: &str| JoinRequest {
        protocols: vec![
            ("cooperative-sticky".into(), Bytes::from_static(b"c")),
            ("range".into(), Bytes::from_static(b"r")),
        ],
        require_known_member_id: false,
        ..request(member_id, client)
    };
    let mut g = Group::new("votes", GroupConfig::default());
    g.join(
        0,
        JoinRequest {
            require_known_member_id: false,
            ..request("", "c1")
        },
    );
    g.join(10, prefers_sticky("", "c2"));
    g.join(20, prefers_sticky("", "c3"));
    let answers = joined(&g.tick(9_000));
    assert_eq!(answers.len(), 3);
    assert!(answers
        .values()
        .all(|r| r.protocol_name == "cooperative-sticky"));
    // A member of another protocol type, or with no protocol in common, is refused.
    let connect = JoinRequest {
        protocol_type: "connect".into(),
        ..request("", "w")
    };
    assert_eq!(
        refused(&mut g, connect),
        ResponseError::InconsistentGroupProtocol
    );
    let other = JoinRequest {
        protocols: vec![("roundrobin".into(), Bytes::new())],
        ..request("", "w")
    };
    assert_eq!(
        refused(&mut g, other),
        ResponseError::InconsistentGroupProtocol
    );
}

/// One step of a random client workload.
#[derive(Debug, Clone)]
enum Op {
    NewMember,
    Rejoin(usize),
    Sync(usize),
    Heartbeat(usize),
    Commit(usize, i64),
    Leave(usize),
    Wait(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::NewMember),
        (0..6usize).prop_map(Op::Rejoin),
        (0..6usize).prop_map(Op::Sync),
        (0..6usize).prop_map(Op::Heartbeat),
        ((0..6usize), (0..1_000i64)).prop_map(|(m, o)| Op::Commit(m, o)),
        (0..6usize).prop_map(Op::Leave),
        (1..15_000i64).prop_map(Op::Wait),
    ]
}

proptest! {
    /// Whatever clients do: generations only grow; a member the group answered for a generation is a member of
    /// it; the leader's assignment reaches each member of that generation and no partition goes to two of them;
    /// an offset read back is the last one a successful commit wrote.
    #[test]
    fn random_clients_never_break_the_groups_promises(ops in proptest::collection::vec(op(), 1..80)) {
        let mut g = Group::new("prop", GroupConfig { initial_rebalance_delay_ms: 500, ..NO_DELAY });
        let mut now = 0i64;
        // What each client knows: its member id and the generation it joined.
        let mut clients: Vec<(String, i32)> = Vec::new();
        let mut last_commit: Option<i64> = None;
        let mut last_generation = 0;
        let learn = |done: Vec<Completion>, clients: &mut Vec<(String, i32)>, g: &Group| {
            for c in done {
                if let Completion::Join { member_id, result: Ok(r) } = c {
                    assert!(r.generation_id <= g.generation());
                    if let Some(entry) = clients.iter_mut().find(|(id, _)| *id == member_id) {
                        entry.1 = r.generation_id;
                    }
                }
            }
        };
        for op in ops {
            now += 1;
            match op {
                Op::NewMember => {
                    let (out, done) = g.join(now, request("", &format!("c{}", clients.len())));
                    learn(done, &mut clients, &g);
                    if let JoinOutcome::Done(Err(JoinError { member_id, .. })) = out {
                        if !member_id.is_empty() {
                            let (_, done) = g.join(now, request(&member_id, "c"));
                            clients.push((member_id, -1));
                            learn(done, &mut clients, &g);
                        }
                    }
                }
                Op::Rejoin(i) => {
                    if let Some((id, _)) = clients.get(i).cloned() {
                        let (out, done) = g.join(now, request(&id, "c"));
                        if let JoinOutcome::Done(Ok(r)) = &out {
                            clients[i].1 = r.generation_id;
                        }
                        learn(done, &mut clients, &g);
                    }
                }
                Op::Sync(i) => {
                    if let Some((id, generation)) = clients.get(i).cloned() {
                        // The leader assigns partitions 0..6 round-robin over the members it was told of.
                        let assignments = if g.leader() == Some(id.as_str()) {
                            let members = g.member_ids();
                            members.iter().enumerate().map(|(k, m)| {
                                let parts: Vec<u8> = (0..6u8).filter(|p| usize::from(*p) % members.len() == k).collect();
                                (m.clone(), Bytes::from(parts))
                            }).collect()
                        } else {
                            Vec::new()
                        };
                        let (_, done) = g.sync(now, &id, None, generation, assignments);
                        learn(done, &mut clients, &g);
                    }
                }
                Op::Heartbeat(i) => {
                    if let Some((id, generation)) = clients.get(i).cloned() {
                        let _ = g.heartbeat(now, &id, None, generation);
                    }
                }
                Op::Commit(i, offset) => {
                    if let Some((id, generation)) = clients.get(i).cloned() {
                        let committed = CommittedOffset { offset, leader_epoch: -1, metadata: None, commit_timestamp_ms: now };
                        if g.commit(now, &id, None, generation, vec![(("t".into(), 0), committed)]).is_ok() {
                            prop_assert!(g.member_ids().contains(&id), "a commit from a non-member went through");
                            prop_assert_eq!(generation, g.generation());
                            last_commit = Some(offset);
                        }
                    }
                }
                Op::Leave(i) => {
                    if let Some((id, _)) = clients.get(i).cloned() {
                        let (_, done) = g.leave(now, &[(id, None)]);
                        learn(done, &mut clients, &g);
                    }
                }
                Op::Wait(ms) => {
                    now += ms;
                    let done = g.tick(now);
                    learn(done, &mut clients, &g);
                }
            }
            prop_assert!(g.generation() >= last_generation);
            last_generation = g.generation();
            prop_assert_eq!(g.committed("t", 0).map(|c| c.offset), last_commit);
            if g.state() == GroupState::Stable {
                prop_assert!(g.leader().is_some_and(|l| g.member_ids().iter().any(|m| m == l)));
                let mut seen = std::collections::BTreeSet::new();
                for m in g.describe() {
                    for p in m.assignment.iter() {
                        prop_assert!(seen.insert(*p), "partition {} given twice in generation {}", p, g.generation());
                    }
                }
            }
            if g.state() == GroupState::Empty {
                prop_assert!(g.member_ids().is_empty());
            }
        }
    }
}
