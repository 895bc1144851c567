-- Orders and their amount per status, folded forward from the timeline (`order_event`) by the
-- background thread (`services::order_totals`). The admin's totals are these plus the net of
-- the events after `folded_through`.
CREATE TABLE order_status_total (
    status  TEXT PRIMARY KEY,
    orders  BIGINT NOT NULL,
    cents   BIGINT NOT NULL
);

-- One row. Every `order_event` with an id up to `folded_through` is in `order_status_total`, and
-- none above it. Events up to `pending_through` fold once the transactions in `pending_vxids`
-- (those that could still commit an event with a lower id) have ended.
CREATE TABLE order_total_checkpoint (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    folded_through   BIGINT NOT NULL,
    pending_through  BIGINT,
    pending_vxids    TEXT NOT NULL DEFAULT '',
    updated_at       TIMESTAMP NOT NULL
);

-- Writers of the timeline (an older instance still running) wait until this commits, and the
-- ones under way finish first: the count below and the checkpoint then see the same events, and
-- a change still without its event gets an id above the checkpoint.
LOCK TABLE order_event IN SHARE MODE;

-- Seeded with a full count of the orders as they are (an order that never had a timeline row is
-- counted too) and the checkpoint at the last event.
WITH statuses (status) AS (
    VALUES ('CREATE'), ('PAY_WAIT'), ('PAY_SUCCESS'), ('DEAL_DONE'), ('CLOSE'), ('REFUND_WAIT'), ('REFUNDED')
)
INSERT INTO order_status_total (status, orders, cents)
SELECT statuses.status, COUNT(pay_order.id), COALESCE(SUM(pay_order.total_cents), 0)
FROM statuses LEFT JOIN pay_order ON pay_order.status = statuses.status
GROUP BY statuses.status;

INSERT INTO order_total_checkpoint (id, folded_through, updated_at)
SELECT 1, COALESCE(MAX(id), 0), (now() AT TIME ZONE 'utc') FROM order_event;
