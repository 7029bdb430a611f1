//! The server publishes the push connections it serves to CloudWatch — what the AWS template's
//! autoscaling tracks per state task (decision 0044) — here into moto's CloudWatch, read back
//! through the AWS API: the value follows connections opening and closing, under the
//! configured namespace and dimensions.
//!
//! Needs moto (`scripts/test.sh` starts it; skipped without it, required under `CI`).

use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use syncsphere_e2e::push::raw_device;
use syncsphere_e2e::{Device, Server, cognito_token};
use syncsphere_test_support::moto;

/// The largest `Connections` value published since `since`, if any.
async fn largest_since(
    client: &aws_sdk_cloudwatch::Client,
    namespace: &str,
    service: &str,
    since: SystemTime,
) -> Option<f64> {
    let reply = client
        .get_metric_statistics()
        .namespace(namespace)
        .metric_name("Connections")
        .dimensions(Dimension::builder().name("Service").value(service).build())
        .start_time(since.into())
        .end_time((SystemTime::now() + Duration::from_secs(60)).into())
        .period(60)
        .statistics(Statistic::Maximum)
        .send()
        .await
        .expect("GetMetricStatistics");
    reply
        .datapoints()
        .iter()
        .filter_map(|d| d.maximum())
        .reduce(f64::max)
}

async fn wait_for_value(
    client: &aws_sdk_cloudwatch::Client,
    namespace: &str,
    service: &str,
    since: SystemTime,
    want: f64,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = largest_since(client, namespace, service, since).await;
        if got == Some(want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Connections never reached {want} (last seen {got:?})"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connections_a_server_serves_reach_cloudwatch() {
    let Some(moto) = moto() else { return };
    let run = format!("{:x}", rand_suffix());
    let namespace = format!("SyncSphereTest{run}");
    let service = format!("state-{run}");
    let dimensions = format!("Service={service},Stack=e2e");
    let envs = [
        ("SYNCSPHERE_CLOUDWATCH_NAMESPACE", namespace.as_str()),
        ("SYNCSPHERE_CLOUDWATCH_DIMENSIONS", dimensions.as_str()),
        ("SYNCSPHERE_CLOUDWATCH_INTERVAL_SECS", "1"),
        ("SYNCSPHERE_CLOUDWATCH_ENDPOINT", moto.url.as_str()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
    ];
    let server = Server::start_env("127.0.0.1:0", None, &[], &envs).unwrap();
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_cloudwatch::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await;
    let client = aws_sdk_cloudwatch::Client::from_conf(
        aws_sdk_cloudwatch::config::Builder::from(&shared)
            .endpoint_url(&moto.url)
            .build(),
    );

    // Nothing connected yet: zeros are published.
    let start = SystemTime::now() - Duration::from_secs(5);
    wait_for_value(&client, &namespace, &service, start, 0.0).await;

    let email = "metrics@example.com";
    let device = Device::new("metrics").unwrap();
    device.signup(&server, email);
    let one = cognito_token(&server.url, email, Some("dev-one")).await;
    let two = cognito_token(&server.url, email, Some("dev-two")).await;
    let a = raw_device(&server.url, &one, "dev-one").await;
    let b = raw_device(&server.url, &two, "dev-two").await;
    wait_for_value(&client, &namespace, &service, start, 2.0).await;

    // A closed connection is counted out: the data points after it say 1.
    drop(b);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = SystemTime::now() + Duration::from_secs(1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    wait_for_value(&client, &namespace, &service, after, 1.0).await;

    // The dimensions are exactly the configured ones (another Service sees nothing).
    assert_eq!(
        largest_since(&client, &namespace, "state-other", start).await,
        None
    );
    drop(a);
    let log = server.log();
    assert!(
        log.contains("publishing push connections to CloudWatch"),
        "{log}"
    );
    assert!(!log.contains("could not publish"), "{log}");
}

fn rand_suffix() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        ^ u64::from(std::process::id())
}
