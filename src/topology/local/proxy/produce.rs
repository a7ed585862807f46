//! Debezium's Produce requests and the brokers' answers, read off the Kafka proxies: the acknowledgements the
//! harness cannot get from Debezium itself.
//!
//! Every client connection to a broker's proxy gets a tap: the proxy hands it each chunk of requests as it reads
//! them from the client and each chunk of answers once it has written them to the client (so an answer held by a
//! partition and never delivered is never counted as an acknowledgement). The tap runs in a task of its own, off
//! the forwarding path: the proxy only clones the chunk's handle into an unbounded channel, so forwarding gains no
//! latency and a tap can never stall or break the connection.
//!
//! The tap splits both directions into size-prefixed frames. The first request names the client (request header
//! v1/v2: api key, api version, correlation id, client id); a connection whose client id does not start with
//! [`PRODUCER_CLIENT_PREFIX`] — anything but a Connect task's producer — is not decoded further. For a Produce
//! request (api key 0, versions 3-12, flexible from 9) it decodes each partition's record batches (compressed or
//! not) and keeps them by correlation id until the answer with that correlation id arrives (Kafka answers in order
//! per connection, and an acks=0 request has no answer at all). Each record then gets its outcome:
//!
//! - acks=0: acknowledged at offset -1 as soon as the request was read (the embedded producer records the same);
//! - the partition's answer has no error: acknowledged at the answer's base offset plus the record's place in the
//!   request's records of that partition (the Java producer numbers a batch's records 0, 1, … and sends one batch
//!   per partition, so this is the base offset plus the record's offset delta);
//! - the partition's answer has an error: failed with the error's name;
//! - the connection closed before the answer: failed ("no answer").
//!
//! Bytes this decoder cannot read stop the decoding of that connection (logged once at debug, and reported as
//! [`TapReport::Undecodable`]); the proxy forwards them unchanged either way.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, HeaderVersion};
use kafka_protocol::records::{Record, RecordBatchDecoder};
use tokio::sync::mpsc;

use crate::history::ProduceOutcome;

/// The client id prefix of a Kafka Connect source task's producer (`connector-producer-<connector>-<task>`).
pub const PRODUCER_CLIENT_PREFIX: &str = "connector-producer-";

/// The Produce api key.
const PRODUCE: i16 = 0;
/// A frame larger than this is not a Kafka request (the brokers refuse anything over 100 MiB).
const MAX_FRAME: usize = 128 << 20;

/// One record of a Produce request a Connect task's producer sent, and what became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProducedRecord {
    /// The broker whose proxy carried it.
    pub broker: i32,
    pub topic: String,
    pub partition: i32,
    pub key: Option<Bytes>,
    /// `None` for a tombstone.
    pub value: Option<Bytes>,
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The record's sequence number (the batch's base sequence plus its offset delta); -1 without idempotence.
    pub sequence: i32,
    /// Acknowledged (offset -1 with acks=0) or failed, as the history records it.
    pub outcome: ProduceOutcome,
    /// When the proxy read the request, ms since the Unix epoch.
    pub sent_at_ms: i64,
}

/// Where every Kafka proxy's taps send what they decoded: to the current subscriber, if any (records decoded while
/// nobody subscribes are dropped). Shared by all the proxies; it outlives runs, each run subscribes afresh.
#[derive(Debug, Default)]
pub struct ProduceLog {
    subscriber: Mutex<Option<mpsc::UnboundedSender<TapReport>>>,
    /// (broker, topic, partition) → one past the highest offset that broker acknowledged since the replica's last
    /// truncation taken by [`ProduceLog::take_acked_end`]: its log reached at least there.
    acked_ends: Mutex<HashMap<(i32, String, i32), i64>>,
}

/// What a tap reports to the [`ProduceLog`]'s subscriber.
#[derive(Debug, Clone, PartialEq)]
pub enum TapReport {
    /// A record with its outcome, in the order the outcomes became known on its connection.
    Record(ProducedRecord),
    /// The decoding of a producer's connection stopped (why): its later outcomes are missing.
    Undecodable(String),
}

impl ProduceLog {
    /// From now on what the taps decode goes to the returned receiver (and no longer to an earlier subscriber).
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<TapReport> {
        let (sender, receiver) = mpsc::unbounded_channel();
        *self.lock() = Some(sender);
        lock(&self.acked_ends).clear();
        receiver
    }

    /// For a truncation of broker `broker`'s replica of `topic`-`partition`: one past the highest offset that
    /// broker acknowledged there since the replica's previous truncation (what its log had reached at least), if
    /// it acknowledged any; forgotten, so the next truncation counts only what is acknowledged after this one.
    pub fn take_acked_end(&self, broker: i32, topic: &str, partition: i32) -> Option<i64> {
        lock(&self.acked_ends).remove(&(broker, topic.to_string(), partition))
    }

    /// Ends the subscription: its receiver gets what was already reported, then the end.
    pub fn unsubscribe(&self) {
        self.lock().take();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<mpsc::UnboundedSender<TapReport>>> {
        lock(&self.subscriber)
    }

    fn report(&self, reports: impl IntoIterator<Item = TapReport>) {
        if let Some(subscriber) = self.lock().as_ref() {
            for report in reports {
                let _ = subscriber.send(report);
            }
        }
    }

    fn extend(&self, records: Vec<ProducedRecord>) {
        {
            let mut ends = lock(&self.acked_ends);
            for r in &records {
                if let ProduceOutcome::Acked { partition, offset } = r.outcome {
                    if offset >= 0 {
                        let end = ends
                            .entry((r.broker, r.topic.clone(), partition))
                            .or_insert(0);
                        *end = (*end).max(offset + 1);
                    }
                }
            }
        }
        if !records.is_empty() {
            self.report(records.into_iter().map(TapReport::Record));
        }
    }
}

/// A poisoned lock (a tap that panicked while holding it) leaves the data whole: the log stays usable.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why a connection's tap stopped decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TapStop {
    /// The client is not a Connect task's producer (its client id, if it sent one).
    OtherClient(Option<String>),
    /// Bytes the tap cannot read.
    Undecodable(String),
}

/// Splits one direction of a connection into frames (the bytes after each 4-byte size).
#[derive(Debug, Default)]
struct Frames {
    buffer: BytesMut,
}

impl Frames {
    fn push(&mut self, chunk: &[u8]) {
        self.buffer.extend_from_slice(chunk);
    }

    /// The next whole frame, if one has arrived.
    fn next(&mut self) -> Result<Option<Bytes>, TapStop> {
        let Some(size) = self.buffer.get(..4) else {
            return Ok(None);
        };
        let size = i32::from_be_bytes([size[0], size[1], size[2], size[3]]);
        let size = usize::try_from(size)
            .ok()
            .filter(|&s| s <= MAX_FRAME)
            .ok_or_else(|| TapStop::Undecodable(format!("frame size {size}")))?;
        if self.buffer.len() < 4 + size {
            return Ok(None);
        }
        self.buffer.advance(4);
        Ok(Some(self.buffer.split_to(size).freeze()))
    }
}

/// A Produce request waiting for its answer.
#[derive(Debug)]
struct PendingProduce {
    version: i16,
    sent_at_ms: i64,
    partitions: Vec<SentPartition>,
}

/// The records a request sent to one partition.
#[derive(Debug)]
struct SentPartition {
    topic: String,
    partition: i32,
    records: Vec<Record>,
}

/// The decoding state of one client connection to broker `broker`.
#[derive(Debug)]
pub(crate) struct ConnectionTap {
    broker: i32,
    requests: Frames,
    answers: Frames,
    /// Whether the first request named a Connect task's producer.
    producer: bool,
    /// The Produce version of the connection's first Produce request, once seen (logged once, at debug).
    produce_version: Option<i16>,
    /// Produce requests waiting for their answer, by correlation id.
    pending: BTreeMap<i32, PendingProduce>,
}

impl ConnectionTap {
    pub(crate) fn new(broker: i32) -> Self {
        ConnectionTap {
            broker,
            requests: Frames::default(),
            answers: Frames::default(),
            producer: false,
            produce_version: None,
            pending: BTreeMap::new(),
        }
    }

    /// Request bytes the client sent, read at `at_ms`; returns the records whose outcome they settle (acks=0).
    pub(crate) fn requests(
        &mut self,
        chunk: &[u8],
        at_ms: i64,
    ) -> Result<Vec<ProducedRecord>, TapStop> {
        self.requests.push(chunk);
        let mut settled = Vec::new();
        while let Some(frame) = self.requests.next()? {
            self.request(frame, at_ms, &mut settled)?;
        }
        Ok(settled)
    }

    /// Answer bytes delivered to the client; returns the records whose outcome they settle.
    pub(crate) fn answers(&mut self, chunk: &[u8]) -> Result<Vec<ProducedRecord>, TapStop> {
        self.answers.push(chunk);
        let mut settled = Vec::new();
        while let Some(frame) = self.answers.next()? {
            self.answer(frame, &mut settled)?;
        }
        Ok(settled)
    }

    /// The connection closed: every request still waiting failed without an answer.
    pub(crate) fn closed(self) -> Vec<ProducedRecord> {
        let broker = self.broker;
        let outcome = error_outcome(&format!(
            "no answer: the connection to broker {broker} closed"
        ));
        let mut failed = Vec::new();
        for pending in self.pending.into_values() {
            for p in pending.partitions {
                for record in p.records {
                    failed.push(settle(
                        broker,
                        &p.topic,
                        p.partition,
                        record,
                        pending.sent_at_ms,
                        outcome.clone(),
                    ));
                }
            }
        }
        failed
    }

    fn request(
        &mut self,
        frame: Bytes,
        at_ms: i64,
        settled: &mut Vec<ProducedRecord>,
    ) -> Result<(), TapStop> {
        let (api_key, version, correlation_id, client_id) = request_preamble(&frame)?;
        if !self.producer {
            if !client_id
                .as_deref()
                .is_some_and(|id| id.starts_with(PRODUCER_CLIENT_PREFIX))
            {
                return Err(TapStop::OtherClient(client_id));
            }
            self.producer = true;
        }
        if api_key != PRODUCE {
            return Ok(());
        }
        if self.produce_version.is_none() {
            self.produce_version = Some(version);
            tracing::debug!(
                broker = self.broker,
                client_id = client_id.as_deref().unwrap_or(""),
                version,
                "proxy: decoding a task producer's Produce requests"
            );
        }
        let undecodable = |what: &str, e: anyhow::Error| {
            TapStop::Undecodable(format!(
                "Produce v{version} (correlation id {correlation_id}): {what}: {e}"
            ))
        };
        let mut body = frame;
        RequestHeader::decode(&mut body, ProduceRequest::header_version(version))
            .map_err(|e| undecodable("request header", e))?;
        let request =
            ProduceRequest::decode(&mut body, version).map_err(|e| undecodable("request", e))?;
        let mut partitions = Vec::new();
        for topic in request.topic_data {
            if topic.name.0.is_empty() {
                return Err(TapStop::Undecodable(format!(
                    "Produce v{version} names a topic by id only ({})",
                    topic.topic_id
                )));
            }
            let name = topic.name.0.to_string();
            for data in topic.partition_data {
                let mut records = Vec::new();
                if let Some(mut bytes) = data.records {
                    let sets = RecordBatchDecoder::decode_all(&mut bytes).map_err(|e| {
                        undecodable(&format!("record batches of {name}-{}", data.index), e)
                    })?;
                    records.extend(sets.into_iter().flat_map(|set| set.records));
                }
                partitions.push(SentPartition {
                    topic: name.clone(),
                    partition: data.index,
                    records,
                });
            }
        }
        if request.acks == 0 {
            for p in partitions {
                let outcome = ProduceOutcome::Acked {
                    partition: p.partition,
                    offset: -1,
                };
                settled.extend(p.records.into_iter().map(|r| {
                    settle(
                        self.broker,
                        &p.topic,
                        p.partition,
                        r,
                        at_ms,
                        outcome.clone(),
                    )
                }));
            }
            return Ok(());
        }
        let pending = PendingProduce {
            version,
            sent_at_ms: at_ms,
            partitions,
        };
        if self.pending.insert(correlation_id, pending).is_some() {
            return Err(TapStop::Undecodable(format!(
                "two Produce requests in flight with correlation id {correlation_id}"
            )));
        }
        Ok(())
    }

    fn answer(&mut self, frame: Bytes, settled: &mut Vec<ProducedRecord>) -> Result<(), TapStop> {
        let Some(id) = frame.get(..4) else {
            return Err(TapStop::Undecodable(format!(
                "an answer of {} bytes has no correlation id",
                frame.len()
            )));
        };
        let correlation_id = i32::from_be_bytes([id[0], id[1], id[2], id[3]]);
        // Answers to anything but a Produce request waiting are not read.
        let Some(pending) = self.pending.remove(&correlation_id) else {
            return Ok(());
        };
        let version = pending.version;
        let undecodable = |what: &str, e: anyhow::Error| {
            TapStop::Undecodable(format!(
                "Produce v{version} answer (correlation id {correlation_id}): {what}: {e}"
            ))
        };
        let mut body = frame;
        ResponseHeader::decode(&mut body, ProduceResponse::header_version(version))
            .map_err(|e| undecodable("response header", e))?;
        let response =
            ProduceResponse::decode(&mut body, version).map_err(|e| undecodable("response", e))?;
        let mut answers: HashMap<(String, i32), (i16, i64)> = HashMap::new();
        for topic in response.responses {
            for p in topic.partition_responses {
                answers.insert(
                    (topic.name.0.to_string(), p.index),
                    (p.error_code, p.base_offset),
                );
            }
        }
        for p in pending.partitions {
            let answer = answers.get(&(p.topic.clone(), p.partition)).copied();
            for (i, record) in p.records.into_iter().enumerate() {
                let outcome = match answer {
                    Some((0, base)) => ProduceOutcome::Acked {
                        partition: p.partition,
                        offset: base.saturating_add(i as i64),
                    },
                    Some((code, _)) => error_outcome(&format!(
                        "{} (error code {code}) from broker {}",
                        ResponseError::try_from_code(code)
                            .map_or_else(|| "NONE".to_string(), |e| e.to_string()),
                        self.broker
                    )),
                    None => error_outcome(&format!(
                        "broker {}'s answer does not name {}-{}",
                        self.broker, p.topic, p.partition
                    )),
                };
                settled.push(settle(
                    self.broker,
                    &p.topic,
                    p.partition,
                    record,
                    pending.sent_at_ms,
                    outcome,
                ));
            }
        }
        Ok(())
    }
}

fn error_outcome(error: &str) -> ProduceOutcome {
    ProduceOutcome::Failed {
        error: error.to_string(),
    }
}

fn settle(
    broker: i32,
    topic: &str,
    partition: i32,
    record: Record,
    sent_at_ms: i64,
    outcome: ProduceOutcome,
) -> ProducedRecord {
    ProducedRecord {
        broker,
        topic: topic.to_string(),
        partition,
        key: record.key,
        value: record.value,
        producer_id: record.producer_id,
        producer_epoch: record.producer_epoch,
        sequence: record.sequence,
        outcome,
        sent_at_ms,
    }
}

/// A request frame's api key, api version, correlation id and client id (request header v1 and v2 begin alike).
fn request_preamble(frame: &[u8]) -> Result<(i16, i16, i32, Option<String>), TapStop> {
    let short = || TapStop::Undecodable(format!("a request of {} bytes", frame.len()));
    let mut b = frame;
    if b.len() < 10 {
        return Err(short());
    }
    let api_key = b.get_i16();
    let version = b.get_i16();
    let correlation_id = b.get_i32();
    let len = b.get_i16();
    let client_id = match usize::try_from(len) {
        Err(_) => None,
        Ok(len) => {
            let bytes = b.get(..len).ok_or_else(short)?;
            Some(String::from_utf8_lossy(bytes).into_owned())
        }
    };
    Ok((api_key, version, correlation_id, client_id))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A chunk for a tap.
enum Tapped {
    Requests(Bytes, i64),
    Answers(Bytes),
}

/// The proxy's end of a connection's tap: hands it chunks; never blocks, never fails (once the tap stopped,
/// chunks are dropped).
#[derive(Debug, Clone)]
pub(super) struct TapSender(mpsc::UnboundedSender<Tapped>);

impl std::fmt::Debug for Tapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tapped::Requests(b, _) => write!(f, "Requests({} bytes)", b.len()),
            Tapped::Answers(b) => write!(f, "Answers({} bytes)", b.len()),
        }
    }
}

impl TapSender {
    /// Request bytes just read from the client.
    pub(super) fn requests(&self, chunk: &Bytes) {
        let _ = self.0.send(Tapped::Requests(chunk.clone(), now_ms()));
    }

    /// Answer bytes just written to the client.
    pub(super) fn answers(&self, chunk: &Bytes) {
        let _ = self.0.send(Tapped::Answers(chunk.clone()));
    }
}

/// Starts the tap of one client connection to broker `broker`, recording into `log`. It ends when every
/// [`TapSender`] clone is dropped (the connection is over) or when it stops decoding.
pub(super) fn spawn_tap(broker: i32, log: Arc<ProduceLog>) -> TapSender {
    let (sender, mut chunks) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut tap = ConnectionTap::new(broker);
        while let Some(chunk) = chunks.recv().await {
            let settled = match chunk {
                Tapped::Requests(bytes, at_ms) => tap.requests(&bytes, at_ms),
                Tapped::Answers(bytes) => tap.answers(&bytes),
            };
            match settled {
                Ok(records) => log.extend(records),
                Err(TapStop::OtherClient(_)) => return,
                Err(TapStop::Undecodable(why)) => {
                    tracing::debug!(broker, %why, "proxy: stopped decoding a producer's connection");
                    log.report([TapReport::Undecodable(format!("broker {broker}: {why}"))]);
                    return;
                }
            }
        }
        log.extend(tap.closed());
    });
    TapSender(sender)
}

#[cfg(test)]
mod tests;
