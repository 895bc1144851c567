DROP TABLE app_user;
DROP TABLE product;
