-- An order's signed page-pay form (1.2 KB) in a table of its own, read only by the checkout: in
-- pay_order it made a row six times as long, so a page held two orders, and every payment and
-- every look of the background thread wrote or read a page of its own (from disk once reclaimed).
CREATE TABLE pay_form (
    order_id  TEXT PRIMARY KEY NOT NULL,
    form      TEXT NOT NULL
);
INSERT INTO pay_form (order_id, form) SELECT order_id, pay_form FROM pay_order WHERE pay_form IS NOT NULL ORDER BY id;
ALTER TABLE pay_order DROP COLUMN pay_form;
