DROP TABLE orphan_payment;
DROP INDEX gateway_call_by_created;
DROP INDEX alipay_notify_by_received;
ALTER TABLE alipay_notify DROP COLUMN raw_sha256;
DROP INDEX alipay_notify_once;
DROP INDEX pay_order_by_trade_no;
