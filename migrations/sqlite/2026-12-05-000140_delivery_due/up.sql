-- Paid orders due a delivery: bought alone and paid, or MARKET (their team formed). The background
-- thread's sweep for a delivery never enqueued (`Order::paid_without_delivery`) reads them through
-- this index, whose condition it repeats word for word (SQLite uses a partial index only then):
-- the few orders between their payment and their delivery, not every paid member of every
-- forming team nor every delivered order.
CREATE INDEX pay_order_due_delivery ON pay_order (order_id)
    WHERE (status = 'PAY_SUCCESS' AND team_id IS NULL) OR status = 'MARKET';
