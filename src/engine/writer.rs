//! SQLite's group commit: the write work of requests runs on one thread with one connection, and
//! whatever queued up while a transaction ran commits together in the next one.
//!
//! A SQLite commit writes every page the transaction changed to the WAL (two `pwrite`s and a
//! checksum a page) and another connection's next transaction throws its page cache away. Under
//! load, most of a payment's cost was that. Batched, neighbouring rows share their pages, one
//! commit writes them once, and the writer's cache stays warm because only it writes.
//!
//! Each job of a batch runs under a savepoint (unless it is alone), so a job that fails undoes
//! only its own changes. Nobody hears back before the batch has committed: a notification is
//! answered `success` only once it is stored.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::PoisonError;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use diesel::Connection;
use diesel::connection::TransactionManager;

use crate::db::{
    Backend, DatabaseLocation, DbConn, DbError, SQLITE_CONNECTION_PRAGMAS, SQLITE_WRITER, begin_write,
    in_transaction,
};

/// At most this many jobs commit together, so the first of a batch never waits long.
const MAX_BATCH: usize = 64;

/// How long the writer waits for a writer of another connection before it fails a batch, and
/// how often it looks meanwhile.
const BUSY_WAIT: Duration = Duration::from_secs(10);
const BUSY_STEP: Duration = Duration::from_micros(100);

type Manager = <DbConn as Connection>::TransactionManager;

/// What a job leaves for after the commit: whether it failed (its savepoint is rolled back), and
/// how to tell its caller the outcome once the commit's own is known.
struct Ran {
    failed: bool,
    reply: Reply,
}

/// Tells a job's caller its outcome, given the batch's commit.
type Reply = Box<dyn FnOnce(Result<(), diesel::result::Error>) + Send>;

type Job = Box<dyn FnOnce(&mut DbConn) -> Ran + Send>;

/// The queue to the writer thread. Dropping every clone stops the thread once the queue is empty.
#[derive(Clone)]
pub struct Writer {
    jobs: Sender<Job>,
}

/// The writer thread is gone (it only stops when the application does).
#[derive(Debug)]
pub struct WriterGone;

impl Writer {
    /// Opens the writer's own connection and starts its thread; `None` for PostgreSQL, whose
    /// requests write through the pool (it commits concurrently by itself).
    pub fn start(location: &DatabaseLocation) -> Result<Option<Writer>, DbError> {
        if location.backend != Backend::Sqlite {
            return Ok(None);
        }
        let writer_error = |reason: String| DbError::Prepare { location: location.redacted(), reason };
        let mut conn = location.establish()?;
        diesel::connection::SimpleConnection::batch_execute(&mut conn, SQLITE_CONNECTION_PRAGMAS)
            .and_then(|()| {
                diesel::connection::SimpleConnection::batch_execute(&mut conn, "PRAGMA busy_timeout = 0")
            })
            .map_err(|e| writer_error(e.to_string()))?;
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("paymall-writer".into())
            .spawn(move || run_batches(&mut conn, &queue))
            .map_err(|e| writer_error(format!("cannot start the writer thread: {e}")))?;
        Ok(Some(Writer { jobs }))
    }

    /// Runs `work` in the next batch and returns its result once the batch has committed. A
    /// commit failure fails every job of the batch, whatever their own result was.
    pub async fn run<T, E, F>(&self, work: F) -> Result<Result<T, E>, WriterGone>
    where
        T: Send + 'static,
        E: From<diesel::result::Error> + Send + 'static,
        F: FnOnce(&mut DbConn) -> Result<T, E> + Send + 'static,
    {
        let (done, outcome) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn: &mut DbConn| {
            let result = work(conn);
            Ran {
                failed: result.is_err(),
                reply: Box::new(move |committed| {
                    let _ = done.send(committed.map_err(E::from).and(result));
                }),
            }
        });
        self.jobs.send(job).map_err(|_| WriterGone)?;
        outcome.await.map_err(|_| WriterGone)
    }
}

fn run_batches(conn: &mut DbConn, queue: &Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        batch.extend(queue.try_iter().take(MAX_BATCH - 1));
        let alone = batch.len() == 1;
        let _writer = SQLITE_WRITER.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = begin_batch(conn) {
            // Dropping the jobs tells their callers that the writer failed them.
            log::error!("SQLite writer cannot begin a transaction for {} jobs: {e}", batch.len());
            continue;
        }
        let mut replies = Vec::with_capacity(batch.len());
        for job in batch {
            match run_job(conn, job, alone) {
                Ok(reply) => replies.push(reply),
                Err(e) => log::error!("SQLite writer: a job's savepoint failed: {e}"),
            }
        }
        let committed = Manager::commit_transaction(conn);
        if let Err(e) = &committed {
            log::error!(
                "SQLite writer: a batch of {} jobs did not commit and was rolled back: {e}",
                replies.len()
            );
            if in_transaction(conn).unwrap_or(false) {
                let _ = Manager::rollback_transaction(conn);
            }
        }
        for reply in replies {
            reply(committed.as_ref().map(|_| ()).map_err(clone_error));
        }
    }
}

/// Runs one job, under a savepoint unless it is alone in its batch (then its failure rolls the
/// whole transaction back at commit time instead: see [`Writer::run`]). A panicking job is
/// undone and its caller told so by the dropped reply.
fn run_job(conn: &mut DbConn, job: Job, alone: bool) -> diesel::QueryResult<Reply> {
    if !alone {
        Manager::begin_transaction(conn)?;
    }
    let ran = catch_unwind(AssertUnwindSafe(|| job(conn)));
    if ran.is_err() {
        close_nested(conn, if alone { 1 } else { 2 })?;
    }
    let failed = ran.as_ref().map_or(true, |ran| ran.failed);
    if !alone {
        if failed { Manager::rollback_transaction(conn)? } else { Manager::commit_transaction(conn)? }
    } else if failed {
        // Alone: undo it now and begin afresh, so the commit that follows commits nothing.
        Manager::rollback_transaction(conn)?;
        begin_batch(conn)?;
    }
    match ran {
        Ok(ran) => Ok(ran.reply),
        Err(_) => {
            log::error!("SQLite writer: a job panicked; its changes were undone");
            Ok(Box::new(|_| {}))
        }
    }
}

/// Rolls back the transactions that a panicking job left open inside its own, innermost first,
/// down to `depth`. Otherwise undoing the job would undo only the innermost of them, and the
/// batch's commit would release the rest and leave the batch's transaction open.
fn close_nested(conn: &mut DbConn, depth: u32) -> diesel::QueryResult<()> {
    while Manager::transaction_manager_status_mut(conn).transaction_depth()?.is_some_and(|d| d.get() > depth)
    {
        Manager::rollback_transaction(conn)?;
    }
    Ok(())
}

/// Begins a batch's transaction. The writer's connection has no busy timeout: SQLite's busy
/// handler sleeps 1, 2, 5, 10 ms ... while every write of the shop waits behind this thread, when
/// another connection's write (the background thread's, usually a single statement) holds the
/// lock for a fraction of that. So the writer looks again itself, in short steps.
fn begin_batch(conn: &mut DbConn) -> diesel::QueryResult<()> {
    let deadline = Instant::now() + BUSY_WAIT;
    loop {
        match begin_write(conn) {
            Err(diesel::result::Error::DatabaseError(_, info))
                if info.message().contains("database is locked") && Instant::now() < deadline =>
            {
                std::thread::sleep(BUSY_STEP);
            }
            begun => return begun,
        }
    }
}

/// diesel's errors are not `Clone`; every job of a failed batch hears the same cause in words.
fn clone_error(e: &diesel::result::Error) -> diesel::result::Error {
    diesel::result::Error::QueryBuilderError(format!("the batch did not commit: {e}").into())
}

#[cfg(test)]
mod tests {
    use diesel::prelude::*;

    use super::Writer;
    use crate::db::schema::order_number;
    use crate::db::{Backend, DatabaseLocation, DbConn, isolated_write_transaction};
    use crate::test_support::TestDatabase;

    fn insert_number(conn: &mut DbConn) -> QueryResult<usize> {
        diesel::insert_into(order_number::table)
            .values(order_number::created_at.eq(crate::models::now()))
            .execute(conn)
    }

    fn numbers(location: &DatabaseLocation) -> i64 {
        let mut conn = location.establish().unwrap();
        order_number::table.count().get_result(&mut conn).unwrap()
    }

    #[actix_web::test]
    async fn jobs_commit_together_and_a_failing_or_panicking_one_undoes_only_itself() {
        let database = TestDatabase::migrated(Backend::Sqlite);
        let location = database.location();
        let writer = Writer::start(&location).unwrap().expect("SQLite has a writer");

        // The first job holds the writer while the others queue, so they share one batch.
        let first = writer.clone();
        let first = actix_web::rt::spawn(async move {
            first
                .run(|conn| {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    insert_number(conn)
                })
                .await
        });
        actix_web::rt::time::sleep(std::time::Duration::from_millis(20)).await;
        let queued: Vec<_> = (0..30)
            .map(|i| {
                let writer = writer.clone();
                actix_web::rt::spawn(async move {
                    writer
                        .run(move |conn| {
                            insert_number(conn)?;
                            match i % 10 {
                                3 => Err(diesel::result::Error::RollbackTransaction),
                                5 => conn.transaction(|c| {
                                    insert_number(c)?;
                                    panic!("a job that panics inside a transaction of its own")
                                }),
                                7 => panic!("a job that panics after writing"),
                                9 => {
                                    let undone = isolated_write_transaction(conn, |c| {
                                        insert_number(c)?;
                                        Err::<(), _>(diesel::result::Error::RollbackTransaction)
                                    });
                                    assert!(undone.is_err());
                                    Ok(i)
                                }
                                _ => Ok(i),
                            }
                        })
                        .await
                })
            })
            .collect();
        assert_eq!(first.await.unwrap().unwrap().unwrap(), 1);
        let mut succeeded = 0;
        for (i, job) in queued.into_iter().enumerate() {
            match (i % 10, job.await.unwrap()) {
                (3, Ok(Err(_))) | (5 | 7, Err(_)) => {}
                (_, Ok(Ok(n))) if n == i => succeeded += 1,
                (_, other) => panic!("job {i}: {:?}", other.map(|r| r.map_err(|e| e.to_string()))),
            }
        }
        assert_eq!(succeeded, 21);
        assert_eq!(numbers(&location), 22, "the first job and the 21 that succeeded, each one row");

        // The writer lives on after a panic, and a job alone in its batch that fails leaves nothing.
        let alone = writer
            .run(|conn| {
                insert_number(conn)?;
                Err::<(), _>(diesel::result::Error::RollbackTransaction)
            })
            .await
            .unwrap();
        assert!(alone.is_err());
        assert_eq!(numbers(&location), 22);
    }
}
