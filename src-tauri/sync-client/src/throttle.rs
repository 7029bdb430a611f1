//! Upload and download bandwidth limits: a token bucket per direction, shared by every transfer
//! of the sync, with one second of burst.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

pub(crate) struct Throttle {
    /// Bytes per second; `None` is unlimited.
    rate: Option<u64>,
    bucket: Mutex<Bucket>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Throttle {
    pub(crate) fn new(rate: Option<u64>) -> Self {
        Throttle {
            rate: rate.filter(|r| *r > 0),
            bucket: Mutex::new(Bucket {
                tokens: rate.unwrap_or(0) as f64,
                at: Instant::now(),
            }),
        }
    }

    /// Waits until `bytes` may be sent or received.
    pub(crate) async fn consume(&self, bytes: u64) {
        let Some(rate) = self.rate else { return };
        let rate = rate as f64;
        let wait = {
            let mut b = self.bucket.lock().await;
            let now = Instant::now();
            b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(rate);
            b.at = now;
            b.tokens -= bytes as f64;
            if b.tokens >= 0.0 {
                return;
            }
            Duration::from_secs_f64(-b.tokens / rate)
        };
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn holds_transfers_to_the_rate_after_one_second_of_burst() {
        let t = Throttle::new(Some(1000));
        let start = Instant::now();
        t.consume(1000).await; // the burst
        assert_eq!(start.elapsed(), Duration::ZERO);
        for _ in 0..10 {
            t.consume(500).await;
        }
        let took = start.elapsed().as_secs_f64();
        assert!(
            (4.9..=5.1).contains(&took),
            "5000 bytes at 1000/s took {took} s"
        );
        let unlimited = Throttle::new(None);
        let start = Instant::now();
        unlimited.consume(u64::MAX / 2).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
