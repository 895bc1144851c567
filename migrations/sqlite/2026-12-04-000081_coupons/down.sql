DROP TABLE user_coupon;
DROP TABLE coupon_template_product;
DROP TABLE coupon_template;
