//! A small TCP proxy on loopback: how the local topology cuts and slows the network between its processes, which
//! otherwise all share 127.0.0.1 where nothing can be partitioned.
//!
//! Every broker gets two: one in front of its Kafka listener (the address it advertises, so clients and its peers'
//! replica fetchers and controller requests all come through it) and one in front of the coordinator for its own
//! session: ZooKeeper, or in KRaft mode the quorum controller (its heartbeats, registration and metadata
//! fetches). Both read one shared [`NetworkFaults`] state: which brokers are isolated and how, how much latency
//! each broker's answers get, and which process each broker currently runs as.
//!
//! A proxy forwards bytes as they come, in both directions, with three rules:
//!
//! - **Held, never dropped.** While a connection is blocked, nothing crosses in either direction — data, end of
//!   stream or reset — and a connection accepted while blocked is not even opened upstream. The bytes wait in the
//!   proxy (and, once its small queue is full, in the kernel's socket buffers), as they would while TCP
//!   retransmits across a partition; when the block lifts they flow again, in order. The peers' own timeouts
//!   decide what happens meanwhile.
//! - **Latency on answers.** Each chunk from the broker back to whoever connected is delivered the broker's
//!   latency after the proxy read it; chunks are never reordered.
//! - **Who connected decides.** All connections come from 127.0.0.1, so at accept time (once, on a blocking
//!   thread) the proxy finds the process holding the other end of the connection: the socket's inode from
//!   `/proc/net/tcp` (and `tcp6`), then the broker process whose `/proc/<pid>/fd` links to it. A connection from a
//!   broker's process is that broker's; anything else is a client's.
//!
//! A connection from source S to broker D's Kafka proxy is blocked when D is isolated from everyone, when D is
//! isolated from its peers and S is a broker, or when S is an isolated broker (either way, its own traffic to its
//! peers is cut). A broker's connection to its own proxy crosses no network and is never blocked. A broker's
//! coordinator proxy is blocked whenever that broker is isolated, so its session expires. Blocks are re-evaluated
//! on every change: open connections switch between held and flowing.
//!
//! A broker's Kafka proxy also taps every client connection (see `produce`): it decodes a Connect task
//! producer's Produce requests and the broker's answers into [`ProduceLog`], the acknowledgements Debezium itself
//! does not show. The tap reads copies of the chunks in a task of its own; forwarding never waits for it.
//!
//! Dropping a [`Proxy`] closes its listener and every connection through it.

mod produce;

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::error::LocalError;
use crate::broker::Isolation;
use produce::{spawn_tap, TapSender};
pub use produce::{ProduceLog, ProducedRecord, TapReport, PRODUCER_CLIENT_PREFIX};

/// Bytes read at most at once from one side of a connection.
const CHUNK: usize = 64 * 1024;
/// Chunks read ahead of the writer per direction (what latency keeps in flight); then the reader waits.
const QUEUED_CHUNKS: usize = 64;

/// The network faults of the topology's brokers, shared by all their proxies, and the log their taps write.
#[derive(Debug)]
pub(crate) struct NetworkFaults {
    state: watch::Sender<NetworkState>,
    produced: Arc<ProduceLog>,
}

#[derive(Debug, Clone, Default)]
struct NetworkState {
    brokers: BTreeMap<i32, BrokerNetwork>,
}

#[derive(Debug, Clone, Copy, Default)]
struct BrokerNetwork {
    /// The broker's current process, to recognise its connections.
    pid: Option<u32>,
    isolation: Option<Isolation>,
    /// Added to every answer of the broker.
    latency: Duration,
}

impl NetworkFaults {
    pub(crate) fn new() -> Self {
        NetworkFaults {
            state: watch::Sender::new(NetworkState::default()),
            produced: Arc::new(ProduceLog::default()),
        }
    }

    /// What the Kafka proxies' taps decoded of the Connect task producers' requests and their answers.
    pub(crate) fn produced(&self) -> &ProduceLog {
        &self.produced
    }

    /// [`Network::produced`], shared.
    pub(crate) fn produced_log(&self) -> Arc<ProduceLog> {
        Arc::clone(&self.produced)
    }

    /// Broker `id` now runs as process `pid` (at start and after every restart).
    pub(crate) fn set_pid(&self, id: i32, pid: u32) {
        self.update(id, |broker| broker.pid = Some(pid));
    }

    pub(crate) fn isolate(&self, id: i32, isolation: Isolation) {
        self.update(id, |broker| broker.isolation = Some(isolation));
    }

    pub(crate) fn heal(&self, id: i32) {
        self.update(id, |broker| broker.isolation = None);
    }

    pub(crate) fn set_latency(&self, id: i32, latency: Duration) {
        self.update(id, |broker| broker.latency = latency);
    }

    /// Ends every isolation and latency.
    pub(crate) fn heal_all(&self) {
        self.state.send_modify(|state| {
            for broker in state.brokers.values_mut() {
                broker.isolation = None;
                broker.latency = Duration::ZERO;
            }
        });
    }

    pub(crate) fn isolation(&self, id: i32) -> Option<Isolation> {
        self.state.borrow().brokers.get(&id)?.isolation
    }

    fn update(&self, id: i32, change: impl FnOnce(&mut BrokerNetwork)) {
        self.state
            .send_modify(|state| change(state.brokers.entry(id).or_default()));
    }
}

impl NetworkState {
    fn isolation(&self, id: i32) -> Option<Isolation> {
        self.brokers.get(&id)?.isolation
    }

    fn blocks(&self, link: Link, peer: Peer) -> bool {
        match link {
            Link::CoordinatorOf(broker) => self.isolation(broker).is_some(),
            Link::Broker(destination) => {
                if peer == Peer::Broker(destination) {
                    return false;
                }
                let refused_by_destination = match self.isolation(destination) {
                    Some(Isolation::FromEveryone) => true,
                    Some(Isolation::FromPeers) => matches!(peer, Peer::Broker(_)),
                    None => false,
                };
                let cut_off_source =
                    matches!(peer, Peer::Broker(source) if self.isolation(source).is_some());
                refused_by_destination || cut_off_source
            }
        }
    }

    fn latency(&self, link: Link) -> Duration {
        match link {
            Link::Broker(id) => self.brokers.get(&id).map_or(Duration::ZERO, |b| b.latency),
            Link::CoordinatorOf(_) => Duration::ZERO,
        }
    }

    /// (broker id, pid) of every broker with a known process.
    fn broker_pids(&self) -> Vec<(i32, u32)> {
        self.brokers
            .iter()
            .filter_map(|(id, broker)| Some((*id, broker.pid?)))
            .collect()
    }
}

/// What a proxy stands in front of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    /// Broker `id`'s Kafka listener, for its clients and its peers.
    Broker(i32),
    /// The coordinator (ZooKeeper, or the KRaft controller), for broker `id`'s session and metadata alone.
    CoordinatorOf(i32),
}

/// Who opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    Broker(i32),
    Client,
}

/// One listening proxy; dropping it stops the listener and every connection through it.
#[derive(Debug)]
pub(crate) struct Proxy {
    port: u16,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free 127.0.0.1 port and forwards to 127.0.0.1:`target_port` under `faults`. Must be called
    /// within a tokio runtime, which then runs the proxy.
    pub(crate) fn start(
        target_port: u16,
        link: Link,
        faults: &NetworkFaults,
    ) -> Result<Self, LocalError> {
        let bind_error = |e| LocalError::io("binding a proxy on", "127.0.0.1:0", e);
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        let port = listener.local_addr().map_err(bind_error)?.port();
        let listener = TcpListener::from_std(listener).map_err(bind_error)?;
        let target = SocketAddr::from((Ipv4Addr::LOCALHOST, target_port));
        let accept = tokio::spawn(accept_loop(
            listener,
            target,
            link,
            faults.state.subscribe(),
            faults.produced.clone(),
        ));
        Ok(Proxy { port, accept })
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // The accept task owns the connections' JoinSet: aborting it aborts them all.
        self.accept.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    link: Link,
    network: watch::Receiver<NetworkState>,
    produced: Arc<ProduceLog>,
) {
    let proxy_port = listener.local_addr().map_or(0, |addr| addr.port());
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, from)) => {
                    let ends = Ends { client_port: from.port(), proxy_port, target };
                    connections.spawn(serve(client, ends, link, network.clone(), produced.clone()));
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(?link, %error, "proxy accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Where one connection runs: the client's port, the proxy's, and the server's address.
#[derive(Debug, Clone, Copy)]
struct Ends {
    client_port: u16,
    proxy_port: u16,
    target: SocketAddr,
}

/// One connection: find who opened it, wait until it may flow, open it upstream, forward both ways (a client's
/// connection to a broker tapped into `produced`).
async fn serve(
    client: TcpStream,
    ends: Ends,
    link: Link,
    network: watch::Receiver<NetworkState>,
    produced: Arc<ProduceLog>,
) {
    let Ends {
        client_port,
        proxy_port,
        target,
    } = ends;
    let peer = match link {
        Link::Broker(_) => {
            let candidates = network.borrow().broker_pids();
            tokio::task::spawn_blocking(move || socket_owner(client_port, proxy_port, &candidates))
                .await
                .ok()
                .flatten()
                .map_or(Peer::Client, Peer::Broker)
        }
        // The rule for a coordinator link does not depend on who connected.
        Link::CoordinatorOf(_) => Peer::Client,
    };
    tracing::debug!(?link, ?peer, client_port, "proxy accepted a connection");
    let mut gate = Gate {
        network,
        link,
        peer,
    };
    // Accepted while blocked: the SYN got no further, nothing may reach the server yet.
    if gate.opened().await.is_err() {
        return;
    }
    // The server is down: the client sees its connection closed.
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let tap = match (link, peer) {
        (Link::Broker(id), Peer::Client) => Some(spawn_tap(id, produced)),
        _ => None,
    };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // An error in either direction (a reset, a failed write) ends both; an end of stream ends only its own.
    let _ = tokio::try_join!(
        forward(
            client_read,
            server_write,
            gate.clone(),
            Direction::Requests,
            tap.clone()
        ),
        forward(server_read, client_write, gate, Direction::Answers, tap),
    );
}

#[derive(Debug, Clone, Copy)]
enum Direction {
    /// From whoever connected to the server.
    Requests,
    /// From the server back; these get the latency.
    Answers,
}

/// A connection's view of the network faults.
#[derive(Clone)]
struct Gate {
    network: watch::Receiver<NetworkState>,
    link: Link,
    peer: Peer,
}

impl Gate {
    /// Returns once the connection may flow; errors when the faults' owner is gone (the topology is shutting down).
    async fn opened(&mut self) -> io::Result<()> {
        let (link, peer) = (self.link, self.peer);
        self.network
            .wait_for(|state| !state.blocks(link, peer))
            .await
            .map(drop)
            .map_err(|_| io::Error::other("the proxy's network state is gone"))
    }

    fn delay(&self, direction: Direction) -> Duration {
        match direction {
            Direction::Requests => Duration::ZERO,
            Direction::Answers => self.network.borrow().latency(self.link),
        }
    }
}

/// Copies `from` to `to` until the end of stream has been passed on (Ok) or either side fails (Err). Every
/// event — a chunk, the end of stream, an error — waits for its due time and for the gate to open, in order.
/// `tap` gets a copy of each request chunk as it is read and of each answer chunk once it is written.
async fn forward(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut gate: Gate,
    direction: Direction,
    tap: Option<TapSender>,
) -> io::Result<()> {
    let (request_tap, answer_tap) = match direction {
        Direction::Requests => (tap, None),
        Direction::Answers => (None, tap),
    };
    let (queue, mut queued) = mpsc::channel::<(Instant, io::Result<Bytes>)>(QUEUED_CHUNKS);
    let reading_gate = gate.clone();
    let reader = async move {
        let mut buffer = BytesMut::new();
        loop {
            buffer.reserve(CHUNK);
            let read = from.read_buf(&mut buffer).await;
            let due = Instant::now() + reading_gate.delay(direction);
            let last = !matches!(read, Ok(n) if n > 0);
            let event = read.map(|_| buffer.split().freeze());
            if let (Some(tap), Ok(chunk)) = (&request_tap, &event) {
                tap.requests(chunk);
            }
            if queue.send((due, event)).await.is_err() || last {
                break;
            }
        }
        // Done reading; the writer decides when forwarding ends.
        std::future::pending::<()>().await;
    };
    let writer = async move {
        while let Some((due, event)) = queued.recv().await {
            tokio::time::sleep_until(due).await;
            gate.opened().await?;
            match event {
                Ok(chunk) if chunk.is_empty() => return to.shutdown().await,
                Ok(chunk) => {
                    to.write_all(&chunk).await?;
                    if let Some(tap) = &answer_tap {
                        tap.answers(&chunk);
                    }
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    };
    tokio::select! {
        result = writer => result,
        () = reader => Ok(()),
    }
}

/// Which of `candidates` (broker id, pid) holds the client end of the loopback connection from `client_port` to
/// `server_port`: the socket inode from `/proc/net/tcp` or `tcp6`, then the process whose `/proc/<pid>/fd` links to
/// it. `None` when no candidate does (or the connection is already gone).
pub(crate) fn socket_owner(
    client_port: u16,
    server_port: u16,
    candidates: &[(i32, u32)],
) -> Option<i32> {
    let inode = socket_inode(client_port, server_port)?;
    let link = format!("socket:[{inode}]");
    candidates
        .iter()
        .find(|(_, pid)| holds_socket(*pid, &link))
        .map(|(id, _)| *id)
}

/// The inode of the socket whose local port is `local_port` and remote port `remote_port`.
fn socket_inode(local_port: u16, remote_port: u16) -> Option<u64> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .into_iter()
        .find_map(|table| {
            let text = std::fs::read_to_string(table).ok()?;
            // Columns: sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
            text.lines().skip(1).find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let port =
                    |address: &str| u16::from_str_radix(address.rsplit_once(':')?.1, 16).ok();
                let inode: u64 = fields.get(9)?.parse().ok()?;
                let matches = port(fields.get(1)?)? == local_port
                    && port(fields.get(2)?)? == remote_port
                    && inode != 0;
                matches.then_some(inode)
            })
        })
}

fn holds_socket(pid: u32, link: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    entries.flatten().any(|entry| {
        std::fs::read_link(entry.path()).is_ok_and(|target| target.as_os_str() == link)
    })
}

#[cfg(test)]
mod tests;
