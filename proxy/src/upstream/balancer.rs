//! Choosing an endpoint for one attempt: round robin, power of two choices
//! over requests in flight or peak-EWMA latency, or Maglev consistent
//! hashing on a request key. Only available endpoints (healthy, not
//! ejected) are chosen, unless fewer than the panic threshold are, and a
//! retry avoids the endpoints already tried when there is another.

use super::endpoint::Endpoint;
use crate::config::traffic::{HashOn, LbPolicy};
use http::HeaderMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The endpoints of a cluster at one moment, with the Maglev table built
/// for exactly this list when the cluster hashes.
#[derive(Debug, Default)]
pub struct EndpointSet {
    pub endpoints: Vec<Arc<Endpoint>>,
    maglev: Vec<u32>,
}

impl EndpointSet {
    pub fn new(endpoints: Vec<Arc<Endpoint>>, policy: &LbPolicy) -> EndpointSet {
        let maglev = match policy {
            LbPolicy::Maglev(_) => maglev_table(&endpoints),
            _ => Vec::new(),
        };
        EndpointSet { endpoints, maglev }
    }
}

/// One cluster's balancer.
#[derive(Debug)]
pub struct Balancer {
    policy: LbPolicy,
    decay: Duration,
    panic_threshold: u8,
    /// Whether endpoints can become unavailable (health checks or outlier
    /// detection configured); if not, picks skip the availability scan.
    tracks_availability: bool,
    next: AtomicUsize,
}

/// What one pick needs to know beyond the endpoint set.
pub struct Pick<'a> {
    pub now: Duration,
    /// The request's hash key, for Maglev.
    pub hash: Option<u64>,
    /// Endpoints earlier attempts of this request went to.
    pub tried: &'a [Arc<Endpoint>],
}

impl Balancer {
    pub fn new(policy: LbPolicy, decay: Duration, panic_threshold: u8, tracks_availability: bool) -> Balancer {
        Balancer {
            policy,
            decay,
            panic_threshold,
            tracks_availability,
            next: AtomicUsize::new(0),
        }
    }

    pub fn policy(&self) -> &LbPolicy {
        &self.policy
    }

    /// The endpoint for the next attempt; `None` when there is none to use.
    pub fn pick(&self, set: &EndpointSet, pick: &Pick<'_>) -> Option<Arc<Endpoint>> {
        let all = &set.endpoints;
        let n = all.len();
        let available = if self.tracks_availability {
            all.iter().filter(|e| e.available(pick.now)).count()
        } else {
            n
        };
        // Panic mode: too few endpoints left to carry the load; use them all.
        let panic = available * 100 < usize::from(self.panic_threshold) * n;
        if pick.tried.is_empty() && (available == n || panic) {
            return self.choose(set, None, pick).map(|i| all[i].clone());
        }
        let usable = |e: &Endpoint| panic || e.available(pick.now);
        let untried = |e: &Arc<Endpoint>| !pick.tried.iter().any(|t| Arc::ptr_eq(t, e));
        let mut candidates: Vec<usize> = (0..n).filter(|&i| usable(&all[i]) && untried(&all[i])).collect();
        if candidates.is_empty() {
            // Every usable endpoint was tried: a retry may go back to one.
            candidates = (0..n).filter(|&i| usable(&all[i])).collect();
        }
        if candidates.is_empty() {
            return None;
        }
        self.choose(set, Some(&candidates), pick).map(|i| all[i].clone())
    }

    /// An index among `candidates` (all endpoints when `None`).
    fn choose(&self, set: &EndpointSet, candidates: Option<&[usize]>, pick: &Pick<'_>) -> Option<usize> {
        let len = candidates.map_or(set.endpoints.len(), <[usize]>::len);
        let at = |k: usize| candidates.map_or(k, |c| c[k]);
        if len == 0 {
            return None;
        }
        match &self.policy {
            LbPolicy::RoundRobin => Some(at(self.next.fetch_add(1, Ordering::Relaxed) % len)),
            LbPolicy::LeastRequest => Some(p2c(len, at, |i| set.endpoints[i].in_flight() as f64)),
            LbPolicy::PeakEwma => Some(p2c(len, at, |i| set.endpoints[i].ewma_load(pick.now, self.decay))),
            LbPolicy::Maglev(_) => match pick.hash {
                Some(hash) if !set.maglev.is_empty() => {
                    let m = set.maglev.len();
                    let start = (hash % m as u64) as usize;
                    (0..m)
                        .map(|k| set.maglev[(start + k) % m] as usize)
                        .find(|i| candidates.is_none_or(|c| c.contains(i)))
                }
                _ => Some(at(rand::random_range(0..len))),
            },
        }
    }
}

/// Power of two choices: two distinct candidates at random, the lower load.
fn p2c(len: usize, at: impl Fn(usize) -> usize, load: impl Fn(usize) -> f64) -> usize {
    if len == 1 {
        return at(0);
    }
    let a = rand::random_range(0..len);
    let mut b = rand::random_range(0..len - 1);
    if b >= a {
        b += 1;
    }
    let (a, b) = (at(a), at(b));
    if load(b) < load(a) { b } else { a }
}

/// The request's hash key for Maglev; `None` when the header or cookie is
/// absent (the request then goes to a random endpoint).
pub fn request_hash(on: &HashOn, headers: &HeaderMap, client: SocketAddr) -> Option<u64> {
    let mut h = DefaultHasher::new();
    match on {
        HashOn::ClientIp => client.ip().hash(&mut h),
        HashOn::Header(name) => headers.get(name)?.as_bytes().hash(&mut h),
        HashOn::Cookie(name) => cookie(headers, name)?.hash(&mut h),
    }
    Some(h.finish())
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|b| *b == b'=')?;
            (pair[..eq].trim_ascii() == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
        })
}

/// Table sizes (primes); the first at least 100 × the endpoint count is used.
const MAGLEV_SIZES: [usize; 5] = [307, 1031, 4099, 16411, 65537];

/// Maglev's lookup table (Eisenbud et al., NSDI 2016): each endpoint fills
/// slots along its own permutation in turn, so every endpoint owns an
/// almost equal share and a change of one endpoint moves few keys.
fn maglev_table(endpoints: &[Arc<Endpoint>]) -> Vec<u32> {
    let n = endpoints.len();
    if n == 0 {
        return Vec::new();
    }
    let m = MAGLEV_SIZES
        .iter()
        .copied()
        .find(|&m| m >= n * 100)
        .unwrap_or(MAGLEV_SIZES[MAGLEV_SIZES.len() - 1]);
    let permutation: Vec<(usize, usize)> = endpoints
        .iter()
        .map(|e| {
            let key = e.authority.as_str();
            let offset = hash_with(key, 0) as usize % m;
            let skip = hash_with(key, 1) as usize % (m - 1) + 1;
            (offset, skip)
        })
        .collect();
    let mut next = vec![0usize; n];
    let mut table = vec![u32::MAX; m];
    let mut filled = 0;
    'fill: loop {
        for i in 0..n {
            let (offset, skip) = permutation[i];
            let mut slot = (offset + next[i] * skip) % m;
            while table[slot] != u32::MAX {
                next[i] += 1;
                slot = (offset + next[i] * skip) % m;
            }
            table[slot] = i as u32;
            next[i] += 1;
            filled += 1;
            if filled == m {
                break 'fill;
            }
        }
    }
    table
}

fn hash_with(key: &str, seed: u8) -> u64 {
    let mut h = DefaultHasher::new();
    seed.hash(&mut h);
    key.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(n: usize, policy: &LbPolicy) -> EndpointSet {
        let eps = (0..n)
            .map(|i| Arc::new(Endpoint::new(format!("10.0.0.{i}:80").parse().unwrap())))
            .collect();
        EndpointSet::new(eps, policy)
    }

    fn pick<'a>(now: Duration, hash: Option<u64>, tried: &'a [Arc<Endpoint>]) -> Pick<'a> {
        Pick { now, hash, tried }
    }

    #[test]
    fn round_robin_skips_ejected_and_tried() {
        let b = Balancer::new(LbPolicy::RoundRobin, Duration::from_secs(10), 0, true);
        let s = set(3, &LbPolicy::RoundRobin);
        s.endpoints[1].eject_until(Duration::from_secs(30));
        for _ in 0..10 {
            let e = b.pick(&s, &pick(Duration::from_secs(1), None, &[])).unwrap();
            assert!(!Arc::ptr_eq(&e, &s.endpoints[1]));
        }
        let tried = [s.endpoints[0].clone()];
        for _ in 0..10 {
            let e = b.pick(&s, &pick(Duration::from_secs(1), None, &tried)).unwrap();
            assert!(Arc::ptr_eq(&e, &s.endpoints[2]), "the only untried available one");
        }
        // Once the ejection is over the endpoint is back.
        let seen: Vec<_> = (0..3)
            .map(|_| b.pick(&s, &pick(Duration::from_secs(31), None, &[])).unwrap())
            .collect();
        assert!(seen.iter().any(|e| Arc::ptr_eq(e, &s.endpoints[1])));
    }

    #[test]
    fn retry_goes_back_to_the_only_endpoint() {
        let b = Balancer::new(LbPolicy::LeastRequest, Duration::from_secs(10), 50, true);
        let s = set(1, &LbPolicy::LeastRequest);
        let tried = [s.endpoints[0].clone()];
        assert!(b.pick(&s, &pick(Duration::ZERO, None, &tried)).is_some());
    }

    #[test]
    fn panic_threshold_uses_all_endpoints() {
        let s = set(4, &LbPolicy::RoundRobin);
        for e in &s.endpoints[..3] {
            e.set_healthy(false);
        }
        // 25% available, under a 50% threshold: all four are used.
        let panicking = Balancer::new(LbPolicy::RoundRobin, Duration::from_secs(10), 50, true);
        let picked: std::collections::HashSet<_> = (0..8)
            .map(|_| {
                panicking
                    .pick(&s, &pick(Duration::ZERO, None, &[]))
                    .unwrap()
                    .authority
                    .clone()
            })
            .collect();
        assert_eq!(picked.len(), 4);
        // With the threshold off only the healthy one is used.
        let strict = Balancer::new(LbPolicy::RoundRobin, Duration::from_secs(10), 0, true);
        for _ in 0..8 {
            let e = strict.pick(&s, &pick(Duration::ZERO, None, &[])).unwrap();
            assert!(Arc::ptr_eq(&e, &s.endpoints[3]));
        }
        s.endpoints[3].set_healthy(false);
        assert!(strict.pick(&s, &pick(Duration::ZERO, None, &[])).is_none());
    }

    #[test]
    fn least_request_prefers_the_idle_endpoint() {
        let b = Balancer::new(LbPolicy::LeastRequest, Duration::from_secs(10), 50, true);
        let s = set(2, &LbPolicy::LeastRequest);
        let _busy: Vec<_> = (0..5).map(|_| s.endpoints[0].start()).collect();
        for _ in 0..20 {
            let e = b.pick(&s, &pick(Duration::ZERO, None, &[])).unwrap();
            assert!(Arc::ptr_eq(&e, &s.endpoints[1]));
        }
    }

    #[test]
    fn peak_ewma_avoids_the_slow_endpoint() {
        let decay = Duration::from_secs(10);
        let b = Balancer::new(LbPolicy::PeakEwma, decay, 50, true);
        let s = set(3, &LbPolicy::PeakEwma);
        for (i, e) in s.endpoints.iter().enumerate() {
            let rtt = if i == 0 { 50 } else { 1 };
            e.observe_rtt(Duration::ZERO, Duration::from_millis(rtt), decay);
        }
        let slow = (0..300)
            .filter(|_| Arc::ptr_eq(&b.pick(&s, &pick(Duration::ZERO, None, &[])).unwrap(), &s.endpoints[0]))
            .count();
        assert_eq!(slow, 0, "p2c never prefers the slow one when both others are faster");
    }

    #[test]
    fn maglev_is_stable_and_balanced() {
        let policy = LbPolicy::Maglev(HashOn::ClientIp);
        let b = Balancer::new(policy.clone(), Duration::from_secs(10), 50, true);
        let s = set(3, &policy);
        assert_eq!(s.maglev.len(), 307);
        let mut share = [0usize; 3];
        for &i in &s.maglev {
            share[i as usize] += 1;
        }
        assert!(share.iter().all(|&c| (97..=108).contains(&c)), "{share:?}");
        for key in 0..50u64 {
            let first = b.pick(&s, &pick(Duration::ZERO, Some(key), &[])).unwrap();
            let again = b.pick(&s, &pick(Duration::ZERO, Some(key), &[])).unwrap();
            assert!(Arc::ptr_eq(&first, &again));
        }
        // An ejected endpoint's keys move; the others' stay.
        let before: Vec<_> = (0..50u64)
            .map(|k| b.pick(&s, &pick(Duration::ZERO, Some(k), &[])).unwrap())
            .collect();
        s.endpoints[0].eject_until(Duration::from_secs(5));
        for (k, was) in before.iter().enumerate() {
            let now = b.pick(&s, &pick(Duration::ZERO, Some(k as u64), &[])).unwrap();
            assert!(!Arc::ptr_eq(&now, &s.endpoints[0]));
            if !Arc::ptr_eq(was, &s.endpoints[0]) {
                assert!(Arc::ptr_eq(was, &now), "key {k} moved without cause");
            }
        }
    }

    #[test]
    fn hash_keys_from_header_cookie_and_ip() {
        let mut h = HeaderMap::new();
        h.insert("x-user", "alice".parse().unwrap());
        h.insert("cookie", "a=1; session=xyz; b=2".parse().unwrap());
        let ip: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let header = HashOn::Header("x-user".parse().unwrap());
        assert_eq!(
            request_hash(&header, &h, ip),
            request_hash(&header, &h, "192.0.2.9:1".parse().unwrap())
        );
        assert!(request_hash(&HashOn::Header("x-none".parse().unwrap()), &h, ip).is_none());
        assert_eq!(cookie(&h, "session"), Some(&b"xyz"[..]));
        assert!(request_hash(&HashOn::Cookie("nope".into()), &h, ip).is_none());
        assert_eq!(
            request_hash(&HashOn::ClientIp, &h, ip),
            request_hash(&HashOn::ClientIp, &h, "192.0.2.1:6000".parse().unwrap())
        );
    }
}
