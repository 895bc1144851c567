-- One Alipay trade pays at most one order: a second order claiming a used trade_no is refused.
CREATE UNIQUE INDEX pay_order_by_trade_no ON pay_order (trade_no) WHERE trade_no IS NOT NULL;

-- Notifications that fail verification keep a bounded prefix of their body and the body's
-- SHA-256 (NULL: the body is kept whole). Retention deletes by age.
ALTER TABLE alipay_notify ADD COLUMN raw_sha256 TEXT;
CREATE INDEX alipay_notify_by_received ON alipay_notify (received_at);
-- A verified notification is stored once per (notify_id, outcome): a replay changes nothing and
-- adds nothing. Copies stored before keep their rows, their outcome marked with their id.
UPDATE alipay_notify SET outcome = outcome || ' (stored again, #' || id || ')'
WHERE notify_id IS NOT NULL
  AND id NOT IN (SELECT MIN(id) FROM alipay_notify WHERE notify_id IS NOT NULL GROUP BY notify_id, outcome);
CREATE UNIQUE INDEX alipay_notify_once ON alipay_notify (notify_id, outcome)
    WHERE raw_sha256 IS NULL AND notify_id IS NOT NULL;
CREATE INDEX gateway_call_by_created ON gateway_call (created_at);

-- Payments Alipay confirmed with a valid signature that no order of the shop can take: an order
-- the shop does not know (refunded from the admin console, or automatically after
-- alipay.orphan_refund_after_hours), or a
-- trade_no that already paid another order (held for the admin; never refunded automatically).
-- An orphan whose number or trade an order of the shop holds by the time it would be refunded is
-- HELD instead: the money may be that order's.
CREATE TABLE orphan_payment (
    id              INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('UNKNOWN_ORDER', 'TRADE_NO_REUSED')),
    out_trade_no    TEXT NOT NULL,
    trade_no        TEXT NOT NULL,
    amount_cents    BIGINT NOT NULL CHECK (amount_cents > 0),
    status          TEXT NOT NULL CHECK (status IN ('OPEN', 'REFUND_WAIT', 'REFUNDED', 'HELD')),
    notify_id       TEXT,
    detail          TEXT NOT NULL,
    received_at     TIMESTAMP NOT NULL,
    refunded_by     TEXT,
    updated_at      TIMESTAMP NOT NULL,
    UNIQUE (out_trade_no, trade_no)
);
CREATE INDEX orphan_payment_due ON orphan_payment (status, received_at);
