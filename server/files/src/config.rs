//! The File service's configuration section (flags and environment), each default written once
//! here.

use std::time::Duration;

use crate::gc::GcPolicy;
use crate::inline::{DEFAULT_INLINE_MAX_BYTES, MAX_INLINE_BYTES};
use crate::s3::S3Config;
use crate::store::staged::{DEFAULT_MAX_STAGED_BYTES_PER_USER, StagedPolicy};

/// Default of `--retention-days`.
pub const DEFAULT_RETENTION_DAYS: u64 = 30;
/// Default of `--gc-grace-secs`: a day to resume an interrupted upload.
pub const DEFAULT_GC_GRACE_SECS: u64 = 24 * 3600;

/// Flags of the File service.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
#[command(next_help_heading = "File service")]
pub struct FilesArgs {
    /// Storage quota per user in bytes (live files; history and trash are not counted).
    /// Unlimited when unset.
    #[arg(long, env = "SYNCSPHERE_QUOTA_BYTES", value_parser = clap::value_parser!(i64).range(0..))]
    pub quota_bytes: Option<i64>,
    /// Bytes of chunks a user may have uploaded and not yet committed, counted over the last
    /// grace period (`--gc-grace-secs`); past it a new chunk is answered `429 staged_limit`
    /// with `Retry-After`. Also the largest file a user can upload (a file's chunks are all
    /// uploaded before its commit). 0 is unlimited. With a quota, uploads in flight count
    /// against it too.
    #[arg(long, env = "SYNCSPHERE_MAX_STAGED_BYTES_PER_USER", default_value_t = DEFAULT_MAX_STAGED_BYTES_PER_USER, value_parser = clap::value_parser!(i64).range(0..))]
    pub max_staged_bytes_per_user: i64,
    /// Days old revisions and trashed files are kept.
    #[arg(long, env = "SYNCSPHERE_RETENTION_DAYS", default_value_t = DEFAULT_RETENTION_DAYS)]
    pub retention_days: u64,
    /// Seconds an unreferenced chunk (an interrupted upload) is kept for resuming.
    #[arg(long, env = "SYNCSPHERE_GC_GRACE_SECS", default_value_t = DEFAULT_GC_GRACE_SECS)]
    pub gc_grace_secs: u64,
    /// Seconds between garbage-collection passes (0 disables them). Run the collector in one
    /// files instance of a cluster only.
    #[arg(long, env = "SYNCSPHERE_GC_INTERVAL_SECS", default_value_t = 3600)]
    pub gc_interval_secs: u64,
    /// Contents up to this many bytes uploaded in one request are kept in the metadata
    /// database, committed in the same transaction as their revision, instead of the blob
    /// store (0 turns it off; at most 64 KiB: this is for small files, and they are read into
    /// memory).
    #[arg(long, env = "SYNCSPHERE_INLINE_MAX_BYTES", default_value_t = DEFAULT_INLINE_MAX_BYTES, value_parser = clap::value_parser!(u64).range(0..=MAX_INLINE_BYTES))]
    pub inline_max_bytes: u64,
    #[command(flatten)]
    pub s3: S3Args,
}

impl FilesArgs {
    /// Retention of old revisions and trash, and the orphan grace period.
    pub fn gc_policy(&self) -> GcPolicy {
        GcPolicy {
            retention: Duration::from_secs(self.retention_days * 24 * 3600),
            grace: Duration::from_secs(self.gc_grace_secs),
        }
    }

    /// How uploaded, uncommitted chunks are bounded (see [`crate::store::staged`]).
    pub fn staged_policy(&self) -> StagedPolicy {
        StagedPolicy {
            per_user: (self.max_staged_bytes_per_user > 0)
                .then_some(self.max_staged_bytes_per_user),
            window: Duration::from_secs(self.gc_grace_secs),
        }
    }

    /// Between two background collections; `None`: no background collector.
    pub fn gc_interval(&self) -> Option<Duration> {
        (self.gc_interval_secs > 0).then(|| Duration::from_secs(self.gc_interval_secs))
    }

    /// The inline threshold, clamped to [`MAX_INLINE_BYTES`].
    pub fn inline_max(&self) -> u64 {
        self.inline_max_bytes.min(MAX_INLINE_BYTES)
    }
}

/// Flags of the S3 blob store; without a bucket, blobs are kept in the data directory.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
#[command(next_help_heading = "File service: S3 blob store")]
pub struct S3Args {
    /// Keep blobs in this S3 bucket instead of the data directory. Credentials come from the
    /// standard AWS chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, profile, ECS task role…).
    #[arg(long, env = "SYNCSPHERE_S3_BUCKET")]
    pub s3_bucket: Option<String>,
    /// Region of the bucket.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub s3_region: String,
    /// Endpoint of an S3-compatible server (default: Amazon S3).
    #[arg(long, env = "SYNCSPHERE_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// Path-style requests (`{endpoint}/{bucket}/{key}`), needed by most S3-compatible servers.
    #[arg(long, env = "SYNCSPHERE_S3_PATH_STYLE")]
    pub s3_path_style: bool,
    /// Prefix of every key in the bucket.
    #[arg(long, env = "SYNCSPHERE_S3_PREFIX", default_value = "")]
    pub s3_prefix: String,
    /// Static credentials (access key id, secret); not a flag — servers use the standard AWS
    /// chain, tests against a local S3 server set them.
    #[arg(skip)]
    pub s3_credentials: Option<(String, String)>,
}

impl S3Args {
    /// The bucket's settings; `None` without `--s3-bucket` (blobs on local disk).
    pub fn config(&self) -> Option<S3Config> {
        let bucket = self.s3_bucket.clone()?;
        let (access_key, secret_key) = self.s3_credentials.clone().unzip();
        Some(S3Config {
            bucket,
            region: self.s3_region.clone(),
            endpoint: self.s3_endpoint.clone(),
            path_style: self.s3_path_style,
            prefix: self.s3_prefix.clone(),
            access_key,
            secret_key,
        })
    }
}
