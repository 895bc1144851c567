//! Orders (`pay_order`), their timeline (`order_event`), raw Alipay notifications and shipments.
//! Status changes are conditional UPDATEs: the caller learns from the row count whether it won.

use std::ops::Range;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::now;
use crate::db::schema::{app_user, order_number, pay_form, pay_order, product, user_session};
use crate::db::{
    Checked, ConditionText, DbConn, Failure, IndexCondition, InsertRows, Inserts, KeepPreparedDsl, Stamp,
    StatusIn, StatusNotIn, Value, find_natively,
};
use crate::models::product::Product;
use crate::models::user::AppUser;

/// Where an order stands, stored as its upper-case name in `pay_order.status` (the original
/// project's names). `CREATE -> PAY_WAIT -> PAY_SUCCESS -> DEAL_DONE`, `CREATE|PAY_WAIT -> CLOSE`,
/// `PAY_SUCCESS|DEAL_DONE -> REFUND_WAIT -> REFUNDED`, and a payment after a close
/// `CLOSE -> PAY_SUCCESS | REFUND_WAIT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Create,
    PayWait,
    PaySuccess,
    DealDone,
    Close,
    RefundWait,
    Refunded,
    /// A group order whose team formed (已成团): paid, its delivery enqueued.
    Market,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 8] = [
        OrderStatus::Create,
        OrderStatus::PayWait,
        OrderStatus::PaySuccess,
        OrderStatus::DealDone,
        OrderStatus::Close,
        OrderStatus::RefundWait,
        OrderStatus::Refunded,
        OrderStatus::Market,
    ];
    /// Not paid yet and not closed: one per shopper and product at most.
    pub const OPEN: [OrderStatus; 2] = [OrderStatus::Create, OrderStatus::PayWait];
    /// Paid and not refunded: what a refund may start from.
    pub const REFUNDABLE: [OrderStatus; 3] =
        [OrderStatus::PaySuccess, OrderStatus::Market, OrderStatus::DealDone];
    /// The statuses `pay_order_by_settled_status` leaves out, in the order of its condition (the
    /// admin's list repeats it word for word).
    pub const UNSETTLED: [OrderStatus; 3] =
        [OrderStatus::Create, OrderStatus::PayWait, OrderStatus::PaySuccess];

    pub fn is_open(self) -> bool {
        OrderStatus::OPEN.contains(&self)
    }

    pub fn is_refundable(self) -> bool {
        OrderStatus::REFUNDABLE.contains(&self)
    }
}

text_enum!(OrderStatus {
    Create = "CREATE",
    PayWait = "PAY_WAIT",
    PaySuccess = "PAY_SUCCESS",
    DealDone = "DEAL_DONE",
    Close = "CLOSE",
    RefundWait = "REFUND_WAIT",
    Refunded = "REFUNDED",
    Market = "MARKET",
});

/// The payment channel an order is paid through, stored as its upper-case name in
/// `pay_order.channel` (and on the orphan payments and notifications it brings). Every call to a
/// gateway about an order goes to its channel's (`gateways::Gateways::of`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Channel {
    Alipay,
    WechatPay,
}

impl Channel {
    /// The platform's name, for messages about what it answered.
    pub fn platform(self) -> &'static str {
        match self {
            Channel::Alipay => "Alipay",
            Channel::WechatPay => "WeChat Pay",
        }
    }
}

text_enum!(Channel { Alipay = "ALIPAY", WechatPay = "WECHAT_PAY" });

/// How many order numbers an instance takes from the sequence at a time (unused ones of a block
/// are skipped when it stops: order numbers have gaps, as a sequence's do).
pub const NUMBER_BLOCK: i64 = 100;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = pay_order)]
pub struct Order {
    pub id: i64,
    pub order_id: String,
    pub user_id: i64,
    pub openid: String,
    pub product_id: String,
    pub product_name: String,
    /// What Alipay charges: the list price less the discounts.
    pub total_cents: i64,
    #[diesel(deserialize_as = String)]
    pub status: OrderStatus,
    pub trade_no: Option<String>,
    pub order_time: NaiveDateTime,
    pub expire_at: NaiveDateTime,
    pub pay_time: Option<NaiveDateTime>,
    pub next_query_at: NaiveDateTime,
    pub query_attempts: i32,
    pub lease_owner: Option<String>,
    pub lease_until: Option<NaiveDateTime>,
    pub updated_at: NaiveDateTime,
    /// What the applied discounts took off the list price (0 without a discount).
    pub discount_cents: i64,
    /// The list price; `None` on an order placed without a price snapshot, whose list price is
    /// `total_cents` (see [`Order::original_cents`]).
    pub original_cents: Option<i64>,
    /// The group-buy team of a group order (拼团); `None` for an order bought alone.
    pub team_id: Option<String>,
    #[diesel(deserialize_as = String)]
    pub channel: Channel,
}

/// The words of a paid group order while its team forms (待成团), beside the statuses'.
pub const TEAM_WAIT: &str = "TEAM_WAIT";

/// The row [`Order::checkout_start`] reads: shopper, open order, its form, product.
/// The condition of the partial unique index `pay_order_one_open` (`StatusIn(&OrderStatus::OPEN)`,
/// as the migrations write it), as an [`IndexCondition`]: the checkout's start keeps a static
/// query id, and diesel finds it prepared without writing its SQL.
const OPEN_ORDER: IndexCondition<OpenOrder> = IndexCondition::new();

/// The text of [`OPEN_ORDER`].
struct OpenOrder;

impl ConditionText for OpenOrder {
    const SQL: &'static str = "pay_order.status IN ('CREATE', 'PAY_WAIT')";
}

type CheckoutRow = (AppUser, Option<OrderAtCheckout>, Option<String>, Option<Product>);

impl Order {
    /// Which status words a shopper reads for the order: its status's, or [`TEAM_WAIT`] for a
    /// paid group order whose team is still forming.
    pub fn status_words(&self) -> &'static str {
        match self.status {
            OrderStatus::PaySuccess if self.team_id.is_some() => TEAM_WAIT,
            status => status.as_str(),
        }
    }

    /// The list price: the snapshot's, or `total_cents` for an order placed without one.
    pub fn original_cents(&self) -> i64 {
        self.original_cents.unwrap_or(self.total_cents)
    }
}

/// What [`Order::checkout_start`] finds: the shopper, their open order for the product with its
/// signed form (if it has one), and the product (if there is one).
pub struct CheckoutStart {
    pub user: AppUser,
    pub open: Option<(OrderAtCheckout, Option<String>)>,
    pub product: Option<Product>,
}

/// What a checkout shows of an order waiting for its payment.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = pay_order)]
pub struct OrderAtCheckout {
    pub order_id: String,
    pub product_name: String,
    pub total_cents: i64,
    pub expire_at: NaiveDateTime,
    /// Whose form it carries: Alipay's signed form, or WeChat Pay's `code_url` / `prepay_id=…`.
    #[diesel(deserialize_as = String)]
    pub channel: Channel,
}

/// An order as it is born: waiting for payment, its form already signed (locally).
pub struct NewOrder<'a> {
    pub order_id: &'a str,
    pub user_id: i64,
    pub openid: &'a str,
    pub product_id: &'a str,
    pub product_name: &'a str,
    /// The list price, what the discounts took off, and what Alipay charges.
    pub original_cents: i64,
    pub discount_cents: i64,
    pub total_cents: i64,
    pub pay_form: &'a str,
    /// The team it opens or joins, for a group order.
    pub team_id: Option<&'a str>,
    pub channel: Channel,
    pub order_time: NaiveDateTime,
    pub expire_at: NaiveDateTime,
    pub next_query_at: NaiveDateTime,
}

impl Order {
    /// The next block of order numbers, [`NUMBER_BLOCK`] of them, for one instance to hand out:
    /// block `n` of the sequence is the numbers `n * NUMBER_BLOCK ..`, so no two blocks, and no
    /// number an older build took from the sequence itself, ever meet.
    pub fn take_number_block(conn: &mut DbConn) -> QueryResult<Range<i64>> {
        let block: i64 = diesel::insert_into(order_number::table)
            .values(order_number::created_at.eq(now()))
            .returning(order_number::number)
            .get_result(conn)?;
        Ok(block * NUMBER_BLOCK..(block + 1) * NUMBER_BLOCK)
    }

    /// The rows of a new order, born `PAY_WAIT`, and of its signed form, as statements to run
    /// with others ([`Inserts`]).
    pub fn insert(order: &NewOrder) -> [InsertRows; 2] {
        let form = InsertRows::new(
            pay_form::table,
            (pay_form::order_id, pay_form::form),
            vec![[Value::Text(order.order_id.to_owned()), Value::Text(order.pay_form.to_owned())]],
        );
        let row = InsertRows::new(
            pay_order::table,
            (
                pay_order::order_id,
                pay_order::user_id,
                pay_order::openid,
                pay_order::product_id,
                pay_order::product_name,
                pay_order::original_cents,
                pay_order::discount_cents,
                pay_order::total_cents,
                pay_order::status,
                pay_order::order_time,
                pay_order::expire_at,
                pay_order::next_query_at,
                pay_order::query_attempts,
                pay_order::updated_at,
                pay_order::team_id,
                pay_order::channel,
            ),
            vec![[
                Value::Text(order.order_id.to_owned()),
                Value::BigInt(order.user_id),
                Value::Text(order.openid.to_owned()),
                Value::Text(order.product_id.to_owned()),
                Value::Text(order.product_name.to_owned()),
                Value::BigInt(order.original_cents),
                Value::BigInt(order.discount_cents),
                Value::BigInt(order.total_cents),
                Value::Text(OrderStatus::PayWait.as_str().to_owned()),
                Value::at(order.order_time),
                Value::at(order.expire_at),
                Value::at(order.next_query_at),
                Value::Integer(0),
                Value::at(order.order_time),
                Value::OptionalText(order.team_id.map(str::to_owned)),
                Value::Text(order.channel.as_str().to_owned()),
            ]],
        );
        [row, form]
    }

    /// The order's signed payment form, while it has one.
    pub fn form_of(conn: &mut DbConn, order_id: &str) -> QueryResult<Option<String>> {
        pay_form::table
            .filter(pay_form::order_id.eq(order_id))
            .select(pay_form::form)
            .get_result(conn)
            .optional()
    }

    pub fn find(conn: &mut DbConn, order_id: &str) -> QueryResult<Option<Order>> {
        pay_order::table
            .filter(pay_order::order_id.eq(order_id))
            .select(Order::as_select())
            .get_result(conn)
            .optional()
    }

    /// What a checkout starts from, in one statement (on PostgreSQL one round trip, where it
    /// took four) on the backend's own connection: the shopper behind a session, their open order
    /// for the product with its form, and the product; `None` without a live session. (Diesel
    /// wants the join conditions' values owned.)
    pub fn checkout_start(
        conn: &mut DbConn,
        token_hash: &str,
        product_id: &str,
    ) -> QueryResult<Option<CheckoutStart>> {
        let found: Option<CheckoutRow> = find_natively!(
            conn,
            user_session::table
                .inner_join(app_user::table)
                .left_join(
                    pay_order::table.on(pay_order::user_id
                        .eq(app_user::user_id)
                        .and(pay_order::product_id.eq(product_id.to_owned()))
                        .and(OPEN_ORDER)),
                )
                .left_join(pay_form::table.on(pay_form::order_id.eq(pay_order::order_id)))
                .left_join(product::table.on(product::product_id.eq(product_id.to_owned())))
                .filter(user_session::token_hash.eq(token_hash))
                .filter(user_session::expires_at.gt(Stamp(now())))
                .select((
                    AppUser::as_select(),
                    Option::<OrderAtCheckout>::as_select(),
                    pay_form::form.nullable(),
                    Option::<Product>::as_select(),
                ))
        )?;
        Ok(found.map(|(user, open, form, product)| CheckoutStart {
            user,
            open: open.map(|order| (order, form)),
            product,
        }))
    }

    /// A shopper's orders, newest first.
    pub fn page_of_user(conn: &mut DbConn, user_id: i64, offset: i64, limit: i64) -> QueryResult<Vec<Order>> {
        pay_order::table
            .filter(pay_order::user_id.eq(user_id))
            .order(pay_order::id.desc())
            .offset(offset)
            .limit(limit)
            .select(Order::as_select())
            .load(conn)
    }

    /// A shopper's orders older than `before_id` (all of them without it), newest first, at
    /// most `limit`: keyset paging on the row id through the index `pay_order_by_user`
    /// (user_id, id), so a page costs the same however deep it is.
    pub fn keyset_of_user(
        conn: &mut DbConn,
        user_id: i64,
        before_id: Option<i64>,
        limit: i64,
    ) -> QueryResult<Vec<Order>> {
        let mut query = pay_order::table.filter(pay_order::user_id.eq(user_id)).into_boxed();
        if let Some(before_id) = before_id {
            query = query.filter(pay_order::id.lt(before_id));
        }
        query.order(pay_order::id.desc()).limit(limit).select(Order::as_select()).load(conn)
    }

    /// Moves the order from one of `from` to `to`; returns whether this caller made the move.
    pub fn transition(
        conn: &mut DbConn,
        order_id: &str,
        from: &'static [OrderStatus],
        to: OrderStatus,
    ) -> QueryResult<bool> {
        diesel::update(
            pay_order::table.filter(pay_order::order_id.eq(order_id)).filter(Checked(StatusIn(from))),
        )
        .set((pay_order::status.eq(to.as_str()), pay_order::updated_at.eq(now())))
        .keep_prepared()
        .execute(conn)
        .map(|n| n == 1)
    }

    /// `from -> PAY_SUCCESS` with Alipay's trade number and payment time.
    pub fn mark_paid(
        conn: &mut DbConn,
        order_id: &str,
        from: &'static [OrderStatus],
        trade_no: &str,
        paid_at: NaiveDateTime,
    ) -> QueryResult<bool> {
        diesel::update(
            pay_order::table.filter(pay_order::order_id.eq(order_id)).filter(Checked(StatusIn(from))),
        )
        .set((
            pay_order::status.eq(OrderStatus::PaySuccess.as_str()),
            pay_order::trade_no.eq(trade_no),
            pay_order::pay_time.eq(Stamp(paid_at)),
            pay_order::updated_at.eq(Stamp(now())),
        ))
        .keep_prepared()
        .execute(conn)
        .map(|n| n == 1)
    }

    /// `PAY_WAIT -> PAY_SUCCESS` if the order waits for exactly `total_cents`, has no discount or
    /// team to settle with it, and no order holds `trade_no` yet, and only then, in the same statement on
    /// PostgreSQL, the payment's rows (`with`); `false` and nothing changed otherwise.
    pub fn pay_waiting(
        conn: &mut DbConn,
        order_id: &str,
        total_cents: i64,
        trade_no: &str,
        paid_at: NaiveDateTime,
        with: &Inserts,
    ) -> QueryResult<bool> {
        let holder = diesel::alias!(pay_order as trade_holder);
        let update = diesel::update(
            pay_order::table
                .filter(pay_order::order_id.eq(order_id))
                .filter(Checked(StatusIn(&[OrderStatus::PayWait])))
                .filter(pay_order::total_cents.eq(total_cents))
                .filter(pay_order::discount_cents.eq(0))
                .filter(pay_order::team_id.is_null())
                .filter(diesel::dsl::not(diesel::dsl::exists(
                    holder
                        .filter(holder.field(pay_order::trade_no).eq(trade_no))
                        .select(holder.field(pay_order::id)),
                ))),
        )
        .set((
            pay_order::status.eq(OrderStatus::PaySuccess.as_str()),
            pay_order::trade_no.eq(trade_no),
            pay_order::pay_time.eq(Stamp(paid_at)),
            pay_order::updated_at.eq(Stamp(now())),
        ))
        .keep_prepared();
        with.run_if_changed(conn, update, Failure::Propagated)
    }

    /// The order that `trade_no` paid, if any.
    pub fn paid_by_trade(conn: &mut DbConn, trade_no: &str) -> QueryResult<Option<String>> {
        pay_order::table
            .filter(pay_order::trade_no.eq(trade_no))
            .select(pay_order::order_id)
            .get_result(conn)
            .optional()
    }

    pub fn set_trade_no(conn: &mut DbConn, order_id: &str, trade_no: &str) -> QueryResult<usize> {
        diesel::update(pay_order::table.filter(pay_order::order_id.eq(order_id)))
            .set(pay_order::trade_no.eq(trade_no))
            .keep_prepared()
            .execute(conn)
    }

    /// Orders in `statuses` placed between `placed_after` and `placed_before`, due for a look
    /// by the background thread and not leased by another instance.
    pub fn due(
        conn: &mut DbConn,
        statuses: &'static [OrderStatus],
        placed_after: NaiveDateTime,
        placed_before: NaiveDateTime,
        limit: i64,
    ) -> QueryResult<Vec<String>> {
        let at = now();
        pay_order::table
            .filter(StatusIn(statuses))
            .filter(pay_order::order_time.gt(placed_after))
            .filter(pay_order::order_time.le(placed_before))
            .filter(pay_order::next_query_at.le(at))
            .filter(pay_order::lease_until.is_null().or(pay_order::lease_until.lt(at)))
            .order(pay_order::next_query_at.asc())
            .limit(limit)
            .select(pay_order::order_id)
            .load(conn)
    }

    /// Takes the order's lease for `owner`; false when another instance holds it.
    pub fn lease(conn: &mut DbConn, order_id: &str, owner: &str, until: NaiveDateTime) -> QueryResult<bool> {
        let at = now();
        diesel::update(
            pay_order::table
                .filter(pay_order::order_id.eq(order_id))
                .filter(pay_order::lease_until.is_null().or(pay_order::lease_until.lt(at))),
        )
        .set((pay_order::lease_owner.eq(owner), pay_order::lease_until.eq(until)))
        .keep_prepared()
        .execute(conn)
        .map(|n| n == 1)
    }

    /// Gives the lease back and says when to look again.
    pub fn release(
        conn: &mut DbConn,
        order_id: &str,
        owner: &str,
        next_query_at: NaiveDateTime,
        attempts: i32,
    ) -> QueryResult<usize> {
        diesel::update(
            pay_order::table
                .filter(pay_order::order_id.eq(order_id))
                .filter(pay_order::lease_owner.eq(owner)),
        )
        .set((
            pay_order::lease_owner.eq(None::<String>),
            pay_order::lease_until.eq(None::<NaiveDateTime>),
            pay_order::next_query_at.eq(next_query_at),
            pay_order::query_attempts.eq(attempts),
        ))
        .keep_prepared()
        .execute(conn)
    }

    /// Orders due a delivery with none enqueued (a crash between two steps must not strand
    /// them): paid orders bought alone, and group orders whose team formed. A group order paid
    /// while its team is open waits for the team.
    pub fn paid_without_delivery(conn: &mut DbConn, limit: i64) -> QueryResult<Vec<String>> {
        let sql = paid_without_delivery(matches!(conn, DbConn::Sqlite(_)), limit);
        let rows: Vec<OrderIdRow> = diesel::sql_query(sql).load(conn)?;
        Ok(rows.into_iter().map(|row| row.order_id).collect())
    }
}

/// The condition of the partial index `pay_order_due_delivery` (paid and bought alone, or its
/// team formed), as the migrations write it: [`Order::paid_without_delivery`] repeats it, and so
/// reads the few orders between their payment and their delivery, not every paid member of every
/// forming team.
const DUE_DELIVERY: &str = "(status = 'PAY_SUCCESS' AND team_id IS NULL) OR status = 'MARKET'";

/// The statement of [`Order::paid_without_delivery`]: each order due a delivery, then one probe of
/// `outbox_order` for its entries, whatever the statistics say. PostgreSQL, its statistics taken
/// before a burst of payments, found deliveries rare and checked each of 13,000 orders against
/// every delivery (2.5 s a tick, a core busy): so the kind is only checked (`IS TRUE`: see
/// [`Checked`]), and `OFFSET 0` keeps the probe a subquery run for each order, which PostgreSQL
/// would otherwise turn into a join planned by those statistics. SQLite is named the index:
/// without statistics it would rather look both statuses up in `pay_order_by_status`, and it
/// refuses the statement if the condition no longer matches the index's.
fn paid_without_delivery(sqlite: bool, limit: i64) -> String {
    let indexed_by = if sqlite { " INDEXED BY pay_order_due_delivery" } else { "" };
    let delivery = crate::models::outbox::OutboxKind::Delivery.as_str();
    format!(
        "SELECT order_id FROM pay_order{indexed_by} WHERE ({DUE_DELIVERY}) AND NOT EXISTS \
         (SELECT 1 FROM outbox WHERE outbox.order_id = pay_order.order_id AND (outbox.kind = '{delivery}') IS TRUE \
         LIMIT 1 OFFSET 0) \
         LIMIT {limit}"
    )
}

#[derive(diesel::QueryableByName)]
struct OrderIdRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    order_id: String,
}

/// The open orders' rows through `pay_order_by_status`, each order id looked up in its index.
const READ_OPEN_ORDERS: &str = "SELECT count(*) AS count FROM pay_order AS open INDEXED BY pay_order_by_status \
    JOIN pay_order AS same ON same.order_id = open.order_id WHERE open.status = 'PAY_WAIT'";

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    count: i64,
}

impl Order {
    /// SQLite: reads the pages a payment writes, for every order waiting for one: its row, and
    /// its entries in `pay_order_by_status` and the order id's index, so that they are cached
    /// when the payment comes (`database.sqlite_read_open_orders_secs`, docs/PERFORMANCE.md). The
    /// other index a payment changes, `pay_order_one_open`, is small and every order reads it.
    /// Returns how many orders it read.
    pub fn read_open_orders(conn: &mut diesel::SqliteConnection) -> QueryResult<i64> {
        let read: Count = diesel::sql_query(READ_OPEN_ORDERS).get_result(conn)?;
        Ok(read.count)
    }
}

/// The longest date range whose page of the admin's list is read through the range and sorted.
pub const SORTED_RANGE_DAYS: i64 = 31;

/// What the admin's orders page narrows down to. Empty fields do not filter.
#[derive(Debug, Default, Clone)]
pub struct OrderFilter {
    pub status: Option<OrderStatus>,
    pub placed_from: Option<NaiveDateTime>,
    pub placed_before: Option<NaiveDateTime>,
    pub openid: Option<String>,
    pub order_id: Option<String>,
    pub product_id: Option<String>,
}

impl OrderFilter {
    fn query(&self) -> pay_order::BoxedQuery<'_, crate::db::MultiBackend> {
        let mut query = pay_order::table.into_boxed();
        if let Some(status) = self.status {
            query = query.filter(pay_order::status.eq(status.as_str()));
            if !OrderStatus::UNSETTLED.contains(&status) {
                query = query.filter(StatusNotIn(&OrderStatus::UNSETTLED));
            }
        }
        if let Some(from) = self.placed_from {
            query = query.filter(pay_order::order_time.ge(from));
        }
        if let Some(before) = self.placed_before {
            query = query.filter(pay_order::order_time.lt(before));
        }
        if let Some(openid) = &self.openid {
            // Through the shopper's user id, so `pay_order_by_user (user_id, id)` serves it.
            let user = app_user::table.filter(app_user::openid.eq(openid)).select(app_user::user_id);
            query = query
                .filter(pay_order::user_id.nullable().eq(user.single_value()))
                .filter(pay_order::openid.eq(openid));
        }
        if let Some(order_id) = &self.order_id {
            query = query.filter(pay_order::order_id.eq(order_id));
        }
        if let Some(product_id) = &self.product_id {
            query = query.filter(pay_order::product_id.eq(product_id));
        }
        query
    }

    /// Whether the filter narrows anything down.
    pub fn is_empty(&self) -> bool {
        self.status.is_none()
            && self.placed_from.is_none()
            && self.placed_before.is_none()
            && self.openid.is_none()
            && self.order_id.is_none()
            && self.product_id.is_none()
    }

    /// Whether the filter is a status and nothing else.
    pub fn is_status_only(&self) -> bool {
        self.status.is_some() && OrderFilter { status: None, ..self.clone() }.is_empty()
    }

    /// Matching orders below the row id `before` (from the newest without it), newest first, at
    /// most `limit`: keyset paging on `id`, through the filter's index (`pay_order_by_settled_status`,
    /// `pay_order_by_product`, `pay_order_by_time`, `pay_order_by_user`, each ending in `id`), so
    /// a page costs the same however deep it is. The CSV export walks the whole filter this way.
    pub fn older_than(&self, conn: &mut DbConn, before: Option<i64>, limit: i64) -> QueryResult<Vec<Order>> {
        self.older(conn, before, limit, false)
    }

    /// A page of [`OrderFilter::older_than`] for the admin's list: a date range of at most
    /// [`SORTED_RANGE_DAYS`] is read through `(order_time, id)` and its orders sorted by `id`
    /// (few enough to sort), where walking `id` down to an old range would pass every order
    /// newer than it.
    pub fn page_older_than(
        &self,
        conn: &mut DbConn,
        before: Option<i64>,
        limit: i64,
    ) -> QueryResult<Vec<Order>> {
        self.older(conn, before, limit, self.sorts_its_range())
    }

    fn older(
        &self,
        conn: &mut DbConn,
        before: Option<i64>,
        limit: i64,
        sorted: bool,
    ) -> QueryResult<Vec<Order>> {
        let mut query = self.query();
        if let Some(before) = before {
            query = query.filter(pay_order::id.lt(before));
        }
        // `id + 0` orders the same rows, but through no index: the range's is used instead.
        query =
            if sorted { query.order((pay_order::id + 0).desc()) } else { query.order(pay_order::id.desc()) };
        query.limit(limit).select(Order::as_select()).load(conn)
    }

    /// Matching orders above the row id `after`, oldest first, at most `limit` (the page before,
    /// read from its near end; a short date range as in [`OrderFilter::page_older_than`]).
    pub fn newer_than(&self, conn: &mut DbConn, after: i64, limit: i64) -> QueryResult<Vec<Order>> {
        let query = self.query().filter(pay_order::id.gt(after));
        let query = if self.sorts_its_range() {
            query.order((pay_order::id + 0).asc())
        } else {
            query.order(pay_order::id.asc())
        };
        query.limit(limit).select(Order::as_select()).load(conn)
    }

    /// Whether the filter is a date range of at most [`SORTED_RANGE_DAYS`].
    fn sorts_its_range(&self) -> bool {
        matches!((self.placed_from, self.placed_before),
            (Some(from), Some(before)) if before - from <= chrono::Duration::days(SORTED_RANGE_DAYS))
    }

    /// Whether an order matches above (`newer`) or below the row id `id`.
    pub fn any_beyond(&self, conn: &mut DbConn, id: i64, newer: bool) -> QueryResult<bool> {
        let query = self.query();
        let query =
            if newer { query.filter(pay_order::id.gt(id)) } else { query.filter(pay_order::id.lt(id)) };
        Ok(!query.select(pay_order::id).limit(1).load::<i64>(conn)?.is_empty())
    }

    /// (status, total cents) of the matching orders, at most `limit` of them: a count and sum
    /// bounded by the limit, whatever the filter.
    pub fn amounts(&self, conn: &mut DbConn, limit: i64) -> QueryResult<Vec<(String, i64)>> {
        self.query().select((pay_order::status, pay_order::total_cents)).limit(limit).load(conn)
    }
}

impl Order {
    /// The earliest `next_query_at` already passed of a `PAY_WAIT` order: how far the
    /// compensation's queries are behind.
    pub fn oldest_overdue_query(conn: &mut DbConn, at: NaiveDateTime) -> QueryResult<Option<NaiveDateTime>> {
        pay_order::table
            .filter(pay_order::status.eq(OrderStatus::PayWait.as_str()))
            .filter(pay_order::next_query_at.le(at))
            .select(diesel::dsl::min(pay_order::next_query_at))
            .get_result(conn)
    }
}

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;
    use diesel::query_builder::{QueryBuilder, QueryFragment};
    use diesel::sqlite::{Sqlite, SqliteQueryBuilder};

    use super::{OPEN_ORDER, Order, OrderStatus, READ_OPEN_ORDERS, paid_without_delivery};
    use crate::db::{Backend, DbConn, StatusIn};
    use crate::test_support::{TestDatabase, query_plan};

    #[test]
    fn the_open_order_condition_is_the_open_statuses() {
        let text = |condition: &dyn QueryFragment<Sqlite>| {
            let mut sql = SqliteQueryBuilder::new();
            condition.to_sql(&mut sql, &Sqlite).unwrap();
            sql.finish()
        };
        assert_eq!(text(&OPEN_ORDER), text(&StatusIn(&OrderStatus::OPEN)));
    }

    #[test]
    fn every_status_reads_back_from_its_text_and_no_other_text_is_one() {
        for status in OrderStatus::ALL {
            assert_eq!(status.as_str().parse::<OrderStatus>().unwrap(), status);
            assert_eq!(OrderStatus::try_from(status.to_string()).unwrap(), status);
        }
        let unknown = "TEAM_DONE".parse::<OrderStatus>().unwrap_err();
        assert_eq!(unknown.to_string(), "unknown OrderStatus \"TEAM_DONE\"");
    }

    #[test]
    fn the_open_orders_are_read_through_the_indexes_a_payment_changes() {
        // Through the shop's own set-up: SQLite is configured before its first connection.
        let database = TestDatabase::migrated(Backend::Sqlite);
        let mut conn = database.location().establish().unwrap();
        conn.batch_execute(
            "INSERT INTO app_user (openid) VALUES ('o1');
             INSERT INTO pay_order (order_id, user_id, openid, product_id, product_name, total_cents, status,
                 order_time, expire_at, next_query_at, updated_at)
             VALUES ('A', 1, 'o1', 'p', 'Tea', 100, 'PAY_WAIT', 't', 't', 't', 't'),
                    ('B', 1, 'o1', 'q', 'Cake', 200, 'PAY_SUCCESS', 't', 't', 't', 't'),
                    ('C', 1, 'o1', 'r', 'Jam', 300, 'PAY_WAIT', 't', 't', 't', 't');",
        )
        .unwrap();
        let DbConn::Sqlite(sqlite) = &mut conn else { panic!("a SQLite location") };
        assert_eq!(Order::read_open_orders(sqlite).unwrap(), 2, "the orders waiting for a payment");

        let plan = query_plan(&mut conn, READ_OPEN_ORDERS);
        assert!(plan[0].contains("USING INDEX pay_order_by_status (status=?)"), "{plan:?}");
        assert!(plan[1].contains("USING COVERING INDEX sqlite_autoindex_pay_order"), "{plan:?}");
    }

    /// The sweep for a delivery never enqueued finds the paid orders due one and no other, and
    /// reads them through `pay_order_due_delivery`: SQLite uses a partial index only when the
    /// query repeats its condition, PostgreSQL's generic plan only when the condition is in the
    /// text. Otherwise every tick read every paid member of every forming team.
    fn paid_orders_without_a_delivery_are_read_through_their_partial_index(backend: Backend) {
        let database = TestDatabase::migrated(backend);
        let mut conn = database.location().establish().unwrap();
        let at = "'2026-12-05 00:00:00'";
        conn.batch_execute(&format!(
            "INSERT INTO app_user (openid) VALUES ('o-sweep');
             INSERT INTO pay_order (order_id, user_id, openid, product_id, product_name, total_cents, status,
                 team_id, order_time, expire_at, next_query_at, updated_at)
             SELECT v.order_id, u.user_id, 'o-sweep', 'p', 'Tea', 100, v.status, v.team_id, {at}, {at}, {at}, {at}
             FROM app_user u, (SELECT 'alone' AS order_id, 'PAY_SUCCESS' AS status, NULL AS team_id
                 UNION ALL SELECT 'forming', 'PAY_SUCCESS', 'T1'
                 UNION ALL SELECT 'formed', 'MARKET', 'T2'
                 UNION ALL SELECT 'enqueued', 'MARKET', 'T3'
                 UNION ALL SELECT 'delivered', 'DEAL_DONE', NULL) v
             WHERE u.openid = 'o-sweep';
             INSERT INTO outbox (kind, dedupe_key, order_id, payload, status, next_attempt_at, created_at, updated_at)
             VALUES ('delivery', 'enqueued', 'enqueued', '{{}}', 'PENDING', {at}, {at}, {at});"
        ))
        .unwrap();
        let mut due = Order::paid_without_delivery(&mut conn, 10).unwrap();
        due.sort();
        assert_eq!(due, ["alone", "formed"]);

        let statement = match &mut conn {
            DbConn::Sqlite(_) => paid_without_delivery(true, 10),
            DbConn::Pg(c) => {
                // A plan for any values, and no table scan where an index could serve: the tables
                // are too small here for the planner to prefer an index by itself.
                c.batch_execute(&format!(
                    "SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off; PREPARE due AS {}",
                    paid_without_delivery(false, 10)
                ))
                .unwrap();
                "EXECUTE due".to_owned()
            }
        };
        let plan = query_plan(&mut conn, &statement);
        assert!(plan.iter().any(|step| step.contains("pay_order_due_delivery")), "{plan:#?}");
        let probe = if backend == Backend::Sqlite { "outbox_order (order_id=?)" } else { "outbox_order" };
        assert!(plan.iter().any(|step| step.contains(probe)), "one probe per order: {plan:#?}");
        if backend == Backend::Postgres {
            assert!(plan.iter().any(|step| step.contains("SubPlan")), "not a join: {plan:#?}");
        }
    }

    crate::both_backends!(paid_orders_without_a_delivery_are_read_through_their_partial_index);
}
