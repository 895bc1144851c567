DROP INDEX pay_order_due_delivery;
