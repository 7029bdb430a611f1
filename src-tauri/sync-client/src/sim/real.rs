//! The simulation's slower mode: the real server — `syncsphere-server`'s embedded build (the
//! files router and its `MetadataStore` on SQLite, blobs on disk, the built-in identity
//! provider) — started in-process on loopback, and every device talking to it through the
//! client's real [`Api`] (HTTP, chunked uploads, verified downloads, real sign-in), so the fake
//! server's rules cannot drift from the real ones unnoticed.
//!
//! What it does not share with the fast mode: replay is exact in what the devices and users
//! do, not in the server's ids and clocks (file ids are random, times are real), so
//! `a_seed_replays_exactly` stays a fast-mode test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use syncsphere_protocol::{ChangeEvent, ChangeKind, FileList};
use syncsphere_server::{AppConfig, build};

use super::scratch;
use super::server::Backend;
use crate::SessionStorage;
use crate::api::Api;
use crate::status::Direction;
use crate::transfer::Transfers;

const EMAIL: &str = "sim@example.com";
const PASSWORD: &str = "Simulated-passw0rd";

/// What the checks need of a server, whichever it is.
#[derive(Debug, Default, Clone)]
pub(crate) struct ServerView {
    /// Path → content of every live file.
    pub live: BTreeMap<String, Vec<u8>>,
    /// The hash of every content ever committed (live, in the history, in the trash).
    pub hashes: BTreeSet<String>,
    pub journal_len: usize,
}

/// The real server, serving on a loopback port until dropped (with the runtime it runs on).
pub(crate) struct RealServer {
    url: String,
    task: tokio::task::JoinHandle<()>,
    /// Reads the server's state for the checks, as a fourth device of the same user would.
    observer: Api,
    observer_scratch: tempfile::TempDir,
    _observer_config: tempfile::TempDir,
    _data: tempfile::TempDir,
}

impl Drop for RealServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RealServer {
    pub(crate) async fn start() -> Self {
        let data = scratch();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        let app = build(&AppConfig::embedded(data.path().to_path_buf(), url.clone()))
            .await
            .expect("the embedded server builds");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app.router).await;
        });
        let observer_config = scratch();
        crate::sign_up(
            observer_config.path(),
            &url,
            EMAIL,
            PASSWORD,
            SessionStorage::File,
        )
        .await
        .expect("the simulation's account is created");
        let observer = crate::signed_in_api(observer_config.path())
            .await
            .expect("the observer is signed in");
        RealServer {
            url,
            task,
            observer,
            observer_scratch: scratch(),
            _observer_config: observer_config,
            _data: data,
        }
    }

    /// A device of the simulation's user, signed in with its own config directory.
    pub(crate) async fn backend(&self, config_dir: &Path) -> Backend {
        crate::sign_in(config_dir, &self.url, EMAIL, PASSWORD, SessionStorage::File)
            .await
            .expect("a device signs in");
        Backend::Real {
            api: Box::new(
                crate::signed_in_api(config_dir)
                    .await
                    .expect("the device's API"),
            ),
            scratch: scratch(),
        }
    }

    /// The observer's API (a signed-in device of the simulation's user), for tests of the API.
    pub(crate) fn api(&self) -> &Api {
        &self.observer
    }

    /// The device id a device's requests carry (its config's).
    pub(crate) fn device_id(config_dir: &Path) -> String {
        crate::load_config(config_dir)
            .expect("the config reads")
            .expect("signed in")
            .device_id
    }

    /// The journal from `cursor` on.
    pub(crate) async fn journal_since(&self, cursor: i64) -> (Vec<ChangeEvent>, i64) {
        let (mut all, mut cursor) = (Vec::new(), cursor);
        loop {
            let page = self.observer.changes(cursor).await.expect("the journal");
            all.extend(page.changes);
            cursor = page.cursor.into();
            if !page.has_more {
                return (all, cursor);
            }
        }
    }

    /// The live tree (every file downloaded and verified) and the whole journal.
    pub(crate) async fn view(&self) -> ServerView {
        let mut view = ServerView::default();
        let mut cursor = 0;
        loop {
            let page = self.observer.changes(cursor).await.expect("the journal");
            for c in &page.changes {
                view.journal_len += 1;
                if c.event != ChangeKind::Deleted && !c.sha256.is_empty() {
                    view.hashes.insert(c.sha256.to_string());
                }
            }
            cursor = page.cursor.into();
            if !page.has_more {
                break;
            }
        }
        let list: FileList = self
            .observer
            .get_json("/v1/files")
            .await
            .expect("the file list");
        let transfers = Transfers::default();
        for (n, f) in list.files.iter().enumerate() {
            let dest = self.observer_scratch.path().join(n.to_string());
            let active = transfers.start(&f.path, Direction::Download, 0);
            self.observer
                .download(&f.file_id, &dest, None, &[], &active.transfer)
                .await
                .expect("a live file downloads");
            let data = std::fs::read(&dest).expect("the download");
            let _ = std::fs::remove_file(&dest);
            view.live.insert(f.path.clone(), data);
        }
        view
    }
}
