-- Only Alipay's rows can be kept.
DELETE FROM alipay_notify WHERE channel <> 'ALIPAY';
DELETE FROM orphan_payment WHERE channel <> 'ALIPAY';
DELETE FROM pay_order WHERE channel <> 'ALIPAY';
ALTER TABLE alipay_notify DROP COLUMN channel;
ALTER TABLE orphan_payment DROP COLUMN channel;
ALTER TABLE pay_order DROP COLUMN channel;
