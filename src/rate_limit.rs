//! Per-client rate limits held in memory by each instance (GCRA, the `governor` crate): a
//! limit slows one client down, it never records anything that matters. Keys are client
//! addresses ([`crate::controllers::client::ClientAddr`]), an IPv6 client counted by its /64
//! (what one subscriber gets); idle keys are dropped by the background thread's
//! [`RateLimits::forget_idle`]. New login tickets also have one limit for all clients together:
//! each is a call against WeChat's daily quota.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};

use crate::config::LimitSettings;

/// One keyed limiter per door that is limited.
pub struct RateLimits {
    pub login_tickets: DefaultKeyedRateLimiter<IpAddr>,
    /// New login tickets of all clients together.
    pub all_login_tickets: DefaultDirectRateLimiter,
    pub admin_sign_ins: DefaultKeyedRateLimiter<IpAddr>,
    pub unverified_notifications: DefaultKeyedRateLimiter<IpAddr>,
    pub unverified_portal_pushes: DefaultKeyedRateLimiter<IpAddr>,
}

fn quota(per_minute: u32) -> Quota {
    // Validated as at least 1 when the settings load.
    Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN))
}

fn per_minute(count: u32) -> DefaultKeyedRateLimiter<IpAddr> {
    DefaultKeyedRateLimiter::keyed(quota(count))
}

impl RateLimits {
    pub fn new(settings: &LimitSettings) -> RateLimits {
        RateLimits {
            login_tickets: per_minute(settings.login_tickets_per_minute),
            all_login_tickets: DefaultDirectRateLimiter::direct(quota(settings.all_login_tickets_per_minute)),
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
    limiter.check_key(&subscriber(client)).is_ok()
}

/// The address a limit counts: an IPv4 address itself, an IPv6 address by its /64.
fn subscriber(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(_) => client,
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::subscriber;

    #[test]
    fn an_ipv6_client_counts_by_its_64() {
        let a = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let other = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(subscriber(a), subscriber(b));
        assert_ne!(subscriber(a), subscriber(other));
        let v4 = "203.0.113.7".parse().unwrap();
        assert_eq!(subscriber(v4), v4);
    }
}
