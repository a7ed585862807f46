//! Request dispatch: decode the header, check the API and version against what this cluster advertises, decode
//! the body with `kafka-protocol`, run the API's handler (one file per API), encode the response with the request's
//! correlation id. Anything that cannot be decoded is an error that closes the connection, as Kafka does.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

use super::server::BrokerContext;

mod api_versions;
mod create_topics;
mod delete_records;
mod delete_topics;
mod describe_configs;
mod fetch;
mod list_offsets;
mod metadata;
mod produce;
mod shape;

/// APIs this cluster implements with the versions it advertises: the overlap of what `kafka-protocol` 0.18
/// decodes, what Kafka 3.9 serves, and what the handlers implement.
pub(crate) const SUPPORTED_APIS: [(ApiKey, i16, i16); 9] = [
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 17),
    (ApiKey::ListOffsets, 1, 9),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeConfigs, 1, 4),
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

/// Handles one request frame (without its length prefix); returns the whole response frame, or `None` when the
/// request gets no response (produce with acks=0).
pub(crate) async fn handle(
    broker: &BrokerContext,
    frame: Bytes,
) -> Result<Option<Bytes>, RequestError> {
    if frame.len() < 8 {
        return Err(RequestError::TooShort(frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let api = ApiKey::try_from(raw_key).map_err(|_| RequestError::UnknownApiKey(raw_key))?;
    let (min, max) = supported_versions(api).ok_or(RequestError::NotImplemented { api })?;
    let mut body = frame;
    if api == ApiKey::ApiVersions && !(min..=max).contains(&version) {
        // KIP-511: answer an unknown ApiVersions version in v0 form with UNSUPPORTED_VERSION and our ranges, so the
        // client can retry with one we know. Only the correlation id is needed from the header.
        let correlation_id = correlation_id_of(&body).ok_or(RequestError::TooShort(body.len()))?;
        let response = api_versions::unsupported_version();
        return encode(api, 0, correlation_id, &response).map(Some);
    }
    if !(min..=max).contains(&version) {
        return Err(RequestError::UnsupportedVersion {
            api,
            version,
            min,
            max,
        });
    }
    let header =
        RequestHeader::decode(&mut body, api.request_header_version(version)).map_err(|e| {
            RequestError::Decode {
                api,
                version,
                reason: format!("header: {e}"),
            }
        })?;
    let correlation_id = header.correlation_id;
    tracing::trace!(broker = %broker.id, ?api, version, correlation_id, "request");
    shape::check(api, version, &body).map_err(|e| RequestError::Decode {
        api,
        version,
        reason: e.to_string(),
    })?;
    macro_rules! decode {
        ($ty:ty) => {
            <$ty as Decodable>::decode(&mut body, version).map_err(|e| RequestError::Decode {
                api,
                version,
                reason: e.to_string(),
            })?
        };
    }
    use kafka_protocol::messages as m;
    match api {
        ApiKey::ApiVersions => {
            let request = decode!(m::ApiVersionsRequest);
            encode(api, version, correlation_id, &api_versions::handle(request)).map(Some)
        }
        ApiKey::Metadata => {
            let response = metadata::handle(broker, decode!(m::MetadataRequest), version);
            encode(api, version, correlation_id, &response).map(Some)
        }
        ApiKey::Produce => match produce::handle(broker, decode!(m::ProduceRequest))? {
            Some(response) => encode(api, version, correlation_id, &response).map(Some),
            None => Ok(None),
        },
        ApiKey::Fetch => {
            let response = fetch::handle(broker, decode!(m::FetchRequest), version).await;
            encode(api, version, correlation_id, &response).map(Some)
        }
        ApiKey::ListOffsets => {
            let response = list_offsets::handle(broker, decode!(m::ListOffsetsRequest), version);
            encode(api, version, correlation_id, &response).map(Some)
        }
        ApiKey::CreateTopics => {
            let response = create_topics::handle(broker, decode!(m::CreateTopicsRequest), version);
            encode(api, version, correlation_id, &response).map(Some)
        }
        ApiKey::DeleteTopics => {
            let response = delete_topics::handle(broker, decode!(m::DeleteTopicsRequest), version);
            encode(api, version, correlation_id, &response).map(Some)
        }
        ApiKey::DeleteRecords => {
            let response = delete_records::handle(broker, decode!(m::DeleteRecordsRequest));
            encode(api, version, correlation_id, &response).map(Some)
        }
        ApiKey::DescribeConfigs => {
            let response =
                describe_configs::handle(broker, decode!(m::DescribeConfigsRequest), version);
            encode(api, version, correlation_id, &response).map(Some)
        }
        _ => Err(RequestError::NotImplemented { api }),
    }
}

/// The correlation id sits after api key and version in every header version.
fn correlation_id_of(frame: &[u8]) -> Option<i32> {
    let bytes = frame.get(4..8)?;
    Some(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
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
