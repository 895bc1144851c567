//! Drains the outbox: each due entry is claimed with a lease, its job read by its kind and run
//! by that kind's consumer ([`Consume`]), and then marked done, or retried with exponential
//! backoff until it is `DEAD` (kept, visible, never silently dropped). An entry of a kind this
//! build does not know, or whose payload does not parse, fails the same way, alone. Consumers are
//! idempotent: a lease that ran out may run an entry twice.

use chrono::Duration;

use super::Worker;
use crate::error::AppError;
use crate::models::now;
use crate::models::outbox::{
    Delivery, OrphanRefund, OutboxEntry, OutboxJob, OutboxKind, Refund, WxPaid, WxTemplate,
};
use crate::services::{fulfilment, login, orphan};

/// After this many failed attempts an entry is `DEAD`.
pub const MAX_ATTEMPTS: i32 = 10;
const BATCH: i64 = 50;
const LEASE_SECS: i64 = 60;
/// A tick drains batch after batch until nothing is due or this much time has gone, so a burst
/// of payments is delivered within a tick or two, while the other tasks of the tick still run on
/// time.
const DRAIN_BUDGET: std::time::Duration = std::time::Duration::from_secs(2);

/// Seconds before retry `attempt` (1-based): 5 s, 10 s, 20 s, ... capped at one hour.
pub fn backoff_secs(attempt: i32) -> i64 {
    (5i64 << (attempt.clamp(1, 20) - 1)).min(3600)
}

/// Holds no connection while a consumer runs: consumers take their own, and the background
/// thread must never need two at once (a pool of one would deadlock). An entry that fails waits
/// for its backoff, so it is not due again within the same tick.
pub fn drain(worker: &Worker) -> Result<usize, AppError> {
    let started = std::time::Instant::now();
    let mut handled = 0;
    loop {
        let due = OutboxEntry::due_ids(&mut *worker.conn()?, BATCH)?;
        let more = i64::try_from(due.len()).is_ok_and(|n| n == BATCH);
        for outbox_id in due {
            handled += usize::from(handle(worker, outbox_id)?);
        }
        if !more || started.elapsed() >= DRAIN_BUDGET {
            return Ok(handled);
        }
    }
}

/// Claims one entry and runs its consumer; `false` when another worker has it.
fn handle(worker: &Worker, outbox_id: i64) -> Result<bool, AppError> {
    let lease = Duration::seconds(LEASE_SECS);
    let Some(entry) = OutboxEntry::claim(&mut *worker.conn()?, outbox_id, &worker.owner, lease)? else {
        return Ok(false);
    };
    let consumed = consume(worker, &entry);
    let mut conn = worker.conn()?;
    match consumed {
        Ok(()) => {
            OutboxEntry::complete(&mut conn, entry.outbox_id, &worker.owner)?;
            log::info!(
                "outbox {} {} done (order {})",
                entry.outbox_id,
                entry.kind,
                entry.order_id.as_deref().unwrap_or("-")
            );
        }
        Err(e) => {
            let attempt = entry.attempts + 1;
            let retry_at = (attempt < MAX_ATTEMPTS).then(|| now() + Duration::seconds(backoff_secs(attempt)));
            OutboxEntry::fail(&mut conn, entry.outbox_id, &worker.owner, &e.detail(), retry_at)?;
            let outcome = if retry_at.is_some() { "will retry" } else { "DEAD" };
            log::warn!(
                "outbox {} {} attempt {attempt} failed, {outcome}: {}",
                entry.outbox_id,
                entry.kind,
                e.detail()
            );
        }
    }
    Ok(true)
}

/// The consumer of one kind: runs a job read from its entry. It takes its own connections.
trait Consume: OutboxJob {
    fn run(&self, worker: &Worker) -> Result<(), AppError>;
}

impl Consume for Delivery {
    fn run(&self, worker: &Worker) -> Result<(), AppError> {
        fulfilment::deliver(&mut *worker.conn()?, &self.order_id)
    }
}

impl Consume for WxPaid {
    fn run(&self, worker: &Worker) -> Result<(), AppError> {
        fulfilment::send_paid_message(&worker.pool, &worker.weixin, &worker.settings, &worker.owner, self)
    }
}

impl Consume for WxTemplate {
    fn run(&self, worker: &Worker) -> Result<(), AppError> {
        login::send_template(&worker.pool, &worker.weixin, &worker.owner, self)
    }
}

impl Consume for Refund {
    fn run(&self, worker: &Worker) -> Result<(), AppError> {
        fulfilment::refund(&worker.pool, &worker.gateways, self)
    }
}

impl Consume for OrphanRefund {
    fn run(&self, worker: &Worker) -> Result<(), AppError> {
        orphan::refund(&worker.pool, &worker.gateways, self)
    }
}

/// Reads an entry's job by its kind and hands it to that kind's consumer.
fn consume(worker: &Worker, entry: &OutboxEntry) -> Result<(), AppError> {
    let kind = entry.kind().map_err(|e| AppError::internal(format!("no consumer: {e}")))?;
    match kind {
        OutboxKind::Delivery => run::<Delivery>(worker, entry),
        OutboxKind::WxPaid => run::<WxPaid>(worker, entry),
        OutboxKind::WxTemplate => run::<WxTemplate>(worker, entry),
        OutboxKind::Refund => run::<Refund>(worker, entry),
        OutboxKind::OrphanRefund => run::<OrphanRefund>(worker, entry),
    }
}

fn run<J: Consume>(worker: &Worker, entry: &OutboxEntry) -> Result<(), AppError> {
    entry.job::<J>().map_err(AppError::internal)?.run(worker)
}

#[cfg(test)]
mod tests {
    use super::backoff_secs;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff_secs(1), 5);
        assert_eq!(backoff_secs(2), 10);
        assert_eq!(backoff_secs(5), 80);
        assert_eq!(backoff_secs(30), 3600);
    }
}
