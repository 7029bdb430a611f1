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
use syncsphere_e2e::output_text as text;
use syncsphere_e2e::ws_gateway::{Logged, WsGateway, WsGatewayConfig};
use syncsphere_e2e::{Device, Server, free_loopback_port, wait_for};
use syncsphere_test_support::{moto, postgres_database, redis_url, s3_settings};

const POOL_PASSWORD: &str = "Correct-horse-9";
const SECRET: &str = "topology-gateway-secret-0123";
const SETTLE: Duration = Duration::from_secs(60);
/// A test-sized idle timeout: clients send heartbeats every 2 s.
const SHORT_IDLE: Duration = Duration::from_secs(4);

fn device(name: &str) -> Device {
    Device::with_password(name, POOL_PASSWORD).expect("device")
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

/// The topology, started; `None` (skipped) without the emulators.
struct Topology {
    ws: WsGateway,
    _rest: RestGateway,
    files: Server,
    /// The files task's own address (`files.url` is the REST API double's), for a restart.
    files_direct: String,
    states: Vec<Server>,
    state_urls: Vec<String>,
    a: Device,
    b: Device,
    _moto: syncsphere_test_support::Moto,
}

impl Topology {
    /// Everything up, two devices signed up / in at the pool (`email`), neither syncing yet.
    /// The WebSocket API double ends connections after `max_duration`; the state tasks tell
    /// clients `told_max_secs`.
    async fn start(
        email: &str,
        idle_timeout: Duration,
        max_duration: Duration,
        told_max_secs: u64,
    ) -> Option<Self> {
        let (Some(moto), Some(redis), Some(s3)) = (moto(), redis_url(), s3_settings()) else {
            return None;
        };
        let database = postgres_database().await?;
        let pool = Pool::create(&moto.url).await;
        let pool_args = pool.server_args();

        // The WebSocket API in front of two state tasks (their ports chosen first).
        let state_urls: Vec<String> = (0..2)
            .map(|_| format!("http://127.0.0.1:{}", free_loopback_port()))
            .collect();
        let mut ws_config = WsGatewayConfig::for_services(&state_urls);
        ws_config.idle_timeout = idle_timeout;
        ws_config.max_duration = max_duration;
        ws_config.static_headers = vec![("x-syncsphere-gateway-secret".into(), SECRET.into())];
        let ws = WsGateway::start(ws_config).await.unwrap();
        let (key, secret, region) = ws.credentials();

        // The files task: PostgreSQL, S3, Redis, the pool; clients learn the WebSocket API's
        // URL.
        let prefix = format!("topology-{}-{}/", std::process::id(), free_loopback_port());
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
        let files_direct = std::mem::replace(&mut files.url, rest.url.clone());

        // Two state tasks: the pool's tokens, Redis, pushes through `@connections`.
        let told_max = told_max_secs.to_string();
        let told_idle = idle_timeout.as_secs().to_string();
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
            &told_idle,
            "--apigw-max-duration-secs",
            &told_max,
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
        let states: Vec<Server> = state_urls
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
        Some(Topology {
            ws,
            _rest: rest,
            files,
            files_direct,
            states,
            state_urls,
            a,
            b,
            _moto: moto,
        })
    }

    /// [`Topology::start`] with a test-sized idle timeout and AWS's 2-hour cap.
    async fn with_short_idle(email: &str) -> Option<Self> {
        Self::start(email, SHORT_IDLE, Duration::from_secs(7200), 7200).await
    }

    fn logs(&self) -> String {
        format!(
            "A:\n{}\nB:\n{}\nfiles:\n{}\nstate 0:\n{}\nstate 1:\n{}",
            self.a.log(),
            self.b.log(),
            self.files.log(),
            self.states[0].log(),
            self.states[1].log()
        )
    }

    fn both_connected(&self) {
        assert!(
            wait_for(SETTLE, || connected(&self.a) && connected(&self.b)).is_some(),
            "both connected through the WebSocket API\n{}",
            self.logs()
        );
    }

    /// Writes `name` on `from` and asserts it reaches `to` by push (the poll is 60 s away).
    fn pushed(&self, from: &Device, to: &Device, name: &str, body: &str) -> Duration {
        let t = arrival(from, to, name, body).unwrap_or_else(|| panic!("{name}\n{}", self.logs()));
        assert!(
            t < Duration::from_secs(10),
            "{name}: pushed, not polled: {t:?}\n{}",
            self.logs()
        );
        t
    }
}

/// A device whose registration failed at start (the files task down: a client started
/// offline) holds a sign-in session bound to no device, so the push channel refuses its
/// `hello` (`bye` 4005, decision 0045); the client registers its device as soon as the files
/// task answers, reconnects, and syncs by push.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_could_not_register_does_so_when_the_push_channel_asks() {
    let Some(mut t) = Topology::with_short_idle("late@example.com").await else {
        return;
    };
    t.files.stop();
    let _pb = t.b.start_sync().unwrap();
    assert!(
        wait_for(SETTLE, || t
            .b
            .log()
            .contains("the device is not registered"))
        .is_some(),
        "the push channel refused the unregistered device\n{}",
        t.logs()
    );
    assert!(!connected(&t.b), "{}", t.logs());
    // The files task is back (same address behind the REST double).
    let rest_url = std::mem::replace(&mut t.files.url, t.files_direct.clone());
    t.files.restart().expect("the files task restarts");
    t.files.url = rest_url;
    let _pa = t.a.start_sync().unwrap();
    t.both_connected();
    t.pushed(&t.a, &t.b, "late.txt", "to the device that registered late");
    t.pushed(&t.b, &t.a, "back.txt", "and back");
    let devices = t.a.devices();
    let b_id = t.b.config()["device_id"].as_str().unwrap().to_owned();
    assert!(
        devices.to_string().contains(&b_id),
        "the late device is in the list: {devices}"
    );
}

/// The two-device scenarios through the whole topology: create, edit, rename, delete both ways
/// by push; offline catch-up with a conflict kept as a conflicted copy; a revoked device told
/// so through the gateway (`bye` 4004) and stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_sync_through_the_aws_topology() {
    let Some(t) = Topology::with_short_idle("scenarios@example.com").await else {
        return;
    };
    let (a, b) = (&t.a, &t.b);
    let _pa = a.start_sync().unwrap();
    let mut pb = b.start_sync().unwrap();
    t.both_connected();

    // Create, both ways; edit; rename; delete.
    t.pushed(a, b, "one.txt", "from the laptop");
    t.pushed(b, a, "two.txt", "from the desktop");
    t.pushed(a, b, "one.txt", "edited on the laptop");
    std::fs::create_dir_all(b.path("docs")).unwrap();
    std::fs::rename(b.path("two.txt"), b.path("docs/two.txt")).unwrap();
    assert!(
        wait_for(SETTLE, || !a.path("two.txt").exists()
            && std::fs::read_to_string(a.path("docs/two.txt"))
                .ok()
                .as_deref()
                == Some("from the desktop"))
        .is_some(),
        "the rename\n{}",
        t.logs()
    );
    std::fs::remove_file(a.path("one.txt")).unwrap();
    assert!(
        wait_for(SETTLE, || !b.path("one.txt").exists()).is_some(),
        "the delete\n{}",
        t.logs()
    );

    // The desktop goes offline; both edit the same file, the laptop adds another; back online,
    // the desktop catches up and keeps both edits.
    assert!(wait_for(SETTLE, || a.is_up_to_date() && b.is_up_to_date()).is_some());
    pb.stop();
    std::fs::write(a.path("docs/two.txt"), "the laptop's version").unwrap();
    std::fs::write(a.path("while-away.txt"), "made while the desktop was off").unwrap();
    assert!(wait_for(SETTLE, || a.is_up_to_date()).is_some());
    std::fs::write(b.path("docs/two.txt"), "the desktop's version").unwrap();
    let mut pb = b.start_sync().unwrap();
    let converged = wait_for(SETTLE, || {
        let read = |d: &Device, p: &str| std::fs::read_to_string(d.path(p)).ok();
        let copies = |d: &Device| {
            std::fs::read_dir(d.path("docs"))
                .map(|r| {
                    r.filter_map(Result::ok)
                        .filter(|e| e.file_name().to_string_lossy().contains("conflicted copy"))
                        .count()
                })
                .unwrap_or(0)
        };
        read(b, "while-away.txt").as_deref() == Some("made while the desktop was off")
            && copies(a) == 1
            && copies(b) == 1
            && read(a, "docs/two.txt") == read(b, "docs/two.txt")
    });
    assert!(
        converged.is_some(),
        "offline catch-up and conflict\n{}",
        t.logs()
    );
    let versions: Vec<String> = std::fs::read_dir(a.path("docs"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert!(
        versions.contains(&"the laptop's version".to_owned())
            && versions.contains(&"the desktop's version".to_owned()),
        "both versions kept: {versions:?}"
    );
    t.both_connected();

    // The laptop unlinks the desktop: told through the gateway, the desktop stops.
    let b_id = b.config()["device_id"].as_str().unwrap().to_owned();
    let out = a.run(&["revoke-device", &b_id]);
    assert!(out.status.success(), "{}", text(&out));
    let exit = pb
        .wait_exit(SETTLE)
        .expect("the desktop's sync stops by itself");
    assert!(!exit.success());
    let status = b.status().unwrap();
    assert!(
        status["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("unlinked")),
        "{status}"
    );
    // The state task serving the desktop ended its connection (the `bye` then the close).
    assert!(
        t.states
            .iter()
            .any(|s| s.log().contains("ended connections")),
        "{}",
        t.logs()
    );
}

/// State tasks come and go: a stopped task's clients reconnect at once; a crashed task's
/// connections are adopted by the live task once the crashed one's liveness key expires (30 s)
/// and closed, so their clients reconnect — with AWS's idle timeout (heartbeats every 5
/// minutes), so it is the sweep, not a heartbeat, that finds them; saves keep arriving by push.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_survive_a_state_task_stopped_and_one_crashed() {
    let Some(mut t) = Topology::start(
        "tasks@example.com",
        Duration::from_secs(600),
        Duration::from_secs(7200),
        7200,
    )
    .await
    else {
        return;
    };
    let _pa = t.a.start_sync().unwrap();
    let _pb = t.b.start_sync().unwrap();
    t.both_connected();
    t.pushed(&t.a, &t.b, "one.txt", "from the laptop");
    t.pushed(&t.b, &t.a, "two.txt", "from the desktop");

    // A state task that serves connections is stopped (a deployment): the balancer stops
    // sending it requests, the task tells the connections it serves to reconnect, and they do,
    // to the other task.
    let serving = |s: &Server| s.log().matches("gateway device connected").count();
    let stopped = if serving(&t.states[0]) > 0 { 0 } else { 1 };
    let other = 1 - stopped;
    assert!(serving(&t.states[stopped]) > 0, "{}", t.logs());
    let before = (connects(&t.a), connects(&t.b));
    t.ws.set_balance(&t.state_urls[other..=other]);
    t.states[stopped].stop();
    let reconnected = || (connects(&t.a) - before.0) + (connects(&t.b) - before.1);
    assert!(
        wait_for(SETTLE, || reconnected() >= 1).is_some(),
        "the stopped task's clients reconnected\n{}",
        t.logs()
    );
    t.both_connected();
    t.pushed(&t.a, &t.b, "three.txt", "after the stop");
    let reconnected = reconnected();
    eprintln!("after stopping state task {stopped}: {reconnected} reconnection(s)");

    // It comes back; then the other task, which serves both clients now, crashes: nobody
    // tells the clients, but once the liveness key's 30 s are over the live task adopts their
    // connections and closes them, and they reconnect to it. (The balancer's health check
    // takes the crashed task out of rotation: here at once.)
    t.states[stopped]
        .restart()
        .expect("the stopped state task restarts");
    let before = (connects(&t.a), connects(&t.b));
    let crashed_at = Instant::now();
    t.ws.set_balance(&t.state_urls[stopped..=stopped]);
    t.states[other].process.kill9();
    let recovered = wait_for(Duration::from_secs(60), || {
        connects(&t.a) > before.0 && connects(&t.b) > before.1 && connected(&t.a) && connected(&t.b)
    });
    assert!(
        recovered.is_some(),
        "reconnected after the crash\n{}",
        t.logs()
    );
    eprintln!(
        "after state task {other} crashed: both clients reconnected in {:?}",
        crashed_at.elapsed()
    );
    t.pushed(&t.b, &t.a, "four.txt", "after the crash");
    let refused =
        t.ws.log()
            .iter()
            .filter(|l| matches!(l, Logged::Management { status: 403, .. }))
            .count();
    assert_eq!(refused, 0, "every @connections call was signed right");
}

/// API Gateway's maximum connection duration cuts a connection the client did not renew in
/// time (here the state tasks tell clients 2 hours, the double cuts at 12 s): the client
/// reconnects and catches up; a save made around the cut still arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_at_the_maximum_duration_loses_nothing() {
    let Some(t) =
        Topology::start("cap@example.com", SHORT_IDLE, Duration::from_secs(12), 7200).await
    else {
        return;
    };
    let _pa = t.a.start_sync().unwrap();
    let _pb = t.b.start_sync().unwrap();
    t.both_connected();
    t.pushed(&t.a, &t.b, "before.txt", "before the cut");
    let cut = wait_for(Duration::from_secs(30), || {
        t.ws.log().iter().any(|l| {
            matches!(
                l,
                Logged::Closed {
                    code: Some(1001),
                    ..
                }
            )
        })
    });
    assert!(cut.is_some(), "the double cut a connection\n{}", t.logs());
    // Saved right at the cut: the reconnect's catch-up brings it if the push could not.
    let t_cut = arrival(&t.a, &t.b, "at-the-cut.txt", "saved at the cut").expect("arrives");
    // Both clients were cut (each 12 s after it connected) and came back.
    assert!(
        wait_for(Duration::from_secs(30), || connects(&t.a) >= 2
            && connects(&t.b) >= 2)
        .is_some(),
        "{}",
        t.logs()
    );
    t.both_connected();
    t.pushed(&t.b, &t.a, "after.txt", "after the cut");
    eprintln!("a save at the cut arrived in {t_cut:?}");
}
