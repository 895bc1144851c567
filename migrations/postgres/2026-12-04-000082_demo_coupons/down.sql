DELETE FROM coupon_template_product WHERE template_id BETWEEN 9001 AND 9003;
DELETE FROM coupon_template WHERE template_id BETWEEN 9001 AND 9003
    AND NOT EXISTS (SELECT 1 FROM user_coupon WHERE user_coupon.template_id = coupon_template.template_id);
