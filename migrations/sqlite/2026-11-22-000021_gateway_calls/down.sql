DROP TABLE gateway_call;
