-- The order's price snapshot: total_cents stays the payable amount (what Alipay charges);
-- original_cents is the list price and discount_cents what the applied discounts took off, so
-- total_cents = original_cents - discount_cents. Orders placed before have no discount.
-- NULL original_cents: an order whose placement wrote no snapshot; its list price is total_cents.
ALTER TABLE pay_order ADD COLUMN discount_cents BIGINT NOT NULL DEFAULT 0 CHECK (discount_cents >= 0);
ALTER TABLE pay_order ADD COLUMN original_cents BIGINT
    CHECK (original_cents IS NULL OR original_cents = total_cents + discount_cents);
UPDATE pay_order SET original_cents = total_cents;

-- One row per discount applied to an order, with a copy of the rule as it was applied.
CREATE TABLE order_discount (
    id             INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    order_id       TEXT NOT NULL,
    discount_type  TEXT NOT NULL CHECK (discount_type = 'COUPON' OR discount_type = 'GROUP_BUY'),
    ref_id         TEXT NOT NULL,
    name           TEXT NOT NULL,
    amount_cents   BIGINT NOT NULL CHECK (amount_cents > 0),
    rule           TEXT NOT NULL,
    created_at     TIMESTAMP NOT NULL,
    UNIQUE (order_id, discount_type)
);
