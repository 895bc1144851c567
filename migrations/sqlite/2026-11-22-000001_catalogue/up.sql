CREATE TABLE product (
    product_id   TEXT PRIMARY KEY NOT NULL,
    name         TEXT NOT NULL,
    description  TEXT NOT NULL,
    price_cents  BIGINT NOT NULL CHECK (price_cents > 0),
    stock        BIGINT NOT NULL CHECK (stock >= 0),
    on_sale      BOOLEAN NOT NULL DEFAULT 1,
    image_url    TEXT NOT NULL,
    sort_order   INTEGER NOT NULL DEFAULT 0,
    created_at   TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at   TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE app_user (
    user_id        INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    openid         TEXT NOT NULL UNIQUE,
    created_at     TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    last_login_at  TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);
