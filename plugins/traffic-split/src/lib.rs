//! `traffic-split`: choose the upstream cluster per request: by weight
//! (canary releases), overridden by a header or cookie, and optionally sticky
//! so one user keeps one version. See `plugins/traffic-split/README.md`.
//!
//! ```toml
//! clusters = [{ cluster = "stable", weight = 90 }, { cluster = "canary", weight = 10 }]
//! overrides = [{ header = "x-canary", value = "always", cluster = "canary" }]
//! sticky = "header:x-user"
//! ```

mod key;

use key::{KeySource, cookie};
use serde::Deserialize;
use sluice_sdk::{Action, Config, Filter, HostError, Phases, Request, context};

/// Context key holding the chosen cluster, for later filters and the response.
const CONTEXT_KEY: &str = "traffic-split.cluster";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightedCluster {
    cluster: String,
    weight: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Override {
    header: Option<String>,
    cookie: Option<String>,
    /// The value to match; absent means "present with any value".
    value: Option<String>,
    cluster: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    clusters: Vec<WeightedCluster>,
    #[serde(default)]
    overrides: Vec<Override>,
    /// Key to hash for sticky assignment: `client_ip`, `header:<name>`,
    /// `cookie:<name>` or `context:<key>`.
    sticky: Option<String>,
    /// Response header naming the chosen cluster (off by default).
    response_header: Option<String>,
}

/// Where an override looks.
#[derive(Debug)]
enum Match {
    Header(String),
    Cookie(String),
}

#[derive(Debug)]
struct Rule {
    on: Match,
    value: Option<String>,
    cluster: String,
}

pub struct TrafficSplit {
    /// Clusters with the running total of weights up to and including each.
    buckets: Vec<(String, u64)>,
    total: u64,
    rules: Vec<Rule>,
    sticky: Option<KeySource>,
    response_header: Option<String>,
}

impl TrafficSplit {
    /// The cluster at `point` in `[0, total)`.
    fn bucket(&self, point: u64) -> &str {
        let at = self.buckets.partition_point(|(_, end)| *end <= point);
        self.buckets.get(at).or(self.buckets.last()).map_or("", |(c, _)| c)
    }

    /// Map a uniformly distributed `u64` onto `[0, total)` without modulo bias
    /// worth speaking of (multiply-high).
    fn scale(&self, x: u64) -> u64 {
        ((u128::from(x) * u128::from(self.total)) >> 64) as u64
    }

    fn choose(&self, req: &Request) -> &str {
        for rule in &self.rules {
            let found = match &rule.on {
                Match::Header(name) => req.header(name),
                Match::Cookie(name) => cookie(req, name),
            };
            let hit = match (&found, &rule.value) {
                (Some(v), Some(want)) => v == want,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if hit {
                return &rule.cluster;
            }
        }
        let sticky = self.sticky.as_ref().and_then(|source| source.read(req));
        let x = match sticky {
            Some(value) => key::stable_hash(value.as_bytes()),
            None => sluice_sdk::random::next_u64(),
        };
        self.bucket(self.scale(x))
    }
}

fn validate_header_name(name: &str, key: &str) -> Result<(), String> {
    if sluice_sdk::is_header_name(name) {
        Ok(())
    } else {
        Err(format!("{key}: `{name}` is not a valid header name"))
    }
}

impl Filter for TrafficSplit {
    fn create(config: &Config) -> Result<Self, String> {
        let settings: Settings = config.parse()?;
        if settings.clusters.is_empty() {
            return Err("clusters: give at least one cluster".into());
        }
        let mut buckets = Vec::with_capacity(settings.clusters.len());
        let mut total = 0u64;
        for (i, c) in settings.clusters.iter().enumerate() {
            if c.cluster.is_empty() {
                return Err(format!("clusters[{i}].cluster: must not be empty"));
            }
            if buckets.iter().any(|(name, _)| *name == c.cluster) {
                return Err(format!("clusters[{i}].cluster: `{}` is listed twice", c.cluster));
            }
            total += u64::from(c.weight);
            buckets.push((c.cluster.clone(), total));
        }
        if total == 0 {
            return Err("clusters: weights add up to 0".into());
        }
        let mut rules = Vec::with_capacity(settings.overrides.len());
        for (i, o) in settings.overrides.into_iter().enumerate() {
            let on = match (o.header, o.cookie) {
                (Some(h), None) => {
                    validate_header_name(&h, &format!("overrides[{i}].header"))?;
                    Match::Header(h.to_ascii_lowercase())
                }
                (None, Some(c)) if !c.is_empty() => Match::Cookie(c),
                (None, Some(_)) => return Err(format!("overrides[{i}].cookie: must not be empty")),
                _ => return Err(format!("overrides[{i}]: give exactly one of `header` or `cookie`")),
            };
            if o.cluster.is_empty() {
                return Err(format!("overrides[{i}].cluster: must not be empty"));
            }
            rules.push(Rule {
                on,
                value: o.value,
                cluster: o.cluster,
            });
        }
        let sticky = settings
            .sticky
            .as_deref()
            .map(|s| KeySource::parse(s).map_err(|e| format!("sticky: {e}")))
            .transpose()?;
        if let Some(h) = &settings.response_header {
            validate_header_name(h, "response_header")?;
        }
        Ok(TrafficSplit {
            buckets,
            total,
            rules,
            sticky,
            response_header: settings.response_header,
        })
    }

    fn phases(&self) -> Phases {
        if self.response_header.is_some() {
            Phases::ALL
        } else {
            Phases::REQUEST
        }
    }

    fn on_request_headers(&mut self, req: &mut Request) -> Action {
        let cluster = self.choose(req);
        match req.set_cluster(cluster) {
            Ok(()) => {}
            Err(HostError::UnknownCluster) => {
                sluice_sdk::error!("cluster `{cluster}` is not in the configuration");
                return Action::respond(500, "traffic-split: unknown cluster\n");
            }
            Err(e) => return Action::respond(500, format!("traffic-split: {e}\n")),
        }
        let _ = context::set(CONTEXT_KEY, cluster);
        Action::Continue
    }

    fn on_response_headers(&mut self, resp: &mut sluice_sdk::Response) -> Action {
        if let (Some(name), Some(cluster)) = (&self.response_header, context::get(CONTEXT_KEY)) {
            let _ = resp.set_header(name, cluster);
        }
        Action::Continue
    }
}

sluice_sdk::export_filter!(TrafficSplit);

#[cfg(test)]
mod tests;
