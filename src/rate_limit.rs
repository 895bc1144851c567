//! Per-client rate limits held in memory by each instance (GCRA, the `governor` crate): a
//! limit slows one client down, it never records anything that matters. Keys are client
//! addresses ([`crate::controllers::client::ClientAddr`]); idle keys are dropped by the
//! background thread's [`RateLimits::forget_idle`].

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota};

use crate::config::LimitSettings;

/// One keyed limiter per door that is limited.
pub struct RateLimits {
    pub login_tickets: DefaultKeyedRateLimiter<IpAddr>,
    pub admin_sign_ins: DefaultKeyedRateLimiter<IpAddr>,
    pub unverified_notifications: DefaultKeyedRateLimiter<IpAddr>,
    pub unverified_portal_pushes: DefaultKeyedRateLimiter<IpAddr>,
}

fn per_minute(count: u32) -> DefaultKeyedRateLimiter<IpAddr> {
    // Validated as at least 1 when the settings load.
    let count = NonZeroU32::new(count).unwrap_or(NonZeroU32::MIN);
    DefaultKeyedRateLimiter::keyed(Quota::per_minute(count))
}

impl RateLimits {
    pub fn new(settings: &LimitSettings) -> RateLimits {
        RateLimits {
            login_tickets: per_minute(settings.login_tickets_per_minute),
            admin_sign_ins: per_minute(settings.admin_sign_ins_per_minute),
            unverified_notifications: per_minute(settings.unverified_notifications_per_minute),
            unverified_portal_pushes: per_minute(settings.unverified_portal_pushes_per_minute),
        }
    }

    /// Drops the state of clients whose limits have fully recovered.
    pub fn forget_idle(&self) {
        for limiter in [
            &self.login_tickets,
            &self.admin_sign_ins,
            &self.unverified_notifications,
            &self.unverified_portal_pushes,
        ] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// Whether `client` may go on through `limiter` now (and counts it).
pub fn allow(limiter: &DefaultKeyedRateLimiter<IpAddr>, client: IpAddr) -> bool {
    limiter.check_key(&client).is_ok()
}
