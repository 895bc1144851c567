DROP TABLE order_discount;
ALTER TABLE pay_order DROP CONSTRAINT pay_order_price_snapshot;
ALTER TABLE pay_order DROP COLUMN original_cents;
ALTER TABLE pay_order DROP COLUMN discount_cents;
