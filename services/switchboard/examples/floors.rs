//! The floors a cluster message cannot beat, measured on this machine: a Redis
//! PUBLISH -> subscriber round trip, a Redis presence lookup (what a router does per
//! route) and one PostgreSQL single-row commit (what storage does per batch), each one at
//! a time, as p50/p99/max over N samples. Given a router's or the storage service's
//! address, also one gRPC round trip to it (a health check: what each of the message's
//! hops between processes costs at least).
//!
//!     cargo run --release -p switchboard --example floors -- \
//!         redis://127.0.0.1:6379 postgres://postgres@127.0.0.1:5432/postgres [N [GRPC_URL]]
//!
//! Run while the cluster carries traffic, they show what that load alone does to them.
//!
//! Used by scripts/bench-cluster.sh; figures in docs/benchmarks.md.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::AsyncCommands;
use sqlx::Connection;

fn summary(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<32} p50 {:>7.3} ms   p99 {:>7.3} ms   max {:>7.3} ms   (n={})",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(*samples.last().unwrap()),
        samples.len()
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(redis_url), Some(pg_url)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: floors REDIS_URL POSTGRES_URL [SAMPLES [GRPC_URL]]");
        std::process::exit(2);
    };
    let n: usize = args.get(3).map_or(2000, |n| n.parse().unwrap());
    let tag = format!("sbfloor{}", std::process::id());

    // Redis: PUBLISH and wait for our own subscriber to receive it.
    let client = redis::Client::open(redis_url.as_str()).unwrap();
    let mut publisher = client.get_multiplexed_async_connection().await.unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(&tag).await.unwrap();
    let mut messages = pubsub.on_message();
    let mut samples = Vec::with_capacity(n);
    for i in 0..n + 100 {
        let start = Instant::now();
        let _: i64 = publisher.publish(&tag, i).await.unwrap();
        messages.next().await.unwrap();
        if i >= 100 {
            samples.push(start.elapsed());
        }
    }
    summary("redis PUBLISH -> subscriber", samples);
    drop(messages);

    // Redis: one presence lookup as a router does it (HGETALL of a user's gateways).
    let key = format!("{tag}:presence:1");
    let _: () = publisher.hset(&key, "gw1", 1).await.unwrap();
    let mut samples = Vec::with_capacity(n);
    for i in 0..n + 100 {
        let start = Instant::now();
        let _: Vec<(String, i64)> = publisher.hgetall(&key).await.unwrap();
        if i >= 100 {
            samples.push(start.elapsed());
        }
    }
    summary("redis HGETALL (presence lookup)", samples);
    let _: () = publisher.del(&key).await.unwrap();

    // PostgreSQL: one durable single-row commit (synchronous_commit as configured).
    let mut pg = sqlx::PgConnection::connect(pg_url).await.unwrap();
    let table = format!("{tag}_commit");
    sqlx::query(&format!("CREATE TABLE {table} (id bigserial PRIMARY KEY, body text NOT NULL)"))
        .execute(&mut pg)
        .await
        .unwrap();
    let insert = format!("INSERT INTO {table} (body) VALUES ($1)");
    let mut samples = Vec::with_capacity(n);
    for i in 0..n + 100 {
        let start = Instant::now();
        sqlx::query(&insert)
            .bind("a 64-byte message body, about the size the benchmark sends..")
            .execute(&mut pg)
            .await
            .unwrap();
        if i >= 100 {
            samples.push(start.elapsed());
        }
    }
    summary("postgres single-row commit", samples);
    sqlx::query(&format!("DROP TABLE {table}")).execute(&mut pg).await.unwrap();

    // gRPC: one unary call to a running service, over one HTTP/2 connection.
    if let Some(url) = args.get(4) {
        let channel = tonic::transport::Endpoint::from_shared(url.clone())
            .unwrap()
            .tcp_nodelay(true)
            .connect()
            .await
            .unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let mut samples = Vec::with_capacity(n);
        for i in 0..n + 100 {
            let start = Instant::now();
            let request = tonic_health::pb::HealthCheckRequest { service: String::new() };
            health.check(request).await.unwrap();
            if i >= 100 {
                samples.push(start.elapsed());
            }
        }
        summary("gRPC round trip (health check)", samples);
    }
}
