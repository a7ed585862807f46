//! The end offsets the driver waits for: a ListOffsets per partition of every change topic through rskafka,
//! with the partition clients kept between calls and the client's metadata read afresh after a failure.

use std::sync::Arc;

use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};

use super::{Pipeline, PipelineError, REQUEST_DEADLINE};

impl Pipeline {
    /// The high watermark of every partition of every change topic: `(topic, partition, end)`.
    pub async fn end_offsets(&self) -> Result<Vec<(String, i32, i64)>, PipelineError> {
        let mut out = Vec::new();
        let mut clients = self.offset_clients.lock().await;
        for (topic, count) in &self.topics {
            for partition in 0..*count {
                let key = (topic.clone(), partition);
                let error = |source| PipelineError::ListOffsets {
                    topic: topic.clone(),
                    partition,
                    source,
                };
                let pc = match clients.get(&key) {
                    Some(pc) => pc.clone(),
                    None => {
                        let made = self
                            .shared
                            .client
                            .partition_client(topic, partition, UnknownTopicHandling::Error)
                            .await;
                        let pc = match made {
                            Ok(pc) => Arc::new(pc),
                            Err(e) => {
                                self.refresh_metadata().await;
                                return Err(error(e));
                            }
                        };
                        clients.insert(key, pc.clone());
                        pc
                    }
                };
                // rskafka has no request timeout: a broker that never answers would hold this call forever.
                let listed =
                    tokio::time::timeout(REQUEST_DEADLINE, pc.get_offset(OffsetAt::Latest))
                        .await
                        .map_err(|_| PipelineError::ListOffsetsTimeout {
                            topic: topic.clone(),
                            partition,
                            waited: REQUEST_DEADLINE,
                        })
                        .and_then(|r| r.map_err(error));
                // A partition client that failed (made or used) is made anew next time, after the client's
                // metadata is read afresh: rskafka 0.6 makes partition clients from a cached Metadata answer and, when the broker it
                // names says another leads, drops a cache generation its own check never has — so a leader that
                // moved while nothing of this client failed (a broker killed and restarted as a follower, seen with
                // the group coordinator's broker) is asked forever. An unfiltered Metadata request (list_topics)
                // replaces the cached answer.
                if listed.is_err() {
                    clients.remove(&(topic.clone(), partition));
                    self.refresh_metadata().await;
                }
                let end = listed?;
                out.push((topic.clone(), partition, end));
            }
        }
        Ok(out)
    }

    /// Replaces the client's cached Metadata answer (an unfiltered request does), see [`Pipeline::end_offsets`].
    async fn refresh_metadata(&self) {
        match tokio::time::timeout(REQUEST_DEADLINE, self.shared.client.list_topics()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "refreshing the pipeline client's metadata"),
            Err(_) => tracing::debug!("refreshing the pipeline client's metadata timed out"),
        }
    }
}
