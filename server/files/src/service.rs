//! The File service opened from its configuration section: blob store (disk or S3, small
//! contents inline in front), staging area, metadata store, background collector, router.
//!
//! It never opens the metadata database (the identity provider and device registry share it):
//! that comes in [`FilesDeps`].

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use syncsphere_auth::Verifier;
use syncsphere_auth::devices::DeviceRegistry;
use syncsphere_db::Db;
use syncsphere_events::Publisher;

use crate::config::FilesArgs;
use crate::gc::{self, GcLock};
use crate::inline::InlineBlobStore;
use crate::s3::S3BlobStore;
use crate::{
    BlobStore, DiskBlobStore, FilesError, FilesState, MetadataStore, PendingPuts, Staging,
};

/// What the File service is given rather than opens.
pub struct FilesDeps {
    /// The metadata database.
    pub db: Db,
    /// Where blobs (without S3) and the staging area live.
    pub data_dir: PathBuf,
    /// Where committed changes go.
    pub events: Arc<dyn Publisher>,
    pub verifier: Arc<Verifier>,
    pub devices: Option<Arc<DeviceRegistry>>,
}

/// Why the File service did not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("opening the blob store {}", .path.display())]
    BlobStore {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("opening the S3 bucket '{bucket}'")]
    S3 {
        bucket: String,
        #[source]
        source: FilesError,
    },
    #[error("opening the staging directory {}", .path.display())]
    Staging {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    // Path keys of a database from before `path_key` are recomputed at start, so a problem
    // stops the start instead of failing the first write.
    #[error("recomputing the path keys of the metadata database")]
    PathKeys(#[source] FilesError),
}

/// What retention, garbage collection and the consistency check work on.
#[derive(Clone)]
pub struct Maintenance {
    pub store: MetadataStore,
    pub blobs: Arc<dyn BlobStore>,
    pub staging: Arc<Staging>,
    pub lock: Arc<GcLock>,
}

/// The opened File service.
pub struct FilesService {
    state: FilesState,
    args: FilesArgs,
    gc_stats: Arc<gc::GcStats>,
}

impl FilesService {
    pub async fn open(args: &FilesArgs, deps: FilesDeps) -> Result<Self, OpenError> {
        let (blobs, staging): (Arc<dyn BlobStore>, Staging) = match args.s3.config() {
            None => {
                let path = deps.data_dir.join("blobs");
                let (disk, staging) = DiskBlobStore::open(&path)
                    .map_err(|source| OpenError::BlobStore { path, source })?;
                (Arc::new(disk), staging)
            }
            Some(s3) => {
                let store = S3BlobStore::connect(&s3)
                    .await
                    .map_err(|source| OpenError::S3 {
                        bucket: s3.bucket.clone(),
                        source,
                    })?;
                let path = deps.data_dir.join("staging");
                let staging =
                    Staging::open(&path).map_err(|source| OpenError::Staging { path, source })?;
                (Arc::new(store), staging)
            }
        };
        // Small contents live in the metadata database, in front of the blob store.
        let blobs: Arc<dyn BlobStore> = Arc::new(InlineBlobStore::new(deps.db.clone(), blobs));
        let store = MetadataStore::new(deps.db)
            .with_quota(args.quota_bytes)
            .with_staged_policy(args.staged_policy());
        store
            .upgrade_path_keys()
            .await
            .map_err(OpenError::PathKeys)?;
        let state = FilesState {
            store,
            pending: Arc::new(PendingPuts::new(blobs.clone())),
            blobs,
            staging: Arc::new(staging),
            inline_max: args.inline_max(),
            running: Arc::default(),
            gc_lock: Arc::new(GcLock::default()),
            gc_grace: args.gc_policy().grace,
            events: deps.events,
            verifier: deps.verifier,
            devices: deps.devices,
        };
        Ok(FilesService {
            state,
            args: args.clone(),
            gc_stats: Arc::default(),
        })
    }

    /// The service's budgets as gauges, for the process's `/metrics`.
    pub fn budgets(&self) -> crate::metrics::FilesBudgets {
        crate::metrics::FilesBudgets {
            running: self.state.running.clone(),
            pending: self.state.pending.clone(),
            staged: self.state.store.staged_stats(),
            staged_limit: self.state.store.staged_policy().per_user,
            gc: self.gc_stats.clone(),
        }
    }

    /// Prunes the staged-chunk ledger of rows past the grace period and refreshes its total
    /// for `/metrics`, and drops the running hashes idle past [`crate::running::RUN_IDLE`]
    /// (with the early chunks they hold), now and every minute (every `files` process). Needs
    /// a Tokio runtime.
    pub fn spawn_staged_pruner(&self) {
        let store = self.state.store.clone();
        let running = self.state.running.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tick.tick().await;
                let idle = running.drop_idle(std::time::Instant::now());
                if idle > 0 {
                    tracing::debug!(runs = idle, "idle running hashes dropped");
                }
                if let Err(e) = store.prune_staged(crate::now_ms()).await {
                    tracing::warn!(error = %e, "pruning the staged-chunk ledger failed");
                }
            }
        });
    }

    /// `/v1/files…`, `/v1/changes`.
    pub fn router(&self) -> Router {
        crate::router(self.state.clone())
    }

    /// The handles of retention, garbage collection and the consistency check.
    pub fn maintenance(&self) -> Maintenance {
        Maintenance {
            store: self.state.store.clone(),
            blobs: self.state.blobs.clone(),
            staging: self.state.staging.clone(),
            lock: self.state.gc_lock.clone(),
        }
    }

    /// Runs retention and garbage collection every `--gc-interval-secs` (first pass after one
    /// interval), unless it is 0. Needs a Tokio runtime.
    pub fn spawn_collector(&self) {
        let Some(every) = self.args.gc_interval() else {
            return;
        };
        let m = self.maintenance();
        let policy = self.args.gc_policy();
        let stats = self.gc_stats.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let started = std::time::Instant::now();
                let outcome = gc::collect(&m.store, &m.blobs, &m.staging, &m.lock, policy).await;
                stats.record(started.elapsed(), &outcome);
                if let Err(e) = outcome {
                    tracing::error!(error = %e, "garbage collection failed");
                }
            }
        });
    }
}
