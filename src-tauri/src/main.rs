// Keeps a console window from opening next to the app on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

/// jemalloc, which gives freed pages back to the system from a background thread: glibc's
/// malloc kept a first sync's transient peak resident for the process's life (decision 0053).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| syncsphere_sync_client::DEFAULT_LOG_FILTER.into()),
        )
        .init();
    if let Err(err) = syncsphere_desktop::run() {
        tracing::error!("{err:#}");
        std::process::exit(1);
    }
}
