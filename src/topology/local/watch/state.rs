//! What the watch knows between polls, and the events one poll's log lines and answers make of it: the merged
//! Metadata view diffed against the last one, truncations from the log lines with the replicas' last known end
//! offsets, and deletions from the leaders' log start offsets.

use std::collections::{BTreeMap, BTreeSet};

use super::super::admin::ClusterMetadata;
use super::broker_log::LogLine;
use super::poll::BrokerAnswer;
use super::views::{carry_over, diff_views, merge_views};
use super::AckedEnds;
use crate::history::{BrokerId, ClusterEventKind, DeletionReason, TruncationReason};

/// What the watch knows between polls.
#[derive(Debug, Default)]
pub(super) struct WatchState {
    topics: BTreeSet<String>,
    /// The last merged Metadata view; `None` before the first answer.
    view: Option<ClusterMetadata>,
    /// KRaft: Metadata's controller is not the controller (see [`super::WatchOptions::controller_in_metadata`]).
    ignore_controller: bool,
    /// Brokers whose log announced a controlled shutdown, until they are registered again.
    controlled_shutdowns: BTreeSet<i32>,
    /// (broker, topic, partition) → the replica's last known log end offset.
    end_offsets: BTreeMap<(i32, String, i32), i64>,
    /// (broker, topic, partition) → why its next truncation happens.
    truncation_reasons: BTreeMap<(i32, String, i32), TruncationReason>,
    /// (topic, partition) → the partition's log start offset, as its leader reported it.
    log_starts: BTreeMap<(String, i32), i64>,
    /// (topic, partition) → why its log start offset moved, from the last deletion line.
    deletions: BTreeMap<(String, i32), Deletion>,
    /// What acknowledgements prove of a replica's end when it truncates.
    acked_ends: Option<AckedEnds>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deletion {
    Segments(DeletionReason),
    Records,
}

impl WatchState {
    pub(super) fn new(topics: BTreeSet<String>, controller_in_metadata: bool) -> WatchState {
        WatchState {
            topics,
            ignore_controller: !controller_in_metadata,
            ..WatchState::default()
        }
    }

    /// Truncations also span what the replica acknowledged since its last one ([`AckedEnds`]).
    pub(super) fn with_acked_ends(mut self, acked_ends: Option<AckedEnds>) -> WatchState {
        self.acked_ends = acked_ends;
        self
    }

    /// The events of one poll: the broker log lines read (in file order, per broker), then the answers.
    pub(super) fn observe(
        &mut self,
        lines: &[(i32, LogLine)],
        answers: &[BrokerAnswer],
    ) -> Vec<ClusterEventKind> {
        let mut events = Vec::new();
        for (broker, line) in lines {
            self.apply_line(*broker, line, &mut events);
        }
        if let Some(mut next) = merge_views(answers.iter().map(|answer| &answer.metadata)) {
            if self.ignore_controller {
                next.controller = None;
            }
            let next = match self.view.take() {
                Some(previous) => {
                    let next = carry_over(&previous, next);
                    events.extend(diff_views(&previous, &next, &mut self.controlled_shutdowns));
                    next
                }
                None => next,
            };
            self.view = Some(next);
        }
        for answer in answers {
            let Some(broker) = answer.broker else {
                continue;
            };
            for ((topic, partition), (_, end)) in &answer.offsets {
                self.end_offsets
                    .insert((broker, topic.clone(), *partition), *end);
            }
        }
        self.observe_log_starts(answers, &mut events);
        events
    }

    fn apply_line(&mut self, broker: i32, line: &LogLine, events: &mut Vec<ClusterEventKind>) {
        match line {
            LogLine::ControlledShutdown { broker } => {
                self.controlled_shutdowns.insert(*broker);
            }
            LogLine::EndOffset {
                topic,
                partition,
                end_offset,
            } if self.topics.contains(topic) => {
                self.end_offsets
                    .insert((broker, topic.clone(), *partition), *end_offset);
            }
            LogLine::ResetFetchOffset {
                topic,
                partition,
                from,
                ..
            } if self.topics.contains(topic) => {
                let key = (broker, topic.clone(), *partition);
                let known = self.end_offsets.entry(key.clone()).or_insert(*from);
                *known = (*known).max(*from);
                self.truncation_reasons
                    .insert(key, TruncationReason::OffsetOutOfRange);
            }
            LogLine::TruncatedTo {
                topic,
                partition,
                offset,
            } if self.topics.contains(topic) => {
                let key = (broker, topic.clone(), *partition);
                let acked = self
                    .acked_ends
                    .as_ref()
                    .and_then(|ends| (ends.0)(broker, topic, *partition));
                let end = self
                    .end_offsets
                    .get(&key)
                    .copied()
                    .into_iter()
                    .chain(acked)
                    .fold(*offset, i64::max);
                let reason = self
                    .truncation_reasons
                    .remove(&key)
                    .unwrap_or(TruncationReason::DivergingEpoch);
                self.end_offsets.insert(key, *offset);
                events.push(ClusterEventKind::Truncated {
                    topic: topic.clone(),
                    partition: *partition,
                    broker: BrokerId(broker),
                    start_offset: *offset,
                    end_offset: end,
                    reason,
                });
            }
            LogLine::SegmentDeletion {
                topic,
                partition,
                reason,
            } if self.topics.contains(topic) => {
                self.deletions
                    .insert((topic.clone(), *partition), Deletion::Segments(*reason));
            }
            LogLine::RecordsDeleted { topic, partition } if self.topics.contains(topic) => {
                self.deletions
                    .insert((topic.clone(), *partition), Deletion::Records);
            }
            _ => {}
        }
    }

    /// Compares each partition leader's log start offset with the last one known.
    fn observe_log_starts(&mut self, answers: &[BrokerAnswer], events: &mut Vec<ClusterEventKind>) {
        let Some(view) = &self.view else {
            return;
        };
        for (topic, partitions) in &view.topics {
            for p in partitions {
                let Some(leader) = p.leader else {
                    continue;
                };
                let key = (topic.clone(), p.partition);
                let reported = answers
                    .iter()
                    .find(|answer| answer.broker == Some(leader))
                    .and_then(|answer| answer.offsets.get(&key))
                    .map(|(start, _)| *start);
                let Some(start) = reported else {
                    continue;
                };
                match self.log_starts.get(&key).copied() {
                    None => {
                        self.log_starts.insert(key, start);
                    }
                    Some(known) if start > known => {
                        let deletion = self
                            .deletions
                            .remove(&key)
                            .unwrap_or(Deletion::Segments(DeletionReason::RetentionTime));
                        events.push(match deletion {
                            Deletion::Segments(reason) => ClusterEventKind::SegmentDeleted {
                                topic: topic.clone(),
                                partition: p.partition,
                                start_offset: known,
                                end_offset: start,
                                reason,
                            },
                            Deletion::Records => ClusterEventKind::RecordsDeleted {
                                topic: topic.clone(),
                                partition: p.partition,
                                start_offset: known,
                                end_offset: start,
                            },
                        });
                        self.log_starts.insert(key, start);
                    }
                    Some(_) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::broker_log::parse_line;
    use super::super::fixtures::*;
    use super::*;

    fn answer(
        broker: i32,
        metadata: &ClusterMetadata,
        offsets: &[(i32, i64, i64)],
    ) -> BrokerAnswer {
        BrokerAnswer {
            broker: Some(broker),
            metadata: metadata.clone(),
            offsets: offsets
                .iter()
                .map(|(p, start, end)| (("t".to_string(), *p), (*start, *end)))
                .collect(),
        }
    }

    #[test]
    fn a_truncation_spans_from_its_offset_to_the_last_known_end() {
        let mut state = WatchState::new(["t".to_string()].into_iter().collect(), true);
        let led_by_1 = view(&[1, 2, 3], 1, vec![partition(0, Some(1), 0, &[1, 2, 3])]);
        // Broker 1 leads and holds 6 records, 5 of them replicated.
        assert!(state
            .observe(
                &[],
                &[
                    answer(1, &led_by_1, &[(0, 0, 6)]),
                    answer(2, &led_by_1, &[(0, 0, 5)])
                ]
            )
            .is_empty());
        // Broker 1 comes back, its log recovered to 6, and truncates to 5 after the fetcher's line.
        let line = |text: &str| (1, parse_line(text).expect("a line the watch reads"));
        let events = state.observe(
            &[
                // A restarted leader's lines (the local_watch test's run), topic renamed.
                line(&"[2026-12-03 13:12:48,813] INFO Completed load of Log(dir=/tmp/openmrs-etl-harness/runs/run-1796303520-2333-0/data/kafka-2/dbserver1.openmrs.obs-0, topicId=38CMj1iFQOKLxr6SQfvR3A, topic=dbserver1.openmrs.obs, partition=0, highWatermark=0, lastStableOffset=0, logStartOffset=0, logEndOffset=6) with 1 segments, local-log-start-offset 0 and log-end-offset 6 in 49ms (5/6 completed in /tmp/openmrs-etl-harness/runs/run-1796303520-2333-0/data/kafka-2) (kafka.log.LogManager)".replace("dbserver1.openmrs.obs", "t")),
                line(&"[2026-12-03 13:12:51,405] INFO [UnifiedLog partition=dbserver1.openmrs.obs-0, dir=/tmp/openmrs-etl-harness/runs/run-1796303520-2333-0/data/kafka-2] Truncating to offset 5 (kafka.log.UnifiedLog)".replace("dbserver1.openmrs.obs", "t")),
            ],
            &[],
        );
        assert_eq!(
            events,
            vec![ClusterEventKind::Truncated {
                topic: "t".into(),
                partition: 0,
                broker: BrokerId(1),
                start_offset: 5,
                end_offset: 6,
                reason: TruncationReason::DivergingEpoch
            }]
        );
        // Out of range, the fetcher's line names the old end; another topic's line is ignored.
        let events = state.observe(
            &[
                line(RESET_FETCH.replace("dbserver1.openmrs.obs", "t").as_str()),
                line("[2026-12-03 12:30:00,101] INFO [UnifiedLog partition=t-0, dir=/d/kafka-1] Truncating to offset 9 (kafka.log.UnifiedLog)"),
                line(TRUNCATED),
            ],
            &[],
        );
        assert_eq!(
            events,
            vec![ClusterEventKind::Truncated {
                topic: "t".into(),
                partition: 0,
                broker: BrokerId(1),
                start_offset: 9,
                end_offset: 12,
                reason: TruncationReason::OffsetOutOfRange
            }]
        );
    }

    #[test]
    fn a_truncation_spans_what_the_replica_acknowledged_after_the_last_poll() {
        let acked = std::sync::Arc::new(std::sync::Mutex::new(vec![((2, 1), 103)]));
        let taken = std::sync::Arc::clone(&acked);
        let mut state = WatchState::new(["t".to_string()].into_iter().collect(), true)
            .with_acked_ends(Some(AckedEnds(std::sync::Arc::new(
                move |broker, topic, partition| {
                    assert_eq!(topic, "t");
                    let mut acked = taken.lock().expect("acked ends");
                    let at = acked.iter().position(|(k, _)| *k == (broker, partition))?;
                    Some(acked.remove(at).1)
                },
            ))));
        let led_by_2 = view(&[1, 2, 3], 1, vec![partition(1, Some(2), 0, &[1, 2, 3])]);
        // The last poll saw broker 2's replica end at 98; it acknowledged 98..=102 after it.
        assert!(state
            .observe(&[], &[answer(2, &led_by_2, &[(1, 0, 98)])])
            .is_empty());
        let truncate = |offset: i64| {
            (
                2,
                parse_line(&format!("[2026-12-04 23:29:12,118] INFO [UnifiedLog partition=t-1, dir=/d/kafka-2] Truncating to offset {offset} (kafka.log.UnifiedLog)"))
                    .expect("a line the watch reads"),
            )
        };
        let truncated = |start_offset: i64, end_offset: i64| ClusterEventKind::Truncated {
            topic: "t".into(),
            partition: 1,
            broker: BrokerId(2),
            start_offset,
            end_offset,
            reason: TruncationReason::DivergingEpoch,
        };
        assert_eq!(
            state.observe(&[truncate(98)], &[]),
            vec![truncated(98, 103)]
        );
        // Nothing acknowledged since: the next truncation knows only its own offset.
        assert_eq!(state.observe(&[truncate(98)], &[]), vec![truncated(98, 98)]);
        assert!(acked.lock().expect("acked ends").is_empty());
    }

    #[test]
    fn the_leaders_log_start_offset_moving_is_a_deletion() {
        let mut state = WatchState::new(["t".to_string()].into_iter().collect(), true);
        let led_by_2 = view(&[1, 2, 3], 1, vec![partition(0, Some(2), 0, &[1, 2, 3])]);
        assert!(state
            .observe(
                &[],
                &[
                    answer(1, &led_by_2, &[(0, 0, 3)]),
                    answer(2, &led_by_2, &[(0, 0, 3)])
                ]
            )
            .is_empty());
        // A follower's start offset alone means nothing.
        assert!(state
            .observe(
                &[],
                &[
                    answer(1, &led_by_2, &[(0, 3, 3)]),
                    answer(2, &led_by_2, &[(0, 0, 3)])
                ]
            )
            .is_empty());
        let deleted = state.observe(
            &[(
                2,
                parse_line(&RETENTION_SIZE.replace("watch-retention", "t")).expect("parsed"),
            )],
            &[answer(2, &led_by_2, &[(0, 3, 3)])],
        );
        assert_eq!(
            deleted,
            vec![ClusterEventKind::SegmentDeleted {
                topic: "t".into(),
                partition: 0,
                start_offset: 0,
                end_offset: 3,
                reason: DeletionReason::RetentionSize
            }]
        );
        let records = state.observe(
            &[(
                2,
                parse_line(&DELETE_RECORDS.replace("watch-retention", "t")).expect("parsed"),
            )],
            &[answer(2, &led_by_2, &[(0, 4, 5)])],
        );
        assert_eq!(
            records,
            vec![ClusterEventKind::RecordsDeleted {
                topic: "t".into(),
                partition: 0,
                start_offset: 3,
                end_offset: 4
            }]
        );
        // Without a line: retention by time.
        let timed = state.observe(&[], &[answer(2, &led_by_2, &[(0, 5, 5)])]);
        assert!(matches!(
            timed.as_slice(),
            [ClusterEventKind::SegmentDeleted {
                start_offset: 4,
                end_offset: 5,
                reason: DeletionReason::RetentionTime,
                ..
            }]
        ));
    }
}
