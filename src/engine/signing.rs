//! The threads that sign payment forms: as many as there are cores, taking signatures first come
//! first served, at a lower priority than the request paths.
//!
//! A signature is about a millisecond of CPU, the costliest step of an order. On the blocking
//! pool, orders arriving together were signed side by side, sharing the cores, so all of them
//! finished late; here they finish one after another. And a signature gives way to the short
//! steps around it (an HTTP worker, the SQLite writer), which would otherwise wait for a slice
//! of a core behind it. On PostgreSQL the write a signature is for follows it on the same
//! thread ([`crate::engine::Engine::then_write`]): one round trip, while the other core
//! signs.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::AppError;

/// How much lower than the rest of the process the signing threads run (a `nice` increment).
const NICER_BY: libc::c_int = 5;

type Job = Box<dyn FnOnce() + Send>;

pub struct SigningThreads {
    jobs: Sender<Job>,
}

impl SigningThreads {
    /// Starts `threads` threads; they end when this is dropped.
    pub fn start(threads: usize) -> std::io::Result<SigningThreads> {
        let (jobs, queue) = channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name("paymall-signing".into())
                .spawn(move || sign_until_closed(&queue))?;
        }
        Ok(SigningThreads { jobs })
    }

    /// Runs `work` on the next free signing thread and waits for it without blocking the
    /// async worker.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AppError> {
        let (done, outcome) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = done.send(work());
            }))
            .map_err(|_| AppError::internal("the signing threads are gone"))?;
        outcome.await.map_err(|_| AppError::internal("a signature panicked"))
    }
}

fn sign_until_closed(queue: &Mutex<Receiver<Job>>) {
    // Raising its own nice value needs no privilege; a thread that cannot still signs. (Linux
    // keeps a nice value per thread: `who = 0` is this thread.)
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice + NICER_BY) } != 0 {
        log::warn!("a signing thread runs at normal priority: {}", std::io::Error::last_os_error());
    }
    loop {
        let next = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = next else { return };
        // A job that panics drops its reply, which tells its caller; the thread goes on.
        let _ = catch_unwind(AssertUnwindSafe(job));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn a_job_that_panics_fails_alone_and_the_thread_goes_on() {
        let signing = SigningThreads::start(1).unwrap();
        let failed = signing.run(|| -> u32 { panic!("a signature that panics") }).await;
        assert!(matches!(failed, Err(AppError::Internal(_))), "{failed:?}");
        assert_eq!(signing.run(|| 7).await.unwrap(), 7);
    }

    #[actix_web::test]
    async fn signatures_run_below_the_rest_of_the_process() {
        let here = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let signing = SigningThreads::start(2).unwrap();
        let there = signing.run(|| unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }).await.unwrap();
        assert_eq!(there, (here + NICER_BY).min(19));
    }
}
