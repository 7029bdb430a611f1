//! Per-file progress of the uploads and downloads in flight, for the status stream (the
//! window's progress bars, `syncsphere status`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::status::{Direction, TransferProgress};

/// One file being sent or received; the API adds to `done` as bytes go through.
#[derive(Debug)]
pub(crate) struct Transfer {
    path: String,
    direction: Direction,
    done: AtomicU64,
    total: AtomicU64,
}

impl Transfer {
    pub(crate) fn add(&self, bytes: u64) {
        self.done.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Bytes already there before this transfer started (a resumed download).
    pub(crate) fn set_done(&self, bytes: u64) {
        self.done.store(bytes, Ordering::Relaxed);
    }

    pub(crate) fn set_total(&self, bytes: u64) {
        self.total.store(bytes, Ordering::Relaxed);
    }
}

/// The last id handed out, and the transfers in flight by id.
type Registry = (u64, BTreeMap<u64, Arc<Transfer>>);

/// The transfers in flight, keyed by a start counter so two of one path never collide.
#[derive(Debug, Default, Clone)]
pub(crate) struct Transfers(Arc<Mutex<Registry>>);

/// Removes its transfer from the list when the operation ends, however it ends.
pub(crate) struct Active {
    list: Transfers,
    id: u64,
    pub transfer: Arc<Transfer>,
}

impl Drop for Active {
    fn drop(&mut self) {
        self.list.lock().1.remove(&self.id);
    }
}

impl Transfers {
    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        // A panic elsewhere cannot leave the map half-updated: every change is one call.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn start(&self, path: &str, direction: Direction, total: u64) -> Active {
        let transfer = Arc::new(Transfer {
            path: path.to_owned(),
            direction,
            done: AtomicU64::new(0),
            total: AtomicU64::new(total),
        });
        let mut guard = self.lock();
        guard.0 += 1;
        let id = guard.0;
        guard.1.insert(id, transfer.clone());
        Active {
            list: self.clone(),
            id,
            transfer,
        }
    }

    /// The transfers in flight, oldest first.
    pub(crate) fn snapshot(&self) -> Vec<TransferProgress> {
        self.lock()
            .1
            .values()
            .map(|t| TransferProgress {
                path: t.path.clone(),
                direction: t.direction,
                done: t.done.load(Ordering::Relaxed),
                total: t.total.load(Ordering::Relaxed),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfers_show_while_active_and_vanish_when_done() {
        let list = Transfers::default();
        let a = list.start("a.bin", Direction::Upload, 100);
        let b = list.start("b.bin", Direction::Download, 0);
        a.transfer.add(40);
        b.transfer.set_total(10);
        b.transfer.set_done(5);
        let snap = list.snapshot();
        assert_eq!(snap.len(), 2);
        assert_eq!(
            (snap[0].path.as_str(), snap[0].done, snap[0].total),
            ("a.bin", 40, 100)
        );
        assert_eq!(
            (snap[1].direction, snap[1].done, snap[1].total),
            (Direction::Download, 5, 10)
        );
        drop(a);
        assert_eq!(list.snapshot().len(), 1);
        drop(b);
        assert!(list.snapshot().is_empty());
    }
}
