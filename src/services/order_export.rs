//! The admin's CSV export of the orders a filter matches, of any size in constant memory: read
//! in keyset chunks of [`CHUNK_ROWS`] by `pay_order.id`, newest first, each chunk on a pooled
//! connection taken for that read only (no transaction or connection is held across chunks, so
//! the shop keeps writing and checkpointing meanwhile), and handed on as CSV text through a
//! channel of [`CHANNEL_CHUNKS`]: the reader sets the pace, and the export stops when the reader
//! is gone (the client went away).

use crate::db::{DbConn, DbPool};
use crate::engine::Engine;
use crate::error::{AppError, AppResult};
use crate::models::order::{Order, OrderFilter};

/// The first line of every export.
pub const HEADER: &str =
    "order_id,status,openid,product_id,product_name,total_amount,order_time,pay_time,trade_no,channel\n";
/// Orders read per statement.
pub const CHUNK_ROWS: i64 = 1_000;
/// Chunks waiting for the client at most; the export waits while they do.
const CHANNEL_CHUNKS: usize = 2;

/// Starts the export of what `filter` matches: the header, then the orders newest first, each
/// item of the receiver a piece of the CSV text. A read that fails ends it with the error.
pub fn csv(
    engine: &Engine,
    filter: OrderFilter,
) -> AppResult<tokio::sync::mpsc::Receiver<AppResult<String>>> {
    engine.feed(CHANNEL_CHUNKS, "paymall-export", move |pool, send| {
        let sent = walk(pool, &filter, |text| send.blocking_send(Ok(text)).is_ok());
        match sent {
            Ok(true) => {}
            Ok(false) => log::info!("orders export stopped: the client went away"),
            Err(e) => {
                log::warn!("orders export failed: {e}");
                let _ = send.blocking_send(Err(e));
            }
        }
    })
}

/// Hands `send` the header and then each chunk's rows, newest first; a connection is taken for
/// each chunk only. Returns `false` as soon as `send` does (nobody reads any more).
pub fn walk(pool: &DbPool, filter: &OrderFilter, mut send: impl FnMut(String) -> bool) -> AppResult<bool> {
    if !send(HEADER.to_owned()) {
        return Ok(false);
    }
    let mut below = None;
    loop {
        let orders = chunk(&mut *pool.get()?, filter, below)?;
        let Some(last) = orders.last() else { return Ok(true) };
        below = Some(last.id);
        let full = orders.len() as i64 == CHUNK_ROWS;
        if !send(rows(&orders)) {
            return Ok(false);
        }
        if !full {
            return Ok(true);
        }
    }
}

fn chunk(conn: &mut DbConn, filter: &OrderFilter, below: Option<i64>) -> AppResult<Vec<Order>> {
    filter.older_than(conn, below, CHUNK_ROWS).map_err(AppError::from)
}

/// The CSV lines of `orders`, in the columns of [`HEADER`].
fn rows(orders: &[Order]) -> String {
    let mut text = String::with_capacity(orders.len() * 160);
    for o in orders {
        let fields = [
            o.order_id.as_str(),
            o.status.as_str(),
            &o.openid,
            &o.product_id,
            &o.product_name,
            &crate::money::format_yuan(o.total_cents),
            &crate::china_time::format(o.order_time),
            &o.pay_time.map(crate::china_time::format).unwrap_or_default(),
            o.trade_no.as_deref().unwrap_or_default(),
            o.channel.as_str(),
        ];
        for (i, value) in fields.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            push_field(&mut text, value);
        }
        text.push('\n');
    }
    text
}

/// One cell, always quoted; a value starting with a formula character (`=`, `+`, `-`, `@`) is
/// prefixed with `'`, so a spreadsheet shows it as text instead of evaluating it.
pub fn push_field(text: &mut String, value: &str) {
    text.push('"');
    if value.starts_with(['=', '+', '-', '@']) {
        text.push('\'');
    }
    for c in value.chars() {
        if c == '"' {
            text.push('"');
        }
        text.push(c);
    }
    text.push('"');
}

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;

    use super::{CHUNK_ROWS, HEADER, push_field, walk};
    use crate::db::{Backend, build_pool};
    use crate::models::order::OrderFilter;
    use crate::test_support::TestDatabase;

    fn field(value: &str) -> String {
        let mut text = String::new();
        push_field(&mut text, value);
        text
    }

    #[test]
    fn cells_are_quoted_and_formulas_stay_text() {
        assert_eq!(field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(field("+1"), "\"'+1\"");
        assert_eq!(field("-2"), "\"'-2\"");
        assert_eq!(field("@SUM(A1)"), "\"'@SUM(A1)\"");
        assert_eq!(field("a, \"b\""), "\"a, \"\"b\"\"\"");
        assert_eq!(field(""), "\"\"");
    }

    #[test]
    fn the_walk_reads_in_chunks_newest_first_and_stops_when_nobody_reads() {
        let database = TestDatabase::migrated(Backend::Sqlite);
        let pool = build_pool(&database.location(), 2).expect("pool");
        let orders = CHUNK_ROWS * 2 + 5;
        pool.get()
            .expect("connection")
            .batch_execute(&format!(
                "INSERT INTO app_user (openid) VALUES ('o1');
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {orders})
             INSERT INTO pay_order (order_id, user_id, openid, product_id, product_name, total_cents, status,
                 order_time, expire_at, next_query_at, updated_at)
             SELECT printf('26010100%08d', i), 1, 'o1', '100010090091', 'Gift', 168, 'CLOSE',
                 CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP FROM n;"
            ))
            .expect("orders");
        let mut pieces = Vec::new();
        assert!(
            walk(&pool, &OrderFilter::default(), |text| {
                pieces.push(text);
                true
            })
            .expect("walk")
        );
        assert_eq!(pieces.len(), 4, "the header and three chunks");
        assert_eq!(pieces[0], HEADER);
        let ids: Vec<String> = pieces[1..]
            .iter()
            .flat_map(|p| p.lines().map(|l| l[1..17].to_owned()).collect::<Vec<_>>())
            .collect();
        let expected: Vec<String> = (1..=orders).rev().map(|i| format!("26010100{i:08}")).collect();
        assert_eq!(ids, expected);

        let mut sent = 0;
        assert!(
            !walk(&pool, &OrderFilter::default(), |_| {
                sent += 1;
                sent < 2
            })
            .expect("walk")
        );
        assert_eq!(sent, 2, "the header, one chunk, and no read after the reader left");
    }
}
