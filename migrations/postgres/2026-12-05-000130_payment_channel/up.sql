-- The payment channel of an order, of an orphan payment and of a stored notification: every row
-- written before it is Alipay's.
ALTER TABLE pay_order ADD COLUMN channel TEXT NOT NULL DEFAULT 'ALIPAY'
    CONSTRAINT pay_order_channel_check CHECK (channel IN ('ALIPAY', 'WECHAT_PAY'));
ALTER TABLE orphan_payment ADD COLUMN channel TEXT NOT NULL DEFAULT 'ALIPAY'
    CONSTRAINT orphan_payment_channel_check CHECK (channel IN ('ALIPAY', 'WECHAT_PAY'));
ALTER TABLE alipay_notify ADD COLUMN channel TEXT NOT NULL DEFAULT 'ALIPAY'
    CONSTRAINT alipay_notify_channel_check CHECK (channel IN ('ALIPAY', 'WECHAT_PAY'));
