//! The Debezium capture plug: Debezium's MariaDB connector in a Kafka Connect worker, over a MariaDB source
//! ([`MySqlSource`]: each operation one SQL transaction, its GTID read back, so the history links each commit to
//! the Debezium records that carry that GTID).
//!
//! What differs from the embedded capture, and why:
//! - Debezium does not report its produce outcomes; the brokers' proxies on the local backend decode its task
//!   producer's Produce requests and the brokers' answers (see [`ProducedRecord`]), and each record's answer is
//!   the history's acknowledgement: acknowledged at its partition and offset (offset -1 with acks=0), or failed
//!   with the broker's error, or failed without an answer when the connection closed first. Each record is
//!   linked to its change as a consumer's read is (its Debezium JSON decoded, then resolved against the
//!   commits), so a change the ETL never got is explained as on the embedded capture: acknowledged and then
//!   truncated, deleted by retention, compacted, or never acknowledged.
//! - The initial snapshot is recorded from the database as the connector starts on it: every row of every modeled
//!   table after the baseline load, read in one pass before the connector is registered (the harness is the only
//!   writer, and it writes nothing until the connector runs). The stream starts once the consumers read every
//!   snapshot row and Connect committed an offset past the snapshot.
//! - Delivered means: Connect committed a source offset of the last commit (it commits only what Kafka
//!   acknowledged), and the consumers read a change of that commit (its GTID).
//! - The connector is Debezium's MariaDB connector whatever `[capture] connector` says: this machine's registries
//!   serve MariaDB, not MySQL. The verdicts do not depend on the flavour (the decoder reads both).
//!
//! Connector faults act on the worker that runs it ([`ConnectWorker`]):
//!
//! | action | what is done |
//! |---|---|
//! | `kill` | SIGKILL to the Connect worker: Debezium resumes from the last committed source offsets, so what it sent after them is sent again |
//! | `stop` | SIGTERM to the worker (tasks stop and commit their offsets) |
//! | `pause` / `resume` | Connect's REST pause / resume of the connector |
//! | `restart` | the worker started again if it is down, then the connector resumed and its tasks restarted; a task that does not run again in its worker (Debezium 3.2.0 cannot restart a task in the JVM it failed in) gets the worker restarted |

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::{Capture, CaptureMark, Delivery};
use crate::clock::Clock;
use crate::history::{
    BinlogPosition, ChangeOp, ChangeRecord, Commit, ConsumedChange, History, ProduceOutcome,
    Produced, Recorder,
};
use crate::model::flat::RowImages;
use crate::pipeline::decode::{decode, Decoded};
use crate::run::RunError;
use crate::scenario::{FaultAction, Scenario};
use crate::source::{MySqlSource, SourceError};
use crate::topology::local::{
    ConnectRest, ConnectorStatus, DebeziumConnector, LocalError, ProducedRecord, TapReport,
};
use crate::workload::Operation;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;

/// How long the Debezium connector may take to report RUNNING.
const CONNECTOR_READY: Duration = Duration::from_secs(120);
/// How long the connector may take to run again after its worker restarted.
const CONNECTOR_BACK: Duration = Duration::from_secs(60);
/// How long Debezium's initial snapshot may take to reach the consumers.
const SNAPSHOT_READ: Duration = Duration::from_secs(120);
/// How often the capture's waits and quiesce look again.
const POLL: Duration = Duration::from_millis(100);

/// The Kafka Connect worker a Debezium connector runs in: what the plug needs of the backend that runs it.
#[allow(async_fn_in_trait)]
pub trait ConnectWorker: Sync {
    /// Registers `connector` against the backend's database and Kafka and waits until it runs.
    async fn start_connector(
        &self,
        connector: &DebeziumConnector,
        ready: Duration,
    ) -> Result<(), LocalError>;
    /// The worker's REST API.
    async fn rest(&self) -> ConnectRest;
    /// Whether the worker process is alive.
    async fn running(&self) -> bool;
    /// SIGKILL to the worker.
    async fn kill(&self);
    /// SIGTERM to the worker (its tasks stop and commit their offsets).
    async fn stop(&self);
    /// Starts the worker again (stopping it first if it still runs); waits until its REST API answers.
    async fn restart(&self) -> Result<(), LocalError>;
    /// From now on, the records the worker's task producers send, each with the broker's answer, go to the
    /// returned receiver.
    async fn subscribe_produced(&self) -> UnboundedReceiver<TapReport>;
    /// Ends that subscription: its receiver gets what was already reported, then the end.
    async fn unsubscribe_produced(&self);
}

/// Debezium in a Connect worker, over MariaDB.
pub struct DebeziumCapture<'a, W: ConnectWorker> {
    worker: &'a W,
    source: MySqlSource,
    connector: DebeziumConnector,
    clock: Clock,
    /// Rows of the initial snapshot, known once started.
    snapshot_rows: usize,
    /// Digests what the proxies report of Debezium's sends, from the start until [`Capture::finish`].
    sent: Option<JoinHandle<Digested>>,
    /// The last GTID set Connect reported as committed (kept when a later query fails).
    committed_gtids: std::sync::Mutex<String>,
}

impl<'a, W: ConnectWorker> DebeziumCapture<'a, W> {
    /// A capture (not started) of `connector` in `worker`, reading the MariaDB at `database_url`.
    pub async fn connect(
        worker: &'a W,
        connector: DebeziumConnector,
        database_url: &str,
        recorder: &Recorder,
        clock: &Clock,
    ) -> Result<Self, RunError> {
        let source = MySqlSource::connect(database_url, recorder.clone(), clock.clone()).await?;
        Ok(DebeziumCapture {
            worker,
            source,
            connector,
            clock: clock.clone(),
            snapshot_rows: 0,
            sent: None,
            committed_gtids: std::sync::Mutex::new(String::new()),
        })
    }

    /// The connector's status, or `None` when the Connect worker is not running.
    async fn status(&self) -> Option<Result<Option<ConnectorStatus>, LocalError>> {
        if !self.worker.running().await {
            return None;
        }
        let rest = self.worker.rest().await;
        Some(rest.connector_status(&self.connector.name).await)
    }

    /// Whether the connector is paused in a running worker, with no task failed (a resume then only resumes).
    async fn paused(&self) -> bool {
        matches!(self.status().await, Some(Ok(Some(status)))
            if status.connector.state == "PAUSED" && status.failed().is_none())
    }
}

impl<W: ConnectWorker> Capture for DebeziumCapture<'_, W> {
    type Source = MySqlSource;

    fn source(&self) -> &MySqlSource {
        &self.source
    }

    async fn load(&self, op: &Operation) -> Result<(), SourceError> {
        self.source.load(op).await
    }

    async fn start(&mut self, scenario: &Scenario, recorder: &Recorder) -> Result<(), RunError> {
        // From before the connector starts (its snapshot's records count); a previous run's subscription ends.
        let change_topics = scenario.topic_plans().into_iter().map(|t| t.name).collect();
        let reports = self.worker.subscribe_produced().await;
        self.sent = Some(tokio::spawn(digest_reports(reports, change_topics)));
        self.snapshot_rows = record_snapshot(&self.source, recorder, &self.clock).await?;
        tracing::info!(scenario = %scenario.name, "debezium: baseline recorded as the snapshot");
        self.worker
            .start_connector(&self.connector, CONNECTOR_READY)
            .await?;
        tracing::info!(scenario = %scenario.name, "debezium: connector running");
        Ok(())
    }

    async fn ready(&mut self, scenario: &Scenario, recorder: &Recorder) -> Result<(), RunError> {
        // Debezium reports RUNNING before its snapshot has read anything: a commit made now could be read by the
        // snapshot as a row (`r`) instead of streamed as a change. Stream only once every row was delivered.
        wait_for_snapshot(recorder, self.snapshot_rows).await?;
        tracing::info!(scenario = %scenario.name, "debezium: snapshot read by the consumers");
        // A connector restarted before Connect committed an offset past the snapshot takes the snapshot again:
        // the stream (and the faults) start once one is committed.
        self.worker
            .rest()
            .await
            .wait_until_past_snapshot(&self.connector.name, SNAPSHOT_READ)
            .await?;
        tracing::info!(scenario = %scenario.name, "debezium: connector offsets past the snapshot");
        Ok(())
    }

    async fn reached(&self, _txn: u64, _mark: CaptureMark) -> bool {
        // Debezium's produce progress is not visible; only a virtual clock paces on it, and a scenario with a
        // real capture runs on the real clock.
        true
    }

    async fn progress_fingerprint(&self) -> (u64, u64) {
        (0, 0)
    }

    /// Connect committed a source offset of the last commit (it commits only what Kafka acknowledged: every
    /// change before it is in the topics), and the consumers read a change of that commit. (A change of the last
    /// commit read is not enough alone: after a connector restart Debezium replays, and the last commit's record
    /// can reach its partition before replayed records reach theirs; the driver also waits for every
    /// partition's end read after the offset.)
    async fn delivery(&self, recorder: &Recorder) -> Delivery {
        // One read of the history per poll: the last commit, and whether the consumers read it.
        let history = recorder.snapshot();
        let last_gtid = last_gtid(&history);
        let mut committed_gtids = String::new();
        let committed = match last_gtid.as_deref() {
            None => true,
            Some(last) => {
                let offsets = self
                    .worker
                    .rest()
                    .await
                    .committed_offsets(&self.connector.name)
                    .await;
                let mut known = self
                    .committed_gtids
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if let Some(gtids) = offsets.ok().and_then(|o| {
                    o.first()
                        .and_then(|offset| offset.get("gtids"))
                        .and_then(|g| g.as_str())
                        .map(str::to_owned)
                }) {
                    *known = gtids;
                }
                committed_gtids.clone_from(&known);
                // Debezium's offset inside transaction N is the set of transactions before it: an offset past
                // N - 1 is the commit of a record of the last transaction (the set reaches N itself only with
                // the next binlog event, which may be a heartbeat tens of seconds later).
                gtid_set_covers(&committed_gtids, last, 1)
            }
        };
        let seen_last = last_gtid
            .as_deref()
            .is_none_or(|gtid| consumed_gtid(&history, gtid));
        let mut pending = Vec::new();
        if !committed {
            pending.push(format!(
                "capture: Connect's committed source offset is at GTID set `{committed_gtids}`, not yet at the last commit's {}",
                last_gtid.as_deref().unwrap_or("-")
            ));
        }
        if !seen_last {
            pending.push(format!(
                "consumers: no change of the last commit (GTID {}) read yet",
                last_gtid.as_deref().unwrap_or("-")
            ));
        }
        Delivery {
            in_kafka: committed,
            complete: committed && seen_last,
            failed: None,
            pending,
        }
    }

    fn poll_interval(&self) -> Duration {
        POLL
    }

    async fn fault(&self, action: FaultAction) -> Result<(), String> {
        let name = self.connector.name.as_str();
        let text = |e: LocalError| e.to_string();
        match action {
            FaultAction::Kill => {
                self.worker.kill().await;
                Ok(())
            }
            FaultAction::Stop => {
                self.worker.stop().await;
                Ok(())
            }
            FaultAction::Pause => self
                .worker
                .rest()
                .await
                .pause_connector(name)
                .await
                .map_err(text),
            // Connect's resume of a paused connector: its task goes on where it stopped, nothing is replayed.
            FaultAction::Resume if self.paused().await => {
                let rest = self.worker.rest().await;
                rest.resume_connector(name).await.map_err(text)?;
                rest.wait_until_running(name, CONNECTOR_BACK)
                    .await
                    .map_err(text)
            }
            FaultAction::Restart | FaultAction::Resume => {
                if self.worker.running().await {
                    let rest = self.worker.rest().await;
                    let in_worker = async {
                        let mark = rest.log_mark();
                        rest.resume_connector(name).await?;
                        rest.restart_connector(name).await?;
                        rest.wait_until_running(name, CONNECTOR_BACK).await?;
                        rest.wait_until_streaming(name, mark, CONNECTOR_BACK).await
                    };
                    match in_worker.await {
                        Ok(()) => return Ok(()),
                        // Debezium 3.2.0 cannot start a task again inside the JVM it failed in (its OpenLineage
                        // emitter was shut down with the old task: "DebeziumOpenLineageEmitter not initialized",
                        // DBZ-9504/DBZ-9524, fixed in later releases); what an operator does then is restart
                        // the worker.
                        Err(e) => tracing::warn!(
                            error = %e,
                            "the connector did not run again in its worker; restarting the worker"
                        ),
                    }
                }
                let mark = self.worker.rest().await.log_mark();
                self.worker.restart().await.map_err(text)?;
                let rest = self.worker.rest().await;
                rest.wait_until_known(name, CONNECTOR_BACK)
                    .await
                    .map_err(text)?;
                rest.resume_connector(name).await.map_err(text)?;
                // The new worker's status shows the old worker's FAILED until its task writes its own: the log
                // decides first, then the status must say RUNNING.
                rest.wait_until_streaming_after_worker_restart(name, mark, CONNECTOR_BACK)
                    .await
                    .map_err(text)?;
                rest.wait_until_running(name, CONNECTOR_BACK)
                    .await
                    .map_err(text)
            }
            other => Err(crate::nemesis::unsupported(other, "the connector")),
        }
    }

    async fn failure(&self) -> Option<String> {
        let Some(status) = self.status().await else {
            return Some("the Connect worker is not running".into());
        };
        match status {
            Ok(Some(status)) => status.failed().map(|s| {
                let trace = s.trace.as_deref().unwrap_or("no trace");
                let first = trace.lines().next().unwrap_or(trace);
                format!("Debezium task FAILED: {first}")
            }),
            Ok(None) => Some("the connector is not registered".into()),
            Err(e) => Some(format!("its status cannot be read: {e}")),
        }
    }

    async fn final_images(&self) -> Result<RowImages, RunError> {
        Ok(self.source.final_images().await?)
    }

    /// The records Debezium's task producer sent to the change topics, with the brokers' answers the proxies
    /// saw, as the history's acknowledgements.
    async fn finish(
        self,
        _ends: &[(String, i32, i64)],
        recorder: &Recorder,
    ) -> Option<Vec<Produced>> {
        self.worker.unsubscribe_produced().await;
        let digested = match self.sent {
            Some(task) => task.await.unwrap_or_default(),
            None => Digested::default(),
        };
        if let Some(first) = digested.undecodable.first() {
            tracing::warn!(
                connections = digested.undecodable.len(),
                %first,
                "the proxies could not decode every Debezium connection: acknowledgements after that are missing"
            );
        }
        Some(acknowledgements(&recorder.snapshot(), &digested.sent))
    }
}

/// The GTID of the last commit of the stream (not the snapshot), if any.
fn last_gtid(history: &History) -> Option<String> {
    history
        .commits
        .iter()
        .rev()
        .find(|c| !c.snapshot)
        .and_then(|c| c.gtid.clone())
}

/// Whether the consumers read a change of the transaction with `gtid`.
fn consumed_gtid(history: &History, gtid: &str) -> bool {
    history.consumed.iter().any(|c| {
        c.change
            .as_ref()
            .is_some_and(|ch| ch.source.gtid.as_deref() == Some(gtid))
    })
}

/// What the plug keeps of one record Debezium's task producer sent to a change topic: the change its Debezium
/// JSON carries (decoded as a consumer's read is; `None` when it does not decode), and the broker's answer.
#[derive(Debug, Clone, PartialEq)]
struct Sent {
    topic: String,
    change: Option<ConsumedChange>,
    tombstone: bool,
    outcome: ProduceOutcome,
    sent_at_ms: i64,
}

/// What [`digest_reports`] kept.
#[derive(Debug, Default)]
struct Digested {
    sent: Vec<Sent>,
    /// Why a producer connection could not be decoded, one line each.
    undecodable: Vec<String>,
}

/// Reads the proxies' reports until the subscription ends, digesting each record as it comes (a few bytes kept
/// per record, not its JSON): the records sent to `change_topics` (schema changes and heartbeats are left out, as
/// the consumers never read them).
async fn digest_reports(
    mut reports: UnboundedReceiver<TapReport>,
    change_topics: HashSet<String>,
) -> Digested {
    let mut digested = Digested::default();
    while let Some(report) = reports.recv().await {
        match report {
            TapReport::Record(record) if change_topics.contains(&record.topic) => {
                digested.sent.push(digest(&record));
            }
            TapReport::Record(_) => {}
            TapReport::Undecodable(why) => digested.undecodable.push(why),
        }
    }
    digested
}

/// One sent record, its key and value decoded by the ETL's own decoder.
fn digest(record: &ProducedRecord) -> Sent {
    let offset = match record.outcome {
        ProduceOutcome::Acked { offset, .. } => offset,
        ProduceOutcome::Failed { .. } => -1,
    };
    let decoded = decode(
        &record.topic,
        record.partition,
        offset,
        record.key.as_deref(),
        record.value.as_deref(),
    );
    Sent {
        topic: record.topic.clone(),
        change: match decoded {
            Ok(Decoded::Change { change, .. }) => Some(change),
            Ok(Decoded::Tombstone { .. }) | Err(_) => None,
        },
        tombstone: record.value.is_none(),
        outcome: record.outcome.clone(),
        sent_at_ms: record.sent_at_ms,
    }
}

/// The sent records as the history records produce attempts: each linked to the change it carries (resolved
/// against the commits like a consumer's read), with the broker's answer as its outcome.
fn acknowledgements(history: &History, sent: &[Sent]) -> Vec<Produced> {
    let resolver = history.resolver();
    let mut topics = crate::history::Interner::new(64);
    sent.iter()
        .map(|s| Produced {
            change: s.change.as_ref().and_then(|c| resolver.resolve(c)),
            tombstone: s.tombstone,
            topic: topics.get(&s.topic),
            outcome: s.outcome.clone(),
            sent_at_ms: s.sent_at_ms,
        })
        .collect()
}

/// Waits until the consumers have read every row of the initial snapshot (`snapshot_rows` distinct rows), bounded
/// by [`SNAPSHOT_READ`].
async fn wait_for_snapshot(recorder: &Recorder, snapshot_rows: usize) -> Result<(), RunError> {
    let began = Instant::now();
    loop {
        let read: HashSet<(&'static str, i64)> = recorder
            .snapshot()
            .consumed
            .iter()
            .filter_map(|c| c.change.as_ref())
            .filter(|ch| ch.source.snapshot)
            .map(|ch| (ch.table, ch.key))
            .collect();
        if read.len() >= snapshot_rows {
            return Ok(());
        }
        if began.elapsed() >= SNAPSHOT_READ {
            return Err(RunError::LocalRun(format!(
                "Debezium's initial snapshot: {} of {snapshot_rows} rows reached the consumers within {:?}",
                read.len(),
                SNAPSHOT_READ
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Records the snapshot pseudo-commit: a read of every row the database holds before the connector starts.
/// Returns how many rows that is.
async fn record_snapshot(
    source: &MySqlSource,
    recorder: &Recorder,
    clock: &Clock,
) -> Result<usize, RunError> {
    let images = source.final_images().await?;
    let changes: Vec<ChangeRecord> = images
        .iter()
        .flat_map(|(table, rows)| {
            rows.keys().map(|key| ChangeRecord {
                table,
                key: *key,
                op: ChangeOp::Read,
            })
        })
        .collect();
    let rows = changes.len();
    recorder.commit(Commit {
        txn: 0,
        snapshot: true,
        kind: None,
        patient_id: None,
        position: BinlogPosition {
            file: String::new(),
            pos: 0,
        },
        gtid: None,
        server_id: 0,
        committed_at_ms: clock.now_ms(),
        changes,
    });
    Ok(rows)
}

/// Whether the MariaDB GTID set `set` (`domain-server-seq`, comma-separated) reaches within `slack` transactions of
/// `gtid`: an entry of the same domain and server with a sequence number at least `gtid`'s minus `slack`.
fn gtid_set_covers(set: &str, gtid: &str, slack: u64) -> bool {
    fn parts(g: &str) -> Option<(&str, &str, u64)> {
        let mut it = g.trim().splitn(3, '-');
        Some((it.next()?, it.next()?, it.next()?.parse().ok()?))
    }
    let Some((domain, server, seq)) = parts(gtid) else {
        return false;
    };
    set.split(',')
        .filter_map(parts)
        .any(|(d, s, n)| d == domain && s == server && n.saturating_add(slack) >= seq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::ChangeId;

    fn sent(topic: &str, value: Option<&str>, outcome: ProduceOutcome) -> ProducedRecord {
        ProducedRecord {
            broker: 1,
            topic: topic.to_string(),
            partition: 2,
            key: Some(bytes::Bytes::from_static(br#"{"obs_id":7}"#)),
            value: value.map(|v| bytes::Bytes::copy_from_slice(v.as_bytes())),
            producer_id: -1,
            producer_epoch: -1,
            sequence: -1,
            outcome,
            sent_at_ms: 1_000,
        }
    }

    #[tokio::test]
    async fn each_sent_record_becomes_its_changes_produce_attempt() {
        let recorder = Recorder::new(1);
        recorder.commit(Commit {
            txn: 5,
            snapshot: false,
            kind: None,
            patient_id: None,
            position: BinlogPosition {
                file: "binlog.000001".into(),
                pos: 100,
            },
            gtid: Some("0-1-5".into()),
            server_id: 1,
            committed_at_ms: 0,
            changes: vec![ChangeRecord {
                table: "obs",
                key: 7,
                op: ChangeOp::Delete,
            }],
        });
        let topic = "dbserver1.openmrs.obs";
        // The before image: every column of obs, null but its key.
        let before: serde_json::Map<String, serde_json::Value> = crate::model::schema::table("obs")
            .expect("obs is modeled")
            .columns
            .iter()
            .map(|c| (c.name.to_string(), serde_json::Value::Null))
            .chain([("obs_id".to_string(), serde_json::json!(7))])
            .collect();
        let delete = serde_json::json!({
            "before": before,
            "after": null,
            "op": "d",
            "source": {"ts_ms": 0, "snapshot": "false", "table": "obs", "file": "binlog.000001",
                       "pos": 100, "row": 0, "gtid": "0-1-5"}
        })
        .to_string();
        let delete = delete.as_str();
        let acked = ProduceOutcome::Acked {
            partition: 2,
            offset: 41,
        };
        let failed = ProduceOutcome::Failed {
            error: "NotLeaderOrFollower (error code 6) from broker 1".into(),
        };
        let (reports, receiver) = tokio::sync::mpsc::unbounded_channel();
        for record in [
            sent(topic, Some(delete), failed.clone()),
            sent(topic, Some(delete), acked.clone()),
            sent(topic, None, acked.clone()),
            sent("dbserver1", Some("{}"), acked.clone()),
        ] {
            reports.send(TapReport::Record(record)).expect("send");
        }
        reports
            .send(TapReport::Undecodable("broker 1: garbage".into()))
            .expect("send");
        drop(reports);
        let topics: HashSet<String> = [topic.to_string()].into();
        let digested = digest_reports(receiver, topics).await;
        assert_eq!(digested.undecodable, ["broker 1: garbage"]);
        let produced = acknowledgements(&recorder.snapshot(), &digested.sent);
        let change = Some(ChangeId { txn: 5, index: 0 });
        assert_eq!(
            produced
                .iter()
                .map(|p| (p.change, p.tombstone, p.outcome.clone()))
                .collect::<Vec<_>>(),
            [
                (change, false, failed),
                (change, false, acked.clone()),
                (None, true, acked)
            ],
            "the schema-change topic's record is left out"
        );
        assert!(produced
            .iter()
            .all(|p| p.sent_at_ms == 1_000 && &*p.topic == topic));
    }

    #[test]
    fn gtid_sets_cover_by_domain_server_and_sequence() {
        assert!(gtid_set_covers("0-1-1308", "0-1-1308", 0));
        assert!(gtid_set_covers("0-1-1310", "0-1-1308", 0));
        assert!(!gtid_set_covers("0-1-1307", "0-1-1308", 0));
        assert!(gtid_set_covers("0-1-1307", "0-1-1308", 1));
        assert!(!gtid_set_covers("0-1-121", "0-1-1308", 1));
        assert!(!gtid_set_covers("0-2-5000", "0-1-1308", 1));
        assert!(gtid_set_covers("1-1-3, 0-1-2000", "0-1-1308", 0));
        assert!(!gtid_set_covers("", "0-1-1", 1));
        assert!(!gtid_set_covers("0-1-5", "garbage", 1));
    }
}
