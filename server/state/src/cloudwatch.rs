//! The connections a task serves, published to CloudWatch once a minute, so that the AWS
//! template can scale the state service on connections per task (decision 0044). Behind API
//! Gateway's WebSocket API no AWS metric says how many connections a task serves: API Gateway
//! holds the sockets and publishes connect counts, not concurrent connections.
//!
//! One datum per interval: metric `Connections` (unit `Count`) with the configured dimensions,
//! the value the hub's `connections` gauge reads (push connections registered in this
//! process, through either transport). Every task of a service publishes under the same
//! dimensions, so CloudWatch's `Average` over a period is the connections per task.

use std::time::Duration;

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use prometheus_client::metrics::gauge::Gauge;

/// The metric's name.
pub const METRIC_NAME: &str = "Connections";

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("a CloudWatch dimension must be Name=Value, not '{0}'")]
    BadDimension(String),
    #[error("CloudWatch has at most 30 dimensions per metric, {0} given")]
    TooManyDimensions(usize),
    #[error("PutMetricData to CloudWatch failed: {0}")]
    Put(String),
}

/// Publishes the connections gauge to CloudWatch.
pub struct Publisher {
    client: aws_sdk_cloudwatch::Client,
    namespace: String,
    dimensions: Vec<Dimension>,
    gauge: Gauge,
    interval: Duration,
}

/// `Name=Value` pairs as CloudWatch dimensions.
pub fn parse_dimensions(pairs: &[String]) -> Result<Vec<Dimension>, PublishError> {
    if pairs.len() > 30 {
        return Err(PublishError::TooManyDimensions(pairs.len()));
    }
    pairs
        .iter()
        .map(|pair| {
            let (name, value) = pair
                .split_once('=')
                .filter(|(n, v)| !n.trim().is_empty() && !v.trim().is_empty())
                .ok_or_else(|| PublishError::BadDimension(pair.clone()))?;
            Ok(Dimension::builder()
                .name(name.trim())
                .value(value.trim())
                .build())
        })
        .collect()
}

impl Publisher {
    /// A publisher of `gauge` under `namespace` with `dimensions` (`Name=Value`); the region
    /// and credentials come from the default AWS chain (the task role on ECS), `endpoint`
    /// replaces CloudWatch's (emulators).
    pub async fn new(
        namespace: &str,
        dimensions: &[String],
        endpoint: Option<&str>,
        interval: Duration,
        gauge: Gauge,
    ) -> Result<Self, PublishError> {
        let dimensions = parse_dimensions(dimensions)?;
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        let mut config = aws_sdk_cloudwatch::config::Builder::from(&shared);
        if let Some(endpoint) = endpoint {
            config = config.endpoint_url(endpoint);
        }
        Ok(Publisher {
            client: aws_sdk_cloudwatch::Client::from_conf(config.build()),
            namespace: namespace.to_owned(),
            dimensions,
            gauge,
            interval,
        })
    }

    /// Sends the gauge's value now.
    pub async fn publish_once(&self) -> Result<i64, PublishError> {
        let value = self.gauge.get();
        let datum = MetricDatum::builder()
            .metric_name(METRIC_NAME)
            .set_dimensions(Some(self.dimensions.clone()))
            .value(value as f64)
            .unit(StandardUnit::Count)
            .build();
        self.client
            .put_metric_data()
            .namespace(&self.namespace)
            .metric_data(datum)
            .send()
            .await
            .map_err(|e| {
                PublishError::Put(aws_sdk_cloudwatch::error::DisplayErrorContext(e).to_string())
            })?;
        Ok(value)
    }

    /// Publishes every interval until the task is dropped. A failure is logged and the next
    /// interval tries again (a missing minute only delays scaling).
    pub async fn run(self) {
        tracing::info!(
            namespace = %self.namespace,
            interval_secs = self.interval.as_secs(),
            "publishing push connections to CloudWatch"
        );
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tick.tick().await;
            match self.publish_once().await {
                Ok(value) => {
                    if failing {
                        tracing::info!(value, "CloudWatch metrics published again");
                    }
                    failing = false;
                }
                Err(e) if !failing => {
                    tracing::warn!(error = %e, "could not publish connections to CloudWatch");
                    failing = true;
                }
                Err(e) => tracing::debug!(error = %e, "CloudWatch still failing"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimensions_are_name_value_pairs() {
        let dims =
            parse_dimensions(&["Service=sync-state".into(), " Stack = prod ".into()]).unwrap();
        assert_eq!(dims.len(), 2);
        assert_eq!(dims[0].name(), Some("Service"));
        assert_eq!(dims[0].value(), Some("sync-state"));
        assert_eq!(dims[1].name(), Some("Stack"));
        assert_eq!(dims[1].value(), Some("prod"));
        for bad in ["Service", "=x", "Service=", " = "] {
            assert!(
                matches!(
                    parse_dimensions(&[bad.into()]),
                    Err(PublishError::BadDimension(_))
                ),
                "{bad}"
            );
        }
        let many: Vec<String> = (0..31).map(|i| format!("D{i}=v")).collect();
        assert!(matches!(
            parse_dimensions(&many),
            Err(PublishError::TooManyDimensions(31))
        ));
    }
}
