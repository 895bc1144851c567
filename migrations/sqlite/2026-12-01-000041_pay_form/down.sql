ALTER TABLE pay_order ADD COLUMN pay_form TEXT;
UPDATE pay_order SET pay_form = (SELECT form FROM pay_form WHERE pay_form.order_id = pay_order.order_id);
DROP TABLE pay_form;
