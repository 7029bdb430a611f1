//! The File service's budgets as Prometheus gauges, read at each scrape: what a user's
//! uploads can make the server hold (early chunks parked for the running hashes, chunk puts
//! waiting to be made durable) beside its fixed limit (issue 19: every budget observable).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

use crate::blobs::{MAX_PENDING_PUTS, PendingPuts};
use crate::gc::GcStats;
use crate::running::{RUNS_MAX, RunningHashes, SERVER_PARKED_MAX};
use crate::store::staged::StagedStats;

/// Registered once in the process's registry (`syncsphere-server`'s `/metrics`).
#[derive(Debug)]
pub struct FilesBudgets {
    pub(crate) running: Arc<RunningHashes>,
    pub(crate) pending: Arc<PendingPuts>,
    pub(crate) staged: Arc<StagedStats>,
    pub(crate) staged_limit: Option<i64>,
    pub(crate) gc: Arc<GcStats>,
}

/// One gauge: `name`, its help, its value now.
pub fn encode_gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(value);
    let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
    gauge.encode(metric)
}

impl Collector for FilesBudgets {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let gauges = [
            (
                "syncsphere_files_parked_bytes",
                "Bytes of chunks that arrived ahead of their place, held for running hashes",
                as_i64(self.running.parked_bytes(None)),
            ),
            (
                "syncsphere_files_parked_bytes_limit",
                "The server's budget for parked chunks (past it, a commit reads the content back)",
                as_i64(SERVER_PARKED_MAX),
            ),
            (
                "syncsphere_files_running_hashes",
                "Contents being uploaded in chunks whose hash runs as they arrive",
                self.running.runs() as i64,
            ),
            (
                "syncsphere_files_running_hashes_limit",
                "Running hashes held at most (the oldest is dropped past it)",
                RUNS_MAX as i64,
            ),
            (
                "syncsphere_files_pending_puts",
                "Chunk puts queued or running to be made durable",
                self.pending.len() as i64,
            ),
            (
                "syncsphere_files_pending_puts_limit",
                "Chunk puts that may wait at once (past it, uploads wait for a slot)",
                MAX_PENDING_PUTS as i64,
            ),
            (
                "syncsphere_files_staged_bytes",
                "Bytes of chunks uploaded and not committed yet, all users, within the grace period (refreshed every minute)",
                self.staged.total_bytes.load(Ordering::Relaxed),
            ),
            (
                "syncsphere_files_staged_bytes_per_user_limit",
                "Uploaded, uncommitted bytes a user may have (0: unlimited; past it 429 staged_limit)",
                self.staged_limit.unwrap_or(0),
            ),
            (
                "syncsphere_files_staged_refusals",
                "Chunks refused by the per-user staged limit since the process started",
                as_i64(self.staged.refusals.load(Ordering::Relaxed)),
            ),
            (
                "syncsphere_files_gc_passes",
                "Garbage collection passes completed since the process started",
                as_i64(self.gc.passes.load(Ordering::Relaxed)),
            ),
            (
                "syncsphere_files_gc_failures",
                "Garbage collection passes that failed since the process started",
                as_i64(self.gc.failures.load(Ordering::Relaxed)),
            ),
            (
                "syncsphere_files_gc_last_pass_milliseconds",
                "How long the last garbage collection pass took",
                as_i64(self.gc.last_pass_ms.load(Ordering::Relaxed)),
            ),
            (
                "syncsphere_files_gc_blobs_deleted",
                "Blobs the collector deleted since the process started",
                as_i64(self.gc.blobs_deleted.load(Ordering::Relaxed)),
            ),
            (
                "syncsphere_files_gc_bytes_freed",
                "Bytes the collector freed since the process started",
                as_i64(self.gc.bytes_freed.load(Ordering::Relaxed)),
            ),
        ];
        for (name, help, value) in gauges {
            encode_gauge(&mut encoder, name, help, value)?;
        }
        Ok(())
    }
}
