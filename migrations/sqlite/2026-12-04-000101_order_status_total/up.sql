-- Orders and their amount per status, folded forward from the timeline (`order_event`) by the
-- background thread (`services::order_totals`). The admin's totals are these plus the net of
-- the events after `folded_through`.
CREATE TABLE order_status_total (
    status  TEXT PRIMARY KEY NOT NULL,
    orders  BIGINT NOT NULL,
    cents   BIGINT NOT NULL
);

-- One row. Every `order_event` with an id up to `folded_through` is in `order_status_total`, and
-- none above it. `pending_through` and `pending_vxids` are PostgreSQL's barrier (events up to
-- `pending_through` fold once the transactions in `pending_vxids` have ended); unused on SQLite.
CREATE TABLE order_total_checkpoint (
    id               INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    folded_through   BIGINT NOT NULL,
    pending_through  BIGINT,
    pending_vxids    TEXT NOT NULL DEFAULT '',
    updated_at       TIMESTAMP NOT NULL
);

-- Seeded with a full count of the orders as they are (an order that never had a timeline row is
-- counted too) and the checkpoint at the last event: the migration holds SQLite's write lock.
WITH statuses (status) AS (
    VALUES ('CREATE'), ('PAY_WAIT'), ('PAY_SUCCESS'), ('DEAL_DONE'), ('CLOSE'), ('REFUND_WAIT'), ('REFUNDED')
)
INSERT INTO order_status_total (status, orders, cents)
SELECT statuses.status, COUNT(pay_order.id), COALESCE(SUM(pay_order.total_cents), 0)
FROM statuses LEFT JOIN pay_order ON pay_order.status = statuses.status
GROUP BY statuses.status;

INSERT INTO order_total_checkpoint (id, folded_through, updated_at)
SELECT 1, COALESCE(MAX(id), 0), CURRENT_TIMESTAMP FROM order_event;
