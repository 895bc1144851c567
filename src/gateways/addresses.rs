//! The gateways' host addresses, looked up once a minute rather than on every call. ureq looks a
//! call's host up before it looks for a kept connection, and with a deadline on the call it does
//! so on a thread it starts for the lookup: without [`KeptAddresses`] every call, even one on a
//! kept connection, would start a thread and ask DNS.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long a host's addresses serve before they are looked up again.
const KEEP_FOR: Duration = Duration::from_secs(60);

/// More hosts than the shop's gateways ever call: past this the kept addresses start afresh.
const MAX_HOSTS: usize = 64;

/// A [`Resolver`] that keeps each host's addresses (scheme, host and port) for [`KEEP_FOR`];
/// lookups go to ureq's own resolver, and a failed one is not kept.
#[derive(Debug, Default)]
pub struct KeptAddresses {
    lookup: DefaultResolver,
    kept: Mutex<HashMap<String, (Instant, ResolvedSocketAddrs)>>,
}

impl Resolver for KeptAddresses {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let host = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or_default(),
            uri.authority().map_or("", |a| a.as_str())
        );
        let now = Instant::now();
        if let Some((looked_up, addresses)) =
            self.kept.lock().unwrap_or_else(PoisonError::into_inner).get(&host)
            && now.duration_since(*looked_up) < KEEP_FOR
        {
            return Ok(addresses.clone());
        }
        let addresses = self.lookup.resolve(uri, config, timeout)?;
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() >= MAX_HOSTS {
            kept.clear();
        }
        kept.insert(host, (now, addresses.clone()));
        Ok(addresses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(resolver: &KeptAddresses, url: &str) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let config = Config::default();
        let uri: Uri = url.parse().expect("a valid url");
        resolver.resolve(&uri, &config, NextTimeout::default())
    }

    #[test]
    fn a_hosts_addresses_are_kept_and_looked_up_again_once_stale() {
        let resolver = KeptAddresses::default();
        let first = resolve(&resolver, "http://127.0.0.1:8080/v3/pay").expect("resolved");
        assert_eq!(&first[..], &["127.0.0.1:8080".parse().unwrap()]);
        // Another path and port of the same scheme and host: the port is part of what is kept.
        resolve(&resolver, "http://127.0.0.1:8080/other").expect("resolved");
        resolve(&resolver, "http://127.0.0.1:9090/").expect("resolved");
        assert_eq!(resolver.kept.lock().unwrap().len(), 2);

        // A kept entry is what answers while it is fresh.
        let fake = resolve(&resolver, "http://127.0.0.2:1/").expect("resolved");
        resolver.kept.lock().unwrap().insert("http://127.0.0.1:8080".into(), (Instant::now(), fake.clone()));
        assert_eq!(resolve(&resolver, "http://127.0.0.1:8080/").expect("resolved"), fake);

        // A stale one is looked up again.
        let long_ago = Instant::now().checked_sub(KEEP_FOR + Duration::from_secs(1)).expect("an old instant");
        resolver.kept.lock().unwrap().insert("http://127.0.0.1:8080".into(), (long_ago, fake));
        assert_eq!(resolve(&resolver, "http://127.0.0.1:8080/").expect("resolved"), first);
    }

    #[test]
    fn a_failed_lookup_is_not_kept() {
        let resolver = KeptAddresses::default();
        assert!(resolve(&resolver, "/v3/pay").is_err());
        assert!(resolver.kept.lock().unwrap().is_empty());
    }
}
