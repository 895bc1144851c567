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

diesel::table! {
    order_number (number) {
        number -> BigInt,
        created_at -> Timestamp,
    }
}

diesel::table! {
    pay_order (id) {
        id -> BigInt,
        order_id -> Text,
        user_id -> BigInt,
        openid -> Text,
        product_id -> Text,
        product_name -> Text,
        total_cents -> BigInt,
        status -> Text,
        trade_no -> Nullable<Text>,
        order_time -> Timestamp,
        expire_at -> Timestamp,
        pay_time -> Nullable<Timestamp>,
        next_query_at -> Timestamp,
        query_attempts -> Integer,
        lease_owner -> Nullable<Text>,
        lease_until -> Nullable<Timestamp>,
        updated_at -> Timestamp,
        discount_cents -> BigInt,
        original_cents -> Nullable<BigInt>,
        team_id -> Nullable<Text>,
        channel -> Text,
    }
}

diesel::table! {
    pay_form (order_id) {
        order_id -> Text,
        form -> Text,
    }
}

diesel::table! {
    order_event (id) {
        id -> BigInt,
        order_id -> Text,
        from_status -> Nullable<Text>,
        to_status -> Text,
        cause -> Text,
        detail -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    alipay_notify (id) {
        id -> BigInt,
        notify_id -> Nullable<Text>,
        out_trade_no -> Nullable<Text>,
        trade_status -> Nullable<Text>,
        raw -> Text,
        verified -> Bool,
        outcome -> Text,
        received_at -> Timestamp,
        raw_sha256 -> Nullable<Text>,
        channel -> Text,
    }
}

diesel::table! {
    orphan_payment (id) {
        id -> BigInt,
        kind -> Text,
        out_trade_no -> Text,
        trade_no -> Text,
        amount_cents -> BigInt,
        status -> Text,
        notify_id -> Nullable<Text>,
        detail -> Text,
        received_at -> Timestamp,
        refunded_by -> Nullable<Text>,
        updated_at -> Timestamp,
        channel -> Text,
    }
}

diesel::table! {
    shipment (id) {
        id -> BigInt,
        order_id -> Text,
        detail -> Text,
        shipped_at -> Timestamp,
    }
}

diesel::table! {
    login_ticket (id) {
        id -> BigInt,
        ticket -> Text,
        scene -> Text,
        browser_hash -> Text,
        openid -> Nullable<Text>,
        scanned_at -> Nullable<Timestamp>,
        consumed -> Bool,
        expires_at -> Timestamp,
        created_at -> Timestamp,
    }
}

diesel::table! {
    oauth_state (state) {
        state -> Text,
        browser_hash -> Text,
        next -> Text,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    wx_access_token (id) {
        id -> BigInt,
        token -> Text,
        expires_at -> Timestamp,
        lease_owner -> Nullable<Text>,
        lease_until -> Nullable<Timestamp>,
    }
}

diesel::table! {
    wx_event_seen (id) {
        id -> BigInt,
        dedupe_key -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    gateway_call (id) {
        id -> BigInt,
        order_id -> Text,
        call -> Text,
        caller -> Text,
        outcome -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    admin_session (id) {
        id -> BigInt,
        token_hash -> Text,
        username -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    admin_login_failure (id) {
        id -> BigInt,
        throttle_key -> Text,
        failures -> Integer,
        locked_until -> Nullable<Timestamp>,
        last_failed_at -> Timestamp,
    }
}

diesel::table! {
    weixin_push_nonce (nonce, timestamp_secs) {
        nonce -> Text,
        timestamp_secs -> BigInt,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    order_discount (id) {
        id -> BigInt,
        order_id -> Text,
        discount_type -> Text,
        ref_id -> Text,
        name -> Text,
        amount_cents -> BigInt,
        rule -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    coupon_template (template_id) {
        template_id -> BigInt,
        name -> Text,
        kind -> Text,
        threshold_cents -> BigInt,
        off_cents -> BigInt,
        rate_bp -> Integer,
        max_off_cents -> Nullable<BigInt>,
        scope -> Text,
        valid_from -> Nullable<Timestamp>,
        valid_until -> Nullable<Timestamp>,
        valid_days -> Nullable<Integer>,
        total_quota -> BigInt,
        issued_count -> BigInt,
        per_user_limit -> Integer,
        status -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    coupon_template_product (template_id, product_id) {
        template_id -> BigInt,
        product_id -> Text,
    }
}

diesel::table! {
    user_coupon (coupon_id) {
        coupon_id -> BigInt,
        code -> Text,
        template_id -> BigInt,
        user_id -> BigInt,
        status -> Text,
        valid_from -> Timestamp,
        valid_until -> Timestamp,
        locked_order_id -> Nullable<Text>,
        locked_at -> Nullable<Timestamp>,
        used_order_id -> Nullable<Text>,
        used_at -> Nullable<Timestamp>,
        issued_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    order_status_total (status) {
        status -> Text,
        orders -> BigInt,
        cents -> BigInt,
    }
}

diesel::table! {
    order_total_checkpoint (id) {
        id -> Integer,
        folded_through -> BigInt,
        pending_through -> Nullable<BigInt>,
        pending_vxids -> Text,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    crowd_tag (tag_id) {
        tag_id -> BigInt,
        name -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    crowd_tag_member (tag_id, user_id) {
        tag_id -> BigInt,
        user_id -> BigInt,
    }
}

diesel::table! {
    group_buy_activity (activity_id) {
        activity_id -> BigInt,
        name -> Text,
        product_id -> Text,
        plan -> Text,
        off_cents -> BigInt,
        threshold_cents -> BigInt,
        rate_bp -> Integer,
        n_price_cents -> BigInt,
        target_count -> Integer,
        valid_minutes -> Integer,
        take_limit -> Integer,
        status -> Text,
        start_at -> Timestamp,
        end_at -> Timestamp,
        tag_id -> Nullable<BigInt>,
        tag_limits_visibility -> Bool,
        tag_limits_joining -> Bool,
        discount_tag_only -> Bool,
        created_at -> Timestamp,
    }
}

diesel::table! {
    group_buy_team (team_id) {
        team_id -> Text,
        activity_id -> BigInt,
        product_id -> Text,
        leader_user_id -> BigInt,
        target_count -> Integer,
        lock_count -> Integer,
        paid_count -> Integer,
        status -> Text,
        opened_at -> Timestamp,
        expires_at -> Timestamp,
        completed_at -> Nullable<Timestamp>,
        failed_at -> Nullable<Timestamp>,
        lease_owner -> Nullable<Text>,
        lease_until -> Nullable<Timestamp>,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    group_buy_member (id) {
        id -> BigInt,
        team_id -> Text,
        activity_id -> BigInt,
        user_id -> BigInt,
        order_id -> Text,
        status -> Text,
        refund_type -> Nullable<Text>,
        locked_at -> Timestamp,
        paid_at -> Nullable<Timestamp>,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    group_buy_take (activity_id, user_id) {
        activity_id -> BigInt,
        user_id -> BigInt,
        held -> Integer,
    }
}

diesel::joinable!(user_session -> app_user (user_id));
diesel::joinable!(user_coupon -> coupon_template (template_id));
diesel::joinable!(user_coupon -> app_user (user_id));
diesel::joinable!(coupon_template_product -> coupon_template (template_id));
diesel::joinable!(group_buy_member -> group_buy_team (team_id));
diesel::joinable!(group_buy_team -> group_buy_activity (activity_id));

diesel::allow_tables_to_appear_in_same_query!(
    product,
    app_user,
    user_session,
    outbox,
    order_number,
    pay_order,
    pay_form,
    order_event,
    alipay_notify,
    orphan_payment,
    shipment,
    login_ticket,
    oauth_state,
    wx_access_token,
    wx_event_seen,
    gateway_call,
    admin_session,
    admin_login_failure,
    weixin_push_nonce,
    order_discount,
    coupon_template,
    coupon_template_product,
    user_coupon,
    order_status_total,
    order_total_checkpoint,
    crowd_tag,
    crowd_tag_member,
    group_buy_activity,
    group_buy_team,
    group_buy_member,
    group_buy_take,
);
