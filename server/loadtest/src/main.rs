//! `syncsphere-loadtest`: opens many authenticated device connections to the State service,
//! drives commits through the File service at a fixed rate, and reports how long each change
//! took to reach every other device of its user (HDR histogram), plus the server's own
//! commit→socket histogram and its memory per connection.
//!
//! ```text
//! syncsphere-loadtest --server http://127.0.0.1:8787 --users 1000 --devices-per-user 10 \
//!     --rate 1000 --duration 30 --source-ips 8 --server-pid 1234
//! ```
//! With `--soak`, the long run of issue 19 instead (see `soak.rs`; `scripts/bench-soak.sh`).
//! Client sockets are bound round-robin to 127.0.0.1 … 127.0.0.N so ephemeral ports never run
//! out; raise `ulimit -n` for both processes first (`scripts/bench-push.sh` does).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::json;
use syncsphere_protocol::UploadQuery;
use syncsphere_protocol::endpoint::{self, Endpoint};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[derive(Debug, Parser)]
#[command(args_override_self = true)]
struct Args {
    /// Base URL of an all-in-one server (or a files instance when --push-url is given).
    #[arg(long, default_value = "http://127.0.0.1:8787")]
    server: String,
    /// Push endpoint base URL(s); default: the server.
    #[arg(long = "push-url")]
    push_urls: Vec<String>,
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// Number of the first bench user (several load processes use disjoint users).
    #[arg(long, default_value_t = 0)]
    user_offset: usize,
    /// Keep the connections open this many seconds after they are all up (idle benchmark:
    /// several load processes hold their connections at the same time).
    #[arg(long, default_value_t = 0)]
    hold_secs: u64,
    #[arg(long, default_value_t = 10)]
    devices_per_user: usize,
    /// Commits per second, spread over all users.
    #[arg(long, default_value_t = 100)]
    rate: u64,
    /// Seconds of load.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Bind client sockets round-robin to 127.0.0.1 … 127.0.0.N.
    #[arg(long, default_value_t = 4)]
    source_ips: u8,
    /// PID of the server, to report its resident memory per idle connection.
    #[arg(long)]
    server_pid: Option<u32>,
    #[arg(long, default_value = "local_syncsphere")]
    user_pool_id: String,
    #[arg(long, default_value = "syncsphere-desktop")]
    client_id: String,
    /// Soak mode (see `soak.rs`): for `--duration` seconds, commits at `--rate`, sockets
    /// churning, samples every `--sample-secs`; at the end, whether every device saw every
    /// change of its user.
    #[arg(long)]
    soak: bool,
    /// Soak: device sockets closed and reopened (with a catch-up from the cursor) per second.
    #[arg(long, default_value_t = 0)]
    churn_per_sec: u64,
    /// Soak: run the abuse suite's attacks alongside, from accounts of their own.
    #[arg(long)]
    attacks: bool,
    /// Soak: seconds between samples.
    #[arg(long, default_value_t = 60)]
    sample_secs: u64,
    /// Soak: samples before this many seconds are left out of the RSS and descriptor figures.
    #[arg(long, default_value_t = 300)]
    warmup_secs: u64,
}

mod soak;

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// One call of the built-in provider's Cognito API for bench user `n`, from an address of its
/// own (`X-Forwarded-For: 10.x.y.z`; the bench server trusts the header): one address signing
/// in hundreds of users is what the sign-in throttle stops (0041).
async fn cognito(
    http: &reqwest::Client,
    server: &str,
    op: &str,
    body: serde_json::Value,
    n: usize,
) -> anyhow::Result<serde_json::Value> {
    let address = format!("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
    let (status, value) = cognito_from(http, server, op, body, &address).await?;
    if !status.is_success() {
        bail!("{op}: {status} {value}");
    }
    Ok(value)
}

/// One call of the Cognito API from `address` (`X-Forwarded-For`): its status and body.
async fn cognito_from(
    http: &reqwest::Client,
    server: &str,
    op: &str,
    body: serde_json::Value,
    address: &str,
) -> anyhow::Result<(reqwest::StatusCode, serde_json::Value)> {
    let resp = http
        .post(format!("{server}{}", endpoint::CognitoApiSlash::PATH))
        .header("x-forwarded-for", address)
        .header("content-type", "application/x-amz-json-1.1")
        .header(
            "x-amz-target",
            format!("AWSCognitoIdentityProviderService.{op}"),
        )
        .body(body.to_string())
        .send()
        .await?;
    let status = resp.status();
    Ok((status, resp.json().await?))
}

/// The loopback address the `n`th device connects from: 127.0.0.1 … 127.0.0.`count`, round
/// robin, so that ephemeral ports never run out.
fn source_ip(n: usize, count: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        0,
        1 + (n % count.max(1) as usize) as u8,
    ))
}

/// Signs up bench user `n` (or finds it signed up) and signs it in once per device, each
/// token bound to its device (`DEVICE_KEY` `u{n}d{d}`): a token speaks for one device only, and
/// one bound to none may not say `hello` at all (issue 19).
async fn tokens_for(http: &reqwest::Client, args: &Args, n: usize) -> anyhow::Result<Vec<String>> {
    let username = format!("bench-{n}@example.com");
    let password = "Benchmark-passw0rd";
    let _ = cognito(
        http,
        &args.server,
        "SignUp",
        json!({"ClientId": args.client_id, "Username": username, "Password": password}),
        n,
    )
    .await;
    let mut tokens = Vec::with_capacity(args.devices_per_user);
    for d in 0..args.devices_per_user {
        let auth = cognito(
            http,
            &args.server,
            "InitiateAuth",
            json!({"AuthFlow": "USER_PASSWORD_AUTH", "ClientId": args.client_id,
                   "AuthParameters": {"USERNAME": username, "PASSWORD": password,
                                      "DEVICE_KEY": format!("u{n}d{d}")}}),
            n,
        )
        .await?;
        tokens.push(
            auth["AuthenticationResult"]["AccessToken"]
                .as_str()
                .context("no access token")?
                .to_owned(),
        );
    }
    Ok(tokens)
}

/// Path of a bench commit → when its upload started.
type Sent = Arc<Mutex<HashMap<String, Instant>>>;

async fn connect_device(
    push_base: &str,
    token: &str,
    device_id: &str,
    source: IpAddr,
) -> anyhow::Result<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>> {
    // A `ws://` base is a whole WebSocket URL (API Gateway's WebSocket API, or its double).
    let url = if push_base.starts_with("ws://") {
        push_base.to_owned()
    } else {
        format!(
            "{}{}",
            push_base.replacen("http://", "ws://", 1),
            endpoint::PushSocket::PATH
        )
    };
    let mut req = url.as_str().into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let host = req.uri().host().context("no host")?.to_owned();
    let port = req.uri().port_u16().unwrap_or(80);
    let addr: SocketAddr = tokio::net::lookup_host((host.as_str(), port))
        .await?
        .find(SocketAddr::is_ipv4)
        .context("no IPv4 address")?;
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = socket.connect(addr).await?;
    // Small buffers, like the server's: tungstenite zeroes its (default 128 KiB) read buffer
    // for every read, which at 9,000 pushes/s made the load tool memset 1 GB/s on the cores
    // the server needs.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(4096);
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(req, stream, Some(config)).await?;
    let hello =
        json!({"type": "hello", "device_id": device_id, "cursor": 0, "device_name": device_id});
    ws.send(Message::Text(hello.to_string().into())).await?;
    while let Some(msg) = ws.next().await {
        if let Message::Text(t) = msg? {
            let v: serde_json::Value = serde_json::from_str(&t)?;
            if v["type"] == "welcome" {
                return Ok(ws);
            }
        }
    }
    bail!("closed before welcome")
}

fn percentiles(h: &Histogram<u64>) -> String {
    let ms = |v: u64| v as f64 / 1000.0;
    format!(
        "n={} p50={:.2} ms p90={:.2} ms p99={:.2} ms p99.9={:.2} ms max={:.2} ms",
        h.len(),
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.9)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max())
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let push_bases = if args.push_urls.is_empty() {
        vec![args.server.clone()]
    } else {
        args.push_urls.clone()
    };

    eprintln!(
        "signing in {} users × {} devices…",
        args.users, args.devices_per_user
    );
    let started = Instant::now();
    let mut tokens = Vec::with_capacity(args.users);
    let numbers: Vec<usize> = (args.user_offset..args.user_offset + args.users).collect();
    for chunk in numbers.chunks(16) {
        let batch =
            futures_util::future::join_all(chunk.iter().map(|&n| tokens_for(&http, &args, n)))
                .await;
        for t in batch {
            tokens.push(t?);
        }
    }
    eprintln!(
        "  {} users in {:.1} s",
        tokens.len(),
        started.elapsed().as_secs_f64()
    );

    if args.soak {
        return soak::run(&args, http, tokens, push_bases).await;
    }
    let rss_before = args.server_pid.and_then(rss_kib);
    let total = args.users * args.devices_per_user;
    eprintln!("opening {total} device connections…");
    let started = Instant::now();
    let sent: Sent = Arc::default();
    let latencies = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    // Commit → receive: from the change's `at_ms` (the server's clock, stamped inside the
    // commit's transaction; same machine, so the same clock) to the push arriving. `at_ms` is
    // whole milliseconds, so this over-states by up to 1 ms.
    let from_commit = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut n = 0usize;
    for (u, user_tokens) in tokens.iter().enumerate() {
        for (d, token) in user_tokens.iter().enumerate() {
            let source = source_ip(n, args.source_ips);
            let base = &push_bases[n % push_bases.len()];
            let u = u + args.user_offset;
            let mut ws = connect_device(base, token, &format!("u{u}d{d}"), source)
                .await
                .with_context(|| format!("connection {n}"))?;
            n += 1;
            let (sent, latencies, received) = (sent.clone(), latencies.clone(), received.clone());
            let from_commit = from_commit.clone();
            tokio::spawn(async move {
                while let Some(Ok(msg)) = ws.next().await {
                    let Message::Text(t) = msg else { continue };
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(&t) else {
                        continue;
                    };
                    if v["type"] != "change" {
                        continue;
                    }
                    let at = v["path"]
                        .as_str()
                        .and_then(|p| sent.lock().unwrap().get(p).copied());
                    if let Some(at) = at {
                        let us = at.elapsed().as_micros() as u64;
                        let _ = latencies.lock().unwrap().record(us.max(1));
                        if let Some(committed_ms) = v["at_ms"].as_i64() {
                            let now_us = std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .map_or(0, |d| d.as_micros() as i64);
                            let us = (now_us - committed_ms * 1000).max(1) as u64;
                            let _ = from_commit.lock().unwrap().record(us);
                        }
                        received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    }
    eprintln!(
        "  {n} connections in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = args.server_pid.and_then(rss_kib);
    if args.hold_secs > 0 {
        eprintln!("holding the connections for {} s…", args.hold_secs);
        tokio::time::sleep(Duration::from_secs(args.hold_secs)).await;
    }

    eprintln!("driving {} commits/s for {} s…", args.rate, args.duration);
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / args.rate.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let commits = args.rate * args.duration;
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut inflight = Vec::new();
    let load_started = Instant::now();
    for c in 0..commits as usize {
        tick.tick().await;
        let u = c % tokens.len();
        let device = format!("u{}d0", u + args.user_offset);
        let path = format!("bench/{c}.txt");
        let query = UploadQuery {
            path: path.clone(),
            parent_rev: None,
        };
        let req = http
            .put(format!("{}{}", args.server, endpoint::UploadFile::PATH))
            .query(&query)
            .bearer_auth(&tokens[u][0])
            .header("x-syncsphere-device", device)
            .body(format!("commit {c}"));
        sent.lock().unwrap().insert(path, Instant::now());
        let errors = errors.clone();
        inflight.push(tokio::spawn(async move {
            match req.send().await {
                Ok(r) if r.status().is_success() => {}
                _ => {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }
    for t in inflight {
        let _ = t.await;
    }
    let achieved = commits as f64 / load_started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;

    let expected = commits * (args.devices_per_user as u64 - 1);
    let got = received.load(std::sync::atomic::Ordering::Relaxed);
    println!("## Push load test");
    println!();
    println!(
        "- devices: {n} ({} users × {} devices), source addresses: {}",
        args.users, args.devices_per_user, args.source_ips
    );
    println!(
        "- commits: {commits} at {} /s requested, {achieved:.0} /s achieved, {} failed",
        args.rate,
        errors.load(std::sync::atomic::Ordering::Relaxed)
    );
    println!(
        "- pushes received: {got} of {expected} expected (each commit goes to the user's other devices)"
    );
    println!(
        "- upload start → push received at another device: {}",
        percentiles(&latencies.lock().unwrap())
    );
    println!(
        "- commit (the change's at_ms, stamped in the commit) → push received: {}",
        percentiles(&from_commit.lock().unwrap())
    );
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        println!(
            "- server RSS: {before} KiB before, {after} KiB with {n} idle connections → {:.1} KiB per connection",
            (after.saturating_sub(before)) as f64 / n as f64
        );
    }
    // The server's own view: commit handed to the hub → frame written (or posted to
    // `@connections`), from /metrics buckets — of the State service, which is the server itself
    // when the push URL is a gateway's.
    let state_base = if push_bases[0].starts_with("ws://") {
        &args.server
    } else {
        &push_bases[0]
    };
    if let Ok(metrics) = http
        .get(format!("{state_base}{}", endpoint::Metrics::PATH))
        .send()
        .await?
        .text()
        .await
    {
        println!(
            "- server commit → socket write or @connections POST (from /metrics buckets): {}",
            bucket_quantiles(&metrics)
        );
    }
    Ok(())
}

/// Upper bounds of the histogram buckets holding p50, p99 and p99.9 of the server's push latency.
fn bucket_quantiles(metrics: &str) -> String {
    let buckets: Vec<(f64, f64)> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("syncsphere_state_push_latency_seconds_bucket{le=\""))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
    let Some(&(_, total)) = buckets.last() else {
        return "no data".into();
    };
    let at = |q: f64| {
        buckets
            .iter()
            .find(|(_, c)| *c >= q * total)
            .map_or("?".to_owned(), |(le, _)| format!("≤ {:.2} ms", le * 1000.0))
    };
    format!(
        "n={total} p50 {} p99 {} p99.9 {}",
        at(0.5),
        at(0.99),
        at(0.999)
    )
}
