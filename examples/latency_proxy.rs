//! A TCP proxy on loopback that adds a fixed one-way delay in each direction, for the
//! benchmarks (`bench/latency_proxy.py` starts it). The machines have no `tc netem`; this
//! stands in for a registry 10-25 ms away without becoming the bottleneck itself: every chunk
//! read from one side is written to the other `delay` after it arrived (in order, not
//! cumulatively), so a request/response round trip costs `2 * delay` and bandwidth is not
//! limited.
//!
//! ```text
//! latency_proxy TARGET_PORT DELAY_MS
//! ```
//!
//! Listens on 127.0.0.1 at a free port and prints `port N` on stdout. Each line read on stdin
//! is answered with `requests R connections C` (HTTP/1.1 requests seen: client chunks that
//! start with a method); end of stdin stops the proxy.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

const METHODS: [&[u8]; 6] = [b"GET ", b"HEAD ", b"PUT ", b"POST ", b"PATCH ", b"DELETE "];

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    connections: AtomicU64,
}

/// Copy `from` to `to`, each chunk `delay` after it was read. The last message (empty) is
/// the end of the stream, passed on as a half close.
async fn pipe(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    delay: Duration,
    counts: Option<Arc<Counts>>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let sender = tokio::spawn(async move {
        while let Some((due, data)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if data.is_empty() || to.write_all(&data).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = from.read(&mut buf).await.unwrap_or(0);
        if let Some(c) = &counts {
            if METHODS.iter().any(|m| buf[..n].starts_with(m)) {
                c.requests.fetch_add(1, Ordering::Relaxed);
            }
        }
        if tx
            .send((Instant::now() + delay, buf[..n].to_vec()))
            .is_err()
            || n == 0
        {
            break;
        }
    }
    let _ = sender.await;
}

async fn handle(client: TcpStream, target: u16, delay: Duration, counts: Arc<Counts>) {
    counts.connections.fetch_add(1, Ordering::Relaxed);
    let Ok(upstream) = TcpStream::connect(("127.0.0.1", target)).await else {
        return;
    };
    for s in [&client, &upstream] {
        let _ = s.set_nodelay(true);
    }
    let (cr, cw) = client.into_split();
    let (ur, uw) = upstream.into_split();
    tokio::join!(pipe(cr, uw, delay, Some(counts)), pipe(ur, cw, delay, None));
}

/// Answer each stdin line with the counts; return at end of stdin.
async fn control(counts: Arc<Counts>) {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut out = tokio::io::stdout();
    while let Ok(Some(_)) = lines.next_line().await {
        let line = format!(
            "requests {} connections {}\n",
            counts.requests.load(Ordering::Relaxed),
            counts.connections.load(Ordering::Relaxed)
        );
        if out.write_all(line.as_bytes()).await.is_err() || out.flush().await.is_err() {
            return;
        }
    }
}

fn args() -> Result<(u16, Duration), String> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let [port, ms] = argv.as_slice() else {
        return Err("usage: latency_proxy TARGET_PORT DELAY_MS".into());
    };
    let port = port.parse().map_err(|_| format!("bad port {port:?}"))?;
    let ms: f64 = ms.parse().map_err(|_| format!("bad delay {ms:?}"))?;
    if !(0.0..=10_000.0).contains(&ms) {
        return Err(format!("delay {ms} ms is out of 0-10000"));
    }
    Ok((port, Duration::from_secs_f64(ms / 1000.0)))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let (target, delay) = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("latency_proxy: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(("127.0.0.1", 0)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("latency_proxy: cannot listen on 127.0.0.1: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let port = listener.local_addr().map_or(0, |a| a.port());
    println!("port {port}");
    let counts = Arc::new(Counts::default());
    let accept = {
        let counts = counts.clone();
        async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(handle(sock, target, delay, counts.clone()));
            }
        }
    };
    tokio::select! {
        () = accept => {}
        () = control(counts) => {}
    }
    std::process::ExitCode::SUCCESS
}
