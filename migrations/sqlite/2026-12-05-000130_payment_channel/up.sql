-- The payment channel of an order, of an orphan payment and of a stored notification: every row
-- written before it is Alipay's. The checks are comparisons (docs/PERFORMANCE.md, "Status checks
-- as comparisons").
ALTER TABLE pay_order ADD COLUMN channel TEXT NOT NULL DEFAULT 'ALIPAY'
    CHECK (channel = 'ALIPAY' OR channel = 'WECHAT_PAY');
ALTER TABLE orphan_payment ADD COLUMN channel TEXT NOT NULL DEFAULT 'ALIPAY'
    CHECK (channel = 'ALIPAY' OR channel = 'WECHAT_PAY');
ALTER TABLE alipay_notify ADD COLUMN channel TEXT NOT NULL DEFAULT 'ALIPAY'
    CHECK (channel = 'ALIPAY' OR channel = 'WECHAT_PAY');
