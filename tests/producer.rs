//! The harness producer against the embedded cluster: acks 0/1/all, keyed (murmur2, as Java) and null-keyed,
//! compressed, linger batching seen in the stored batches, errors that surface as the send's error, and a retry
//! after a dropped response that duplicates the record without idempotence and does not with it. Read back with
//! rskafka at explicit offsets.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, MetadataResponse, ResponseHeader, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::RecordBatchDecoder;
use openmrs_etl_harness::broker::{Cluster, NewTopic};
use openmrs_etl_harness::client::{
    partition_for_key, Ack, Acks, Compression, ProduceError, Producer, ProducerConfig, Record,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use common::{bounded, call, client, partition, read_all};

fn config(acks: Acks) -> ProducerConfig {
    ProducerConfig {
        acks,
        idempotence: false,
        delivery_timeout: Duration::from_secs(15),
        request_timeout: Duration::from_secs(5),
        max_block: Duration::from_secs(5),
        retry_backoff: Duration::from_millis(20),
        ..ProducerConfig::default()
    }
}

async fn cluster(topic: &str, partitions: i32) -> Cluster {
    common::init_tracing();
    let cluster = Cluster::builder()
        .brokers(1)
        .start()
        .await
        .expect("cluster");
    cluster
        .create_topic(NewTopic::new(topic, partitions))
        .expect("topic");
    cluster
}

/// Every (offset, key, value) of every partition, from offset 0.
async fn read_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
) -> Vec<Vec<(i64, String, Option<String>)>> {
    let client = client(bootstrap).await;
    let mut out = Vec::new();
    for p in 0..partitions {
        out.push(read_all(&partition(&client, topic, p).await, 0).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_0_1_all_keyed_and_null_keyed_records_land_in_order() {
    let topic = "acks";
    let cluster = cluster(topic, 6).await;
    let bootstrap = cluster.bootstrap_servers();
    let mut sent_per_partition: HashMap<i32, Vec<String>> = HashMap::new();
    for acks in [Acks::None, Acks::Leader, Acks::All] {
        let producer = bounded("connect", Producer::connect(&bootstrap, config(acks)))
            .await
            .expect("producer connects");
        let mut deliveries = Vec::new();
        for i in 0..60 {
            let value = format!("{acks:?}-{i}");
            let record = if i % 2 == 0 {
                Record::new(topic, value.clone()).key(format!("patient-{i}"))
            } else {
                Record::new(topic, value.clone())
            };
            deliveries.push((value, i, producer.send(record).await));
        }
        for (value, i, delivery) in deliveries {
            let ack: Ack = bounded("ack", delivery).await.expect("acknowledged");
            if i % 2 == 0 {
                assert_eq!(
                    ack.partition,
                    partition_for_key(format!("patient-{i}").as_bytes(), 6)
                );
            }
            if acks == Acks::None {
                assert_eq!(ack.offset, -1, "acks=0 has no offset, as in Java");
            } else {
                assert!(ack.offset >= 0);
            }
            sent_per_partition
                .entry(ack.partition)
                .or_default()
                .push(value);
        }
        bounded("close", producer.close()).await;
    }
    let stored = read_topic(&bootstrap, topic, 6).await;
    for (p, records) in stored.iter().enumerate() {
        let values: Vec<String> = records.iter().filter_map(|r| r.2.clone()).collect();
        let expected = sent_per_partition.remove(&(p as i32)).unwrap_or_default();
        assert_eq!(values, expected, "partition {p}: send order kept");
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.0, i as i64, "offsets are dense from 0");
        }
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_compression_reads_back() {
    let topic = "compressed";
    let cluster = cluster(topic, 2).await;
    let bootstrap = cluster.bootstrap_servers();
    let mut expected = Vec::new();
    for compression in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let producer = bounded(
            "connect",
            Producer::connect(
                &bootstrap,
                ProducerConfig {
                    compression,
                    linger: Duration::from_millis(20),
                    ..config(Acks::All)
                },
            ),
        )
        .await
        .expect("producer connects");
        let mut deliveries = Vec::new();
        for i in 0..20 {
            let value = format!("{compression:?}-{i}-{}", "x".repeat(200));
            expected.push(value.clone());
            deliveries.push(
                producer
                    .send(Record::new(topic, value).key("one-key"))
                    .await,
            );
        }
        for delivery in deliveries {
            bounded("ack", delivery).await.expect("acknowledged");
        }
        bounded("close", producer.close()).await;
    }
    let p = partition_for_key(b"one-key", 2) as usize;
    let stored = read_topic(&bootstrap, topic, 2).await;
    let values: Vec<String> = stored[p].iter().filter_map(|r| r.2.clone()).collect();
    assert_eq!(values, expected);
    cluster.shutdown().await;
}

/// (records per stored batch, compression attribute) of `topic`-`partition`, fetched raw.
async fn stored_batches(cluster: &Cluster, topic: &str, partition: i32) -> Vec<i32> {
    let mut stream = bounded("connect", TcpStream::connect(cluster.broker_addrs()[0]))
        .await
        .unwrap();
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(64 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(0)
                .with_partition_max_bytes(64 << 20)])]);
    let response = call(&mut stream, &request, 11).await;
    let mut records = response.responses[0].partitions[0]
        .records
        .clone()
        .unwrap_or_default();
    RecordBatchDecoder::decode_batch_info(&mut records)
        .expect("valid batches")
        .iter()
        .map(|b| b.record_count)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linger_and_batch_size_shape_the_stored_batches() {
    let topic = "batching";
    let cluster = cluster(topic, 1).await;
    let bootstrap = cluster.bootstrap_servers();
    // A long linger: the sends below all join one batch (a full batch or flush sends it, not the timer).
    let producer = bounded(
        "connect",
        Producer::connect(
            &bootstrap,
            ProducerConfig {
                linger: Duration::from_secs(30),
                batch_size: 1 << 20,
                ..config(Acks::All)
            },
        ),
    )
    .await
    .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..10 {
        deliveries.push(producer.send(Record::new(topic, format!("v{i}"))).await);
    }
    bounded("flush", producer.flush()).await;
    for delivery in deliveries {
        bounded("ack", delivery).await.unwrap();
    }
    bounded("close", producer.close()).await;
    assert_eq!(stored_batches(&cluster, topic, 0).await, vec![10]);

    // batch.size of ~3 records: batches close when full.
    let producer = bounded(
        "connect",
        Producer::connect(
            &bootstrap,
            ProducerConfig {
                linger: Duration::from_secs(30),
                batch_size: 61 + 3 * (21 + 100),
                ..config(Acks::All)
            },
        ),
    )
    .await
    .unwrap();
    let mut deliveries = Vec::new();
    for _ in 0..9 {
        deliveries.push(producer.send(Record::new(topic, "y".repeat(100))).await);
    }
    for delivery in deliveries {
        bounded("ack", delivery).await.unwrap();
    }
    bounded("close", producer.close()).await;
    assert_eq!(
        stored_batches(&cluster, topic, 0).await,
        vec![10, 3, 3, 3],
        "three full batches of three, sent without waiting for linger"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_topic_without_auto_creation_is_the_sends_error() {
    common::init_tracing();
    let cluster = Cluster::builder()
        .brokers(1)
        .auto_create_topics(false)
        .start()
        .await
        .unwrap();
    let producer = bounded(
        "connect",
        Producer::connect(
            &cluster.bootstrap_servers(),
            ProducerConfig {
                max_block: Duration::from_millis(300),
                ..config(Acks::All)
            },
        ),
    )
    .await
    .unwrap();
    let error = bounded("send", async {
        producer.send(Record::new("nowhere", "v")).await.await
    })
    .await
    .expect_err("no such topic");
    assert!(
        matches!(error, ProduceError::TopicNotAvailable { ref topic, .. } if topic == "nowhere"),
        "{error}"
    );
    bounded("close", producer.close()).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_above_max_message_bytes_fails_with_message_too_large() {
    common::init_tracing();
    let cluster = Cluster::builder().brokers(1).start().await.unwrap();
    cluster
        .create_topic(NewTopic::new("small", 1).config("max.message.bytes", "1000"))
        .unwrap();
    let producer = bounded(
        "connect",
        Producer::connect(&cluster.bootstrap_servers(), config(Acks::Leader)),
    )
    .await
    .unwrap();
    let error = bounded("send", async {
        producer
            .send(Record::new("small", "z".repeat(5000)))
            .await
            .await
    })
    .await
    .expect_err("too large");
    assert!(
        matches!(
            error,
            ProduceError::Broker {
                error: ResponseError::MessageTooLarge,
                ..
            }
        ),
        "{error}"
    );
    // The producer stays usable.
    bounded("send", async {
        producer.send(Record::new("small", "fits")).await.await
    })
    .await
    .expect("a small record still goes through");
    bounded("close", producer.close()).await;
    cluster.shutdown().await;
}

/// A TCP proxy in front of one broker that advertises itself in Metadata answers and, once, closes the
/// connection instead of forwarding a Produce answer (the broker has appended the batch: the response is lost).
struct DroppingProxy {
    addr: String,
    dropped: Arc<AtomicBool>,
}

impl DroppingProxy {
    async fn start(broker: std::net::SocketAddr) -> DroppingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let local = listener.local_addr().unwrap();
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&dropped);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let flag = Arc::clone(&flag);
                tokio::spawn(async move {
                    let _ = proxy_connection(client, broker, local.port(), flag).await;
                });
            }
        });
        DroppingProxy {
            addr: local.to_string(),
            dropped,
        }
    }
}

async fn read_frame(stream: &mut (impl AsyncReadExt + Unpin)) -> std::io::Result<Bytes> {
    let size = stream.read_i32().await?;
    let mut body = vec![0; size.max(0) as usize];
    stream.read_exact(&mut body).await?;
    Ok(Bytes::from(body))
}

async fn proxy_connection(
    client: TcpStream,
    broker: std::net::SocketAddr,
    proxy_port: u16,
    dropped: Arc<AtomicBool>,
) -> std::io::Result<()> {
    let server = TcpStream::connect(broker).await?;
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // correlation id → (api key, version, header version) of requests on their way.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(i32, i16, i16)>();
    let upstream = tokio::spawn(async move {
        while let Ok(frame) = read_frame(&mut client_read).await {
            let mut peek = frame.clone();
            let (key, version, correlation) = (peek.get_i16(), peek.get_i16(), peek.get_i32());
            let _ = tx.send((correlation, key, version));
            let mut out = BytesMut::new();
            out.put_i32(frame.len() as i32);
            out.extend_from_slice(&frame);
            if server_write.write_all(&out).await.is_err() {
                break;
            }
        }
    });
    let mut requests: HashMap<i32, (i16, i16)> = HashMap::new();
    while let Ok(mut frame) = read_frame(&mut server_read).await {
        while let Ok((c, k, v)) = rx.try_recv() {
            requests.insert(c, (k, v));
        }
        let correlation = (&frame[..4]).get_i32();
        let (key, version) = requests.remove(&correlation).unwrap_or((-1, 0));
        if key == ApiKey::Produce as i16 && !dropped.swap(true, Ordering::SeqCst) {
            break;
        }
        if key == ApiKey::Metadata as i16 {
            let header_version = if version >= 9 { 1 } else { 0 };
            let header = ResponseHeader::decode(&mut frame, header_version).unwrap();
            let mut metadata = MetadataResponse::decode(&mut frame, version).unwrap();
            for broker in &mut metadata.brokers {
                broker.port = i32::from(proxy_port);
            }
            let mut body = BytesMut::new();
            header.encode(&mut body, header_version).unwrap();
            metadata.encode(&mut body, version).unwrap();
            frame = body.freeze();
        }
        let mut out = BytesMut::new();
        out.put_i32(frame.len() as i32);
        out.extend_from_slice(&frame);
        if client_write.write_all(&out).await.is_err() {
            break;
        }
    }
    upstream.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_produce_response_is_retried_and_duplicates_without_idempotence() {
    let topic = "retried";
    let cluster = cluster(topic, 1).await;
    let proxy = DroppingProxy::start(cluster.broker_addrs()[0]).await;
    let producer = bounded("connect", Producer::connect(&proxy.addr, config(Acks::All)))
        .await
        .unwrap();
    let ack = bounded("send", async {
        producer.send(Record::new(topic, "once")).await.await
    })
    .await
    .expect("acknowledged after a retry");
    assert!(
        proxy.dropped.load(Ordering::SeqCst),
        "the first answer was dropped"
    );
    assert_eq!(
        ack,
        Ack {
            partition: 0,
            offset: 1
        },
        "the retry was appended again"
    );
    bounded("close", producer.close()).await;
    let stored = read_topic(&cluster.bootstrap_servers(), topic, 1).await;
    let values: Vec<_> = stored[0].iter().filter_map(|r| r.2.clone()).collect();
    assert_eq!(values, vec!["once", "once"], "duplicated by the retry");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_produce_response_is_retried_without_a_duplicate_with_idempotence() {
    let topic = "deduplicated";
    let cluster = cluster(topic, 1).await;
    let proxy = DroppingProxy::start(cluster.broker_addrs()[0]).await;
    let producer = bounded(
        "connect",
        Producer::connect(
            &proxy.addr,
            ProducerConfig {
                idempotence: true,
                ..config(Acks::All)
            },
        ),
    )
    .await
    .expect("the embedded cluster serves InitProducerId");
    assert!(producer.producer_identity() == Some((0, 0)));
    let ack = bounded("send", async {
        producer.send(Record::new(topic, "once")).await.await
    })
    .await
    .expect("acknowledged after a retry");
    assert!(
        proxy.dropped.load(Ordering::SeqCst),
        "the first answer was dropped"
    );
    assert_eq!(
        ack,
        Ack {
            partition: 0,
            offset: 0
        },
        "the retry was answered with the original offset"
    );
    let next = bounded("send", async {
        producer.send(Record::new(topic, "next")).await.await
    })
    .await
    .expect("the sequence goes on");
    // Appended after "once", not taken for a duplicate of it (the partition's sequence must not start over
    // when its queue goes idle).
    assert_eq!(
        next,
        Ack {
            partition: 0,
            offset: 1
        }
    );
    bounded("close", producer.close()).await;
    let stored = read_topic(&cluster.bootstrap_servers(), topic, 1).await;
    let values: Vec<_> = stored[0].iter().filter_map(|r| r.2.clone()).collect();
    assert_eq!(values, vec!["once", "next"], "not duplicated by the retry");
    cluster.shutdown().await;
}
