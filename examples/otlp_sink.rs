//! A throwaway OTLP/gRPC trace receiver that only counts spans: the collector end of the
//! export-on benchmark (`scripts/bench_trace.sh`), so export cost is measured without a real
//! collector competing for the cores. Not a collector: it keeps nothing.
//!
//! `cargo run --release --example otlp_sink -- 127.0.0.1:4317` prints the listening address,
//! then the total number of spans received once a second.

#[path = "../tests/it/common/otlp_sink.rs"]
mod otlp_sink;

use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let listen = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:4317".to_owned());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let (addr, received) = otlp_sink::spawn(listener, false);
    println!("listening on {addr}");
    let mut last = u64::MAX;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let count = received.count();
        if count != last {
            println!("spans {count}");
            last = count;
        }
    }
}
