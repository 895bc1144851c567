DROP TABLE weixin_push_nonce;
