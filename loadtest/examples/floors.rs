//! The floors an embedded-server 1:1 message cannot beat on this machine, in CPU time per
//! message, beside the budget a rate leaves (2 cores at 20,000 msg/s: 100 us a message,
//! load generator included):
//!
//! - **relay**: WebSocket frames and nothing else. `PAIRS` pairs of clients on loopback;
//!   each message is one ~170-byte text frame from the sender to a relay, which writes a
//!   ~90-byte ack back and a ~260-byte frame to the partner (what a 1:1 send costs on the
//!   wire without the sender's echo). No JSON, no storage, no auth; server and clients in
//!   this one process on a 2-worker runtime, so it also has none of the hand-offs between
//!   processes that the real load tool and server pay.
//! - **sqlite**: the durable write and nothing else. Rows of ~250 bytes into one table
//!   keyed by (conversation, seq), `PAIRS` conversations written round-robin (a busy
//!   conversation's newest page each), batches of `BATCH` rows per transaction, WAL with
//!   `synchronous=FULL` and checkpoints every 10,000 pages, as the embedded store runs it;
//!   no idempotency key, no conversation row, no search index.
//!
//! Run it with:
//!
//! ```sh
//! cargo run --release -p switchboard-loadtest --example floors -- \
//!     [--pairs 1000] [--rate 10000] [--seconds 10] [--batch 500] [--rows 200000] [--dir D]
//! ```
//!
//! Loopback only. Figures in docs/benchmarks.md ("The floors under a 1:1 message").

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, Executor};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{WebSocketStream, accept_async, client_async};

/// This process's user + system CPU time (clock ticks are 10 ms on every Linux we run on).
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<u64> = rest.split(' ').map(|f| f.parse().unwrap_or(0)).collect();
    Duration::from_millis((fields[11] + fields[12]) * 10)
}

fn flag<T: FromStr>(args: &[String], name: &str, default: T) -> T {
    match args.iter().position(|a| a == name) {
        Some(i) => args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            eprintln!("{name} needs a value");
            std::process::exit(2)
        }),
        None => default,
    }
}

fn report(name: &str, count: u64, wall: Duration, cpu: Duration) {
    println!(
        "{name:<8} {count:>8} messages in {:>6.2} s ({:>7.0}/s): {:>6.1} us CPU per message \
         ({:.2} cores)",
        wall.as_secs_f64(),
        count as f64 / wall.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / count as f64,
        cpu.as_secs_f64() / wall.as_secs_f64(),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        eprintln!(
            "usage: floors [--pairs 1000] [--rate 10000] [--seconds 10] [--batch 500] \
             [--rows 200000] [--dir D]"
        );
        return;
    }
    let pairs: u64 = flag(&args, "--pairs", 1000);
    let rate: u64 = flag(&args, "--rate", 10_000);
    let seconds: u64 = flag(&args, "--seconds", 10);
    let batch: u64 = flag(&args, "--batch", 500);
    let rows: u64 = flag(&args, "--rows", 200_000);
    let dir: Option<PathBuf> = args
        .iter()
        .position(|a| a == "--dir")
        .map(|i| PathBuf::from(args.get(i + 1).expect("--dir needs a value")));
    relay(pairs, rate, seconds).await;
    let tmp = tempfile::tempdir_in(dir.as_deref().unwrap_or(&std::env::temp_dir())).unwrap();
    sqlite(tmp.path(), pairs, batch, rows).await;
}

const SEND: usize = 170;
const ACK: usize = 90;
const DELIVERY: usize = 260;

/// Reads a client's first frame (its number), then relays: each frame's first 8 bytes name
/// the recipient; the sender gets an ack, the recipient the delivery.
async fn relay_connection(
    ws: WebSocketStream<TcpStream>,
    peers: Arc<std::sync::Mutex<HashMap<u64, mpsc::UnboundedSender<Message>>>>,
) {
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let Some(Ok(Message::Text(hello))) = stream.next().await else { return };
    peers.lock().unwrap().insert(hello.parse().unwrap(), tx.clone());
    // The writer: frames are fed as they come and flushed when the queue is empty, one
    // socket write for whatever waited, as the gateway's writer does.
    tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if sink.feed(frame).await.is_err() {
                return;
            }
            while let Ok(frame) = rx.try_recv() {
                if sink.feed(frame).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    let ack = Message::text("a".repeat(ACK));
    let delivery = Message::text("d".repeat(DELIVERY));
    let mut to = None;
    while let Some(Ok(Message::Text(frame))) = stream.next().await {
        let peer: u64 = frame[..8].trim().parse().unwrap();
        let to = to.get_or_insert_with(|| peers.lock().unwrap()[&peer].clone());
        let _ = to.send(delivery.clone());
        let _ = tx.send(ack.clone());
    }
}

async fn relay(pairs: u64, rate: u64, seconds: u64) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let peers = Arc::new(std::sync::Mutex::new(HashMap::new()));
    let registry = peers.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tcp.set_nodelay(true).unwrap();
            let peers = registry.clone();
            tokio::spawn(async move {
                if let Ok(ws) = accept_async(tcp).await {
                    relay_connection(ws, peers).await;
                }
            });
        }
    });

    let received = Arc::new(AtomicU64::new(0));
    let mut sinks = Vec::new();
    for n in 0..pairs * 2 {
        let tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let (ws, _) = client_async(format!("ws://{addr}/"), tcp).await.unwrap();
        let (mut sink, mut stream) = ws.split();
        sink.send(Message::text(n.to_string())).await.unwrap();
        let received = received.clone();
        tokio::spawn(async move {
            while let Some(Ok(frame)) = stream.next().await {
                if frame.len() == DELIVERY {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        sinks.push(sink);
    }
    while peers.lock().unwrap().len() < sinks.len() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // One pacer, 1 ms ticks, senders in turn: every sender writes to its partner.
    let total = rate * seconds;
    let frames: Vec<Message> = (0..pairs * 2)
        .map(|n| Message::text(format!("{:<8}{}", n ^ 1, "s".repeat(SEND - 8))))
        .collect();
    let (cpu0, start) = (cpu(), Instant::now());
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut sent = 0;
    while sent < total {
        tick.tick().await;
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due.min(total) {
            let n = (sent % (pairs * 2)) as usize;
            sinks[n].send(frames[n].clone()).await.unwrap();
            sent += 1;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.load(Ordering::Relaxed) < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let got = received.load(Ordering::Relaxed);
    report("relay", got, start.elapsed(), cpu() - cpu0);
    if got < total {
        println!("relay: {} of {total} frames not delivered within 30 s", total - got);
    }
}

async fn sqlite(dir: &std::path::Path, conversations: u64, batch: u64, rows: u64) {
    let mut db = SqliteConnectOptions::from_str("sqlite:")
        .unwrap()
        .filename(dir.join("floor.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .pragma("wal_autocheckpoint", "10000")
        .connect()
        .await
        .unwrap();
    db.execute(
        "CREATE TABLE messages (conversation_id INTEGER NOT NULL, seq INTEGER NOT NULL, \
         sender INTEGER NOT NULL, sent_at INTEGER NOT NULL, body TEXT NOT NULL, \
         PRIMARY KEY (conversation_id, seq)) WITHOUT ROWID",
    )
    .await
    .unwrap();
    let body = "b".repeat(220);
    let values = vec!["(?, ?, ?, ?, ?)"; batch as usize].join(", ");
    let insert = format!("INSERT INTO messages VALUES {values}");
    let (cpu0, start) = (cpu(), Instant::now());
    let mut n = 0;
    while n + batch <= rows {
        let mut tx = db.begin().await.unwrap();
        let mut query = sqlx::query(&insert);
        for i in n..n + batch {
            let conversation = (i % conversations) as i64;
            query = query
                .bind(conversation)
                .bind((i / conversations + 1) as i64)
                .bind(conversation * 2)
                .bind(i as i64)
                .bind(&body);
        }
        query.execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
        n += batch;
    }
    report("sqlite", n, start.elapsed(), cpu() - cpu0);
}
