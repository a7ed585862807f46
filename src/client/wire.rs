//! One client connection to one broker: length-prefixed frames, correlation ids, pipelined requests (several may
//! be in flight; each response is routed back by its correlation id), and the API versions the broker
//! advertised, asked with ApiVersions right after connecting as the Java client does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// The largest response frame accepted; a larger size prefix means a broken stream.
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;
/// ApiVersions v3 is answered by every Kafka since 2.4 and by the embedded cluster.
const API_VERSIONS_VERSION: i16 = 3;

/// Why a request on a connection failed. Every variant means the connection is no longer usable.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    #[error("cannot connect to {addr}: {message}")]
    Connect { addr: String, message: String },
    #[error("connection to {addr} lost: {message}")]
    ConnectionLost { addr: String, message: String },
    #[error("{addr} did not answer {api:?} within {timeout:?}")]
    Timeout {
        addr: String,
        api: ApiKey,
        timeout: Duration,
    },
    #[error("cannot encode or decode {api:?} v{version} for {addr}: {message}")]
    Codec {
        addr: String,
        api: ApiKey,
        version: i16,
        message: String,
    },
    #[error("{addr} refused ApiVersions: error code {code}")]
    ApiVersions { addr: String, code: i16 },
}

type Waiter = oneshot::Sender<Result<Bytes, WireError>>;

/// A connected broker. Cheap to share (`Arc`); requests may overlap.
#[derive(Debug)]
pub(crate) struct BrokerConnection {
    addr: String,
    client_id: StrBytes,
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    waiters: Arc<Mutex<HashMap<i32, Waiter>>>,
    next_correlation_id: AtomicI32,
    closed: Arc<AtomicBool>,
    /// api key → (min, max) version the broker advertised.
    versions: HashMap<i16, (i16, i16)>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for BrokerConnection {
    /// Stops the reader and fails the requests still waiting for an answer: they hold the waiter map, not the
    /// connection, so without this a caller that dropped the connection (after a failed write, say) would leave
    /// the requests already written on it waiting out their whole timeout.
    fn drop(&mut self) {
        self.reader.abort();
        self.closed.store(true, Ordering::SeqCst);
        for (_, waiter) in lock(&self.waiters).drain() {
            let _ = waiter.send(Err(self.lost("the connection was closed by this client")));
        }
    }
}

impl BrokerConnection {
    /// Connects to `addr` (host:port) and asks for its API versions.
    pub(crate) async fn connect(
        addr: &str,
        client_id: &str,
        timeout: Duration,
    ) -> Result<BrokerConnection, WireError> {
        let connect_error = |message: String| WireError::Connect {
            addr: addr.to_string(),
            message,
        };
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| connect_error(format!("no answer within {timeout:?}")))?
            .map_err(|e| connect_error(e.to_string()))?;
        stream.set_nodelay(true).ok();
        let (mut read, write) = stream.into_split();
        let waiters: Arc<Mutex<HashMap<i32, Waiter>>> = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        let reader = {
            let waiters = Arc::clone(&waiters);
            let closed = Arc::clone(&closed);
            let addr = addr.to_string();
            tokio::spawn(async move {
                let message = loop {
                    match read_frame(&mut read).await {
                        Ok(frame) => {
                            if frame.len() < 4 {
                                break "a response shorter than its correlation id".to_string();
                            }
                            let correlation_id = (&frame[..4]).get_i32();
                            let waiter = lock(&waiters).remove(&correlation_id);
                            match waiter {
                                Some(waiter) => {
                                    let _ = waiter.send(Ok(frame));
                                }
                                None => {
                                    break format!(
                                        "a response with unknown correlation id {correlation_id}"
                                    )
                                }
                            }
                        }
                        Err(message) => break message,
                    }
                };
                closed.store(true, Ordering::SeqCst);
                for (_, waiter) in lock(&waiters).drain() {
                    let _ = waiter.send(Err(WireError::ConnectionLost {
                        addr: addr.clone(),
                        message: message.clone(),
                    }));
                }
            })
        };
        let mut connection = BrokerConnection {
            addr: addr.to_string(),
            client_id: StrBytes::from_string(client_id.to_string()),
            writer: tokio::sync::Mutex::new(write),
            waiters,
            next_correlation_id: AtomicI32::new(0),
            closed,
            versions: HashMap::new(),
            reader,
        };
        let answer: ApiVersionsResponse = connection
            .call(
                &ApiVersionsRequest::default()
                    .with_client_software_name(StrBytes::from_static_str("openmrs-etl-harness"))
                    .with_client_software_version(StrBytes::from_static_str(env!(
                        "CARGO_PKG_VERSION"
                    ))),
                API_VERSIONS_VERSION,
                timeout,
            )
            .await?;
        if answer.error_code != 0 {
            return Err(WireError::ApiVersions {
                addr: addr.to_string(),
                code: answer.error_code,
            });
        }
        connection.versions = answer
            .api_keys
            .iter()
            .map(|v| (v.api_key, (v.min_version, v.max_version)))
            .collect();
        Ok(connection)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// The highest version of `R` both this client (`R::VERSIONS` narrowed to `mine`) and the broker speak.
    pub(crate) fn version<R: Request>(&self, mine: (i16, i16)) -> Option<i16> {
        let (broker_min, broker_max) = *self.versions.get(&R::KEY)?;
        let low = broker_min.max(mine.0).max(R::VERSIONS.min);
        let high = broker_max.min(mine.1).min(R::VERSIONS.max);
        (low <= high).then_some(high)
    }

    /// Sends `request` and waits for its response.
    pub(crate) async fn call<R: Request>(
        &self,
        request: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response, WireError> {
        self.start_call(request, version).await?.wait(timeout).await
    }

    /// Writes `request`; the returned call waits for its answer. Requests are written in the order of
    /// `start_call`s, so a caller keeps per-partition order by starting calls in order.
    pub(crate) async fn start_call<R: Request>(
        &self,
        request: &R,
        version: i16,
    ) -> Result<PendingCall<R>, WireError> {
        let (tx, rx) = oneshot::channel();
        let correlation_id = self.write(request, version, Some(tx)).await?;
        Ok(PendingCall {
            addr: self.addr.clone(),
            waiters: Arc::clone(&self.waiters),
            correlation_id,
            version,
            rx,
            request: std::marker::PhantomData,
        })
    }

    /// Sends `request` without waiting for an answer (Produce with acks=0: the broker sends none).
    pub(crate) async fn send_only<R: Request>(
        &self,
        request: &R,
        version: i16,
    ) -> Result<(), WireError> {
        self.write(request, version, None).await.map(|_| ())
    }

    async fn write<R: Request>(
        &self,
        request: &R,
        version: i16,
        waiter: Option<Waiter>,
    ) -> Result<i32, WireError> {
        if self.is_closed() {
            return Err(self.lost("closed earlier"));
        }
        let api = ApiKey::try_from(R::KEY).unwrap_or(ApiKey::ApiVersions);
        let correlation_id = self.next_correlation_id.fetch_add(1, Ordering::Relaxed) & i32::MAX;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut frame = BytesMut::new();
        frame.put_i32(0);
        let encoded = header
            .encode(&mut frame, R::header_version(version))
            .and_then(|()| request.encode(&mut frame, version));
        if let Err(e) = encoded {
            return Err(WireError::Codec {
                addr: self.addr.clone(),
                api,
                version,
                message: e.to_string(),
            });
        }
        let size = (frame.len() - 4) as i32;
        frame[..4].copy_from_slice(&size.to_be_bytes());
        // Register before writing: the answer may arrive before write_all returns. The reader marks the
        // connection closed before it fails the waiters it holds, so checking `closed` under the waiters' lock
        // means a waiter is either failed by the reader or never registered. (Checking only before the lock
        // let a request slip in after the reader had gone: its write to the half-closed socket succeeded and
        // it waited out its whole timeout for an answer nobody would read.)
        if let Some(waiter) = waiter {
            let mut waiters = lock(&self.waiters);
            if self.is_closed() {
                return Err(self.lost("closed earlier"));
            }
            waiters.insert(correlation_id, waiter);
        }
        let mut writer = self.writer.lock().await;
        if let Err(e) = writer.write_all(&frame).await {
            lock(&self.waiters).remove(&correlation_id);
            self.closed.store(true, Ordering::SeqCst);
            return Err(self.lost(&e.to_string()));
        }
        Ok(correlation_id)
    }

    fn lost(&self, message: &str) -> WireError {
        WireError::ConnectionLost {
            addr: self.addr.clone(),
            message: message.to_string(),
        }
    }
}

/// A request written to a broker, waiting for its answer.
#[derive(Debug)]
pub(crate) struct PendingCall<R> {
    addr: String,
    waiters: Arc<Mutex<HashMap<i32, Waiter>>>,
    correlation_id: i32,
    version: i16,
    rx: oneshot::Receiver<Result<Bytes, WireError>>,
    request: std::marker::PhantomData<fn() -> R>,
}

impl<R: Request> PendingCall<R> {
    pub(crate) async fn wait(self, timeout: Duration) -> Result<R::Response, WireError> {
        let api = ApiKey::try_from(R::KEY).unwrap_or(ApiKey::ApiVersions);
        let mut frame = match tokio::time::timeout(timeout, self.rx).await {
            Ok(Ok(result)) => result?,
            Ok(Err(_)) => {
                return Err(WireError::ConnectionLost {
                    addr: self.addr,
                    message: "the reader stopped".into(),
                })
            }
            Err(_) => {
                lock(&self.waiters).remove(&self.correlation_id);
                return Err(WireError::Timeout {
                    addr: self.addr,
                    api,
                    timeout,
                });
            }
        };
        let version = self.version;
        let codec = |message: String| WireError::Codec {
            addr: self.addr.clone(),
            api,
            version,
            message,
        };
        ResponseHeader::decode(&mut frame, R::Response::header_version(version))
            .map_err(|e| codec(e.to_string()))?;
        R::Response::decode(&mut frame, version).map_err(|e| codec(e.to_string()))
    }
}

async fn read_frame(read: &mut tokio::net::tcp::OwnedReadHalf) -> Result<Bytes, String> {
    let size = read
        .read_i32()
        .await
        .map_err(|e| format!("reading a frame size: {e}"))?;
    let size = usize::try_from(size)
        .ok()
        .filter(|size| *size <= MAX_RESPONSE_BYTES)
        .ok_or_else(|| format!("invalid response size {size}"))?;
    let mut body = vec![0; size];
    read.read_exact(&mut body)
        .await
        .map_err(|e| format!("reading a {size}-byte frame: {e}"))?;
    Ok(Bytes::from(body))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsResponse, MetadataRequest};
    use tokio::net::TcpListener;

    /// Answers one ApiVersions request, then closes the connection.
    async fn answer_api_versions_then_close(listener: &TcpListener) {
        let (mut stream, _) = listener.accept().await.unwrap();
        answer_api_versions(&mut stream).await;
        drop(stream);
    }

    /// Reads one ApiVersions request and answers it (with no API keys).
    async fn answer_api_versions(stream: &mut TcpStream) {
        let size = stream.read_i32().await.unwrap();
        let mut request = vec![0u8; size as usize];
        stream.read_exact(&mut request).await.unwrap();
        let header =
            RequestHeader::decode(&mut Bytes::from(request), 2).expect("an ApiVersions header");
        let mut frame = BytesMut::new();
        frame.put_i32(0);
        ResponseHeader::default()
            .with_correlation_id(header.correlation_id)
            .encode(&mut frame, 0)
            .unwrap();
        ApiVersionsResponse::default()
            .encode(&mut frame, API_VERSIONS_VERSION)
            .unwrap();
        let len = (frame.len() - 4) as i32;
        frame[..4].copy_from_slice(&len.to_be_bytes());
        stream.write_all(&frame).await.unwrap();
    }

    /// Requests written on a connection that is then dropped (as the producer drops one after a failed write)
    /// fail as lost at once instead of waiting out their timeout: a crashed broker's connection once held a safe
    /// fault case past its quiesce bound that way.
    #[tokio::test]
    async fn requests_in_flight_on_a_dropped_connection_fail_as_lost() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (mut held, connection) = tokio::join!(
            async {
                let (mut stream, _) = listener.accept().await.unwrap();
                answer_api_versions(&mut stream).await;
                // Keeps the socket open and answers nothing more.
                stream
            },
            BrokerConnection::connect(&addr, "test", Duration::from_secs(5))
        );
        let connection = connection.unwrap();
        let pending = connection
            .start_call(&MetadataRequest::default(), 9)
            .await
            .unwrap();
        drop(connection);
        match pending.wait(Duration::from_secs(30)).await {
            Err(WireError::ConnectionLost { .. }) => {}
            other => panic!("expected a lost connection, got {other:?}"),
        }
        let _ = held.shutdown().await;
    }

    /// A request started while the reader sees the peer hang up fails as a lost connection at once; it never
    /// waits out its timeout for an answer nobody would read (a crashed broker's producer connection once did,
    /// holding a safe fault case past its quiesce bound). The hang-up races the request's encoding on another
    /// worker thread, so the loop tries many times.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_racing_the_peers_hang_up_fails_as_lost_not_as_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        // A big request: its encoding is the window in which the reader can see the hang-up.
        let topics: Vec<_> = (0..20_000)
            .map(|i| {
                kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(kafka_protocol::messages::TopicName(
                        StrBytes::from_string(format!("topic-{i}")),
                    )))
            })
            .collect();
        let request = MetadataRequest::default().with_topics(Some(topics));
        for attempt in 0..40 {
            let (_, connection) = tokio::join!(
                answer_api_versions_then_close(&listener),
                BrokerConnection::connect(&addr, "test", Duration::from_secs(5))
            );
            let connection = connection.unwrap();
            let result = connection.call(&request, 9, Duration::from_secs(3)).await;
            match result {
                Err(WireError::ConnectionLost { .. }) => {}
                other => panic!("attempt {attempt}: expected a lost connection, got {other:?}"),
            }
        }
    }
}
