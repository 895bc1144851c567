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

diesel::allow_tables_to_appear_in_same_query!(product, app_user);
