//! The proxy on real sockets: bytes held while blocked and released in order by the heal, latency, isolation rules by
//! who connected, and the listener closed on drop.

use super::*;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Patience for things that must happen; never a bound the test asserts.
const PATIENCE: Duration = Duration::from_secs(10);
/// How long a held connection is watched for bytes that must not arrive.
const QUIET: Duration = Duration::from_millis(300);

/// An echo server on a free port; counts the bytes it received.
async fn echo_server() -> (u16, Arc<AtomicUsize>, JoinHandle<()>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                loop {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            counter.fetch_add(n, Ordering::SeqCst);
                            if stream.write_all(&buffer[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (port, received, task)
}

async fn connect(port: u16) -> TcpStream {
    tokio::time::timeout(PATIENCE, TcpStream::connect((Ipv4Addr::LOCALHOST, port)))
        .await
        .expect("connect in time")
        .expect("connect")
}

async fn read_exactly(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut buffer = vec![0u8; len];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut buffer))
        .await
        .expect("the bytes arrive in time")
        .expect("read");
    buffer
}

/// True when nothing arrives on `stream` for [`QUIET`].
async fn stays_quiet(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    tokio::time::timeout(QUIET, stream.read(&mut byte))
        .await
        .is_err()
}

/// A proxy for broker 1 in front of an echo server, its faults, the bytes the server received, and a client
/// connected through the proxy. Bind the proxy when destructuring: dropping it closes the client.
struct Bench {
    faults: NetworkFaults,
    proxy: Proxy,
    received: Arc<AtomicUsize>,
    client: TcpStream,
    _server: JoinHandle<()>,
}

/// The client connects when `faults` are as `prepare` leaves them.
async fn bench(prepare: impl FnOnce(&NetworkFaults)) -> Bench {
    let (port, received, server) = echo_server().await;
    let faults = NetworkFaults::new();
    let proxy = Proxy::start(port, Link::Broker(1), &faults).expect("proxy");
    prepare(&faults);
    let client = connect(proxy.port()).await;
    Bench {
        faults,
        proxy,
        received,
        client,
        _server: server,
    }
}

async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends `message`; true when it comes back within [`QUIET`].
async fn answered(stream: &mut TcpStream, message: &[u8]) -> bool {
    stream.write_all(message).await.expect("write");
    let mut buffer = vec![0u8; message.len()];
    match tokio::time::timeout(QUIET, stream.read_exact(&mut buffer)).await {
        Ok(read) => {
            read.expect("read");
            assert_eq!(buffer, message);
            true
        }
        Err(_) => false,
    }
}

#[tokio::test]
async fn bytes_flow_both_ways() {
    let mut bench = bench(|_| {}).await;
    assert!(answered(&mut bench.client, b"hello, broker").await);
    assert_eq!(bench.received.load(Ordering::SeqCst), 13);
}

#[tokio::test]
async fn a_block_holds_bytes_both_ways_and_the_heal_releases_exactly_them_in_order() {
    let Bench {
        faults,
        received,
        mut client,
        proxy: _proxy,
        ..
    } = bench(|_| {}).await;
    assert!(answered(&mut client, b"before;").await);

    faults.isolate(1, Isolation::FromEveryone);
    let mut held = Vec::new();
    for i in 0..50 {
        let chunk = format!("held-{i};");
        client.write_all(chunk.as_bytes()).await.expect("write");
        held.extend_from_slice(chunk.as_bytes());
    }
    assert!(
        stays_quiet(&mut client).await,
        "an answer crossed the block"
    );
    assert_eq!(
        received.load(Ordering::SeqCst),
        7,
        "bytes reached the server through the block"
    );

    faults.heal(1);
    assert_eq!(read_exactly(&mut client, held.len()).await, held);
    assert_eq!(received.load(Ordering::SeqCst), 7 + held.len());
    assert!(stays_quiet(&mut client).await, "more than the held bytes");
}

#[tokio::test]
async fn a_connection_accepted_while_blocked_reaches_the_server_only_after_the_heal() {
    let Bench {
        faults,
        received,
        mut client,
        proxy: _proxy,
        ..
    } = bench(|faults| faults.isolate(1, Isolation::FromEveryone)).await;
    assert!(
        !answered(&mut client, b"knock").await,
        "answered while blocked"
    );
    assert_eq!(received.load(Ordering::SeqCst), 0);
    faults.heal(1);
    assert_eq!(read_exactly(&mut client, 5).await, b"knock");
}

#[tokio::test]
async fn latency_delays_answers_and_keeps_their_order() {
    let latency = Duration::from_millis(200);
    let Bench {
        faults,
        mut client,
        proxy: _proxy,
        ..
    } = bench(|faults| faults.set_latency(1, latency)).await;

    let sent_at = Instant::now();
    client.write_all(b"ping").await.expect("write");
    assert_eq!(read_exactly(&mut client, 4).await, b"ping");
    assert!(
        sent_at.elapsed() >= latency,
        "answered after {:?}, before the latency {latency:?}",
        sent_at.elapsed()
    );

    let mut sent = Vec::new();
    for i in 0..200 {
        let chunk = format!("{i},");
        client.write_all(chunk.as_bytes()).await.expect("write");
        sent.extend_from_slice(chunk.as_bytes());
        if i == 100 {
            // A smaller latency must not let later answers overtake earlier ones.
            faults.set_latency(1, Duration::ZERO);
        }
    }
    assert_eq!(read_exactly(&mut client, sent.len()).await, sent);
}

#[tokio::test]
async fn a_test_process_connection_is_recognised_by_its_pid() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let server_port = listener.local_addr().expect("addr").port();
    let client = connect(server_port).await;
    let (_accepted, from) = listener.accept().await.expect("accept");
    let client_port = client.local_addr().expect("addr").port();
    assert_eq!(from.port(), client_port);
    let me = std::process::id();
    let ours = tokio::task::spawn_blocking(move || {
        socket_owner(client_port, server_port, &[(3, me + 1_000_000), (7, me)])
    })
    .await
    .expect("lookup");
    assert_eq!(ours, Some(7), "the connection is this process's");
    let not_ours =
        tokio::task::spawn_blocking(move || socket_owner(client_port, server_port, &[(3, 1)]))
            .await
            .expect("lookup");
    assert_eq!(not_ours, None, "pid 1 does not hold the connection");
}

#[tokio::test]
async fn isolation_rules_follow_who_connected() {
    // The test process plays broker 2: its connections to broker 1's proxy are a peer's.
    let Bench {
        faults,
        proxy: to_broker_1,
        client: mut from_peer,
        ..
    } = bench(|faults| faults.set_pid(2, std::process::id())).await;
    assert!(answered(&mut from_peer, b"a").await);

    faults.isolate(1, Isolation::FromPeers);
    assert!(
        !answered(&mut from_peer, b"b").await,
        "peer of a FromPeers broker"
    );
    faults.heal(1);
    assert_eq!(
        read_exactly(&mut from_peer, 1).await,
        b"b",
        "held, then released"
    );

    // The source isolated: its own traffic to peers is cut.
    faults.isolate(2, Isolation::FromPeers);
    assert!(
        !answered(&mut from_peer, b"c").await,
        "from an isolated broker"
    );
    faults.heal(2);
    assert_eq!(read_exactly(&mut from_peer, 1).await, b"c");

    // Once the test process no longer counts as broker 2, its new connections are a client's.
    faults.set_pid(2, 1);
    let mut from_client = connect(to_broker_1.port()).await;
    faults.isolate(1, Isolation::FromPeers);
    faults.isolate(3, Isolation::FromEveryone);
    assert!(
        answered(&mut from_client, b"d").await,
        "a client of a FromPeers broker"
    );
    faults.isolate(1, Isolation::FromEveryone);
    assert!(
        !answered(&mut from_client, b"e").await,
        "a client of a FromEveryone broker"
    );
    faults.heal_all();
    assert_eq!(read_exactly(&mut from_client, 1).await, b"e");
}

#[test]
fn the_blocking_rules() {
    use Isolation::{FromEveryone, FromPeers};
    let state = |isolations: &[(i32, Isolation)]| {
        let mut state = NetworkState::default();
        for (id, isolation) in isolations {
            state.brokers.entry(*id).or_default().isolation = Some(*isolation);
        }
        state
    };
    let to_1 = Link::Broker(1);
    let healthy = state(&[]);
    assert!(!healthy.blocks(to_1, Peer::Client));
    assert!(!healthy.blocks(to_1, Peer::Broker(2)));

    let everyone = state(&[(1, FromEveryone)]);
    assert!(everyone.blocks(to_1, Peer::Client));
    assert!(everyone.blocks(to_1, Peer::Broker(2)));
    assert!(!everyone.blocks(to_1, Peer::Broker(1)), "itself");
    assert!(everyone.blocks(Link::CoordinatorOf(1), Peer::Client));
    assert!(!everyone.blocks(Link::CoordinatorOf(2), Peer::Client));
    assert!(!everyone.blocks(Link::Broker(2), Peer::Client));
    assert!(everyone.blocks(Link::Broker(2), Peer::Broker(1)), "from it");

    let peers = state(&[(1, FromPeers)]);
    assert!(!peers.blocks(to_1, Peer::Client));
    assert!(peers.blocks(to_1, Peer::Broker(3)));
    assert!(peers.blocks(Link::CoordinatorOf(1), Peer::Client));
    assert!(peers.blocks(Link::Broker(3), Peer::Broker(1)), "from it");
    assert!(!peers.blocks(Link::Broker(3), Peer::Broker(2)));
    assert!(!peers.blocks(Link::Broker(3), Peer::Client));
}

#[tokio::test]
async fn dropping_the_proxy_closes_its_listener_and_connections() {
    let Bench {
        faults,
        proxy,
        client: mut flowing,
        ..
    } = bench(|_| {}).await;
    let proxy_port = proxy.port();
    assert!(answered(&mut flowing, b"x").await);
    faults.isolate(1, Isolation::FromEveryone);
    let mut held = connect(proxy_port).await;

    drop(proxy);
    for stream in [&mut flowing, &mut held] {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(PATIENCE, stream.read(&mut byte))
            .await
            .expect("the connection ends in time");
        assert!(matches!(read, Ok(0) | Err(_)), "still open: {read:?}");
    }
    eventually("the listener closes", || {
        std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, proxy_port)).is_err()
    })
    .await;
}
