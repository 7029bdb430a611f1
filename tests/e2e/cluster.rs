//! Horizontal scale: one `files` instance and three `state` instances fanning changes out
//! through a real Redis. Every device of the user gets each change exactly once — except the
//! device that made it — whichever instance it is connected to; a draining instance tells its
//! clients to reconnect elsewhere.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures_util::StreamExt;
use syncsphere_e2e::push::{Ws, presence_until, raw_device, refused_upgrade};
use syncsphere_e2e::{Device, Server, same_bytes, wait_for};
use syncsphere_test_support::redis_url;
use tokio_tungstenite::tungstenite::Message;

/// One `files` instance and three `state` instances that accept its tokens, all on `redis`.
fn cluster(redis: &str) -> (Server, Vec<Server>) {
    let files = Server::start_with(None, &["--role", "files", "--redis-url", redis])
        .expect("files instance");
    let issuer = format!("{}/local_syncsphere", files.url);
    let state_args = [
        "--role",
        "state",
        "--redis-url",
        redis,
        "--auth-issuer",
        &issuer,
    ];
    let states = (0..3)
        .map(|_| Server::start_with(None, &state_args).expect("state instance"))
        .collect();
    (files, states)
}

/// Every `change` seq a socket receives until it is quiet for `quiet`.
async fn collect_changes(ws: &mut Ws, quiet: Duration) -> Vec<i64> {
    let mut seqs = Vec::new();
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(quiet, ws.next()).await {
        if let Message::Text(t) = msg {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "change" {
                seqs.push(v["seq"].as_i64().unwrap());
            }
        }
    }
    seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_state_instances_deliver_each_change_exactly_once_through_redis() {
    let Some(redis) = redis_url() else { return };
    let (files, states) = cluster(&redis);
    let user = Device::new("admin").unwrap();
    let out = user
        .account("signup", &files, "cluster@example.com")
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = syncsphere_e2e::cognito_token(&files.url, "cluster@example.com", None).await;
    // The files role serves its own /metrics (it has no push): its budgets and the provider's.
    let metrics = syncsphere_e2e::metrics(&files.url).await;
    for name in [
        "syncsphere_files_parked_bytes_limit",
        "syncsphere_files_pending_puts",
        "syncsphere_idp_password_hashing_limit",
    ] {
        assert!(metrics.contains_key(name), "{name} missing: {metrics:?}");
    }

    // Six devices, two per state instance.
    let ids: Vec<String> = (0..6).map(|i| format!("d{i}")).collect();
    let mut sockets = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        // Each device with a token of its own: a token speaks for the device it is bound to.
        let bound =
            syncsphere_e2e::cognito_token(&files.url, "cluster@example.com", Some(id)).await;
        sockets.push(raw_device(&states[i % 3].url, &bound, id).await);
    }

    // Ten commits through the files instance, each made "by" one of the devices.
    let http = reqwest::Client::new();
    let mut origin_of: BTreeMap<i64, String> = BTreeMap::new();
    for n in 0..10 {
        let origin = &ids[n % ids.len()];
        let resp = http
            .put(format!("{}/v1/files/content", files.url))
            .query(&[("path", format!("f{n}.txt"))])
            .header("authorization", format!("Bearer {token}"))
            .header("x-syncsphere-device", origin)
            .body(format!("content {n}"))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
        origin_of.insert(n as i64 + 1, origin.clone());
    }

    for (id, ws) in ids.iter().zip(sockets.iter_mut()) {
        let got = collect_changes(ws, Duration::from_millis(800)).await;
        let expected: BTreeSet<i64> = origin_of
            .iter()
            .filter(|(_, origin)| *origin != id)
            .map(|(seq, _)| *seq)
            .collect();
        let unique: BTreeSet<i64> = got.iter().copied().collect();
        assert_eq!(got.len(), unique.len(), "{id} got duplicates: {got:?}");
        assert_eq!(
            unique,
            expected,
            "{id} on instance {}",
            ids.iter().position(|x| x == id).unwrap() % 3
        );
    }

    // Draining one instance: its devices are told "going away" (1001) to reconnect elsewhere.
    let mut states = states;
    let mut drained = states.remove(0);
    drained.stop();
    for i in [0, 3] {
        let frame = loop {
            match tokio::time::timeout(Duration::from_secs(10), sockets[i].next())
                .await
                .expect("closed in time")
            {
                Some(Ok(Message::Close(frame))) => break frame,
                Some(Ok(_)) => continue,
                other => panic!("d{i}: expected a close frame, got {other:?}"),
            }
        };
        assert_eq!(frame.map(|f| u16::from(f.code)), Some(1001), "d{i}");
    }
    // The others keep receiving.
    let resp = http
        .put(format!("{}/v1/files/content", files.url))
        .query(&[("path", "after-drain.txt")])
        .header("authorization", format!("Bearer {token}"))
        .body("still here")
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    for i in [1, 2, 4, 5] {
        assert_eq!(
            collect_changes(&mut sockets[i], Duration::from_millis(800)).await,
            vec![11],
            "d{i}"
        );
    }
}

/// Real clients spread over three state instances (announced in `/v1/config`); every state
/// instance is restarted in turn while one device keeps saving files. Nothing is lost: each
/// reconnect (to another instance) catches up from the journal cursor.
#[test]
fn a_rolling_restart_of_every_state_instance_loses_nothing() {
    let Some(redis) = redis_url() else { return };
    let (mut files, mut states) = cluster(&redis);
    // Announce the state instances to clients.
    let mut args: Vec<String> = vec![
        "--role".into(),
        "files".into(),
        "--redis-url".into(),
        redis.clone(),
    ];
    for s in &states {
        args.push("--push-url".into());
        args.push(s.url.clone());
    }
    files
        .restart_with(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .expect("files restarts");

    let (a, b) = (Device::new("a").unwrap(), Device::new("b").unwrap());
    a.signup(&files, "roll@example.com");
    b.login(&files, "roll@example.com");
    assert_eq!(b.config()["push_urls"].as_array().map(Vec::len), Some(3));
    let _pa = a.start_sync().unwrap();
    let _pb = b.start_sync().unwrap();
    syncsphere_e2e::wait_both_up_to_date(&a, &b, Duration::from_secs(20));

    let folder = a.folder.clone();
    let writer = std::thread::spawn(move || {
        std::fs::create_dir_all(folder.join("stream")).unwrap();
        for i in 0..30 {
            std::fs::write(
                folder.join(format!("stream/{i:02}.txt")),
                format!("save number {i}"),
            )
            .unwrap();
            std::thread::sleep(Duration::from_millis(150));
        }
    });
    for state in &mut states {
        std::thread::sleep(Duration::from_millis(1200));
        state.restart().expect("state instance restarts");
    }
    writer.join().unwrap();

    let all_there = || (0..30).all(|i| same_bytes(&a, &b, &format!("stream/{i:02}.txt")));
    assert!(
        wait_for(Duration::from_secs(30), all_there).is_some(),
        "B is missing saves after the rolling restart\nA:\n{}\nB:\n{}",
        a.log(),
        b.log()
    );
    assert!(
        wait_for(Duration::from_secs(20), || a.is_up_to_date()
            && b.is_up_to_date())
        .is_some()
    );
    // Every instance went down once, so both clients had to reconnect at least once.
    for d in [&a, &b] {
        let connects = d.log().matches("push channel connected").count();
        assert!(
            connects >= 2,
            "{} connected {connects} time(s):\n{}",
            d.name,
            d.log()
        );
    }
}

/// Presence and revocation span instances: devices on different State instances see each
/// other, the Files instance lists them online, and revoking one closes its socket on whichever
/// instance holds it and keeps every instance from accepting its token again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_and_revocation_work_across_state_instances() {
    let Some(redis) = redis_url() else { return };
    let (files, states) = cluster(&redis);
    let user = Device::new("admin").unwrap();
    user.signup(&files, "presence@example.com");
    let email = "presence@example.com";
    let t1 = syncsphere_e2e::cognito_token(&files.url, email, Some("dev-1")).await;
    let t2 = syncsphere_e2e::cognito_token(&files.url, email, Some("dev-2")).await;
    let mut ws1 = raw_device(&states[0].url, &t1, "dev-1").await;
    let mut ws2 = raw_device(&states[1].url, &t2, "dev-2").await;
    let both = |ids: &[String]| ids == ["dev-1", "dev-2"];
    presence_until(&mut ws1, both).await;
    presence_until(&mut ws2, both).await;

    let http = reqwest::Client::new();
    let devices_url = format!("{}/v1/devices", files.url);
    let list = syncsphere_e2e::get_json(&devices_url, &t1).await;
    let online: BTreeSet<&str> = list["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["online"] == true)
        .map(|d| d["device_id"].as_str().unwrap())
        .collect();
    assert_eq!(online, BTreeSet::from(["dev-1", "dev-2"]), "{list}");

    let r = http
        .delete(format!("{}/v1/devices/dev-2", files.url))
        .bearer_auth(&t1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    syncsphere_e2e::push::expect_close(&mut ws2, 4004).await;
    presence_until(&mut ws1, |ids| ids == ["dev-1"]).await;
    // No instance accepts the revoked token any more.
    for state in &states {
        assert_eq!(
            refused_upgrade(&state.url, &format!("Bearer {t2}")).await,
            401
        );
    }
    let list = syncsphere_e2e::get_json(&devices_url, &t1).await;
    let dev2 = list["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device_id"] == "dev-2")
        .cloned()
        .unwrap();
    assert_eq!(dev2["revoked"], true, "{list}");
    assert_eq!(dev2["online"], false, "{list}");
    // The first device is unaffected.
    drop(ws1);
}

/// Signing out everywhere spans instances too: the Files instance records it, Redis carries it,
/// and every State instance closes the user's sockets (4001) and refuses the old tokens on new
/// connections, while a token issued after the sign-out connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_everywhere_closes_sockets_on_every_state_instance() {
    let Some(redis) = redis_url() else { return };
    let (files, states) = cluster(&redis);
    let email = "everywhere@example.com";
    Device::new("admin").unwrap().signup(&files, email);
    let t1 = syncsphere_e2e::cognito_token(&files.url, email, Some("dev-1")).await;
    let t2 = syncsphere_e2e::cognito_token(&files.url, email, Some("dev-2")).await;
    let mut ws1 = raw_device(&states[0].url, &t1, "dev-1").await;
    let mut ws2 = raw_device(&states[1].url, &t2, "dev-2").await;
    presence_until(&mut ws1, |ids| ids == ["dev-1", "dev-2"]).await;

    let r = reqwest::Client::new()
        .post(format!("{}/v1/account/sign-out", files.url))
        .bearer_auth(&t1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    syncsphere_e2e::push::expect_close(&mut ws1, 4001).await;
    syncsphere_e2e::push::expect_close(&mut ws2, 4001).await;
    for state in &states {
        for old in [&t1, &t2] {
            assert_eq!(
                refused_upgrade(&state.url, &format!("Bearer {old}")).await,
                401,
                "{} accepted a token from before the sign-out",
                state.url
            );
        }
    }
    // Signed in again (in the same second, even): accepted by every instance.
    let fresh = syncsphere_e2e::cognito_token(&files.url, email, Some("dev-1")).await;
    for state in &states {
        let mut ws = raw_device(&state.url, &fresh, "dev-1").await;
        presence_until(&mut ws, |ids| ids == ["dev-1"]).await;
    }
}
