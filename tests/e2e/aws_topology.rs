//! End to end, the product owner's AWS topology on this machine (issue 17 item 4): a Cognito
//! user pool (moto, created through the AWS API), one `files` task on PostgreSQL, S3 (s3s-fs)
//! and Redis behind the REST API double, two `state` tasks behind the WebSocket API double
//! (its integrations spread over both tasks, request by request, as the Network Load Balancer
//! does) pushing through `@connections` with the AWS SDK. Two real clients sign up at the pool,
//! sync by push, and keep syncing by push when a state task is stopped (its clients are told to
//! reconnect) and when one crashes (its orphaned connections are found by the clients'
//! heartbeats once the task's liveness key expires, closed, and reconnected).
//!
//! What the doubles do not model is in their module docs; the load balancer's health checks
//! are modelled by the test deregistering a task before stopping it and registering it again
//! after its restart.

use std::time::{Duration, Instant};

use syncsphere_e2e::cognito::Pool;
use syncsphere_e2e::gateway::RestGateway;
use syncsphere_e2e::ws_gateway::{Logged, WsGateway, WsGatewayConfig};
use syncsphere_e2e::{Device, Server, free_loopback_port, wait_for};
use syncsphere_test_support::{moto, postgres_database, redis_url, s3_settings};

const POOL_PASSWORD: &str = "Correct-horse-9";
const SECRET: &str = "topology-gateway-secret-0123";
const SETTLE: Duration = Duration::from_secs(60);

fn device(name: &str) -> Device {
    let mut d = Device::new(name).expect("device");
    d.env
        .push(("SYNCSPHERE_PASSWORD".into(), POOL_PASSWORD.to_owned()));
    d
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn connected(d: &Device) -> bool {
    d.status()
        .is_some_and(|s| s["connected"] == true && s["state"] == "up_to_date")
}

fn connects(d: &Device) -> usize {
    d.log().matches("push channel connected").count()
}

/// Writes `name` on `from`; how long until `to` has it.
fn arrival(from: &Device, to: &Device, name: &str, body: &str) -> Option<Duration> {
    std::fs::write(from.path(name), body).unwrap();
    wait_for(SETTLE, || {
        std::fs::read_to_string(to.path(name)).ok().as_deref() == Some(body)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_topology_syncs_by_push_and_survives_losing_a_state_task() {
    let (Some(moto), Some(redis), Some(s3)) = (moto(), redis_url(), s3_settings()) else {
        return;
    };
    let Some(database) = postgres_database().await else {
        return;
    };
    let pool = Pool::create(&moto.url).await;
    let pool_args = pool.server_args();

    // The WebSocket API in front of two state tasks (their ports chosen first).
    let state_urls: Vec<String> = (0..2)
        .map(|_| format!("http://127.0.0.1:{}", free_loopback_port()))
        .collect();
    let mut ws_config = WsGatewayConfig::for_services(&state_urls);
    ws_config.idle_timeout = Duration::from_secs(4);
    ws_config.static_headers = vec![("x-syncsphere-gateway-secret".into(), SECRET.into())];
    let ws = WsGateway::start(ws_config).await.unwrap();
    let (key, secret, region) = ws.credentials();

    // The files task: PostgreSQL, S3, Redis, the pool; clients learn the WebSocket API's URL.
    let prefix = format!("topology-{}/", std::process::id());
    let mut files_args: Vec<String> = [
        "--role",
        "files",
        "--redis-url",
        &redis,
        "--s3-bucket",
        &s3.bucket,
        "--s3-endpoint",
        &s3.endpoint,
        "--s3-path-style",
        "--s3-prefix",
        &prefix,
        "--push-url",
        &ws.ws_url,
    ]
    .map(String::from)
    .to_vec();
    files_args.extend(pool_args.iter().cloned());
    let mut files = Server::start_env(
        "127.0.0.1:0",
        Some(&database),
        &files_args.iter().map(String::as_str).collect::<Vec<_>>(),
        &[
            ("AWS_ACCESS_KEY_ID", &s3.access_key),
            ("AWS_SECRET_ACCESS_KEY", &s3.secret_key),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    )
    .expect("files task starts");
    let rest = RestGateway::start(&files.url).await.unwrap();
    files.url = rest.url.clone();

    // Two state tasks: the pool's tokens, Redis, pushes through `@connections`.
    let mut state_args: Vec<String> = [
        "--role",
        "state",
        "--redis-url",
        &redis,
        "--apigw-endpoint",
        &ws.management_url,
        "--apigw-secret",
        SECRET,
        "--apigw-idle-timeout-secs",
        "4",
    ]
    .map(String::from)
    .to_vec();
    state_args.extend(pool_args.iter().cloned());
    let state_args: Vec<&str> = state_args.iter().map(String::as_str).collect();
    let aws_env = [
        ("AWS_ACCESS_KEY_ID", key),
        ("AWS_SECRET_ACCESS_KEY", secret),
        ("AWS_REGION", region),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let mut states: Vec<Server> = state_urls
        .iter()
        .map(|url| {
            Server::start_env(
                url.trim_start_matches("http://"),
                None,
                &state_args,
                &aws_env,
            )
            .expect("state task starts")
        })
        .collect();

    // Two devices sign up / in at the pool through the REST API.
    let email = "topology@example.com";
    let a = device("laptop");
    let out = a.account("signup", &files, email).unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let out = a.run(&[
        "confirm-signup",
        "--server",
        &files.url,
        "--email",
        email,
        "--code",
        "123456",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let b = device("desktop");
    b.login(&files, email);
    std::fs::create_dir_all(&a.folder).unwrap();
    let _pa = a.start_sync().unwrap();
    let _pb = b.start_sync().unwrap();
    let logs = |states: &[Server]| {
        format!(
            "A:\n{}\nB:\n{}\nstate 0:\n{}\nstate 1:\n{}",
            a.log(),
            b.log(),
            states[0].log(),
            states[1].log()
        )
    };
    assert!(
        wait_for(SETTLE, || connected(&a) && connected(&b)).is_some(),
        "both connected through the WebSocket API\n{}",
        logs(&states)
    );

    // Saves go both ways by push (the poll is 60 s away).
    let pushed = Duration::from_secs(10);
    let t = arrival(&a, &b, "one.txt", "from the laptop").expect("laptop -> desktop");
    assert!(t < pushed, "pushed, not polled: {t:?}\n{}", logs(&states));
    let t = arrival(&b, &a, "two.txt", "from the desktop").expect("desktop -> laptop");
    assert!(t < pushed, "pushed, not polled: {t:?}\n{}", logs(&states));

    // A state task that serves connections is stopped (a deployment): the balancer stops
    // sending it requests, the task tells the connections it serves to reconnect, and they do,
    // to the other task.
    let serving = |s: &Server| s.log().matches("gateway device connected").count();
    let stopped = if serving(&states[0]) > 0 { 0 } else { 1 };
    let other = 1 - stopped;
    assert!(serving(&states[stopped]) > 0, "{}", logs(&states));
    let before = (connects(&a), connects(&b));
    ws.set_balance(&state_urls[other..=other]);
    states[stopped].stop();
    assert!(
        wait_for(SETTLE, || connected(&a) && connected(&b)).is_some(),
        "connected again after the stop\n{}",
        logs(&states)
    );
    let t = arrival(&a, &b, "three.txt", "after the stop").expect("after the stop");
    assert!(
        t < pushed,
        "pushed after the stop: {t:?}\n{}",
        logs(&states)
    );
    let reconnected = (connects(&a) - before.0) + (connects(&b) - before.1);
    assert!(reconnected >= 1, "{}", logs(&states));
    eprintln!("after stopping state task {stopped}: {reconnected} reconnection(s)");

    // It comes back; then the other task crashes: nobody tells the clients, but within the
    // liveness key's 30 s their heartbeats find the serving task gone, their connections are
    // closed and they reconnect to the live task.
    // Both clients are served by the other task since the stop; the balancer's health check
    // takes the crashed task out of rotation (here: at once).
    states[stopped]
        .restart()
        .expect("the stopped state task restarts");
    let before = (connects(&a), connects(&b));
    let crashed_at = Instant::now();
    ws.set_balance(&state_urls[stopped..=stopped]);
    states[other].process.kill9();
    let recovered = wait_for(Duration::from_secs(60), || {
        connects(&a) > before.0 && connects(&b) > before.1 && connected(&a) && connected(&b)
    });
    assert!(
        recovered.is_some(),
        "reconnected after the crash\n{}",
        logs(&states)
    );
    eprintln!(
        "after state task {other} crashed: both clients reconnected in {:?}",
        crashed_at.elapsed()
    );
    let t = arrival(&b, &a, "four.txt", "after the crash").expect("after the crash");
    assert!(
        t < pushed,
        "pushed after the crash: {t:?}\n{}",
        logs(&states)
    );

    let log = ws.log();
    let gone = log
        .iter()
        .filter(|l| matches!(l, Logged::Management { status: 410, .. }))
        .count();
    let refused = log
        .iter()
        .filter(|l| matches!(l, Logged::Management { status: 403, .. }))
        .count();
    assert_eq!(refused, 0, "every @connections call was signed right");
    eprintln!(
        "{} gateway events, {gone} @connections calls found their connection gone",
        log.len()
    );
}
