DROP TABLE order_total_checkpoint;
DROP TABLE order_status_total;
