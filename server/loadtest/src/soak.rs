//! `--soak`: the long run of issue 19. Every device stays connected for the whole run except
//! when the churn driver closes its socket (it then reconnects and catches up from its cursor
//! through `GET /v1/changes`, as the client does); commits flow at `--rate`; with `--attacks`
//! the abuse suite's attacks run alongside from accounts of their own. Every `--sample-secs`
//! one line: the server's RSS and open file descriptors, its sockets, the pushes of that
//! window and their commit → receive percentiles. At the end: whether every device saw every
//! change of its user (by push, or by catching up after a reconnect), RSS spread after the
//! warm-up, descriptor growth, and what each attack was answered.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use syncsphere_protocol::endpoint::{self, Endpoint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::{Notify, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::{Args, cognito_from, connect_device, percentiles, rss_kib, source_ip, tokens_for};

/// What one device has seen of its user's journal: every seq up to `contiguous`, and those
/// above it in `above`.
#[derive(Default)]
struct Seen {
    contiguous: i64,
    above: BTreeSet<i64>,
}

impl Seen {
    fn insert(&mut self, seq: i64) {
        if seq <= self.contiguous {
            return;
        }
        self.above.insert(seq);
        while self.above.remove(&(self.contiguous + 1)) {
            self.contiguous += 1;
        }
    }
}

struct Device {
    user: usize,
    index: usize,
    id: String,
    token: String,
    base: String,
    source: IpAddr,
    seen: Mutex<Seen>,
    kick: Notify,
    connected: AtomicBool,
}

#[derive(Default)]
struct Counters {
    pushes: AtomicU64,
    caught_up: AtomicU64,
    reconnects: AtomicU64,
    dropped_by_server: AtomicU64,
    connect_errors: AtomicU64,
    commits: AtomicU64,
    commit_errors: AtomicU64,
    /// Why commits failed: the status and message, or what the request met.
    commit_failures: AttackLog,
}

/// A small PRNG (xorshift64*), enough to pick devices and addresses.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Pages of `GET /v1/changes` from `cursor`: every seq, and the cursor at the end.
async fn changes_since(
    http: &reqwest::Client,
    server: &str,
    token: &str,
    mut cursor: i64,
) -> anyhow::Result<(Vec<i64>, i64)> {
    let mut seqs = Vec::new();
    loop {
        let page: Value = http
            .get(format!("{server}{}", endpoint::ListChanges::PATH))
            .query(&[("cursor", cursor), ("limit", 1000)])
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        for c in page["changes"].as_array().context("changes")? {
            seqs.push(c["seq"].as_i64().context("seq")?);
        }
        cursor = page["cursor"].as_i64().context("cursor")?;
        if page["has_more"] != true {
            return Ok((seqs, cursor));
        }
    }
}

struct Shared {
    http: reqwest::Client,
    server: String,
    /// Commit (`at_ms`) → push received, this sample window and the whole run.
    window: Mutex<Histogram<u64>>,
    total: Mutex<Histogram<u64>>,
    counters: Counters,
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// One device for the whole run: connect, catch up from its cursor, read pushes until kicked
/// (or dropped by the server), again.
async fn device_loop(shared: Arc<Shared>, device: Arc<Device>, mut stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if *stop.borrow() {
            return;
        }
        let mut ws =
            match connect_device(&device.base, &device.token, &device.id, device.source).await {
                Ok(ws) => ws,
                Err(_) => {
                    shared.counters.connect_errors.fetch_add(1, Relaxed);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
        backoff = Duration::from_millis(100);
        // Registered (welcome) before the catch-up: anything committed from here on is pushed.
        let cursor = device.seen.lock().unwrap().contiguous;
        match changes_since(&shared.http, &shared.server, &device.token, cursor).await {
            Ok((seqs, _)) => {
                shared
                    .counters
                    .caught_up
                    .fetch_add(seqs.len() as u64, Relaxed);
                let mut seen = device.seen.lock().unwrap();
                for s in seqs {
                    seen.insert(s);
                }
            }
            Err(_) => {
                shared.counters.connect_errors.fetch_add(1, Relaxed);
                continue;
            }
        }
        device.connected.store(true, Relaxed);
        loop {
            tokio::select! {
                msg = ws.next() => match msg {
                    Some(Ok(Message::Text(t))) => {
                        let Ok(v) = serde_json::from_str::<Value>(&t) else { continue };
                        if v["type"] != "change" {
                            continue;
                        }
                        if let Some(seq) = v["seq"].as_i64() {
                            device.seen.lock().unwrap().insert(seq);
                        }
                        shared.counters.pushes.fetch_add(1, Relaxed);
                        if let Some(at_ms) = v["at_ms"].as_i64() {
                            let us = (now_us() - at_ms * 1000).max(1) as u64;
                            let _ = shared.window.lock().unwrap().record(us);
                            let _ = shared.total.lock().unwrap().record(us);
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => {
                        shared.counters.dropped_by_server.fetch_add(1, Relaxed);
                        break;
                    }
                },
                _ = device.kick.notified() => {
                    let _ = ws.close(None).await;
                    shared.counters.reconnects.fetch_add(1, Relaxed);
                    break;
                }
                _ = stop.changed() => return,
            }
        }
        device.connected.store(false, Relaxed);
    }
}

/// The server's open file descriptors.
fn fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

async fn metric(http: &reqwest::Client, server: &str, name: &str) -> Option<f64> {
    let text = http
        .get(format!("{server}{}", endpoint::Metrics::PATH))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Tallies of what the server answered each attack.
#[derive(Default)]
struct AttackLog(Mutex<std::collections::BTreeMap<String, u64>>);

impl AttackLog {
    fn count(&self, what: impl Into<String>) {
        *self.0.lock().unwrap().entry(what.into()).or_default() += 1;
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The abuse suite's attacks, alongside the load, each from an account (or address) of its own.
async fn spawn_attacks(
    args: &Args,
    shared: Arc<Shared>,
    log: Arc<AttackLog>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let first = args.user_offset + args.users;
    let stall = tokens_for(&shared.http, args, first).await?;
    let parker = tokens_for(&shared.http, args, first + 1).await?;
    let stager = tokens_for(&shared.http, args, first + 2).await?;
    let server = shared.server.clone();
    let push_base = args.push_urls.first().cloned().unwrap_or(server.clone());

    // Push sockets that stop reading: three of the staller's devices connect on small receive
    // buffers and never read while its first device commits files with long names (~20/s);
    // every 10 minutes they are replaced. The server gives up on each after 60–80 s: they
    // never answer its pings, and the silence limit comes before their buffers and queue
    // fill at this rate (`syncsphere_state_silent_peers_total`; a peer that does answer pings
    // but reads too slowly meets the write timeout or the queue limit instead).
    {
        let (shared, log, mut stop) = (shared.clone(), log.clone(), stop.clone());
        let (tokens, base) = (stall.clone(), push_base.clone());
        tokio::spawn(async move {
            let long = "s".repeat(250);
            let mut n = 0u64;
            let mut stalled = Vec::new();
            let mut renewed = Instant::now() - Duration::from_secs(3600);
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            loop {
                tokio::select! { _ = tick.tick() => {}, _ = stop.changed() => return }
                if renewed.elapsed() > Duration::from_secs(600) {
                    stalled.clear();
                    for (d, token) in tokens.iter().enumerate().skip(1).take(3) {
                        let id = format!("u{first}d{d}");
                        match stalled_socket(&base, token, &id).await {
                            Ok(ws) => {
                                stalled.push(ws);
                                log.count("stalled sockets opened");
                            }
                            Err(_) => log.count("stalled sockets refused"),
                        }
                    }
                    renewed = Instant::now();
                }
                n += 1;
                let path = format!("stall/{long}/{long}/{long}/{n}.txt");
                let r = shared
                    .http
                    .put(format!("{}{}", shared.server, endpoint::UploadFile::PATH))
                    .query(&[("path", path)])
                    .bearer_auth(&tokens[0])
                    .header("x-syncsphere-device", format!("u{first}d0"))
                    .body(n.to_string())
                    .send()
                    .await;
                if !matches!(&r, Ok(r) if r.status().is_success()) {
                    log.count("staller commits failed");
                }
            }
        });
    }

    // Password guessing: two wrong passwords a second for four bench accounts from four
    // addresses (the bench server trusts X-Forwarded-For): past five failures a pair waits,
    // and the guesses meet "Password attempts exceeded".
    {
        let (shared, log, mut stop) = (shared.clone(), log.clone(), stop.clone());
        let (users, offset, client_id) = (args.users, args.user_offset, args.client_id.clone());
        tokio::spawn(async move {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tokio::select! { _ = tick.tick() => {}, _ = stop.changed() => return }
                let user = offset + (rng.next() as usize % users.clamp(1, 4));
                let address = format!("203.0.113.{}", rng.next() % 4);
                let body = json!({"AuthFlow": "USER_PASSWORD_AUTH", "ClientId": client_id,
                    "AuthParameters": {"USERNAME": format!("bench-{user}@example.com"),
                                       "PASSWORD": "Wrong-guess-1"}});
                let kind =
                    cognito_from(&shared.http, &shared.server, "InitiateAuth", body, &address)
                        .await
                        .ok()
                        .and_then(|(_, v)| {
                            let t = v["__type"].as_str()?.to_owned();
                            Some(format!(
                                "guess: {t} {}",
                                v["message"].as_str().unwrap_or("")
                            ))
                        });
                log.count(kind.unwrap_or_else(|| "guess: no answer".into()));
            }
        });
    }

    // Chunks sent ahead of their place (parked for running hashes) and chunks never
    // committed: a 1 MiB chunk every 2 s each, from two accounts.
    for (tokens, early) in [(parker, true), (stager, false)] {
        let (shared, log, mut stop) = (shared.clone(), log.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            loop {
                tokio::select! { _ = tick.tick() => {}, _ = stop.changed() => return }
                n += 1;
                let mut body = vec![0u8; 1 << 20];
                body[..8].copy_from_slice(&n.to_le_bytes());
                body[8] = u8::from(early);
                let mut req = shared
                    .http
                    .put(format!("{}/v1/chunks/{}", shared.server, sha256_hex(&body)))
                    .bearer_auth(&tokens[0]);
                if early {
                    req = req
                        .header("x-syncsphere-content", format!("{n:064x}"))
                        .header("x-syncsphere-offset", (1u64 << 20).to_string());
                }
                let what = if early {
                    "early chunk"
                } else {
                    "uncommitted chunk"
                };
                match req.body(body).send().await {
                    Ok(r) => log.count(format!("{what}: {}", r.status().as_u16())),
                    Err(_) => log.count(format!("{what}: no answer")),
                }
            }
        });
    }

    // Slowloris: ten requests whose headers never finish every 10 s; each should be cut by
    // the header timeout.
    {
        let (log, mut stop) = (log.clone(), stop.clone());
        let addr: SocketAddr = server
            .trim_start_matches("http://")
            .parse()
            .context("the server's address")?;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tokio::select! { _ = tick.tick() => {}, _ = stop.changed() => return }
                for _ in 0..10 {
                    let log = log.clone();
                    tokio::spawn(async move {
                        let Ok(socket) = TcpSocket::new_v4() else {
                            return;
                        };
                        let Ok(mut s) = socket.connect(addr).await else {
                            log.count("slowloris: refused");
                            return;
                        };
                        let _ = s
                            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                            .await;
                        let started = Instant::now();
                        let mut buf = [0u8; 512];
                        let cut = tokio::time::timeout(Duration::from_secs(120), async {
                            while let Ok(n) = s.read(&mut buf).await {
                                if n == 0 {
                                    break;
                                }
                            }
                        })
                        .await;
                        log.count(match cut {
                            Ok(()) if started.elapsed() < Duration::from_secs(40) => {
                                "slowloris: cut within 40 s"
                            }
                            Ok(()) => "slowloris: cut later",
                            Err(_) => "slowloris: held 120 s",
                        });
                    });
                }
            }
        });
    }
    drop(stop);
    Ok(())
}

/// A push socket on a small receive buffer that will never be read.
async fn stalled_socket(
    base: &str,
    token: &str,
    id: &str,
) -> anyhow::Result<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>> {
    let url = format!(
        "{}{}",
        base.replacen("http://", "ws://", 1),
        endpoint::PushSocket::PATH
    );
    let mut req =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let addr: SocketAddr = base.trim_start_matches("http://").parse()?;
    let socket = TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    let stream = socket.connect(addr).await?;
    let (mut ws, _) = tokio_tungstenite::client_async(req, stream).await?;
    let hello = json!({"type": "hello", "device_id": id, "cursor": 0});
    ws.send(Message::Text(hello.to_string().into())).await?;
    Ok(ws)
}

/// Runs the soak with the devices' tokens (`tokens[user][device]`).
pub(crate) async fn run(
    args: &Args,
    http: reqwest::Client,
    tokens: Vec<Vec<String>>,
    push_bases: Vec<String>,
) -> anyhow::Result<()> {
    let shared = Arc::new(Shared {
        http: http.clone(),
        server: args.server.clone(),
        window: Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3)?),
        total: Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3)?),
        counters: Counters::default(),
    });
    // Each user's journal head now: devices start there (a reused server has older changes).
    let mut heads = Vec::with_capacity(tokens.len());
    for user_tokens in &tokens {
        heads.push(
            changes_since(&http, &args.server, &user_tokens[0], 0)
                .await?
                .1,
        );
    }
    // The load (commits, churn, attacks) stops first; the devices once the last pushes are in.
    let (stop_tx, stop_rx) = watch::channel(false);
    let (stop_devices_tx, stop_devices_rx) = watch::channel(false);
    let mut devices = Vec::new();
    let mut n = 0usize;
    for (u, user_tokens) in tokens.iter().enumerate() {
        for (d, token) in user_tokens.iter().enumerate() {
            let source = source_ip(n, args.source_ips);
            devices.push(Arc::new(Device {
                user: u,
                index: d,
                id: format!("u{}d{d}", u + args.user_offset),
                token: token.clone(),
                base: push_bases[n % push_bases.len()].clone(),
                source,
                seen: Mutex::new(Seen {
                    contiguous: heads[u],
                    above: BTreeSet::new(),
                }),
                kick: Notify::new(),
                connected: AtomicBool::new(false),
            }));
            n += 1;
        }
    }
    eprintln!("opening {n} device connections…");
    let started = Instant::now();
    for chunk in devices.chunks(64) {
        for device in chunk {
            tokio::spawn(device_loop(
                shared.clone(),
                device.clone(),
                stop_devices_rx.clone(),
            ));
        }
        while chunk.iter().any(|d| !d.connected.load(Relaxed)) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    eprintln!(
        "  {n} connected in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let attacks = Arc::new(AttackLog::default());
    if args.attacks {
        spawn_attacks(args, shared.clone(), attacks.clone(), stop_rx.clone()).await?;
    }

    // Commits.
    let commit_task = {
        let (shared, tokens, mut stop) = (shared.clone(), tokens.clone(), stop_rx.clone());
        let (rate, offset) = (args.rate.max(1), args.user_offset);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut c = 0usize;
            loop {
                tokio::select! { _ = tick.tick() => {}, _ = stop.changed() => return }
                let u = c % tokens.len();
                let path = format!("soak/{c}.txt");
                let req = shared
                    .http
                    .put(format!("{}{}", shared.server, endpoint::UploadFile::PATH))
                    .query(&[("path", path.as_str())])
                    .bearer_auth(&tokens[u][0])
                    .header("x-syncsphere-device", format!("u{}d0", u + offset))
                    .body(format!("commit {c}"));
                let shared = shared.clone();
                tokio::spawn(async move {
                    let why = match req.send().await {
                        Ok(r) if r.status().is_success() => {
                            shared.counters.commits.fetch_add(1, Relaxed);
                            return;
                        }
                        Ok(r) => {
                            let status = r.status().as_u16();
                            let body = r.text().await.unwrap_or_default();
                            format!("{status} {}", body.chars().take(120).collect::<String>())
                        }
                        Err(e) if e.is_timeout() => "timed out".to_owned(),
                        Err(e) if e.is_connect() => format!("not connected: {e}"),
                        Err(e) => format!("no answer: {e}"),
                    };
                    shared.counters.commit_errors.fetch_add(1, Relaxed);
                    shared.counters.commit_failures.count(why);
                });
                c += 1;
            }
        })
    };
    // Churn: a device's socket closed and reopened `--churn-per-sec` times a second.
    let churn_task = {
        let (devices, mut stop) = (devices.clone(), stop_rx.clone());
        let per_sec = args.churn_per_sec;
        tokio::spawn(async move {
            if per_sec == 0 {
                return;
            }
            let mut rng = Rng(0x2545_f491_4f6c_dd1d);
            let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / per_sec));
            loop {
                tokio::select! { _ = tick.tick() => {}, _ = stop.changed() => return }
                devices[rng.next() as usize % devices.len()]
                    .kick
                    .notify_one();
            }
        })
    };

    // Samples.
    let pid = args.server_pid;
    let state_base = push_bases[0].clone();
    println!("## Soak");
    println!();
    println!(
        "- {n} devices ({} users × {}), {} commits/s, {} socket reconnects/s, attacks: {}, {} s",
        args.users,
        args.devices_per_user,
        args.rate,
        args.churn_per_sec,
        if args.attacks { "on" } else { "off" },
        args.duration
    );
    println!();
    println!(
        "| t (s) | server RSS (MiB) | fds | sockets | pushes (window) | reconnects | commit → push p50 / p99 (ms) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let run_started = Instant::now();
    let mut samples: Vec<(u64, Option<u64>, Option<usize>)> = Vec::new();
    let mut last_pushes = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(args.sample_secs.max(1)));
    tick.tick().await;
    while run_started.elapsed() < Duration::from_secs(args.duration) {
        tick.tick().await;
        let t = run_started.elapsed().as_secs();
        let rss = pid.and_then(rss_kib);
        let fd = pid.and_then(fds);
        let sockets = metric(&http, &state_base, "syncsphere_state_sockets").await;
        let pushes = shared.counters.pushes.load(Relaxed);
        let (p50, p99) = {
            let mut w = shared.window.lock().unwrap();
            let v = (
                w.value_at_quantile(0.5) as f64 / 1000.0,
                w.value_at_quantile(0.99) as f64 / 1000.0,
            );
            w.reset();
            v
        };
        println!(
            "| {t} | {} | {} | {} | {} | {} | {p50:.1} / {p99:.1} |",
            rss.map_or("?".into(), |k| format!("{:.0}", k as f64 / 1024.0)),
            fd.map_or("?".into(), |f| f.to_string()),
            sockets.map_or("?".into(), |s| format!("{s:.0}")),
            pushes - last_pushes,
            shared.counters.reconnects.load(Relaxed),
        );
        last_pushes = pushes;
        samples.push((t, rss, fd));
    }
    let _ = stop_tx.send(true);
    drop(commit_task);
    drop(churn_task);
    // Let the last commits finish and their pushes arrive (devices still connecting catch up),
    // then check every device against its user's journal.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let _ = stop_devices_tx.send(true);
    let mut final_heads = Vec::with_capacity(tokens.len());
    for (u, user_tokens) in tokens.iter().enumerate() {
        final_heads.push(
            changes_since(&http, &args.server, &user_tokens[0], heads[u])
                .await?
                .1,
        );
    }
    let (mut lagging, mut missing) = (0u64, 0i64);
    for d in devices.iter().filter(|d| d.index > 0) {
        let seen = d.seen.lock().unwrap();
        let head = final_heads[d.user];
        let have = if seen.contiguous >= head {
            head
        } else {
            seen.contiguous + seen.above.range(seen.contiguous + 1..=head).count() as i64
        };
        if have < head {
            lagging += 1;
            missing += head - have;
        }
    }
    let c = &shared.counters;
    let journal: i64 = final_heads.iter().zip(&heads).map(|(f, s)| f - s).sum();
    println!();
    println!(
        "- commits: {} made, {} failed; journal entries: {journal}",
        c.commits.load(Relaxed),
        c.commit_errors.load(Relaxed)
    );
    for (why, count) in c.commit_failures.0.lock().unwrap().iter() {
        println!("  - failed commits: {count} × {why}");
    }
    println!(
        "- pushes received: {}; changes fetched when catching up after a reconnect: {}",
        c.pushes.load(Relaxed),
        c.caught_up.load(Relaxed)
    );
    println!(
        "- reconnects: {} by the churn, {} sockets closed by the server, {} failed connects",
        c.reconnects.load(Relaxed),
        c.dropped_by_server.load(Relaxed),
        c.connect_errors.load(Relaxed)
    );
    println!(
        "- **changes lost: {missing}** ({lagging} of {} devices behind their user's journal at the end)",
        devices.iter().filter(|d| d.index > 0).count()
    );
    println!(
        "- commit → push received, whole run: {}",
        percentiles(&shared.total.lock().unwrap())
    );
    let warm: Vec<_> = samples
        .iter()
        .filter(|(t, _, _)| *t >= args.warmup_secs)
        .collect();
    let rss: Vec<u64> = warm.iter().filter_map(|(_, r, _)| *r).collect();
    if let (Some(min), Some(max)) = (rss.iter().min(), rss.iter().max()) {
        let mut sorted = rss.clone();
        sorted.sort_unstable();
        let median = sorted[sorted.len() / 2] as f64;
        println!(
            "- server RSS after the {} s warm-up: {:.0}–{:.0} MiB, median {:.0} MiB: {:+.1} % / {:+.1} % around it",
            args.warmup_secs,
            *min as f64 / 1024.0,
            *max as f64 / 1024.0,
            median / 1024.0,
            (*min as f64 / median - 1.0) * 100.0,
            (*max as f64 / median - 1.0) * 100.0
        );
    }
    let fds: Vec<usize> = warm.iter().filter_map(|(_, _, f)| *f).collect();
    if let (Some(first), Some(last), Some(max)) = (fds.first(), fds.last(), fds.iter().max()) {
        println!(
            "- server file descriptors after the warm-up: {first} first, {last} last, {max} at most"
        );
    }
    if args.attacks {
        println!("- attacks, as answered:");
        for (what, count) in attacks.0.lock().unwrap().iter() {
            println!("  - {what}: {count}");
        }
        for name in [
            "syncsphere_state_queue_overflows_total",
            "syncsphere_state_write_timeouts_total",
            "syncsphere_state_silent_peers_total",
            "syncsphere_files_parked_bytes",
            "syncsphere_files_staged_refusals",
            "syncsphere_idp_throttle_pairs",
        ] {
            if let Some(v) = metric(&http, &args.server, name).await {
                println!("  - `{name}` at the end: {v}");
            }
        }
    }
    for name in [
        "syncsphere_files_gc_passes",
        "syncsphere_files_gc_failures",
        "syncsphere_files_gc_last_pass_milliseconds",
    ] {
        if let Some(v) = metric(&http, &args.server, name).await {
            println!("- `{name}` at the end: {v}");
        }
    }
    Ok(())
}
