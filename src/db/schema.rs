// Table definitions shared by both backends (migrations/sqlite and migrations/postgres keep
// the same columns in each dialect).

diesel::table! {
    product (product_id) {
        product_id -> Text,
        name -> Text,
        description -> Text,
        price_cents -> BigInt,
        stock -> BigInt,
        on_sale -> Bool,
        image_url -> Text,
        sort_order -> Integer,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    app_user (user_id) {
        user_id -> BigInt,
        openid -> Text,
        created_at -> Timestamp,
        last_login_at -> Timestamp,
    }
}

diesel::table! {
    user_session (session_id) {
        session_id -> BigInt,
        token_hash -> Text,
        user_id -> BigInt,
        created_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    outbox (outbox_id) {
        outbox_id -> BigInt,
        kind -> Text,
        dedupe_key -> Text,
        order_id -> Nullable<Text>,
        payload -> Text,
        status -> Text,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        last_error -> Nullable<Text>,
        lease_owner -> Nullable<Text>,
        lease_until -> Nullable<Timestamp>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::joinable!(user_session -> app_user (user_id));

diesel::allow_tables_to_appear_in_same_query!(product, app_user, user_session, outbox);
