//! The bytes of stored record batches under a memory budget.
//!
//! Every replica of a partition holds the same [`BatchBytes`] handle for a batch (replication clones the handle, not
//! the bytes), so a batch costs one copy at any replication factor. With a [`SpillStore`], the cluster keeps at most
//! its budget of batch bytes in memory: when an append goes past it, the store's thread moves the oldest batches
//! still in memory (in append order, over every partition) to one spill file shared by the whole cluster, and reads
//! of them come back from that file. The tail of each log — what followers and caught-up consumers read — stays in
//! memory. The writes happen off the produce path (an append only counts and wakes the thread), so the budget is
//! a bound the store returns to, not one an append waits for.
//!
//! This is memory management only, not durability: the spill file is an unnamed temporary file (removed by the
//! operating system when the cluster goes, also on a crash), and crash semantics stay those of the log directory
//! (`disk/`). The file holds one copy of each spilled batch whatever the replication factor, and the space of a
//! batch that retention, compaction or truncation removed is given back (a hole punched in the file).

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;

use crate::broker::disk::{io_error, StorageError};

/// A stored batch's bytes: in memory, or in the cluster's spill file.
#[derive(Clone)]
pub(crate) struct BatchBytes(Arc<Cell>);

struct Cell {
    len: usize,
    place: Mutex<Place>,
    store: Option<Arc<SpillStore>>,
}

enum Place {
    Memory(Bytes),
    /// Byte position in the spill file.
    Spilled(u64),
}

impl std::fmt::Debug for BatchBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchBytes")
            .field("len", &self.0.len)
            .field("spilled", &self.is_spilled())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl BatchBytes {
    /// Bytes that stay in memory (no store, or a log the store does not manage).
    pub(crate) fn memory(bytes: Bytes) -> BatchBytes {
        BatchBytes::new(bytes, None)
    }

    /// Bytes the store may move to its file once they are among the oldest past its budget.
    pub(crate) fn new(bytes: Bytes, store: Option<&Arc<SpillStore>>) -> BatchBytes {
        let cell = Arc::new(Cell {
            len: bytes.len(),
            place: Mutex::new(Place::Memory(bytes)),
            store: store.cloned(),
        });
        if let Some(store) = store {
            store.admit(&cell);
        }
        BatchBytes(cell)
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len
    }

    /// The batch's bytes: a handle on the memory copy, or read back from the spill file.
    pub(crate) fn get(&self) -> Result<Bytes, StorageError> {
        let at = match &*lock(&self.0.place) {
            Place::Memory(bytes) => return Ok(bytes.clone()),
            Place::Spilled(at) => *at,
        };
        match &self.0.store {
            Some(store) => store.read(at, self.0.len),
            None => Err(StorageError::Io {
                action: "read a spilled batch without its spill file",
                path: PathBuf::new(),
                kind: std::io::ErrorKind::NotFound,
                message: "no spill store".to_string(),
            }),
        }
    }

    pub(crate) fn is_spilled(&self) -> bool {
        matches!(&*lock(&self.0.place), Place::Spilled(_))
    }

    /// Identity of the shared bytes (every replica's handle on one batch has the same).
    pub(crate) fn id(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }
}

impl Drop for Cell {
    fn drop(&mut self) {
        let Some(store) = &self.store else {
            return;
        };
        let place = std::mem::replace(
            self.place.get_mut().unwrap_or_else(|e| e.into_inner()),
            Place::Spilled(u64::MAX),
        );
        match place {
            Place::Memory(_) => {
                store.resident.fetch_sub(self.len as u64, Ordering::Relaxed);
            }
            Place::Spilled(at) => store.release(at, self.len as u64),
        }
    }
}

/// What a store holds, for reports and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpillStats {
    /// Batch bytes in memory now.
    pub resident_bytes: u64,
    /// Batch bytes in the spill file now.
    pub spilled_bytes: u64,
    /// The most the spill file held at once.
    pub peak_spilled_bytes: u64,
    /// Bytes ever written to the spill file.
    pub written_bytes: u64,
    /// Bytes read back from it (fetches, replication, the cleaner).
    pub read_bytes: u64,
}

/// The cluster's spill file and its memory budget for batch bytes.
pub(crate) struct SpillStore {
    budget: u64,
    file: File,
    /// Where the file was made (for error messages; the file itself has no name).
    dir: PathBuf,
    resident: AtomicU64,
    spilled: AtomicU64,
    peak_spilled: AtomicU64,
    written: AtomicU64,
    read: AtomicU64,
    /// A write to the file failed: nothing more is spilled (the batches stay in memory).
    failed: AtomicBool,
    queue: Mutex<Queue>,
    /// Wakes the spilling thread; it ends when the store (and so this sender) is gone.
    wake: SyncSender<()>,
}

struct Queue {
    /// Batches in append order; entries whose batch is gone are skipped when reached.
    order: VecDeque<Weak<Cell>>,
    /// The file's end: where the next spilled batch goes.
    end: u64,
}

impl SpillStore {
    /// A store keeping at most `budget` bytes of batches in memory, spilling the rest to an unnamed file in `dir`.
    pub(crate) fn new(budget: u64, dir: PathBuf) -> Result<Arc<SpillStore>, StorageError> {
        let file = tempfile::tempfile_in(&dir)
            .map_err(io_error("create the batch spill file in", &dir))?;
        let (wake, woken) = sync_channel::<()>(1);
        let store = Arc::new(SpillStore {
            budget,
            file,
            dir: dir.clone(),
            resident: AtomicU64::new(0),
            spilled: AtomicU64::new(0),
            peak_spilled: AtomicU64::new(0),
            written: AtomicU64::new(0),
            read: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            queue: Mutex::new(Queue {
                order: VecDeque::new(),
                end: 0,
            }),
            wake,
        });
        let weak = Arc::downgrade(&store);
        std::thread::Builder::new()
            .name("log-spill".to_string())
            .spawn(move || {
                while woken.recv().is_ok() {
                    let Some(store) = weak.upgrade() else {
                        break;
                    };
                    store.spill_past_budget();
                }
            })
            .map_err(io_error("start the spilling thread for", &dir))?;
        Ok(store)
    }

    pub(crate) fn stats(&self) -> SpillStats {
        SpillStats {
            resident_bytes: self.resident.load(Ordering::Relaxed),
            spilled_bytes: self.spilled.load(Ordering::Relaxed),
            peak_spilled_bytes: self.peak_spilled.load(Ordering::Relaxed),
            written_bytes: self.written.load(Ordering::Relaxed),
            read_bytes: self.read.load(Ordering::Relaxed),
        }
    }

    /// Counts a new in-memory batch and, past the budget, wakes the spilling thread.
    fn admit(&self, cell: &Arc<Cell>) {
        let resident =
            self.resident.fetch_add(cell.len as u64, Ordering::Relaxed) + cell.len as u64;
        let mut queue = lock(&self.queue);
        // Batches dropped while still in memory (retention, truncation, compaction) leave the front as they go, so
        // a run that never spills does not keep an entry for every batch it ever appended.
        while queue.order.front().is_some_and(|w| w.strong_count() == 0) {
            queue.order.pop_front();
        }
        queue.order.push_back(Arc::downgrade(cell));
        drop(queue);
        if resident > self.budget && !self.failed.load(Ordering::Relaxed) {
            // A full channel means a wake-up is already pending.
            let _ = self.wake.try_send(());
        }
    }

    /// Moves the oldest in-memory batches to the file until the resident bytes are within the budget. The queue's
    /// lock is held only to take the next batch and its place in the file, never across a write, so appends (which
    /// take it to enqueue) do not wait for the disk.
    pub(crate) fn spill_past_budget(&self) {
        while !self.failed.load(Ordering::Relaxed)
            && self.resident.load(Ordering::Relaxed) > self.budget
        {
            let (oldest, at) = {
                let mut queue = lock(&self.queue);
                let Some(oldest) = queue.order.pop_front() else {
                    return;
                };
                // A batch already gone (retention, truncation) or spilled takes no place in the file.
                let Some(oldest) = oldest.upgrade() else {
                    continue;
                };
                if !matches!(&*lock(&oldest.place), Place::Memory(_)) {
                    continue;
                }
                let at = queue.end;
                queue.end += oldest.len as u64;
                (oldest, at)
            };
            let mut place = lock(&oldest.place);
            if let Place::Memory(bytes) = &*place {
                if let Err(e) = self.file.write_all_at(bytes, at) {
                    tracing::warn!(dir = %self.dir.display(), error = %e, "cannot write the batch spill file; batches stay in memory from now on");
                    self.failed.store(true, Ordering::Relaxed);
                    return;
                }
                let len = oldest.len as u64;
                *place = Place::Spilled(at);
                self.resident.fetch_sub(len, Ordering::Relaxed);
                let spilled = self.spilled.fetch_add(len, Ordering::Relaxed) + len;
                self.peak_spilled.fetch_max(spilled, Ordering::Relaxed);
                self.written.fetch_add(len, Ordering::Relaxed);
            }
            // `oldest` may be the batch's last handle; it drops after this, with no lock held.
            drop(place);
        }
    }

    fn read(&self, at: u64, len: usize) -> Result<Bytes, StorageError> {
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, at).map_err(io_error(
            "read a batch back from the spill file in",
            &self.dir,
        ))?;
        self.read.fetch_add(len as u64, Ordering::Relaxed);
        Ok(Bytes::from(buf))
    }

    /// A spilled batch is gone: its space in the file goes back to the file system.
    fn release(&self, at: u64, len: u64) {
        self.spilled.fetch_sub(len, Ordering::Relaxed);
        punch_hole(&self.file, at, len);
    }
}

/// Frees `[at, at + len)` of `file` without changing its length; best effort (a file system without hole punching
/// keeps the bytes until the cluster goes).
fn punch_hole(file: &File, at: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(at), Ok(len)) = (libc::off_t::try_from(at), libc::off_t::try_from(len)) else {
        return;
    };
    // SAFETY: fallocate on an open descriptor we own, with a range inside the file; it touches no memory.
    let _ = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            at,
            len,
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(budget: u64) -> Arc<SpillStore> {
        SpillStore::new(budget, std::env::temp_dir()).expect("spill file")
    }

    fn batch(n: u8, len: usize) -> Bytes {
        Bytes::from(
            (0..len)
                .map(|i| n.wrapping_add(i as u8))
                .collect::<Vec<u8>>(),
        )
    }

    #[test]
    fn the_oldest_batches_spill_past_the_budget_and_read_back_byte_for_byte() {
        let store = store(250);
        let batches: Vec<(Bytes, BatchBytes)> = (0..5u8)
            .map(|n| {
                let bytes = batch(n, 100);
                (bytes.clone(), BatchBytes::new(bytes, Some(&store)))
            })
            .collect();
        // The thread may have run already; this makes sure it has (and is a no-op otherwise).
        store.spill_past_budget();
        // 500 bytes against a budget of 250: the three oldest went to the file, the two newest stayed.
        let spilled: Vec<bool> = batches.iter().map(|(_, b)| b.is_spilled()).collect();
        assert_eq!(spilled, [true, true, true, false, false]);
        assert_eq!(
            store.stats(),
            SpillStats {
                resident_bytes: 200,
                spilled_bytes: 300,
                peak_spilled_bytes: 300,
                written_bytes: 300,
                read_bytes: 0,
            }
        );
        for (original, stored) in &batches {
            assert_eq!(&stored.get().expect("read back"), original);
        }
        // A shared handle is one batch: dropping one handle keeps it, dropping the last gives the space back.
        let shared = batches[0].1.clone();
        drop(batches);
        assert_eq!(store.stats().spilled_bytes, 100);
        assert_eq!(store.stats().resident_bytes, 0);
        assert_eq!(shared.get().expect("still readable"), batch(0, 100));
        drop(shared);
        assert_eq!(store.stats().spilled_bytes, 0);
        assert_eq!(store.stats().peak_spilled_bytes, 300);
    }

    #[test]
    fn without_a_store_bytes_stay_in_memory() {
        let b = BatchBytes::memory(batch(7, 10));
        assert!(!b.is_spilled());
        assert_eq!(b.get().expect("in memory"), batch(7, 10));
        let big = store(u64::MAX);
        let kept = BatchBytes::new(batch(1, 1000), Some(&big));
        assert!(!kept.is_spilled());
        assert_eq!(big.stats().resident_bytes, 1000);
    }
}
