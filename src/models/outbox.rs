//! The outbox: after-commit work, enqueued once per (kind, dedupe key) in the same transaction
//! as the change that causes it, and claimed by the background thread with a lease. Each kind is
//! one [`OutboxJob`] type, stored as its JSON in `outbox.payload`; `jobs::outbox` runs it.

use chrono::{Duration, NaiveDateTime};
use diesel::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::now;
use crate::db::schema::outbox;
use crate::db::{Checked, DbConn, InsertRows, KeepPreparedDsl, Value};

/// What an outbox entry asks for: each kind is one [`OutboxJob`] type and has one consumer
/// (`jobs::outbox`). Stored as its snake-case name in `outbox.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxKind {
    /// Ship a paid order (once: a unique shipment row), then `PAY_SUCCESS -> DEAL_DONE`.
    Delivery,
    /// A WeChat template message prepared when enqueued (the payload is its body).
    WxTemplate,
    /// The "paid" WeChat template message, written from the order when it is sent.
    WxPaid,
    /// Refund an order at Alipay, then `REFUND_WAIT -> REFUNDED`.
    Refund,
    /// Refund an orphan payment at Alipay.
    OrphanRefund,
}

text_enum!(OutboxKind {
    Delivery = "delivery",
    WxTemplate = "wx_template",
    WxPaid = "wx_paid",
    Refund = "refund",
    OrphanRefund = "orphan_refund",
});

impl OutboxKind {
    pub const ALL: [OutboxKind; 5] = [
        OutboxKind::Delivery,
        OutboxKind::WxTemplate,
        OutboxKind::WxPaid,
        OutboxKind::Refund,
        OutboxKind::OrphanRefund,
    ];
}

/// Where an entry stands, stored as its upper-case name in `outbox.status`: `PENDING` (due at
/// `next_attempt_at`, retried after a failure), then `DONE`, or `DEAD` after
/// `jobs::MAX_OUTBOX_ATTEMPTS` failed attempts (kept, shown to the admin, retried on request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxStatus {
    Pending,
    Done,
    Dead,
}

text_enum!(OutboxStatus {
    Pending = "PENDING",
    Done = "DONE",
    Dead = "DEAD",
});

/// One kind of outbox work; the job is its own payload, stored as its JSON. Enqueued with
/// [`OutboxEntry::enqueue`] or [`NewOutboxEntry::of`], read back with [`OutboxEntry::job`].
pub trait OutboxJob: Serialize + DeserializeOwned {
    const KIND: OutboxKind;

    /// The key it is enqueued under: a job of the same kind and key is enqueued once.
    fn dedupe_key(&self) -> String;

    /// The order it concerns, kept in `outbox.order_id` (the admin pages and
    /// [`OutboxEntry::for_order`] read it).
    fn order_id(&self) -> Option<&str> {
        None
    }

    /// Fills in what a stored payload may leave to the entry's columns: a payload without an
    /// `order_id` (`{}` for a delivery) takes the `order_id` column, a template message
    /// without a `client_msg_id` takes the dedupe key.
    fn fill_from(&mut self, _order_id: Option<&str>, _dedupe_key: &str) {}
}

/// `field`, or when it is empty the entry's column.
fn or_column(field: &mut String, column: Option<&str>) {
    if field.is_empty() {
        *field = column.unwrap_or_default().to_owned();
    }
}

/// Ship a paid order: a shipment row (unique per order), then `PAY_SUCCESS -> DEAL_DONE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    #[serde(default)]
    pub order_id: String,
}

impl OutboxJob for Delivery {
    const KIND: OutboxKind = OutboxKind::Delivery;

    fn dedupe_key(&self) -> String {
        self.order_id.clone()
    }

    fn order_id(&self) -> Option<&str> {
        Some(&self.order_id)
    }

    fn fill_from(&mut self, order_id: Option<&str>, _dedupe_key: &str) {
        or_column(&mut self.order_id, order_id);
    }
}

/// The "paid" WeChat template message, written from the order when it is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WxPaid {
    #[serde(default)]
    pub order_id: String,
}

impl OutboxJob for WxPaid {
    const KIND: OutboxKind = OutboxKind::WxPaid;

    /// Also the message's `client_msg_id`.
    fn dedupe_key(&self) -> String {
        format!("paid-{}", self.order_id)
    }

    fn order_id(&self) -> Option<&str> {
        Some(&self.order_id)
    }

    fn fill_from(&mut self, order_id: Option<&str>, _dedupe_key: &str) {
        or_column(&mut self.order_id, order_id);
    }
}

/// A WeChat template message prepared when enqueued: the payload is the body WeChat takes,
/// `client_msg_id` included, so WeChat drops a resend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WxTemplate {
    /// Names the message; also its dedupe key.
    #[serde(default)]
    pub client_msg_id: String,
    /// The rest of the body: `touser`, `template_id`, `url`, `data`.
    #[serde(flatten)]
    pub body: serde_json::Map<String, serde_json::Value>,
}

impl OutboxJob for WxTemplate {
    const KIND: OutboxKind = OutboxKind::WxTemplate;

    fn dedupe_key(&self) -> String {
        self.client_msg_id.clone()
    }

    fn fill_from(&mut self, _order_id: Option<&str>, dedupe_key: &str) {
        or_column(&mut self.client_msg_id, Some(dedupe_key));
    }
}

/// Refund an order's whole amount at Alipay under the request number `<order>-R1` (its dedupe
/// key, the same on every try), then `REFUND_WAIT -> REFUNDED`; `restock` puts the unit back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    #[serde(default)]
    pub order_id: String,
    pub reason: String,
    pub restock: bool,
}

impl OutboxJob for Refund {
    const KIND: OutboxKind = OutboxKind::Refund;

    /// Alipay's `out_request_no`.
    fn dedupe_key(&self) -> String {
        format!("{}-R1", self.order_id)
    }

    fn order_id(&self) -> Option<&str> {
        Some(&self.order_id)
    }

    fn fill_from(&mut self, order_id: Option<&str>, _dedupe_key: &str) {
        or_column(&mut self.order_id, order_id);
    }
}

/// Refund an orphan payment at Alipay, unless an order holds its number or trade by now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrphanRefund {
    pub orphan_id: i64,
}

impl OutboxJob for OrphanRefund {
    const KIND: OutboxKind = OutboxKind::OrphanRefund;

    fn dedupe_key(&self) -> String {
        format!("orphan-{}", self.orphan_id)
    }
}

/// Why an entry's job cannot be read: it fails, and is retried like any failure.
#[derive(Debug, thiserror::Error)]
pub enum UnreadableJob {
    #[error("a {found} entry read as {wanted}")]
    OtherKind { found: String, wanted: OutboxKind },
    #[error("{kind} payload does not parse: {cause}")]
    Payload { kind: OutboxKind, cause: serde_json::Error },
    #[error("{0} entry without an order")]
    NoOrder(OutboxKind),
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = outbox)]
pub struct OutboxEntry {
    pub outbox_id: i64,
    /// As stored: an entry of a kind this build does not know (one a newer instance enqueued)
    /// fails and is retried, it never stops the others. [`OutboxEntry::kind`] reads it.
    pub kind: String,
    pub dedupe_key: String,
    pub order_id: Option<String>,
    pub payload: String,
    #[diesel(deserialize_as = String)]
    pub status: OutboxStatus,
    pub attempts: i32,
    pub next_attempt_at: NaiveDateTime,
    pub last_error: Option<String>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// A job to enqueue, serialised: made only from an [`OutboxJob`] ([`NewOutboxEntry::of`]).
#[derive(Debug)]
pub struct NewOutboxEntry {
    kind: OutboxKind,
    dedupe_key: String,
    order_id: Option<String>,
    payload: String,
}

impl NewOutboxEntry {
    pub fn of<J: OutboxJob>(job: &J) -> NewOutboxEntry {
        NewOutboxEntry {
            kind: J::KIND,
            dedupe_key: job.dedupe_key(),
            order_id: job.order_id().map(str::to_owned),
            // Infallible: jobs are structs of strings, numbers and JSON objects.
            payload: serde_json::to_string(job).unwrap_or_else(|e| unreachable!("{e}")),
        }
    }
}

impl OutboxEntry {
    pub fn kind(&self) -> Result<OutboxKind, super::UnknownText> {
        self.kind.parse()
    }

    /// The job the entry holds, which must be of its kind; what its payload leaves out comes
    /// from its columns ([`OutboxJob::fill_from`]).
    pub fn job<J: OutboxJob>(&self) -> Result<J, UnreadableJob> {
        if self.kind != J::KIND.as_str() {
            return Err(UnreadableJob::OtherKind { found: self.kind.clone(), wanted: J::KIND });
        }
        let mut job: J = serde_json::from_str(&self.payload)
            .map_err(|cause| UnreadableJob::Payload { kind: J::KIND, cause })?;
        job.fill_from(self.order_id.as_deref(), &self.dedupe_key);
        if job.order_id() == Some("") {
            return Err(UnreadableJob::NoOrder(J::KIND));
        }
        Ok(job)
    }

    /// Enqueues the job unless one of its kind with its dedupe key exists; returns whether it
    /// was new. A duplicate leaves the caller's transaction intact.
    pub fn enqueue<J: OutboxJob>(conn: &mut DbConn, job: &J) -> QueryResult<bool> {
        Self::enqueue_all(conn, vec![NewOutboxEntry::of(job)]).map(|new| new == 1)
    }

    /// Enqueues the entries of one change in one statement, each unless one with the same kind
    /// and dedupe key exists; returns how many were new.
    pub fn enqueue_all(conn: &mut DbConn, entries: Vec<NewOutboxEntry>) -> QueryResult<usize> {
        if entries.is_empty() {
            return Ok(0);
        }
        Self::insert(entries).execute(conn)
    }

    /// The statement of [`OutboxEntry::enqueue_all`], to run with others ([`crate::db::Inserts`]):
    /// one statement for all the entries of a change, each left out if its (kind, dedupe key)
    /// is enqueued already.
    pub fn insert(entries: impl IntoIterator<Item = NewOutboxEntry>) -> InsertRows {
        let at = now();
        let rows = entries.into_iter().map(|e| {
            [
                Value::Text(e.kind.as_str().to_owned()),
                Value::Text(e.dedupe_key),
                Value::OptionalText(e.order_id),
                Value::Text(e.payload),
                Value::Text(OutboxStatus::Pending.as_str().to_owned()),
                Value::Integer(0),
                Value::at(at),
                Value::at(at),
                Value::at(at),
            ]
        });
        InsertRows::new(
            outbox::table,
            (
                outbox::kind,
                outbox::dedupe_key,
                outbox::order_id,
                outbox::payload,
                outbox::status,
                outbox::attempts,
                outbox::next_attempt_at,
                outbox::created_at,
                outbox::updated_at,
            ),
            rows.collect(),
        )
        .skipping_conflicts()
    }

    /// Ids of pending entries that are due and not leased by a live worker.
    pub fn due_ids(conn: &mut DbConn, limit: i64) -> QueryResult<Vec<i64>> {
        let at = now();
        outbox::table
            .filter(outbox::status.eq(OutboxStatus::Pending.as_str()))
            .filter(outbox::next_attempt_at.le(at))
            .filter(outbox::lease_until.is_null().or(outbox::lease_until.lt(at)))
            .order(outbox::next_attempt_at.asc())
            .limit(limit)
            .select(outbox::outbox_id)
            .load(conn)
    }

    /// (kind, status, count) of the entries that are `PENDING` or `DEAD`.
    pub fn count_open_by_kind(conn: &mut DbConn) -> QueryResult<Vec<(String, String, i64)>> {
        outbox::table
            .filter(outbox::status.eq_any([OutboxStatus::Pending.as_str(), OutboxStatus::Dead.as_str()]))
            .group_by((outbox::kind, outbox::status))
            .select((outbox::kind, outbox::status, diesel::dsl::count_star()))
            .load(conn)
    }

    /// When the longest-waiting `PENDING` entry that is due now became due.
    pub fn oldest_due(conn: &mut DbConn, at: NaiveDateTime) -> QueryResult<Option<NaiveDateTime>> {
        outbox::table
            .filter(outbox::status.eq(OutboxStatus::Pending.as_str()))
            .filter(outbox::next_attempt_at.le(at))
            .select(diesel::dsl::min(outbox::next_attempt_at))
            .get_result(conn)
    }

    /// Takes the lease on one entry; `None` when another worker holds it or it is no longer due.
    pub fn claim(
        conn: &mut DbConn,
        outbox_id: i64,
        owner: &str,
        lease: Duration,
    ) -> QueryResult<Option<OutboxEntry>> {
        let at = now();
        let claimed = diesel::update(
            outbox::table
                .filter(outbox::outbox_id.eq(outbox_id))
                .filter(Checked(outbox::status.eq(OutboxStatus::Pending.as_str())))
                .filter(outbox::lease_until.is_null().or(outbox::lease_until.lt(at))),
        )
        .set((outbox::lease_owner.eq(owner), outbox::lease_until.eq(at + lease)))
        .keep_prepared()
        .execute(conn)?;
        if claimed == 0 {
            return Ok(None);
        }
        outbox::table.find(outbox_id).select(OutboxEntry::as_select()).get_result(conn).optional()
    }

    /// Marks the entry done, if we still hold its lease.
    pub fn complete(conn: &mut DbConn, outbox_id: i64, owner: &str) -> QueryResult<usize> {
        diesel::update(
            outbox::table.filter(outbox::outbox_id.eq(outbox_id)).filter(outbox::lease_owner.eq(owner)),
        )
        .set((
            outbox::status.eq(OutboxStatus::Done.as_str()),
            outbox::attempts.eq(outbox::attempts + 1),
            outbox::last_error.eq(None::<String>),
            outbox::lease_owner.eq(None::<String>),
            outbox::lease_until.eq(None::<NaiveDateTime>),
            outbox::updated_at.eq(now()),
        ))
        .keep_prepared()
        .execute(conn)
    }

    /// Records a failed attempt: tried again at `retry_at`, or `DEAD` when `retry_at` is `None`.
    pub fn fail(
        conn: &mut DbConn,
        outbox_id: i64,
        owner: &str,
        error: &str,
        retry_at: Option<NaiveDateTime>,
    ) -> QueryResult<usize> {
        let at = now();
        diesel::update(
            outbox::table.filter(outbox::outbox_id.eq(outbox_id)).filter(outbox::lease_owner.eq(owner)),
        )
        .set((
            outbox::status
                .eq(if retry_at.is_some() { OutboxStatus::Pending } else { OutboxStatus::Dead }.as_str()),
            outbox::attempts.eq(outbox::attempts + 1),
            outbox::next_attempt_at.eq(retry_at.unwrap_or(at)),
            outbox::last_error.eq(Some(error)),
            outbox::lease_owner.eq(None::<String>),
            outbox::lease_until.eq(None::<NaiveDateTime>),
            outbox::updated_at.eq(at),
        ))
        .keep_prepared()
        .execute(conn)
    }

    pub fn for_order(conn: &mut DbConn, order_id: &str) -> QueryResult<Vec<OutboxEntry>> {
        outbox::table
            .filter(outbox::order_id.eq(order_id))
            .order(outbox::outbox_id.asc())
            .select(OutboxEntry::as_select())
            .load(conn)
    }

    pub fn of_kind(conn: &mut DbConn, kind: OutboxKind) -> QueryResult<Vec<OutboxEntry>> {
        outbox::table
            .filter(outbox::kind.eq(kind.as_str()))
            .order(outbox::outbox_id.asc())
            .select(OutboxEntry::as_select())
            .load(conn)
    }
}

impl OutboxEntry {
    /// A retrying or dead entry due now (the admin's "retry now"); its history stays.
    pub fn retry_now(conn: &mut DbConn, outbox_id: i64) -> QueryResult<bool> {
        diesel::update(
            outbox::table
                .filter(outbox::outbox_id.eq(outbox_id))
                .filter(outbox::status.ne(OutboxStatus::Done.as_str())),
        )
        .set((
            outbox::status.eq(OutboxStatus::Pending.as_str()),
            outbox::next_attempt_at.eq(now()),
            outbox::updated_at.eq(now()),
        ))
        .keep_prepared()
        .execute(conn)
        .map(|n| n == 1)
    }

    /// The order's pending entries of `kind` due now, not at their backoff (the platform says the
    /// work is done: the next try confirms it); how many.
    pub fn due_now_for_order(conn: &mut DbConn, kind: OutboxKind, order_id: &str) -> QueryResult<usize> {
        diesel::update(
            outbox::table
                .filter(outbox::order_id.eq(order_id))
                .filter(Checked(outbox::kind.eq(kind.as_str())))
                .filter(Checked(outbox::status.eq(OutboxStatus::Pending.as_str()))),
        )
        .set((outbox::next_attempt_at.eq(now()), outbox::updated_at.eq(now())))
        .execute(conn)
    }

    /// Entries that failed at least once and are not done: retrying or dead.
    pub fn troubled(conn: &mut DbConn, limit: i64) -> QueryResult<Vec<OutboxEntry>> {
        outbox::table
            .filter(outbox::status.ne(OutboxStatus::Done.as_str()))
            .filter(outbox::attempts.gt(0).or(outbox::status.eq(OutboxStatus::Dead.as_str())))
            .order(outbox::outbox_id.desc())
            .limit(limit)
            .select(OutboxEntry::as_select())
            .load(conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The entry `new` becomes once stored.
    fn stored(new: NewOutboxEntry) -> OutboxEntry {
        let at = now();
        OutboxEntry {
            outbox_id: 1,
            kind: new.kind.as_str().to_owned(),
            dedupe_key: new.dedupe_key,
            order_id: new.order_id,
            payload: new.payload,
            status: OutboxStatus::Pending,
            attempts: 0,
            next_attempt_at: at,
            last_error: None,
            lease_owner: None,
            lease_until: None,
            created_at: at,
            updated_at: at,
        }
    }

    fn round_trip<J: OutboxJob + PartialEq + std::fmt::Debug>(job: J, key: &str, order_id: Option<&str>) {
        let entry = stored(NewOutboxEntry::of(&job));
        assert_eq!(entry.kind, J::KIND.as_str());
        assert_eq!(entry.dedupe_key, key);
        assert_eq!(entry.order_id.as_deref(), order_id);
        assert_eq!(entry.job::<J>().unwrap(), job);
    }

    #[test]
    fn each_kind_round_trips_its_payload() {
        let order = Some("0000000000000042");
        round_trip(Delivery { order_id: "0000000000000042".into() }, "0000000000000042", order);
        round_trip(WxPaid { order_id: "0000000000000042".into() }, "paid-0000000000000042", order);
        round_trip(
            Refund { order_id: "0000000000000042".into(), reason: "退款 \"now\"".into(), restock: true },
            "0000000000000042-R1",
            order,
        );
        round_trip(OrphanRefund { orphan_id: 7 }, "orphan-7", None);
        let serde_json::Value::Object(body) = serde_json::json!({
            "touser": "o-1", "template_id": "t", "url": "https://shop", "data": { "time": { "value": "now" } },
        }) else {
            unreachable!()
        };
        round_trip(WxTemplate { client_msg_id: "login-T".into(), body }, "login-T", None);
    }

    #[test]
    fn a_template_payload_is_the_body_wechat_takes() {
        let body = serde_json::Map::from_iter([("touser".to_owned(), serde_json::json!("o-1"))]);
        let entry = NewOutboxEntry::of(&WxTemplate { client_msg_id: "login-T".into(), body });
        let payload: serde_json::Value = serde_json::from_str(&entry.payload).unwrap();
        assert_eq!(payload, serde_json::json!({ "client_msg_id": "login-T", "touser": "o-1" }));
    }

    /// Payloads that leave to the columns what they hold: the order's id, a message's id.
    #[test]
    fn payloads_without_what_the_columns_hold_take_it_from_them() {
        let entry = |kind: OutboxKind, key: &str, order_id: Option<&str>, payload: &str| {
            let mut e = stored(NewOutboxEntry::of(&OrphanRefund { orphan_id: 1 }));
            (e.kind, e.dedupe_key) = (kind.as_str().to_owned(), key.to_owned());
            (e.order_id, e.payload) = (order_id.map(str::to_owned), payload.to_owned());
            e
        };
        let order = Some("0000000000000042");
        let id = || "0000000000000042".to_owned();
        let delivery = entry(OutboxKind::Delivery, "0000000000000042", order, "{}");
        assert_eq!(delivery.job::<Delivery>().unwrap(), Delivery { order_id: id() });
        let paid = entry(OutboxKind::WxPaid, "paid-0000000000000042", order, "{}");
        assert_eq!(paid.job::<WxPaid>().unwrap(), WxPaid { order_id: id() });
        let refund = entry(
            OutboxKind::Refund,
            "0000000000000042-R1",
            order,
            r#"{"reason":"sold out","restock":false}"#,
        );
        let expected = Refund { order_id: id(), reason: "sold out".into(), restock: false };
        assert_eq!(refund.job::<Refund>().unwrap(), expected);
        let login = entry(OutboxKind::WxTemplate, "login-T", None, r#"{"touser":"o-1","data":{}}"#);
        let message = login.job::<WxTemplate>().unwrap();
        assert_eq!(message.client_msg_id, "login-T");
        assert_eq!(
            serde_json::Value::Object(message.body),
            serde_json::json!({ "touser": "o-1", "data": {} })
        );
    }

    #[test]
    fn unreadable_jobs_are_errors() {
        let mut entry = stored(NewOutboxEntry::of(&Delivery { order_id: "0000000000000042".into() }));
        assert!(matches!(entry.job::<WxPaid>(), Err(UnreadableJob::OtherKind { .. })));
        entry.order_id = None;
        entry.payload = "{}".into();
        assert!(matches!(entry.job::<Delivery>(), Err(UnreadableJob::NoOrder(OutboxKind::Delivery))));
        entry.payload = "not json".into();
        let error = entry.job::<Delivery>().unwrap_err();
        assert!(error.to_string().starts_with("delivery payload does not parse"), "{error}");
        entry.kind = OutboxKind::Refund.as_str().to_owned();
        entry.payload = r#"{"order_id":"0000000000000042"}"#.into();
        assert!(matches!(entry.job::<Refund>(), Err(UnreadableJob::Payload { .. })));
    }
}
