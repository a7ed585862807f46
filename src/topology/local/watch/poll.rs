//! One poll: every broker of the bootstrap order asked at once for Metadata and its replicas' log start and end
//! offsets, then the brokers' new log lines read, and what changed recorded as events.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::super::admin::{self, ClusterMetadata};
use super::broker_log::{parse_line, LogTail};
use super::state::WatchState;
use super::{lock, WatchOptions};
use crate::client::wire::BrokerConnection;
use crate::history::ClusterEvent;

const CLIENT_ID: &str = "etl-harness-watch";

pub(super) struct Poller {
    pub(super) options: WatchOptions,
    /// Address → an open connection, reused across polls; dropped after any failure.
    pub(super) connections: HashMap<String, Arc<BrokerConnection>>,
    pub(super) tails: Vec<LogTail>,
    pub(super) state: WatchState,
    pub(super) events: Arc<Mutex<Vec<ClusterEvent>>>,
}

impl Poller {
    pub(super) async fn poll(&mut self) {
        let order = (self.options.bootstraps)();
        let topics = Arc::new(self.options.topics.clone());
        let timeout = self.options.request_timeout;
        let mut asks = tokio::task::JoinSet::new();
        for (index, addr) in order.into_iter().enumerate() {
            let connection = self.connections.remove(&addr);
            let topics = Arc::clone(&topics);
            asks.spawn(async move {
                let (connection, answer) = tokio::time::timeout(
                    timeout * 4,
                    ask_broker(&addr, connection, &topics, timeout),
                )
                .await
                .unwrap_or((None, None));
                (index, addr, connection, answer)
            });
        }
        let mut answers = Vec::new();
        while let Some(joined) = asks.join_next().await {
            let Ok((index, addr, connection, answer)) = joined else {
                continue;
            };
            if let Some(connection) = connection {
                self.connections.insert(addr, connection);
            }
            if let Some(answer) = answer {
                answers.push((index, answer));
            }
        }
        answers.sort_by_key(|(index, _)| *index);
        let answers: Vec<BrokerAnswer> = answers.into_iter().map(|(_, answer)| answer).collect();
        // Read after the answers: a line written before a change the answers show is in the file by now.
        let mut lines = Vec::new();
        for tail in &mut self.tails {
            for line in tail.read_new_lines() {
                if let Some(parsed) = parse_line(&line) {
                    lines.push((tail.broker, parsed));
                }
            }
        }
        let now_ms = self.options.clock.now_ms();
        let kinds = self.state.observe(&lines, &answers);
        if !kinds.is_empty() {
            lock(&self.events).extend(kinds.into_iter().map(|kind| ClusterEvent {
                at_ms: now_ms,
                kind,
            }));
        }
    }
}

/// What one broker answered in one poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BrokerAnswer {
    /// Its id, found by its address's port among the brokers its Metadata lists; `None` if it does not list
    /// itself (not registered yet).
    pub(super) broker: Option<i32>,
    pub(super) metadata: ClusterMetadata,
    /// (topic, partition) → (log start offset, log end offset) of its own replicas.
    pub(super) offsets: BTreeMap<(String, i32), (i64, i64)>,
}

/// Metadata, then the log start and end offsets of the watched replicas the broker holds. The connection comes
/// back only if every request on it succeeded.
async fn ask_broker(
    addr: &str,
    connection: Option<Arc<BrokerConnection>>,
    topics: &[String],
    timeout: Duration,
) -> (Option<Arc<BrokerConnection>>, Option<BrokerAnswer>) {
    let connection = match connection {
        Some(connection) if !connection.is_closed() => connection,
        _ => match BrokerConnection::connect(addr, CLIENT_ID, timeout).await {
            Ok(connection) => Arc::new(connection),
            Err(_) => return (None, None),
        },
    };
    let Ok(metadata) = admin::metadata_on(&connection, Some(topics), timeout).await else {
        return (None, None);
    };
    let port = addr
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse::<u16>().ok());
    let broker = metadata
        .brokers
        .iter()
        .find(|(_, advertised)| Some(**advertised) == port)
        .map(|(id, _)| *id);
    let mut answer = BrokerAnswer {
        broker,
        metadata,
        offsets: BTreeMap::new(),
    };
    let Some(id) = broker else {
        return (Some(connection), Some(answer));
    };
    let held: Vec<(String, i32)> = answer
        .metadata
        .topics
        .iter()
        .flat_map(|(topic, partitions)| {
            partitions
                .iter()
                .filter(|p| p.replicas.contains(&id))
                .map(|p| (topic.clone(), p.partition))
        })
        .collect();
    if held.is_empty() {
        return (Some(connection), Some(answer));
    }
    let starts =
        admin::replica_offsets(&connection, &held, admin::EARLIEST_TIMESTAMP, timeout).await;
    let ends = admin::replica_offsets(&connection, &held, admin::LATEST_TIMESTAMP, timeout).await;
    match (starts, ends) {
        (Ok(starts), Ok(ends)) => {
            answer.offsets = starts
                .into_iter()
                .filter_map(|(key, start)| {
                    let end = *ends.get(&key)?;
                    Some((key, (start, end)))
                })
                .collect();
            (Some(connection), Some(answer))
        }
        _ => (None, Some(answer)),
    }
}
