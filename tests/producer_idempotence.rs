//! The broker side of idempotence in the embedded cluster (issue 6), with raw requests where the test needs to
//! choose producer ids, epochs and sequences itself, and with the harness producer behind a fault-injecting proxy
//! where the question is what a user sees: InitProducerId, a duplicate answered with its original offset, a
//! sequence gap, an old epoch, deduplication by a new leader after the old one was killed, and reordering with
//! several requests in flight (without idempotence only).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, ProduceRequest, ProduceResponse, ProducerId, ResponseHeader,
    TopicName, TransactionalId,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use openmrs_etl_harness::broker::{BrokerId, Cluster, NewTopic};
use openmrs_etl_harness::client::{Acks, Producer, ProducerConfig, Record as ProducerRecord};
use openmrs_etl_harness::clock::Clock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use common::{bounded, client, init_tracing, partition, raw, read_all};

/// A batch of `values` from producer `id` at `epoch`, sequences from `base_sequence`.
fn batch(id: i64, epoch: i16, base_sequence: i32, values: &[&str]) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: id,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: if id < 0 { -1 } else { base_sequence + i as i32 },
            timestamp: 1_000,
            key: None,
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).expect("encodable batch");
    buf.freeze()
}

/// Produce v9, acks=-1, of one batch to partition 0; (error, base offset).
async fn produce(
    addr: std::net::SocketAddr,
    topic: &str,
    records: Bytes,
) -> (Option<ResponseError>, i64) {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    let response = bounded("produce", raw::call(addr, &request, 9))
        .await
        .expect("an answer");
    let p = &response.responses[0].partition_responses[0];
    (ResponseError::try_from_code(p.error_code), p.base_offset)
}

/// InitProducerId v4 without a transactional id: (error, producer id, epoch).
async fn init_producer_id(
    addr: std::net::SocketAddr,
    transactional_id: Option<&str>,
) -> (Option<ResponseError>, i64, i16) {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(
            transactional_id.map(|t| TransactionalId(StrBytes::from_string(t.to_string()))),
        )
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let response = bounded("init producer id", raw::call(addr, &request, 4))
        .await
        .expect("an answer");
    (
        ResponseError::try_from_code(response.error_code),
        response.producer_id.0,
        response.producer_epoch,
    )
}

async fn values(cluster: &Cluster, topic: &str) -> Vec<String> {
    let client = client(&cluster.bootstrap_servers()).await;
    read_all(&partition(&client, topic, 0).await, 0)
        .await
        .into_iter()
        .filter_map(|r| r.2)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_gaps_and_old_epochs_on_raw_requests() {
    init_tracing();
    let cluster = Cluster::builder()
        .brokers(1)
        .topic(NewTopic::new("idem", 1))
        .start()
        .await
        .unwrap();
    let addr = cluster.broker_addrs()[0];
    let (error, id, epoch) = init_producer_id(addr, None).await;
    assert_eq!((error, epoch), (None, 0));
    let (_, other, _) = init_producer_id(addr, None).await;
    assert_ne!(id, other, "every producer gets its own id");
    let (error, _, _) = init_producer_id(addr, Some("tx")).await;
    assert_eq!(
        error,
        Some(ResponseError::InvalidRequest),
        "no transactions"
    );

    let first = batch(id, 0, 0, &["a", "b", "c"]);
    assert_eq!(produce(addr, "idem", first.clone()).await, (None, 0));
    assert_eq!(
        produce(addr, "idem", batch(id, 0, 3, &["d", "e"])).await,
        (None, 3)
    );
    // Both retried: each answered with its original base offset, nothing appended.
    assert_eq!(produce(addr, "idem", first).await, (None, 0));
    assert_eq!(
        produce(addr, "idem", batch(id, 0, 3, &["d", "e"])).await,
        (None, 3)
    );
    // A gap (5 expected).
    assert_eq!(
        produce(addr, "idem", batch(id, 0, 7, &["x"])).await,
        (Some(ResponseError::OutOfOrderSequenceNumber), -1)
    );
    // A new epoch starts at 0; then the old epoch is refused.
    assert_eq!(
        produce(addr, "idem", batch(id, 1, 4, &["x"])).await,
        (Some(ResponseError::OutOfOrderSequenceNumber), -1)
    );
    assert_eq!(
        produce(addr, "idem", batch(id, 1, 0, &["f"])).await,
        (None, 5)
    );
    assert_eq!(
        produce(addr, "idem", batch(id, 0, 5, &["x"])).await,
        (Some(ResponseError::InvalidProducerEpoch), -1)
    );
    // Another producer, and batches without a producer id, are not affected; the latter are never deduplicated.
    assert_eq!(
        produce(addr, "idem", batch(other, 0, 0, &["g"])).await,
        (None, 6)
    );
    let plain = batch(-1, -1, -1, &["h"]);
    assert_eq!(produce(addr, "idem", plain.clone()).await, (None, 7));
    assert_eq!(produce(addr, "idem", plain).await, (None, 8));
    assert_eq!(
        values(&cluster, "idem").await,
        ["a", "b", "c", "d", "e", "f", "g", "h", "h"]
    );
    cluster.shutdown().await;
}

/// Moves the virtual clock by `total` in half-second steps, letting the brokers' tasks run in between.
async fn advance(cluster: &Cluster, total: Duration) {
    let step = Duration::from_millis(500);
    let mut done = Duration::ZERO;
    while done < total {
        cluster.clock().advance(step).unwrap();
        done += step;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_deduplicates_a_batch_the_killed_leader_appended() {
    init_tracing();
    let cluster = Cluster::builder()
        .brokers(3)
        .clock(Clock::virtual_at(1_700_000_000_000))
        .topic(
            NewTopic::new("moved", 1)
                .replication_factor(3)
                .config("min.insync.replicas", "2"),
        )
        .start()
        .await
        .unwrap();
    let addr = |b: BrokerId| cluster.broker_addrs()[(b.0 - 1) as usize];
    let old_leader = cluster.partition("moved", 0).unwrap().leader.unwrap();
    let (_, id, _) = init_producer_id(addr(old_leader), None).await;
    let first = batch(id, 0, 0, &["a", "b"]);
    assert_eq!(
        produce(addr(old_leader), "moved", first.clone()).await,
        (None, 0)
    );
    assert!(cluster.wait_for_replication(Duration::from_secs(10)).await);

    // The answer never reached the producer: it retries on whoever leads now.
    cluster.kill(old_leader).await.unwrap();
    advance(&cluster, Duration::from_secs(20)).await;
    let view = cluster.partition("moved", 0).unwrap();
    let new_leader = view.leader.expect("a new leader");
    assert_ne!(new_leader, old_leader);
    assert_eq!(produce(addr(new_leader), "moved", first).await, (None, 0));
    assert_eq!(
        produce(addr(new_leader), "moved", batch(id, 0, 3, &["x"])).await,
        (Some(ResponseError::OutOfOrderSequenceNumber), -1),
        "the new leader knows where the sequence stands"
    );
    assert_eq!(
        produce(addr(new_leader), "moved", batch(id, 0, 2, &["c"])).await,
        (None, 2)
    );
    assert_eq!(values(&cluster, "moved").await, ["a", "b", "c"]);
    cluster.shutdown().await;
}

async fn read_frame(stream: &mut (impl AsyncReadExt + Unpin)) -> std::io::Result<Bytes> {
    let size = stream.read_i32().await?;
    let mut body = vec![0; size.max(0) as usize];
    stream.read_exact(&mut body).await?;
    Ok(Bytes::from(body))
}

fn framed(frame: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(4 + frame.len());
    out.put_i32(frame.len() as i32);
    out.extend_from_slice(frame);
    out.freeze()
}

/// A TCP proxy in front of a one-broker cluster whose first Produce request is held back
/// and, once a second Produce request has been answered by the broker (or 500 ms passed without one), answered
/// by the proxy itself with REQUEST_TIMED_OUT for partition 0 of `topic`, never reaching the broker. Metadata
/// answers name the proxy instead of the broker, so every request of the producer goes through it.
struct HoldingProxy {
    addr: String,
    /// Notified when the first Produce request arrived (and is held).
    held: Arc<Notify>,
}

impl HoldingProxy {
    async fn start(broker: std::net::SocketAddr, topic: &'static str) -> HoldingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let local = listener.local_addr().unwrap();
        let held = Arc::new(Notify::new());
        let notify = Arc::clone(&held);
        let hold = Arc::new(AtomicBool::new(true));
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let notify = Arc::clone(&notify);
                let hold = Arc::clone(&hold);
                tokio::spawn(async move {
                    let _ =
                        hold_connection(client, broker, local.port(), topic, hold, notify).await;
                });
            }
        });
        HoldingProxy {
            addr: local.to_string(),
            held,
        }
    }
}

/// The proxy's REQUEST_TIMED_OUT answer to the held request.
fn timed_out(correlation_id: i32, version: i16, topic: &str) -> Bytes {
    let response = ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
        .with_partition_responses(vec![PartitionProduceResponse::default()
            .with_index(0)
            .with_error_code(ResponseError::RequestTimedOut.code())
            .with_base_offset(-1)])]);
    let header_version = if version >= 9 { 1 } else { 0 };
    let mut body = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut body, header_version)
        .unwrap();
    response.encode(&mut body, version).unwrap();
    framed(&body)
}

async fn hold_connection(
    client: TcpStream,
    broker: std::net::SocketAddr,
    proxy_port: u16,
    topic: &'static str,
    hold: Arc<AtomicBool>,
    held: Arc<Notify>,
) -> std::io::Result<()> {
    let server = TcpStream::connect(broker).await?;
    let (mut client_read, client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let client_write = Arc::new(tokio::sync::Mutex::new(client_write));
    // (correlation id, api key, version) of every request passed on; the held one is never passed on.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(i32, i16, i16)>();
    let (held_tx, held_rx) = tokio::sync::oneshot::channel::<(i32, i16)>();
    let second_answered = Arc::new(Notify::new());
    let upstream = tokio::spawn(async move {
        let mut held_tx = Some(held_tx);
        while let Ok(frame) = read_frame(&mut client_read).await {
            let mut peek = frame.clone();
            let (key, version, correlation) = (peek.get_i16(), peek.get_i16(), peek.get_i32());
            if key == ApiKey::Produce as i16 && hold.swap(false, Ordering::SeqCst) {
                if let Some(tx) = held_tx.take() {
                    let _ = tx.send((correlation, version));
                    held.notify_one();
                    continue;
                }
            }
            let _ = tx.send((correlation, key, version));
            if server_write.write_all(&framed(&frame)).await.is_err() {
                break;
            }
        }
    });
    let answer_held = {
        let client_write = Arc::clone(&client_write);
        let second_answered = Arc::clone(&second_answered);
        tokio::spawn(async move {
            let Ok((correlation, version)) = held_rx.await else {
                return;
            };
            let _ =
                tokio::time::timeout(Duration::from_millis(500), second_answered.notified()).await;
            let _ = client_write
                .lock()
                .await
                .write_all(&timed_out(correlation, version, topic))
                .await;
        })
    };
    let mut requests: HashMap<i32, (i16, i16)> = HashMap::new();
    while let Ok(mut frame) = read_frame(&mut server_read).await {
        while let Ok((c, k, v)) = rx.try_recv() {
            requests.insert(c, (k, v));
        }
        let correlation = (&frame[..4]).get_i32();
        let (key, version) = requests.remove(&correlation).unwrap_or((-1, 0));
        if key == ApiKey::Metadata as i16 {
            frame = rewrite_metadata_port(frame, version, proxy_port);
        }
        if client_write
            .lock()
            .await
            .write_all(&framed(&frame))
            .await
            .is_err()
        {
            break;
        }
        if key == ApiKey::Produce as i16 {
            second_answered.notify_one();
        }
    }
    upstream.abort();
    answer_held.abort();
    Ok(())
}

fn rewrite_metadata_port(mut frame: Bytes, version: i16, port: u16) -> Bytes {
    use kafka_protocol::messages::MetadataResponse;
    use kafka_protocol::protocol::Decodable;
    let header_version = if version >= 9 { 1 } else { 0 };
    let header = ResponseHeader::decode(&mut frame, header_version).unwrap();
    let mut metadata = MetadataResponse::decode(&mut frame, version).unwrap();
    for broker in &mut metadata.brokers {
        broker.port = i32::from(port);
    }
    let mut body = BytesMut::new();
    header.encode(&mut body, header_version).unwrap();
    metadata.encode(&mut body, version).unwrap();
    body.freeze()
}

/// Sends "first", waits until the proxy holds its request, sends "second"; returns what the partition holds.
async fn send_two_through_a_failing_first_request(idempotence: bool) -> Vec<String> {
    init_tracing();
    let topic = if idempotence { "ordered" } else { "reordered" };
    let cluster = Cluster::builder()
        .brokers(1)
        .topic(NewTopic::new(topic, 1))
        .start()
        .await
        .unwrap();
    let proxy = HoldingProxy::start(cluster.broker_addrs()[0], topic).await;
    let config = ProducerConfig {
        acks: Acks::All,
        idempotence,
        max_in_flight: 5,
        linger: Duration::ZERO,
        delivery_timeout: Duration::from_secs(15),
        request_timeout: Duration::from_secs(5),
        max_block: Duration::from_secs(5),
        retry_backoff: Duration::from_millis(20),
        ..ProducerConfig::default()
    };
    let producer = bounded("connect", Producer::connect(&proxy.addr, config))
        .await
        .expect("producer connects");
    let first = producer.send(ProducerRecord::new(topic, "first")).await;
    bounded("first request held", proxy.held.notified()).await;
    let second = producer.send(ProducerRecord::new(topic, "second")).await;
    bounded("first acked", first)
        .await
        .expect("first delivered");
    bounded("second acked", second)
        .await
        .expect("second delivered");
    bounded("close", producer.close()).await;
    let stored = values(&cluster, topic).await;
    cluster.shutdown().await;
    stored
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_requests_in_flight_reorder_under_a_fault_without_idempotence_only() {
    assert_eq!(
        send_two_through_a_failing_first_request(false).await,
        ["second", "first"],
        "without idempotence the retried first batch lands after the second"
    );
    assert_eq!(
        send_two_through_a_failing_first_request(true).await,
        ["first", "second"],
        "with idempotence the order of sends is kept"
    );
}
