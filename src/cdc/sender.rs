//! The producing half of a capture generation: the initial snapshot's records (when asked), then each binlog
//! transaction's, handed to the producer with their deliveries passed on to the tracker.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use super::ddl::{self, HistoryPosition};
use super::encode::{SnapshotMark, SourceInfo};
use super::{Context, Start, Tracked, TxnEnd, READ_BATCH};
use crate::client::{Producer, Record};
use crate::history::{ChangeId, ChangeOp};
use crate::model::schema::TableDef;
use crate::source::BinlogTxn;

/// The producing half of one generation: snapshot (when asked), then the binlog until stopped or failed.
pub(super) async fn produce(
    ctx: Arc<Context>,
    producer: Producer,
    start: Start,
    tx: mpsc::Sender<Tracked>,
    mut stop: watch::Receiver<bool>,
    mut paused: watch::Receiver<bool>,
    failed: Arc<AtomicBool>,
) {
    let headers = ctx.encoder.flavour.headers();
    let mut sender = Sender {
        ctx: &ctx,
        producer: &producer,
        tx: &tx,
        headers: &headers,
        topics: crate::history::Interner::new(64),
    };
    let mut cursor = match start {
        Start::Snapshot => {
            if sender.snapshot(&failed).await.is_err() {
                return;
            }
            ctx.snapshot.cursor
        }
        Start::Resume(cursor) => cursor,
    };
    loop {
        if *stop.borrow() || failed.load(Ordering::Relaxed) {
            break;
        }
        if *paused.borrow() {
            tokio::select! {
                _ = paused.changed() => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        let batch = ctx.source.read_binlog(cursor, READ_BATCH);
        if batch.is_empty() {
            tokio::select! {
                _ = ctx.source.wait_beyond(cursor) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        for txn in batch {
            cursor += 1;
            if sender.stream(&txn, cursor).await.is_err() {
                return;
            }
            let mut p = ctx.progress();
            p.public.shipped_txn = p.public.shipped_txn.max(txn.txn);
            drop(p);
            if failed.load(Ordering::Relaxed) {
                break;
            }
        }
    }
    // Flush so every record handed over has its outcome before the tracker's channel closes.
    producer.close().await;
}

/// The tracker is gone (its generation was killed): nothing more to send.
struct TrackerGone;

struct Sender<'a> {
    ctx: &'a Context,
    producer: &'a Producer,
    tx: &'a mpsc::Sender<Tracked>,
    headers: &'a [(String, Option<Bytes>)],
    /// One shared copy per topic for what the history records of each send.
    topics: crate::history::Interner,
}

impl Sender<'_> {
    async fn send(
        &mut self,
        topic: &str,
        key: Option<Bytes>,
        value: Option<Bytes>,
        headers: bool,
        change: Option<ChangeId>,
        end_of: Option<TxnEnd>,
    ) -> Result<(), TrackerGone> {
        let now = self.ctx.clock.now_ms();
        let record = Record {
            topic: topic.to_string(),
            key,
            value,
            headers: if headers {
                self.headers.to_vec()
            } else {
                Vec::new()
            },
            timestamp: Some(now),
        };
        let tombstone = record.value.is_none();
        let delivery = self.producer.send(record).await;
        self.tx
            .send(Tracked {
                change,
                tombstone,
                topic: self.topics.get(topic),
                sent_at_ms: now,
                delivery: Some(delivery),
                end_of,
            })
            .await
            .map_err(|_| TrackerGone)
    }

    async fn snapshot(&mut self, failed: &AtomicBool) -> Result<(), TrackerGone> {
        let ctx = self.ctx;
        let snap = &ctx.snapshot;
        let file = snap.position.file.as_str();
        let pos = snap.position.pos;
        let history_position = HistoryPosition {
            ts_sec: snap.taken_at_ms.div_euclid(1000),
            file,
            pos,
            gtids: &snap.gtid_set,
        };
        let prefix = ctx.config.prefix.clone();
        for event in &ctx.ddl {
            let now = ctx.clock.now_ms();
            let history = ddl::history_value(&ctx.encoder.flavour, event, &history_position, now);
            self.send(
                &ctx.history_topic,
                None,
                Some(Bytes::from(history)),
                false,
                None,
                None,
            )
            .await?;
            if ctx.config.include_schema_changes {
                let source = ddl::ddl_source(event, file, pos, now);
                let key = ctx.schema_change.key(&event.database);
                let value = ctx
                    .schema_change
                    .value(&ctx.encoder.flavour, event, &source, now);
                self.send(
                    &prefix,
                    Some(Bytes::from(key)),
                    Some(Bytes::from(value)),
                    true,
                    None,
                    None,
                )
                .await?;
            }
        }
        // Reads: `first` on the snapshot's first row, `last_in_data_collection` on each table's last row,
        // `last` on the snapshot's last row, `first_in_data_collection` on other tables' first rows.
        let tables: Vec<(&'static TableDef, usize, &[Arc<crate::model::Row>])> = ctx
            .reads
            .iter()
            .map(|(t, first_index)| {
                let rows = snap
                    .tables
                    .iter()
                    .find(|(s, _)| s.name == t.name)
                    .map(|(_, rows)| rows.as_slice())
                    .unwrap_or_default();
                (*t, *first_index, rows)
            })
            .filter(|(_, _, rows)| !rows.is_empty())
            .collect();
        let total: usize = tables.iter().map(|(_, _, rows)| rows.len()).sum();
        let end = TxnEnd {
            txn: 0,
            cursor_after: snap.cursor,
            snapshot: true,
        };
        if total == 0 {
            return self.marker(end).await;
        }
        let mut sent = 0usize;
        for (ti, (table, first_index, rows)) in tables.iter().enumerate() {
            let codec = &ctx.encoder.codecs[table.name];
            let last_table = ti + 1 == tables.len();
            for (ri, row) in rows.iter().enumerate() {
                if failed.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let last_row = ri + 1 == rows.len();
                let mark = if sent == 0 {
                    SnapshotMark::First
                } else if last_row && last_table {
                    SnapshotMark::Last
                } else if last_row {
                    SnapshotMark::LastInDataCollection
                } else if ri == 0 {
                    SnapshotMark::FirstInDataCollection
                } else {
                    SnapshotMark::True
                };
                let Some(key) = row.first().and_then(|v| v.as_int()) else {
                    continue;
                };
                let source = SourceInfo {
                    ts_ms: snap.taken_at_ms,
                    snapshot: mark,
                    db: &ctx.config.database,
                    table: Some(table.name),
                    server_id: 0,
                    gtid: None,
                    file,
                    pos,
                    row: 0,
                };
                let now = ctx.clock.now_ms();
                let value = codec.value(
                    &ctx.encoder.flavour,
                    ChangeOp::Read,
                    None,
                    Some(row),
                    &source,
                    now,
                );
                sent += 1;
                let change = ChangeId {
                    txn: 0,
                    index: (first_index + ri) as u32,
                };
                self.send(
                    &codec.topic,
                    Some(codec.key(key)),
                    Some(value),
                    true,
                    Some(change),
                    (sent == total).then_some(end),
                )
                .await?;
            }
        }
        if sent < total {
            // Rows without an integer key were skipped; the snapshot still ends.
            self.marker(end).await?;
        }
        Ok(())
    }

    /// A transaction end without a record of its own.
    async fn marker(&mut self, end: TxnEnd) -> Result<(), TrackerGone> {
        self.tx
            .send(Tracked {
                change: None,
                tombstone: false,
                topic: self.topics.get(""),
                sent_at_ms: self.ctx.clock.now_ms(),
                delivery: None,
                end_of: Some(end),
            })
            .await
            .map_err(|_| TrackerGone)
    }

    async fn stream(&mut self, txn: &BinlogTxn, cursor_after: usize) -> Result<(), TrackerGone> {
        let ctx = self.ctx;
        let end = TxnEnd {
            txn: txn.txn,
            cursor_after,
            snapshot: false,
        };
        // The last row that yields records carries the transaction's end.
        let last_captured = txn
            .rows
            .iter()
            .rposition(|r| ctx.encoder.codecs.contains_key(r.table.name));
        let Some(last_captured) = last_captured else {
            return self.marker(end).await;
        };
        for (i, r) in txn.rows.iter().enumerate() {
            let Some(codec) = ctx.encoder.codecs.get(r.table.name) else {
                continue;
            };
            let value = ctx
                .encoder
                .streamed_value(codec, txn, i, ctx.clock.now_ms());
            let change = ChangeId {
                txn: txn.txn,
                index: i as u32,
            };
            let key = codec.key(r.key);
            let is_last = i == last_captured;
            let delete = r.op == ChangeOp::Delete;
            self.send(
                &codec.topic,
                Some(key.clone()),
                Some(value),
                true,
                Some(change),
                (is_last && !delete).then_some(end),
            )
            .await?;
            if delete {
                self.send(
                    &codec.topic,
                    Some(key),
                    None,
                    true,
                    Some(change),
                    is_last.then_some(end),
                )
                .await?;
            }
        }
        Ok(())
    }
}
