//! Hostile and wrong requests over raw TCP: garbage, truncated, oversized and lying frames close only their own
//! connection; well-formed but wrong requests get Kafka's error codes; pipelined requests are answered in order.

mod common;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use common::{bounded, call, client, init_tracing, partition, read_frame, record, request_frame};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use openmrs_etl_harness::broker::{Cluster, NewTopic};
use rskafka::client::partition::Compression as RsCompression;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// True when the broker closed the connection (EOF or reset) within the test step.
async fn closed_by_broker(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match bounded("waiting for close", stream.read(&mut buf)).await {
            Ok(0) | Err(_) => return true,
            Ok(_) => continue,
        }
    }
}

fn batch(values: &[&[u8]]) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: 1_000,
            key: Some(Bytes::from_static(b"key")),
            value: Some(Bytes::copy_from_slice(v)),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
    buf.freeze()
}

fn produce(topic: &str, partition: i32, acks: i16, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])])
}

fn produce_error(response: &ProduceResponse) -> i16 {
    response.responses[0].partition_responses[0].error_code
}

#[tokio::test]
async fn bad_frames_close_only_their_connection_and_the_broker_keeps_serving() {
    init_tracing();
    let cluster = Cluster::builder()
        .brokers(1)
        .max_request_bytes(1 << 20)
        .topic(NewTopic::new("safe", 1))
        .start()
        .await
        .unwrap();
    let addr = cluster.broker_addrs()[0];
    let connect = || async { bounded("connect", TcpStream::connect(addr)).await.unwrap() };

    // A client that is half-way through a frame stays connected while the others misbehave.
    let mut patient = connect().await;
    patient.write_all(&100i32.to_be_bytes()).await.unwrap();
    patient.write_all(&[0u8; 10]).await.unwrap();

    let lying_metadata = {
        // Metadata v1 whose topic array claims i32::MAX entries.
        let mut f = BytesMut::new();
        let mut body = BytesMut::new();
        body.put_i16(3);
        body.put_i16(1);
        body.put_i32(1);
        body.put_i16(-1);
        body.put_i32(i32::MAX);
        f.put_i32(body.len() as i32);
        f.extend_from_slice(&body);
        f.freeze()
    };
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        (
            "garbage",
            b"\x00\x00\x00\x10GET / HTTP/1.1\r\n\r\n".to_vec(),
        ),
        (
            "unknown api key",
            [&[0, 0, 0, 8][..], &[0x7f, 0x7f, 0, 0, 0, 0, 0, 1]].concat(),
        ),
        ("oversized", i32::MAX.to_be_bytes().to_vec()),
        ("negative size", (-5i32).to_be_bytes().to_vec()),
        ("lying array length", lying_metadata.to_vec()),
        (
            "unsupported version",
            request_frame(&MetadataRequest::default(), 13, 1).to_vec(),
        ),
    ];
    for (what, bytes) in hostile {
        let mut stream = connect().await;
        stream.write_all(&bytes).await.unwrap();
        assert!(
            closed_by_broker(&mut stream).await,
            "{what}: connection should be closed"
        );
    }
    // Truncated: the client hangs up mid-frame.
    let mut truncated = connect().await;
    truncated
        .write_all(&[0, 0, 0, 50, 0, 3, 0, 1])
        .await
        .unwrap();
    drop(truncated);

    // The half-written frame can still be completed and is answered: finish it as garbage → closed, but only it.
    patient.write_all(&[0u8; 90]).await.unwrap();
    assert!(closed_by_broker(&mut patient).await);

    // A well-formed client is served as if nothing happened.
    let mut raw = connect().await;
    let versions = call(&mut raw, &ApiVersionsRequest::default(), 3).await;
    assert_eq!(versions.error_code, 0);
    let rs = client(&cluster.bootstrap_servers()).await;
    let pc = partition(&rs, "safe", 0).await;
    let offsets = bounded(
        "produce",
        pc.produce(vec![record("k", "v", 1)], RsCompression::NoCompression),
    )
    .await
    .unwrap();
    assert_eq!(offsets, vec![0]);
    cluster.shutdown().await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_by_correlation_id() {
    init_tracing();
    let cluster = Cluster::builder()
        .brokers(2)
        .topic(NewTopic::new("p", 2))
        .start()
        .await
        .unwrap();
    let mut stream = TcpStream::connect(cluster.broker_addrs()[0]).await.unwrap();
    let mut burst = BytesMut::new();
    for id in 0..20 {
        match id % 3 {
            0 => burst.extend_from_slice(&request_frame(&ApiVersionsRequest::default(), 3, id)),
            1 => burst.extend_from_slice(&request_frame(
                &MetadataRequest::default().with_topics(None),
                12,
                id,
            )),
            _ => {
                burst.extend_from_slice(&request_frame(&produce("p", 0, 1, batch(&[b"x"])), 9, id))
            }
        }
    }
    stream.write_all(&burst).await.unwrap();
    for id in 0..20 {
        let mut frame = read_frame(&mut stream)
            .await
            .expect("one response per request");
        // Every response header starts with the correlation id (ApiVersions uses header v0, others v0 or v1).
        assert_eq!(frame.get_i32(), id);
    }
    cluster.shutdown().await;
}

#[tokio::test]
async fn wrong_produce_requests_get_kafkas_error_codes() {
    init_tracing();
    let cluster = Cluster::builder()
        .brokers(2)
        .topic(NewTopic::new("small", 2).config("max.message.bytes", "1000"))
        .start()
        .await
        .unwrap();
    let leaders = cluster.partition_leaders("small").unwrap();
    let leader_of_0 = leaders[0].unwrap();
    let addrs = cluster.broker_addrs();
    let ids = cluster.broker_ids();
    let leader_addr = addrs[ids.iter().position(|id| *id == leader_of_0).unwrap()];
    let other_addr = addrs[ids.iter().position(|id| *id != leader_of_0).unwrap()];
    let mut leader = TcpStream::connect(leader_addr).await.unwrap();

    let ok = call(&mut leader, &produce("small", 0, -1, batch(&[b"fine"])), 7).await;
    assert_eq!(produce_error(&ok), 0);

    let unknown_partition = call(&mut leader, &produce("small", 9, -1, batch(&[b"x"])), 7).await;
    assert_eq!(
        produce_error(&unknown_partition),
        3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
    let unknown_topic = call(&mut leader, &produce("nope", 0, -1, batch(&[b"x"])), 7).await;
    assert_eq!(
        produce_error(&unknown_topic),
        3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );

    let too_large = call(
        &mut leader,
        &produce("small", 0, -1, batch(&[&[b'x'; 2_000]])),
        7,
    )
    .await;
    assert_eq!(produce_error(&too_large), 10, "MESSAGE_TOO_LARGE");

    let bad_acks = call(&mut leader, &produce("small", 0, 2, batch(&[b"x"])), 7).await;
    assert_eq!(produce_error(&bad_acks), 21, "INVALID_REQUIRED_ACKS");

    let mut corrupt = BytesMut::from(&batch(&[b"x"])[..]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x55;
    let bad_crc = call(&mut leader, &produce("small", 0, -1, corrupt.freeze()), 7).await;
    assert_eq!(produce_error(&bad_crc), 2, "CORRUPT_MESSAGE");

    let mut follower = TcpStream::connect(other_addr).await.unwrap();
    let not_leader = call(&mut follower, &produce("small", 0, -1, batch(&[b"x"])), 7).await;
    assert_eq!(produce_error(&not_leader), 6, "NOT_LEADER_OR_FOLLOWER");

    // Nothing of the refused batches was appended.
    let listed = call(
        &mut leader,
        &ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("small")))
                .with_partitions(vec![
                    list_offsets_request::ListOffsetsPartition::default().with_timestamp(-1),
                ])]),
        3,
    )
    .await;
    assert_eq!(listed.topics[0].partitions[0].offset, 1);

    // acks=0 gets no response; a failed acks=0 produce closes the connection instead.
    let mut quiet = TcpStream::connect(leader_addr).await.unwrap();
    quiet
        .write_all(&request_frame(
            &produce("small", 0, 0, batch(&[b"y"])),
            7,
            1,
        ))
        .await
        .unwrap();
    quiet
        .write_all(&request_frame(
            &produce("small", 9, 0, batch(&[b"y"])),
            7,
            2,
        ))
        .await
        .unwrap();
    assert!(closed_by_broker(&mut quiet).await);

    // ApiVersions in an unknown version: UNSUPPORTED_VERSION in v0 form, with the versions we do serve.
    let mut probe = TcpStream::connect(leader_addr).await.unwrap();
    probe
        .write_all(&request_frame(&ApiVersionsRequest::default(), 4, 5).slice(..))
        .await
        .unwrap();
    let _ = read_frame(&mut probe).await.unwrap();
    let mut future = BytesMut::new();
    let mut body = BytesMut::new();
    body.put_i16(18);
    body.put_i16(99);
    body.put_i32(77);
    body.put_i16(-1);
    body.put_u8(0);
    future.put_i32(body.len() as i32);
    future.extend_from_slice(&body);
    probe.write_all(&future).await.unwrap();
    let mut frame = read_frame(&mut probe).await.unwrap();
    assert_eq!(frame.get_i32(), 77);
    let answer = ApiVersionsResponse::decode(&mut frame, 0).unwrap();
    assert_eq!(answer.error_code, 35, "UNSUPPORTED_VERSION");
    assert!(answer
        .api_keys
        .iter()
        .any(|k| k.api_key == 0 && k.max_version == 11));
    cluster.shutdown().await;
}
