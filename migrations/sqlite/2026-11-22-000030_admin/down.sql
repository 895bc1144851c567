DROP TABLE admin_login_failure;
DROP TABLE admin_session;
