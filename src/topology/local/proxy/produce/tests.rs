//! The tap against frames built with kafka-protocol's encoders: Produce versions old and flexible, compressed
//! batches, answers split across reads, pipelined requests, errors, acks=0, other clients, and garbage; then the
//! tap in a real proxy in front of a fake broker.

use super::*;

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, MetadataRequest, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

const DEBEZIUM: &str = "connector-producer-openmrs-connector-0";
const TOPIC: &str = "dbserver1.openmrs.obs";

/// A record batch of `values` (keys `k0`, `k1`, …) from producer 7, epoch 2, base sequence 40.
fn batch(values: &[Option<&str>], compression: Compression) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, value)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: 7,
            producer_epoch: 2,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: 40 + i as i32,
            timestamp: 1_700_000_000_000,
            key: Some(Bytes::from(format!("k{i}"))),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encode a batch");
    buf.freeze()
}

fn frame(head: impl FnOnce(&mut BytesMut), body: impl FnOnce(&mut BytesMut)) -> Bytes {
    let mut inner = BytesMut::new();
    head(&mut inner);
    body(&mut inner);
    let mut out = BytesMut::new();
    out.put_i32(inner.len() as i32);
    out.extend_from_slice(&inner);
    out.freeze()
}

fn request_header(api: ApiKey, version: i16, correlation_id: i32, client: &str) -> RequestHeader {
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_string(client.to_string())))
}

/// A Produce request frame: `partitions` of [`TOPIC`] as (partition, batch).
fn produce_request(
    version: i16,
    correlation_id: i32,
    client: &str,
    acks: i16,
    partitions: &[(i32, Bytes)],
) -> Bytes {
    let request = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partition_data(
                partitions
                    .iter()
                    .map(|(p, records)| {
                        PartitionProduceData::default()
                            .with_index(*p)
                            .with_records(Some(records.clone()))
                    })
                    .collect(),
            )]);
    let header = request_header(ApiKey::Produce, version, correlation_id, client);
    frame(
        |b| {
            header
                .encode(b, ProduceRequest::header_version(version))
                .expect("header")
        },
        |b| request.encode(b, version).expect("request"),
    )
}

/// A Produce answer frame: `partitions` of [`TOPIC`] as (partition, error code, base offset).
fn produce_response(version: i16, correlation_id: i32, partitions: &[(i32, i16, i64)]) -> Bytes {
    let response = ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
        .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
        .with_partition_responses(
            partitions
                .iter()
                .map(|(p, error, base)| {
                    PartitionProduceResponse::default()
                        .with_index(*p)
                        .with_error_code(*error)
                        .with_base_offset(*base)
                })
                .collect(),
        )]);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    frame(
        |b| {
            header
                .encode(b, ProduceResponse::header_version(version))
                .expect("header")
        },
        |b| response.encode(b, version).expect("response"),
    )
}

/// A Metadata request frame (v12, flexible) and an answer-shaped frame for it (never decoded: only its
/// correlation id is read).
fn metadata_exchange(correlation_id: i32, client: &str) -> (Bytes, Bytes) {
    let header = request_header(ApiKey::Metadata, 12, correlation_id, client);
    let request = frame(
        |b| header.encode(b, 2).expect("header"),
        |b| MetadataRequest::default().encode(b, 12).expect("request"),
    );
    let answer = frame(
        |b| b.put_i32(correlation_id),
        |b| b.extend_from_slice(&[0u8; 37]),
    );
    (request, answer)
}

fn acked(records: &[ProducedRecord]) -> Vec<(i32, i64, Option<&str>)> {
    records
        .iter()
        .map(|r| match &r.outcome {
            ProduceOutcome::Acked { partition, offset } => (
                *partition,
                *offset,
                r.value
                    .as_deref()
                    .map(|v| std::str::from_utf8(v).expect("utf-8")),
            ),
            ProduceOutcome::Failed { error } => panic!("failed: {error}"),
        })
        .collect()
}

#[test]
fn every_produce_version_from_3_to_12_is_matched_to_its_answer() {
    for version in 3..=12 {
        let mut tap = ConnectionTap::new(2);
        let request = produce_request(
            version,
            5,
            DEBEZIUM,
            1,
            &[(0, batch(&[Some("a"), None, Some("c")], Compression::None))],
        );
        assert_eq!(tap.requests(&request, 1_000), Ok(Vec::new()), "v{version}");
        let settled = tap
            .answers(&produce_response(version, 5, &[(0, 0, 120)]))
            .expect("answer");
        assert_eq!(
            acked(&settled),
            [(0, 120, Some("a")), (0, 121, None), (0, 122, Some("c"))],
            "v{version}"
        );
        let first = &settled[0];
        assert_eq!(
            (
                first.broker,
                first.topic.as_str(),
                first.key.as_deref(),
                first.producer_id,
                first.producer_epoch,
                first.sent_at_ms
            ),
            (2, TOPIC, Some(&b"k0"[..]), 7, 2, 1_000)
        );
        assert_eq!(
            settled.iter().map(|r| r.sequence).collect::<Vec<_>>(),
            [40, 41, 42]
        );
        assert!(tap.closed().is_empty());
    }
}

#[test]
fn compressed_batches_decode() {
    for compression in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let mut tap = ConnectionTap::new(1);
        let values: Vec<String> = (0..50)
            .map(|i| format!("{{\"op\":\"c\",\"n\":{i}}}"))
            .collect();
        let values: Vec<Option<&str>> = values.iter().map(|v| Some(v.as_str())).collect();
        let request = produce_request(11, 9, DEBEZIUM, -1, &[(2, batch(&values, compression))]);
        tap.requests(&request, 0).expect("request");
        let settled = tap
            .answers(&produce_response(11, 9, &[(2, 0, 1_000)]))
            .expect("answer");
        let got = acked(&settled);
        assert_eq!(got.len(), 50, "{compression:?}");
        assert_eq!(
            got[49],
            (2, 1_049, Some("{\"op\":\"c\",\"n\":49}")),
            "{compression:?}"
        );
    }
}

#[test]
fn frames_split_anywhere_decode_the_same() {
    let request = produce_request(
        10,
        3,
        DEBEZIUM,
        1,
        &[(1, batch(&[Some("x"), Some("y")], Compression::Lz4))],
    );
    let answer = produce_response(10, 3, &[(1, 0, 7)]);
    let mut tap = ConnectionTap::new(1);
    for byte in request.chunks(1) {
        assert_eq!(tap.requests(byte, 0), Ok(Vec::new()));
    }
    let (head, tail) = answer.split_at(answer.len() - 1);
    let mut settled = Vec::new();
    for chunk in head.chunks(3) {
        settled.extend(tap.answers(chunk).expect("part of an answer"));
    }
    assert!(settled.is_empty(), "nothing before the answer is whole");
    settled.extend(tap.answers(tail).expect("the answer's last byte"));
    assert_eq!(acked(&settled), [(1, 7, Some("x")), (1, 8, Some("y"))]);
}

#[test]
fn pipelined_requests_in_one_chunk_are_matched_by_correlation_id() {
    let (metadata, metadata_answer) = metadata_exchange(1, DEBEZIUM);
    let mut requests = BytesMut::new();
    requests.extend_from_slice(&metadata);
    for id in 2..=4 {
        requests.extend_from_slice(&produce_request(
            11,
            id,
            DEBEZIUM,
            1,
            &[(0, batch(&[Some(&format!("r{id}"))], Compression::None))],
        ));
    }
    let mut tap = ConnectionTap::new(3);
    tap.requests(&requests, 0).expect("requests");
    // Kafka answers in order; the tap matches by correlation id whatever the order.
    let mut answers = BytesMut::new();
    answers.extend_from_slice(&metadata_answer);
    answers.extend_from_slice(&produce_response(11, 4, &[(0, 0, 40)]));
    answers.extend_from_slice(&produce_response(11, 2, &[(0, 0, 20)]));
    let settled = tap.answers(&answers).expect("answers");
    assert_eq!(acked(&settled), [(0, 40, Some("r4")), (0, 20, Some("r2"))]);
    let settled = tap
        .answers(&produce_response(11, 3, &[(0, 0, 30)]))
        .expect("answer");
    assert_eq!(acked(&settled), [(0, 30, Some("r3"))]);
}

#[test]
fn an_error_fails_its_partitions_records_and_a_closed_connection_fails_what_waits() {
    let mut tap = ConnectionTap::new(2);
    let request = produce_request(
        11,
        8,
        DEBEZIUM,
        1,
        &[
            (0, batch(&[Some("ok")], Compression::None)),
            (1, batch(&[Some("refused")], Compression::None)),
        ],
    );
    tap.requests(&request, 0).expect("request");
    let settled = tap
        .answers(&produce_response(11, 8, &[(0, 0, 5), (1, 6, -1)]))
        .expect("answer");
    assert_eq!(
        settled
            .iter()
            .map(|r| r.outcome.clone())
            .collect::<Vec<_>>(),
        [
            ProduceOutcome::Acked {
                partition: 0,
                offset: 5
            },
            ProduceOutcome::Failed {
                error: "NotLeaderOrFollower (error code 6) from broker 2".into()
            }
        ]
    );
    let request = produce_request(
        11,
        9,
        DEBEZIUM,
        1,
        &[(0, batch(&[Some("lost")], Compression::None))],
    );
    tap.requests(&request, 0).expect("request");
    let failed = tap.closed();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        failed[0].outcome,
        ProduceOutcome::Failed {
            error: "no answer: the connection to broker 2 closed".into()
        }
    );
}

#[test]
fn acks_0_records_are_acknowledged_at_offset_minus_1_when_sent() {
    let mut tap = ConnectionTap::new(1);
    let request = produce_request(
        9,
        4,
        DEBEZIUM,
        0,
        &[(2, batch(&[Some("v")], Compression::Gzip))],
    );
    let settled = tap.requests(&request, 55).expect("request");
    assert_eq!(acked(&settled), [(2, -1, Some("v"))]);
    assert_eq!(settled[0].sent_at_ms, 55);
    assert!(tap.closed().is_empty(), "nothing waits for an answer");
}

#[test]
fn a_replicas_acknowledged_end_is_taken_once_per_truncation() {
    let record = |broker: i32, partition: i32, outcome: ProduceOutcome| ProducedRecord {
        broker,
        topic: TOPIC.into(),
        partition,
        key: None,
        value: None,
        producer_id: -1,
        producer_epoch: -1,
        sequence: -1,
        outcome,
        sent_at_ms: 0,
    };
    let at = |offset: i64| ProduceOutcome::Acked {
        partition: 1,
        offset,
    };
    let log = ProduceLog::default();
    log.extend(vec![
        record(2, 1, at(98)),
        record(2, 1, at(102)),
        record(2, 1, at(100)),
        record(3, 1, at(120)),
        record(2, 1, at(-1)),
        record(
            2,
            1,
            ProduceOutcome::Failed {
                error: "NOT_LEADER_OR_FOLLOWER".into(),
            },
        ),
    ]);
    // Broker 2's log reached 103 (its highest acknowledged offset, 102, plus one); broker 3's is its own.
    assert_eq!(log.take_acked_end(2, TOPIC, 1), Some(103));
    assert_eq!(
        log.take_acked_end(2, TOPIC, 1),
        None,
        "taken by the truncation"
    );
    assert_eq!(log.take_acked_end(2, TOPIC, 0), None);
    log.extend(vec![record(2, 1, at(99))]);
    assert_eq!(
        log.take_acked_end(2, TOPIC, 1),
        Some(100),
        "acknowledged after it"
    );
    // A new run's subscription starts afresh.
    let _reports = log.subscribe();
    assert_eq!(log.take_acked_end(3, TOPIC, 1), None);
}

#[test]
fn other_clients_and_garbage_stop_the_tap() {
    let mut tap = ConnectionTap::new(1);
    let request = produce_request(
        11,
        1,
        "producer-1",
        1,
        &[(0, batch(&[Some("v")], Compression::None))],
    );
    assert_eq!(
        tap.requests(&request, 0),
        Err(TapStop::OtherClient(Some("producer-1".into())))
    );

    let mut tap = ConnectionTap::new(1);
    assert!(matches!(
        tap.requests(&[0xff, 0xff, 0xff, 0xff, 1], 0),
        Err(TapStop::Undecodable(_))
    ));

    // A Produce request whose records are not a record batch.
    let mut tap = ConnectionTap::new(1);
    let request = produce_request(11, 1, DEBEZIUM, 1, &[(0, Bytes::from_static(&[0u8; 70]))]);
    assert!(matches!(
        tap.requests(&request, 0),
        Err(TapStop::Undecodable(why)) if why.contains("record batches of dbserver1.openmrs.obs-0")
    ));

    // An answer that is not a Produce answer of that version.
    let mut tap = ConnectionTap::new(1);
    let request = produce_request(
        11,
        1,
        DEBEZIUM,
        1,
        &[(0, batch(&[Some("v")], Compression::None))],
    );
    tap.requests(&request, 0).expect("request");
    let bad = frame(|b| b.put_i32(1), |b| b.put_u8(0xff));
    assert!(matches!(tap.answers(&bad), Err(TapStop::Undecodable(_))));
}

mod through_a_proxy {
    use super::*;
    use crate::topology::local::proxy::{Link, NetworkFaults, Proxy};
    use std::net::Ipv4Addr;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    const PATIENCE: Duration = Duration::from_secs(10);

    async fn read_frame(stream: &mut TcpStream) -> Option<Bytes> {
        let mut size = [0u8; 4];
        stream.read_exact(&mut size).await.ok()?;
        let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
        stream.read_exact(&mut body).await.ok()?;
        let mut frame = BytesMut::new();
        frame.extend_from_slice(&size);
        frame.extend_from_slice(&body);
        Some(frame.freeze())
    }

    /// A broker that answers every Produce v11 request with base offset 100 × its correlation id.
    async fn fake_broker() -> u16 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    while let Some(request) = read_frame(&mut stream).await {
                        let id =
                            i32::from_be_bytes([request[8], request[9], request[10], request[11]]);
                        let answer = produce_response(11, id, &[(0, 0, 100 * i64::from(id))]);
                        if stream.write_all(&answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        port
    }

    /// Sends a Produce request of two records as `client` through `proxy`; returns the answer's bytes.
    async fn exchange(proxy: &Proxy, client: &str, id: i32) -> (Bytes, Bytes) {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, proxy.port()))
            .await
            .expect("connect");
        let request = produce_request(
            11,
            id,
            client,
            1,
            &[(0, batch(&[Some("one"), Some("two")], Compression::Snappy))],
        );
        stream.write_all(&request).await.expect("write");
        let answer = tokio::time::timeout(PATIENCE, read_frame(&mut stream))
            .await
            .expect("answered in time")
            .expect("an answer");
        (
            answer,
            produce_response(11, id, &[(0, 0, 100 * i64::from(id))]),
        )
    }

    /// The next record reported; `None` at the end of the subscription.
    async fn next(reports: &mut mpsc::UnboundedReceiver<TapReport>) -> Option<ProducedRecord> {
        match tokio::time::timeout(PATIENCE, reports.recv()).await {
            Ok(Some(TapReport::Record(record))) => Some(record),
            Ok(Some(TapReport::Undecodable(why))) => panic!("undecodable: {why}"),
            Ok(None) => None,
            Err(_) => panic!("not reported within {PATIENCE:?}"),
        }
    }

    #[tokio::test]
    async fn debeziums_acknowledgements_are_logged_and_bytes_pass_unchanged() {
        let port = fake_broker().await;
        let faults = NetworkFaults::new();
        let proxy = Proxy::start(port, Link::Broker(3), &faults).expect("proxy");
        // Nobody subscribes yet: what is decoded now is dropped.
        exchange(&proxy, DEBEZIUM, 1).await;
        let mut reports = faults.produced().subscribe();

        let (got, sent) = exchange(&proxy, "producer-7", 2).await;
        assert_eq!(got, sent, "the answer passes unchanged");
        let (got, sent) = exchange(&proxy, DEBEZIUM, 3).await;
        assert_eq!(got, sent, "the answer passes unchanged");
        let mut records = Vec::new();
        while records.len() < 2 {
            records.push(next(&mut reports).await.expect("a record"));
        }
        // The end of the subscription comes after whatever was still reported.
        faults.produced().unsubscribe();
        while let Some(record) = next(&mut reports).await {
            records.push(record);
        }
        assert_eq!(
            acked(&records),
            [(0, 300, Some("one")), (0, 301, Some("two"))],
            "only Debezium's producer, only while subscribed"
        );
        assert!(records.iter().all(|r| r.broker == 3));
    }
}
