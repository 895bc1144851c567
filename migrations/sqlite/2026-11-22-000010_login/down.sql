DROP TABLE wx_event_seen;
DROP TABLE wx_access_token;
DROP TABLE login_ticket;
