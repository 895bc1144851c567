-- Group orders (MARKET or with a team) cannot be kept.
DELETE FROM pay_order WHERE team_id IS NOT NULL OR status = 'MARKET';
ALTER TABLE pay_order DROP COLUMN team_id;
ALTER TABLE pay_order DROP CONSTRAINT pay_order_status_check;
ALTER TABLE pay_order ADD CONSTRAINT pay_order_status_check CHECK (
    status IN ('CREATE', 'PAY_WAIT', 'PAY_SUCCESS', 'DEAL_DONE', 'CLOSE', 'REFUND_WAIT', 'REFUNDED'));
DROP TABLE group_buy_take;
DROP TABLE group_buy_member;
DROP TABLE group_buy_team;
DROP TABLE group_buy_activity;
DROP TABLE crowd_tag_member;
DROP TABLE crowd_tag;
DELETE FROM order_status_total WHERE status = 'MARKET';
