//! Test fixtures of the watch: broker log lines as Kafka writes them, and Metadata views.

use super::super::admin::{ClusterMetadata, PartitionMetadata};

// Lines written by Kafka 3.9.1 brokers of this harness's local topology (run logs under
// /tmp/openmrs-etl-harness/runs), verbatim.
pub(super) const TRUNCATED: &str = "[2026-12-03 12:11:39,214] INFO [UnifiedLog partition=dbserver1.openmrs.obs-1, dir=/tmp/openmrs-etl-harness/runs/run-1796299861-3697-0/data/kafka-1] Truncating to offset 1 (kafka.log.UnifiedLog)";
pub(super) const FETCHER_TRUNCATION: &str = "[2026-12-03 12:11:39,213] INFO [ReplicaFetcher replicaId=1, leaderId=2, fetcherId=0] Truncating partition dbserver1.openmrs.obs-1 with TruncationState(offset=1, completed=true) due to leader epoch and offset EpochEndOffset(errorCode=0, partition=1, leaderEpoch=2, endOffset=1) (kafka.server.ReplicaFetcherThread)";
pub(super) const NO_EFFECT: &str = "[2026-12-03 12:16:26,521] INFO [UnifiedLog partition=connect-offsets-0, dir=/tmp/openmrs-etl-harness/runs/run-1796300136-4085-3/data/kafka-2] Truncating to 0 has no effect as the largest offset in the log is -1 (kafka.log.UnifiedLog)";
pub(super) const LOADED: &str = "[2026-12-03 12:12:48,576] INFO Completed load of Log(dir=/tmp/openmrs-etl-harness/runs/run-1796299908-4085-0/data/kafka-1/dbserver1.openmrs.patient_identifier-1, topicId=LdBX3tZ5Tnilh5yCU4xvZw, topic=dbserver1.openmrs.patient_identifier, partition=1, highWatermark=0, lastStableOffset=0, logStartOffset=0, logEndOffset=21) with 1 segments, local-log-start-offset 0 and log-end-offset 21 in 104ms (2/49 completed in /tmp/openmrs-etl-harness/runs/run-1796299908-4085-0/data/kafka-1) (kafka.log.LogManager)";
pub(super) const CONTROLLED: &str = "[2026-12-03 12:16:01,002] INFO [KafkaServer id=3] Starting controlled shutdown (kafka.server.KafkaServer)";
// A KRaft broker's (a Kafka 3.9.1 broker started by hand with this harness's KRaft settings).
pub(super) const CONTROLLED_KRAFT: &str = "[2026-12-03 15:35:06,141] INFO [BrokerLifecycleManager id=2] Beginning controlled shutdown. (kafka.server.BrokerLifecycleManager)";
pub(super) const RETENTION_TIME: &str = "[2026-12-03 13:12:46,373] INFO [UnifiedLog partition=dbserver1.openmrs.encounter-0, dir=/tmp/openmrs-etl-harness/runs/run-1796303520-2333-0/data/kafka-1] Deleting segment LogSegment(baseOffset=0, size=88, lastModifiedTime=1796303557306, largestRecordTimestamp=1000) due to log retention time 1000ms breach based on the largest record timestamp in the segment (kafka.log.UnifiedLog)";
pub(super) const SEGMENT_DELETION_START: &str = "[2026-12-03 13:12:46,371] INFO [UnifiedLog partition=dbserver1.openmrs.encounter-0, dir=/tmp/openmrs-etl-harness/runs/run-1796303520-2333-0/data/kafka-1] Incremented log start offset to 3 due to segment deletion (kafka.log.UnifiedLog)";
// Built from the messages of Kafka 3.9's UnifiedLog and AbstractFetcherThread (size retention, DeleteRecords,
// an out-of-range follower); no harness run wrote them yet.
pub(super) const RETENTION_SIZE: &str = "[2026-12-03 12:30:00,100] INFO [UnifiedLog partition=watch-retention-0, dir=/tmp/runs/run-1/data/kafka-2] Deleting segment LogSegment(baseOffset=0, size=213, lastModifiedTime=1796300000000, largestRecordTimestamp=1000) due to log retention size 100 breach. Log size after deletion will be 0. (kafka.log.UnifiedLog)";
pub(super) const DELETE_RECORDS: &str = "[2026-12-03 12:30:00,100] INFO [UnifiedLog partition=watch-retention-0, dir=/tmp/runs/run-1/data/kafka-2] Incremented log start offset to 3 due to client delete records request (kafka.log.UnifiedLog)";
pub(super) const RESET_FETCH: &str = "[2026-12-03 12:30:00,100] WARN [ReplicaFetcher replicaId=1, leaderId=2, fetcherId=0] Reset fetch offset for partition dbserver1.openmrs.obs-0 from 12 to current leader's latest offset 9 (kafka.server.ReplicaFetcherThread)";

pub(super) fn partition(
    index: i32,
    leader: Option<i32>,
    epoch: i32,
    isr: &[i32],
) -> PartitionMetadata {
    PartitionMetadata {
        partition: index,
        leader,
        leader_epoch: epoch,
        replicas: vec![1, 2, 3],
        isr: isr.to_vec(),
    }
}

pub(super) fn view(
    brokers: &[i32],
    controller: i32,
    partitions: Vec<PartitionMetadata>,
) -> ClusterMetadata {
    ClusterMetadata {
        brokers: brokers.iter().map(|b| (*b, 9000 + *b as u16)).collect(),
        controller: Some(controller),
        topics: [("t".to_string(), partitions)].into_iter().collect(),
    }
}
