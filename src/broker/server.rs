//! One broker's network side: the accept loop and one task per connection. A connection reads a length-prefixed
//! frame (a partial frame just waits for more bytes), hands it to [`api::handle`], writes the response, and goes
//! on. A frame of 16 KiB or more is read into a buffer of its own, so that a produced batch in it can become the
//! stored batch without a copy. Requests on one connection are answered in the order they came, as Kafka does
//! (the Java client relies on it); a client may still pipeline as many as it likes. A frame that cannot be read or decoded closes that
//! connection only, with the reason logged; the broker keeps serving everyone else.
//!
//! Faults (see the table in the `broker` module docs): while the broker is paused or isolated from clients a
//! connection neither reads nor answers — requests wait, as packets would — and added latency delays every answer.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::api::{self, BrokerContext};

/// Why a connection was closed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("connection closed in the middle of a frame ({0} bytes buffered)")]
    Truncated(usize),
    #[error("frame size {0} is negative")]
    NegativeSize(i32),
    #[error("frame size {size} exceeds socket.request.max.bytes {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves connections on `listener` until `shutdown` turns true (or its sender is dropped).
pub(crate) async fn run(
    listener: TcpListener,
    broker: Arc<BrokerContext>,
    shutdown: watch::Receiver<bool>,
) {
    let mut stop = shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve(stream, peer, broker.clone(), shutdown.clone()));
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(broker = %broker.id, %error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            },
            _ = stopped(&mut stop) => break,
        }
    }
}

async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<BrokerContext>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connection = Connection::new(stream, broker.core.defaults.max_request_bytes);
    // Kafka reports a member's host as the address with a leading '/' (Java's InetAddress.toString()).
    let client_host = format!("/{}", peer.ip());
    let reason = tokio::select! {
        reason = connection.serve(&broker, &client_host) => reason,
        _ = stopped(&mut shutdown) => None,
    };
    if let Some(reason) = reason {
        tracing::warn!(broker = %broker.id, %peer, %reason, "closing connection");
    }
}

/// Resolves once shutdown is requested (or nobody can request it any more).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
}

struct Connection {
    stream: TcpStream,
    buffer: BytesMut,
    max_frame: usize,
}

impl Connection {
    fn new(stream: TcpStream, max_frame: usize) -> Connection {
        Connection {
            stream,
            buffer: BytesMut::with_capacity(LARGE_FRAME),
            max_frame,
        }
    }

    /// Serves requests until the peer hangs up (`None`) or something forces the connection closed (the reason).
    async fn serve(&mut self, broker: &BrokerContext, client_host: &str) -> Option<String> {
        loop {
            let frame = match self.read_frame().await {
                Ok(Some(frame)) => frame,
                Ok(None) => return None,
                Err(error) => return Some(error.to_string()),
            };
            reachable(broker).await;
            match api::handle(broker, frame, client_host).await {
                Ok(Some(response)) => {
                    let latency = reachable(broker).await;
                    if !latency.is_zero() {
                        tokio::time::sleep(latency).await;
                    }
                    if let Err(error) = self.stream.write_all(&response).await {
                        // The client went away before its answer: a hang-up, not a broker fault.
                        if matches!(
                            error.kind(),
                            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                        ) {
                            return None;
                        }
                        return Some(format!("cannot write response: {error}"));
                    }
                }
                Ok(None) => {}
                Err(error) => return Some(error.to_string()),
            }
        }
    }

    /// The next whole frame (without its length prefix); `None` when the peer closed between frames.
    async fn read_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        loop {
            if let Some(frame) = parse_frame(&mut self.buffer, self.max_frame)? {
                return Ok(Some(frame));
            }
            if let Some(size) = large_frame_size(&self.buffer) {
                return self.read_large_frame(size).await.map(Some);
            }
            let read = match self.stream.read_buf(&mut self.buffer).await {
                // A client that exits without closing its sockets resets them: that is a hang-up, not a fault.
                Err(e)
                    if e.kind() == std::io::ErrorKind::ConnectionReset
                        && self.buffer.is_empty() =>
                {
                    return Ok(None)
                }
                other => other?,
            };
            if read == 0 {
                return if self.buffer.is_empty() {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated(self.buffer.len()))
                };
            }
        }
    }

    /// Reads a frame of `size` bytes, whose length prefix is at the front of the buffer, into a buffer of its own:
    /// the frame then shares its allocation with nothing, so a produced batch can become the stored batch without a
    /// copy. Bytes after the frame stay in the socket until the next read.
    async fn read_large_frame(&mut self, size: usize) -> Result<Bytes, FrameError> {
        let mut frame = BytesMut::with_capacity(size);
        self.buffer.advance(4);
        frame.extend_from_slice(&self.buffer);
        self.buffer.clear();
        while frame.len() < size {
            let wanted = size - frame.len();
            let read = self
                .stream
                .read_buf(&mut (&mut frame).limit(wanted))
                .await?;
            if read == 0 {
                return Err(FrameError::Truncated(4 + frame.len()));
            }
        }
        Ok(frame.freeze())
    }
}

/// Frames at least this long are read into a buffer of their own (see [`Connection::read_large_frame`]).
const LARGE_FRAME: usize = 16 * 1024;

/// The size of the frame at the front of `buffer` when it is large and not yet complete (`parse_frame` has
/// checked the size against the limit).
fn large_frame_size(buffer: &BytesMut) -> Option<usize> {
    let prefix: [u8; 4] = buffer.get(..4)?.try_into().ok()?;
    let size = usize::try_from(i32::from_be_bytes(prefix)).ok()?;
    (size >= LARGE_FRAME && buffer.len() < 4 + size).then_some(size)
}

/// Waits while the broker holds client traffic (paused, isolated from clients); returns its added latency.
async fn reachable(broker: &BrokerContext) -> std::time::Duration {
    let mut changes = broker.core.subscribe_liveness();
    loop {
        changes.borrow_and_update();
        let liveness = broker
            .core
            .liveness()
            .into_iter()
            .find(|l| l.id == broker.id);
        match liveness {
            Some(l) if !l.serves_clients() => {
                if changes.changed().await.is_err() {
                    return std::time::Duration::ZERO;
                }
            }
            Some(l) => return l.latency,
            None => return std::time::Duration::ZERO,
        }
    }
}

/// Takes one frame off the front of `buffer` when it is complete; otherwise reserves room for the rest of a frame
/// below [`LARGE_FRAME`] (a larger one gets a buffer of its own).
pub(crate) fn parse_frame(
    buffer: &mut BytesMut,
    max_frame: usize,
) -> Result<Option<Bytes>, FrameError> {
    if buffer.len() < 4 {
        return Ok(None);
    }
    let size = i32::from_be_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]);
    let size = usize::try_from(size).map_err(|_| FrameError::NegativeSize(size))?;
    if size > max_frame {
        return Err(FrameError::TooLarge {
            size,
            limit: max_frame,
        });
    }
    if buffer.len() < 4 + size {
        if size < LARGE_FRAME {
            buffer.reserve(4 + size - buffer.len());
        }
        return Ok(None);
    }
    let mut frame = buffer.split_to(4 + size);
    frame.advance(4);
    Ok(Some(frame.freeze()))
}
