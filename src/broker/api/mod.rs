//! Request dispatch: decode the header, check the API and version against what this cluster advertises, decode
//! the body with `kafka-protocol`, run the API's handler (one file per API), encode the response with the request's
//! correlation id. Anything that cannot be decoded is an error that closes the connection, as Kafka does.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

mod api_versions;
mod context;
mod create_topics;
mod delete_records;
mod delete_topics;
mod describe_configs;
mod fetch;
mod find_coordinator;
mod group_admin;
mod groups;
mod init_producer_id;
mod list_offsets;
mod metadata;
mod offset_for_leader_epoch;
mod offsets;
mod produce;
#[cfg(test)]
pub(crate) mod samples;
mod shape;

pub(crate) use context::BrokerContext;
pub(crate) use produce::{append_on_leader, check as replication_check, Pending};

/// APIs this cluster implements with the versions it advertises: the overlap of what `kafka-protocol` 0.18
/// decodes, what Kafka 3.9 serves, and what the handlers implement.
pub(crate) const SUPPORTED_APIS: [(ApiKey, i16, i16); 22] = [
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 17),
    (ApiKey::ListOffsets, 1, 9),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
];

/// The advertised version range of `api_key`, if it is implemented.
pub(crate) fn supported_versions(api_key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS
        .iter()
        .find(|(key, _, _)| *key == api_key)
        .map(|&(_, min, max)| {
            let crate_range = api_key.valid_versions();
            (min.max(crate_range.min), max.min(crate_range.max))
        })
}

/// Why a request could not be served; the connection is closed with this as the logged reason.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestError {
    #[error("request frame of {0} bytes is too short for a request header")]
    TooShort(usize),
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("API {api:?} is not implemented by the embedded cluster")]
    NotImplemented { api: ApiKey },
    #[error("{api:?} v{version} is not supported (advertised v{min}-v{max})")]
    UnsupportedVersion {
        api: ApiKey,
        version: i16,
        min: i16,
        max: i16,
    },
    #[error("cannot decode {api:?} v{version}: {reason}")]
    Decode {
        api: ApiKey,
        version: i16,
        reason: String,
    },
    #[error("cannot encode the {api:?} v{version} response: {reason}")]
    Encode {
        api: ApiKey,
        version: i16,
        reason: String,
    },
    #[error(
        "acks=0 produce failed ({0}); closing the connection tells the producer, as Kafka does"
    )]
    AcksZeroFailed(String),
}

/// A request frame, decoded.
#[derive(Debug)]
pub(crate) enum Decoded {
    /// A request of an advertised API and version.
    Request {
        api: ApiKey,
        version: i16,
        correlation_id: i32,
        client_id: String,
        body: Box<RequestKind>,
    },
    /// ApiVersions in a version we do not know: answered in v0 form (KIP-511).
    UnknownApiVersionsVersion { correlation_id: i32 },
}

/// Decodes one request frame (without its length prefix): header, then a shape check (see [`shape`]), then the
/// body. Pure, so the fuzz target and the property tests can drive it directly.
pub(crate) fn decode(frame: Bytes) -> Result<Decoded, RequestError> {
    if frame.len() < 8 {
        return Err(RequestError::TooShort(frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let api = ApiKey::try_from(raw_key).map_err(|_| RequestError::UnknownApiKey(raw_key))?;
    let (min, max) = supported_versions(api).ok_or(RequestError::NotImplemented { api })?;
    if !(min..=max).contains(&version) {
        if api == ApiKey::ApiVersions {
            // Only the correlation id is needed from a header we may not be able to read.
            let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
            return Ok(Decoded::UnknownApiVersionsVersion { correlation_id });
        }
        return Err(RequestError::UnsupportedVersion {
            api,
            version,
            min,
            max,
        });
    }
    let decode_error = |e: String| RequestError::Decode {
        api,
        version,
        reason: e,
    };
    let mut body = frame;
    let header = RequestHeader::decode(&mut body, api.request_header_version(version))
        .map_err(|e| decode_error(format!("header: {e}")))?;
    shape::check(api, version, &body).map_err(|e| decode_error(e.to_string()))?;
    let body =
        RequestKind::decode(api, &mut body, version).map_err(|e| decode_error(e.to_string()))?;
    Ok(Decoded::Request {
        api,
        version,
        correlation_id: header.correlation_id,
        client_id: header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        body: Box::new(body),
    })
}

/// Handles one request frame (without its length prefix) from a client at `client_host`; returns the whole
/// response frame, or `None` when the request gets no response (produce with acks=0).
pub(crate) async fn handle(
    broker: &BrokerContext,
    frame: Bytes,
    client_host: &str,
) -> Result<Option<Bytes>, RequestError> {
    let (api, version, correlation_id, client_id, body) = match decode(frame)? {
        Decoded::Request {
            api,
            version,
            correlation_id,
            client_id,
            body,
        } => (api, version, correlation_id, client_id, body),
        Decoded::UnknownApiVersionsVersion { correlation_id } => {
            let response = api_versions::unsupported_version();
            return encode(ApiKey::ApiVersions, 0, correlation_id, &response).map(Some);
        }
    };
    tracing::trace!(broker = %broker.id, ?api, version, correlation_id, "request");
    match *body {
        RequestKind::ApiVersions(request) => {
            let response = api_versions::handle(request);
            encode(ApiKey::ApiVersions, version, correlation_id, &response).map(Some)
        }
        RequestKind::Metadata(request) => {
            let response = metadata::handle(broker, request, version);
            encode(ApiKey::Metadata, version, correlation_id, &response).map(Some)
        }
        RequestKind::Produce(request) => match produce::handle(broker, request).await? {
            Some(response) => encode(ApiKey::Produce, version, correlation_id, &response).map(Some),
            None => Ok(None),
        },
        RequestKind::Fetch(request) => {
            let response = fetch::handle(broker, request, version).await;
            encode(ApiKey::Fetch, version, correlation_id, &response).map(Some)
        }
        RequestKind::ListOffsets(request) => {
            let response = list_offsets::handle(broker, request, version);
            encode(ApiKey::ListOffsets, version, correlation_id, &response).map(Some)
        }
        RequestKind::CreateTopics(request) => {
            let response = create_topics::handle(broker, request, version);
            encode(ApiKey::CreateTopics, version, correlation_id, &response).map(Some)
        }
        RequestKind::DeleteTopics(request) => {
            let response = delete_topics::handle(broker, request, version);
            encode(ApiKey::DeleteTopics, version, correlation_id, &response).map(Some)
        }
        RequestKind::DeleteRecords(request) => {
            let response = delete_records::handle(broker, request);
            encode(ApiKey::DeleteRecords, version, correlation_id, &response).map(Some)
        }
        RequestKind::DescribeConfigs(request) => {
            let response = describe_configs::handle(broker, request, version);
            encode(ApiKey::DescribeConfigs, version, correlation_id, &response).map(Some)
        }
        RequestKind::InitProducerId(request) => {
            let response = init_producer_id::handle(broker, request);
            encode(ApiKey::InitProducerId, version, correlation_id, &response).map(Some)
        }
        RequestKind::FindCoordinator(request) => {
            let response = find_coordinator::handle(broker, request, version);
            encode(ApiKey::FindCoordinator, version, correlation_id, &response).map(Some)
        }
        RequestKind::JoinGroup(request) => {
            let client = groups::Client {
                id: &client_id,
                host: client_host,
            };
            let response = groups::join(broker, request, version, client).await;
            encode(ApiKey::JoinGroup, version, correlation_id, &response).map(Some)
        }
        RequestKind::SyncGroup(request) => {
            let response = groups::sync(broker, request, version).await;
            encode(ApiKey::SyncGroup, version, correlation_id, &response).map(Some)
        }
        RequestKind::Heartbeat(request) => {
            let response = groups::heartbeat(broker, request);
            encode(ApiKey::Heartbeat, version, correlation_id, &response).map(Some)
        }
        RequestKind::LeaveGroup(request) => {
            let response = groups::leave(broker, request, version);
            encode(ApiKey::LeaveGroup, version, correlation_id, &response).map(Some)
        }
        RequestKind::OffsetCommit(request) => {
            let response = offsets::commit(broker, request).await;
            encode(ApiKey::OffsetCommit, version, correlation_id, &response).map(Some)
        }
        RequestKind::OffsetFetch(request) => {
            let response = offsets::fetch(broker, request, version);
            encode(ApiKey::OffsetFetch, version, correlation_id, &response).map(Some)
        }
        RequestKind::OffsetDelete(request) => {
            let response = offsets::delete(broker, request).await;
            encode(ApiKey::OffsetDelete, version, correlation_id, &response).map(Some)
        }
        RequestKind::ListGroups(request) => {
            let response = group_admin::list(broker, request);
            encode(ApiKey::ListGroups, version, correlation_id, &response).map(Some)
        }
        RequestKind::DescribeGroups(request) => {
            let response = group_admin::describe(broker, request);
            encode(ApiKey::DescribeGroups, version, correlation_id, &response).map(Some)
        }
        RequestKind::OffsetForLeaderEpoch(request) => {
            let response = offset_for_leader_epoch::handle(broker, request);
            encode(
                ApiKey::OffsetForLeaderEpoch,
                version,
                correlation_id,
                &response,
            )
            .map(Some)
        }
        RequestKind::DeleteGroups(request) => {
            let response = group_admin::delete(broker, request);
            encode(ApiKey::DeleteGroups, version, correlation_id, &response).map(Some)
        }
        // Only reached if SUPPORTED_APIS lists an API this match does not handle.
        _ => Err(RequestError::NotImplemented { api }),
    }
}

fn encode<R: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &R,
) -> Result<Bytes, RequestError> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = api.response_header_version(version);
    let error = |e: anyhow::Error| RequestError::Encode {
        api,
        version,
        reason: e.to_string(),
    };
    let size = header.compute_size(header_version).map_err(error)?
        + body.compute_size(version).map_err(error)?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(i32::try_from(size).unwrap_or(i32::MAX));
    header.encode(&mut buf, header_version).map_err(error)?;
    body.encode(&mut buf, version).map_err(error)?;
    Ok(buf.freeze())
}

/// A string field for a response.
pub(crate) fn str_bytes(s: impl Into<String>) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(s.into())
}

#[cfg(test)]
mod tests {
    //! Random frames straight into the broker's request path: decode and, when that succeeds, the handlers of a
    //! real (unlistened) cluster. Nothing may panic.
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::broker::config::BrokerDefaults;
    use crate::broker::state::{BrokerInfo, ClusterCore, NewTopic};
    use crate::broker::BrokerId;
    use crate::clock::Clock;

    fn broker() -> BrokerContext {
        let brokers = vec![BrokerInfo {
            id: BrokerId(1),
            host: "127.0.0.1".to_string(),
            port: 9,
        }];
        let core = ClusterCore::new(
            "test".into(),
            BrokerDefaults::default(),
            Clock::virtual_at(0),
            brokers,
        );
        core.create_topic(&NewTopic::new("t", 2), false).unwrap();
        BrokerContext {
            id: BrokerId(1),
            core: Arc::new(core),
        }
    }

    /// A valid request of a random advertised API and version with random values (and, half the time, a real
    /// record batch), then damaged: a few bytes overwritten and maybe cut short. Most still decode, so the handlers
    /// see hostile values, not just the decoder.
    fn frame() -> impl Strategy<Value = Vec<u8>> {
        let api = prop::sample::select(SUPPORTED_APIS.to_vec());
        let knobs = (
            prop::sample::select(vec!["t", "u", "", "t.x"]),
            -2..4i32,
            prop_oneof![
                Just(-5i64),
                Just(-3),
                Just(-2),
                Just(-1),
                0..40i64,
                any::<i64>()
            ],
            -2..3i16,
            any::<bool>(),
            prop_oneof![Just(2i8), Just(4), any::<i8>()],
        );
        let damage = prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4);
        (
            api,
            any::<prop::sample::Index>(),
            knobs,
            damage,
            any::<Option<prop::sample::Index>>(),
        )
            .prop_map(
                |(
                    (key, min, max),
                    pick,
                    (topic, partition, offset, acks, real_batch, resource_type),
                    damage,
                    cut,
                )| {
                    let version = min + pick.index((max - min + 1) as usize) as i16;
                    let records = if real_batch {
                        crate::broker::batch::tests::encode(
                            &[(Some("k"), Some("v"), 5), (None, None, 6)],
                            kafka_protocol::records::Compression::None,
                        )
                    } else {
                        Bytes::from_static(b"not a batch at all")
                    };
                    let knobs = samples::Knobs {
                        topic,
                        partition,
                        offset,
                        acks,
                        records,
                        resource_type,
                    };
                    let mut frame = samples::frame(key, version, 7, &knobs).to_vec();
                    for (at, byte) in damage {
                        let i = at.index(frame.len());
                        frame[i] = byte;
                    }
                    if let Some(cut) = cut {
                        frame.truncate(cut.index(frame.len() + 1));
                    }
                    frame
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn random_frames_never_panic(frame in prop_oneof![frame(), prop::collection::vec(any::<u8>(), 0..64)]) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
            let broker = broker();
            runtime.block_on(async {
                // A fetch that decodes may wait (bounded by its max_wait); waiting is fine, panicking is not.
                let _ = tokio::time::timeout(std::time::Duration::from_millis(20), handle(&broker, Bytes::from(frame), "/127.0.0.1")).await;
            });
        }
    }
}

#[cfg(test)]
mod advertised_versions {
    use super::*;

    /// What we advertise lies inside what a real Kafka 3.9.1 broker advertises (the fixture captured from one
    /// by the real-stack test), so no client negotiates a version Kafka itself would not speak.
    #[test]
    fn within_what_kafka_3_9_1_advertises() {
        let text = include_str!("../../../fixtures/kafka/api-versions-3.9.1.json");
        let fixture: serde_json::Value = serde_json::from_str(text).expect("fixture is JSON");
        let real = fixture["api_keys"].as_array().expect("api_keys");
        for (key, _, _) in SUPPORTED_APIS {
            let (min, max) = supported_versions(key).expect("advertised");
            let entry = real
                .iter()
                .find(|e| e["api_key"].as_i64() == Some(key as i64))
                .unwrap_or_else(|| panic!("{key:?} is not advertised by Kafka 3.9.1"));
            let (real_min, real_max) = (
                entry["min_version"].as_i64().unwrap(),
                entry["max_version"].as_i64().unwrap(),
            );
            assert!(
                min as i64 >= real_min && max as i64 <= real_max,
                "{key:?}: we advertise v{min}-v{max}, Kafka 3.9.1 v{real_min}-v{real_max}"
            );
        }
    }
}
