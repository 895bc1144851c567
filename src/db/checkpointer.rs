//! SQLite only: checkpoints the WAL from a thread of its own, so no request pays for copying
//! pages back into the database file and for the fsync that follows, and a page that many commits
//! changed is copied once.
//!
//! A passive checkpoint never waits, but under steady writes it never catches up either, and the
//! WAL only starts again from its beginning after one that did: it grew past a gigabyte in the
//! benchmark. So when a passive checkpoint leaves a long WAL behind, the thread briefly holds the
//! writers of this process back and restarts it ([`RESTART_AFTER_BYTES`]).
//!
//! Two kinds of tuning for particular hosts, off unless set: after each checkpoint it readies the
//! next stretch of the WAL for the writer ([`WalAhead`], `database.sqlite_wal_ahead`), for file
//! systems that stall appends; and every `database.sqlite_read_open_orders_secs` it reads what a
//! payment will need ([`Order::read_open_orders`]), for hosts that reclaim unread file pages, so
//! the writer does not wait for the disk then (docs/PERFORMANCE.md).

use std::path::{Path, PathBuf};
use std::sync::PoisonError;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::{QueryResult, RunQueryDsl, SqliteConnection};

use super::{DatabaseLocation, DbConn, DbError, SQLITE_CONNECTION_PRAGMAS, SQLITE_WRITER};
use crate::config::DatabaseSettings;
use crate::models::order::Order;

/// How often the checkpointer copies the WAL back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// A WAL longer than this after a passive checkpoint is restarted. A restart holds the writers
/// back while it syncs the WAL and the database file: 2 to 30 ms when the disk is quiet, 25 to
/// 200 ms under the benchmark's load (each sync waits for what was written before it). So it is a
/// bound for sustained load, not a routine: when writes pause, a passive checkpoint catches up
/// and the WAL starts again by itself. Page lookups only search the frames no checkpoint has
/// copied yet, so a long WAL costs disk space, not time.
const RESTART_AFTER_BYTES: u64 = 1 << 30;

/// How far past the end of its last frame the WAL is readied: more than the writer appends
/// between two checkpoints at the benchmark's maximum rate (with 1 KiB pages; 48 MiB was needed
/// with 4 KiB pages, whose frames are four times as long).
const WAL_AHEAD: u64 = 16 << 20;

/// The WAL's header, and each frame's header before its page.
const WAL_HEADER_BYTES: u64 = 32;
const WAL_FRAME_HEADER_BYTES: u64 = 24;

pub struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// A row of `PRAGMA wal_checkpoint`.
#[derive(diesel::QueryableByName)]
struct CheckpointResult {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    busy: i32,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    log: i32,
}

#[derive(diesel::QueryableByName)]
struct PageSize {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    page_size: i32,
}

impl Checkpointer {
    /// Starts the thread for a SQLite database; `None` for PostgreSQL.
    pub fn start(
        location: &DatabaseLocation,
        settings: &DatabaseSettings,
    ) -> Result<Option<Checkpointer>, DbError> {
        let DbConn::Sqlite(mut conn) = location.establish()? else { return Ok(None) };
        let checkpoint_error = |reason: String| DbError::Prepare { location: location.redacted(), reason };
        // No busy timeout: a restart that meets a reader gives up at once and comes back later,
        // instead of sleeping while the writers wait for it.
        conn.batch_execute(SQLITE_CONNECTION_PRAGMAS)
            .and_then(|()| conn.batch_execute("PRAGMA busy_timeout = 0"))
            .map_err(|e| checkpoint_error(e.to_string()))?;
        let page_size = diesel::sql_query("PRAGMA page_size")
            .get_result::<PageSize>(&mut conn)
            .map_err(|e| checkpoint_error(e.to_string()))?
            .page_size;
        let frame_bytes = u64::try_from(page_size).unwrap_or(4096) + WAL_FRAME_HEADER_BYTES;
        let restart_after_frames = i32::try_from(RESTART_AFTER_BYTES / frame_bytes).unwrap_or(i32::MAX);
        let wal = PathBuf::from(format!("{}-wal", location.target));
        let (stop, stopped) = mpsc::channel::<()>();
        let enabled = settings.sqlite_wal_ahead;
        let read_every = (settings.sqlite_read_open_orders_secs > 0)
            .then(|| Duration::from_secs(settings.sqlite_read_open_orders_secs));
        let thread = std::thread::Builder::new()
            .name("paymall-checkpoint".into())
            .spawn(move || {
                let ahead = WalAhead::new(wal, frame_bytes, enabled);
                checkpoint_until_stopped(&mut conn, restart_after_frames, ahead, read_every, &stopped)
            })
            .map_err(|e| checkpoint_error(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Some(Checkpointer { stop: Some(stop), thread: Some(thread) }))
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn checkpoint_until_stopped(
    conn: &mut SqliteConnection,
    restart_after_frames: i32,
    mut ahead: WalAhead,
    read_every: Option<Duration>,
    stopped: &Receiver<()>,
) {
    let mut read_at = Instant::now();
    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY) {
        match checkpoint_and_bound(conn, restart_after_frames) {
            Ok(frames) => ahead.ready_after(frames),
            Err(e) => log::warn!("SQLite checkpoint failed: {e}"),
        }
        if read_every.is_some_and(|every| read_at.elapsed() >= every) {
            read_at = Instant::now();
            if let Err(e) = Order::read_open_orders(conn) {
                log::warn!("SQLite: reading the open orders failed: {e}");
            }
        }
    }
}

/// One passive checkpoint, and a restart when it leaves a long WAL behind. Returns how many frames
/// the WAL holds: none after a restart, as the next commit writes from its start again.
fn checkpoint_and_bound(conn: &mut SqliteConnection, restart_after_frames: i32) -> QueryResult<u64> {
    let passive = checkpoint(conn, "PASSIVE")?;
    let result = if passive.log <= restart_after_frames {
        passive
    } else {
        // What was written during that one is copied and synced now, so the restart, which the
        // writers wait for, has only a few pages left to do.
        checkpoint(conn, "PASSIVE")?;
        let _writers = SQLITE_WRITER.lock().unwrap_or_else(PoisonError::into_inner);
        let restart = checkpoint(conn, "RESTART")?;
        CheckpointResult { log: if restart.busy == 0 { 0 } else { restart.log }, ..restart }
    };
    if result.busy != 0 {
        log::debug!("SQLite checkpoint met a reader");
    }
    Ok(u64::try_from(result.log).unwrap_or(0))
}

fn checkpoint(conn: &mut SqliteConnection, mode: &str) -> QueryResult<CheckpointResult> {
    diesel::sql_query(format!("PRAGMA wal_checkpoint({mode})")).get_result(conn)
}

/// The next [`WAL_AHEAD`] bytes of the WAL, readied for the writer after each checkpoint, length
/// and content untouched. SQLite writes frames of a page plus 24 bytes, so nearly every frame
/// write fills part of a file page, and two things made such a write wait inside the commit:
/// - Past the end of the file, ext4 allocates the blocks of a growing file when the next
///   checkpoint syncs it, with its last pages locked. Space is allocated beforehand instead.
/// - A restarted WAL is rewritten in place, and a page the kernel has dropped from its cache is
///   read from disk first. Under memory pressure, or with proactive reclaim (this benchmark
///   machine pages out file pages that are not mapped within seconds of their write), it drops
///   file pages written once. The stretch is mapped (never read through the mapping) and
///   populated instead, which reads in what is missing here, off the writer's path, and keeps it.
///
/// When the WAL has not moved since the last checkpoint the mapping is let go, so an idle shop
/// holds none of it. Never done to the database file: closing any descriptor of it would drop the
/// locks SQLite holds on it (POSIX record locks belong to the process); it locks nothing on the
/// WAL. The space allocated past the end stays with the file until SQLite deletes it at shutdown.
struct WalAhead {
    wal: PathBuf,
    frame_bytes: u64,
    /// Where the WAL's last frame ended after the previous checkpoint.
    end: u64,
    mapped: Option<Mapping>,
    enabled: bool,
}

impl WalAhead {
    fn new(wal: PathBuf, frame_bytes: u64, enabled: bool) -> Self {
        WalAhead { wal, frame_bytes, end: 0, mapped: None, enabled }
    }

    fn ready_after(&mut self, frames: u64) {
        let end = WAL_HEADER_BYTES + frames * self.frame_bytes;
        self.mapped = None;
        if !self.enabled || end == self.end {
            return;
        }
        self.end = end;
        match ready(&self.wal, end) {
            Ok(mapped) => self.mapped = mapped,
            Err(e) => {
                // Some systems cannot; commits may then stall now and then.
                log::info!("Not readying the SQLite WAL {} for its writer: {e}", self.wal.display());
                self.enabled = false;
            }
        }
    }
}

/// Allocates [`WAL_AHEAD`] bytes from `end` and maps what of them the file holds; `None` when there
/// is no such part (or no WAL).
#[cfg(target_os = "linux")]
fn ready(wal: &Path, end: u64) -> std::io::Result<Option<Mapping>> {
    use std::os::fd::AsRawFd;
    let file = match std::fs::OpenOptions::new().read(true).write(true).open(wal) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        opened => opened?,
    };
    let too_far = || std::io::Error::other("offset out of range");
    let fd = file.as_raw_fd();
    let offset = libc::off_t::try_from(end).map_err(|_| too_far())?;
    let ahead = libc::off_t::try_from(WAL_AHEAD).map_err(|_| too_far())?;
    // SAFETY: plain integers and a descriptor that `file` keeps open.
    if unsafe { libc::fallocate(fd, libc::FALLOC_FL_KEEP_SIZE, offset, ahead) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: no arguments, no memory.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).map_err(|_| too_far())?;
    let start = end - end % page;
    let stop = (end + WAL_AHEAD).min(file.metadata()?.len());
    if stop <= start {
        return Ok(None);
    }
    let length = usize::try_from(stop - start).map_err(|_| too_far())?;
    let offset = libc::off_t::try_from(start).map_err(|_| too_far())?;
    // SAFETY: a new read-only shared mapping that nothing reads through; the kernel keeps the
    // file alive for it, and only `Mapping::drop` unmaps it.
    let address = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            length,
            libc::PROT_READ,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd,
            offset,
        )
    };
    if address == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Some(Mapping { address, length }))
}

#[cfg(not(target_os = "linux"))]
fn ready(_wal: &Path, _end: u64) -> std::io::Result<Option<Mapping>> {
    Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "only done on Linux"))
}

/// A stretch of the WAL mapped into memory, which keeps its pages cached.
struct Mapping {
    #[cfg(target_os = "linux")]
    address: *mut libc::c_void,
    #[cfg(target_os = "linux")]
    length: usize,
}

#[cfg(target_os = "linux")]
impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping `ready` made, unmapped once.
        unsafe { libc::munmap(self.address, self.length) };
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::{WAL_AHEAD, WalAhead, ready};

    #[test]
    fn readying_the_wal_allocates_and_maps_ahead_without_changing_it() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("shop.db-wal");
        assert!(ready(&wal, 32).unwrap().is_none(), "no WAL yet: nothing to ready");

        let content: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&wal, &content).unwrap();
        let mapped = ready(&wal, 40_000).unwrap().expect("the file holds part of the stretch");
        // SAFETY: no arguments, no memory.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap();
        assert_eq!(mapped.length, 100_000 - 40_000 / page * page, "from the page of `end` to the file's end");
        let metadata = std::fs::metadata(&wal).unwrap();
        assert_eq!(metadata.len(), 100_000, "the length is untouched");
        assert!(metadata.blocks() * 512 >= 40_000 + WAL_AHEAD, "space is allocated past the end");
        assert_eq!(std::fs::read(&wal).unwrap(), content, "the content is untouched");
        drop(mapped);

        let mut ahead = WalAhead::new(wal, 4120, true);
        ahead.ready_after(10);
        assert!(ahead.mapped.is_some(), "the WAL moved: its next stretch is mapped");
        ahead.ready_after(10);
        assert!(ahead.mapped.is_none(), "idle: the mapping is let go");
        assert!(ahead.enabled);
    }
}
