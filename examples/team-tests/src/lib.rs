//! The team's own code under test: a reader of one Debezium change topic (OpenMRS `obs`, say) that counts the
//! changes it sees by Debezium operation (`c` create, `u` update, `d` delete, `r` snapshot read). It stands for
//! whatever consumer a team runs in production; `tests/` put it under the harness.

use std::collections::BTreeMap;
use std::time::Duration;

use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::ClientBuilder;
use rskafka::BackoffConfig;

/// Why the reader could not connect.
pub type Error = rskafka::client::error::Error;

/// A change topic read from its start, partition by partition.
pub struct ChangeReader {
    partitions: Vec<Partition>,
    counts: BTreeMap<String, u64>,
    tombstones: u64,
    failed_fetches: u64,
}

struct Partition {
    client: PartitionClient,
    next: i64,
}

impl ChangeReader {
    /// Connects to `bootstrap` and opens `partitions` partitions of `topic` (each read from offset 0).
    pub async fn connect(
        bootstrap: &str,
        topic: &str,
        partitions: i32,
    ) -> Result<ChangeReader, Error> {
        // Give up on a request after a few seconds rather than retrying forever: a poll then reports the
        // failure and the next poll tries again (a leader that just died has a successor by then).
        let backoff = BackoffConfig {
            init_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(500),
            base: 2.0,
            deadline: Some(Duration::from_secs(5)),
        };
        let client = ClientBuilder::new(bootstrap.split(',').map(str::to_owned).collect())
            .backoff_config(backoff)
            .build()
            .await?;
        let mut opened = Vec::new();
        for p in 0..partitions {
            let client = client
                .partition_client(topic, p, UnknownTopicHandling::Retry)
                .await?;
            opened.push(Partition { client, next: 0 });
        }
        Ok(ChangeReader {
            partitions: opened,
            counts: BTreeMap::new(),
            tombstones: 0,
            failed_fetches: 0,
        })
    }

    /// One fetch from every partition; returns how many records it read. A fetch that fails (its leader just
    /// died, say) is counted and tried again at the next poll.
    pub async fn poll(&mut self) -> usize {
        let mut read = 0;
        for p in &mut self.partitions {
            match p.client.fetch_records(p.next, 1..1_000_000, 100).await {
                Ok((records, _high_watermark)) => {
                    for r in records {
                        p.next = r.offset + 1;
                        read += 1;
                        match r.record.value.as_deref().map(operation) {
                            Some(Some(op)) => *self.counts.entry(op).or_default() += 1,
                            Some(None) => {
                                panic!("offset {}: not a Debezium change event", r.offset)
                            }
                            None => self.tombstones += 1,
                        }
                    }
                }
                Err(_) => self.failed_fetches += 1,
            }
        }
        read
    }

    /// Reads until every partition is read up to its end offset as the cluster gives it now.
    pub async fn read_to_end(&mut self) {
        loop {
            let mut ends = Vec::new();
            for p in &self.partitions {
                match p.client.get_offset(OffsetAt::Latest).await {
                    Ok(end) => ends.push(end),
                    Err(_) => {
                        self.failed_fetches += 1;
                        break;
                    }
                }
            }
            if ends.len() == self.partitions.len()
                && self
                    .partitions
                    .iter()
                    .zip(&ends)
                    .all(|(p, end)| p.next >= *end)
            {
                return;
            }
            self.poll().await;
        }
    }

    /// Change events read, by Debezium operation letter.
    pub fn counts(&self) -> &BTreeMap<String, u64> {
        &self.counts
    }

    /// Tombstones read (the null value Debezium sends after a delete, for compaction).
    pub fn tombstones(&self) -> u64 {
        self.tombstones
    }

    /// Fetches that failed and were tried again.
    pub fn failed_fetches(&self) -> u64 {
        self.failed_fetches
    }
}

/// The `payload.op` of a Debezium JSON change event (with or without the schema envelope).
fn operation(value: &[u8]) -> Option<String> {
    let event: serde_json::Value = serde_json::from_slice(value).ok()?;
    let payload = event.get("payload").unwrap_or(&event);
    payload.get("op")?.as_str().map(str::to_owned)
}
