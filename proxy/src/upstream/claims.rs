//! Sidecar mode: which configured cluster takes an outbound request bound
//! for `original-destination` — the one whose `destinations` list the
//! original address, else the one whose `services` list the `Host`.
//! Built with the clusters; a lookup is two hash probes.

use crate::config::DestinationClaims;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Cluster names by claimed destination and by claimed service name.
#[derive(Debug, Default)]
pub struct Claims {
    destinations: HashMap<SocketAddr, Arc<str>>,
    services: HashMap<String, Arc<str>>,
}

impl Claims {
    /// Record what `cluster` claims (config validation rules out overlaps;
    /// the first claim would win).
    pub fn add(&mut self, cluster: &Arc<str>, claims: &DestinationClaims) {
        for destination in &claims.destinations {
            self.destinations.entry(*destination).or_insert(cluster.clone());
        }
        for service in &claims.services {
            self.services.entry(service.clone()).or_insert(cluster.clone());
        }
    }

    /// The cluster that claims `destination`, or else `host` (port aside,
    /// any case).
    pub fn claimant(&self, destination: SocketAddr, host: Option<&str>) -> Option<&Arc<str>> {
        self.destinations.get(&destination).or_else(|| {
            let host = crate::router::strip_port(host?);
            match host.bytes().any(|b| b.is_ascii_uppercase()) {
                true => self.services.get(&host.to_ascii_lowercase()),
                false => self.services.get(host),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_first_then_services() {
        let mut claims = Claims::default();
        let (reviews, db): (Arc<str>, Arc<str>) = ("reviews".into(), "db".into());
        claims.add(
            &reviews,
            &DestinationClaims {
                destinations: vec!["10.96.0.12:9080".parse().unwrap()],
                services: vec!["reviews".into(), "reviews.shop.svc".into()],
            },
        );
        claims.add(
            &db,
            &DestinationClaims {
                destinations: vec!["10.96.0.13:5432".parse().unwrap()],
                services: vec![],
            },
        );
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(claims.claimant(at("10.96.0.12:9080"), None), Some(&reviews));
        assert_eq!(claims.claimant(at("10.96.0.13:5432"), Some("reviews")), Some(&db));
        assert_eq!(
            claims.claimant(at("10.0.0.1:80"), Some("Reviews.Shop.Svc:9080")),
            Some(&reviews)
        );
        assert_eq!(claims.claimant(at("10.0.0.1:80"), Some("other")), None);
        assert_eq!(claims.claimant(at("10.0.0.1:80"), None), None);
    }
}
