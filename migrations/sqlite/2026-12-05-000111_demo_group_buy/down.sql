DELETE FROM group_buy_activity WHERE activity_id = 100123;
