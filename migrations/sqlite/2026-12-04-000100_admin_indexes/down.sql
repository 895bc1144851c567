DROP INDEX pay_order_by_time;
DROP INDEX pay_order_by_product;
DROP INDEX pay_order_by_settled_status;
