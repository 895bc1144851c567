DROP TABLE shipment;
DROP TABLE alipay_notify;
DROP TABLE order_event;
DROP TABLE pay_order;
DROP TABLE order_number;
