//! The configuration as written in a route, and its compilation into rules:
//! every pattern, method and address block is parsed here, once, and every
//! error names the key it is about (`rules[2].when.source_ips[0]: …`).

use crate::cidr::Cidr;
use crate::facts::host_part;
use crate::pattern::Pattern;
use crate::rule::{Condition, Decision, Rule, Test};
use serde::Deserialize;
use sluice_sdk::{Config, is_header_name};
use std::collections::{BTreeMap, HashSet};

/// The longest rule name, in bytes.
const MAX_NAME_BYTES: usize = 128;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    action: Decision,
    #[serde(default)]
    when: RawWhen,
}

type List = Option<Vec<String>>;
type Map = Option<BTreeMap<String, Vec<String>>>;

/// `[rules.when]`: every key present must hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWhen {
    principals: List,
    not_principals: List,
    peer_dns_names: List,
    not_peer_dns_names: List,
    subjects: List,
    not_subjects: List,
    claims: Map,
    methods: List,
    not_methods: List,
    paths: List,
    not_paths: List,
    hosts: List,
    not_hosts: List,
    headers: Map,
    source_ips: List,
    not_source_ips: List,
}

/// The compiled configuration.
#[derive(Debug)]
pub(crate) struct Policy {
    /// DENY rules, in configuration order.
    pub deny: Vec<Rule>,
    /// ALLOW rules, in configuration order.
    pub allow: Vec<Rule>,
    /// Context keys (`auth.claim.<name>`) of the claims used, by slot.
    pub claim_keys: Vec<String>,
    /// Where `auth` keeps the same claims' elements when they are arrays
    /// (`auth.claim_list.<name>`), by the same slots.
    pub claim_list_keys: Vec<String>,
    /// Header names used (lower case), by slot.
    pub header_names: Vec<String>,
}

impl Policy {
    pub(crate) fn from_config(config: &Config) -> Result<Policy, String> {
        let raw: RawSettings = config.parse()?;
        if raw.rules.is_empty() {
            return Err(
                "rules: at least one rule is required (an authz filter without rules would allow \
                        every request; remove the filter instead)"
                    .into(),
            );
        }
        let mut policy = Policy {
            deny: Vec::new(),
            allow: Vec::new(),
            claim_keys: Vec::new(),
            claim_list_keys: Vec::new(),
            header_names: Vec::new(),
        };
        let mut names = HashSet::new();
        for (i, rule) in raw.rules.iter().enumerate() {
            let key = format!("rules[{i}]");
            check_name(&rule.name).map_err(|e| format!("{key}.name: {e}"))?;
            if !names.insert(rule.name.as_str()) {
                return Err(format!("{key}.name: duplicate rule name {:?}", rule.name));
            }
            let mut conditions = policy.conditions(&format!("{key}.when"), &rule.when)?;
            conditions.sort_by_key(|c| c.test.cost());
            let compiled = Rule {
                name: rule.name.clone(),
                conditions,
            };
            match rule.action {
                Decision::Allow => policy.allow.push(compiled),
                Decision::Deny => policy.deny.push(compiled),
            }
        }
        Ok(policy)
    }

    /// Compile one `when` table.
    fn conditions(&mut self, key: &str, when: &RawWhen) -> Result<Vec<Condition>, String> {
        let mut out = Vec::new();
        let mut add = |test: Test, negated: bool| out.push(Condition { test, negated });
        let lists: [(&str, &List, Kind, bool); 14] = [
            ("principals", &when.principals, Kind::Principal, false),
            ("not_principals", &when.not_principals, Kind::Principal, true),
            ("peer_dns_names", &when.peer_dns_names, Kind::DnsName, false),
            ("not_peer_dns_names", &when.not_peer_dns_names, Kind::DnsName, true),
            ("subjects", &when.subjects, Kind::Subject, false),
            ("not_subjects", &when.not_subjects, Kind::Subject, true),
            ("methods", &when.methods, Kind::Method, false),
            ("not_methods", &when.not_methods, Kind::Method, true),
            ("paths", &when.paths, Kind::Path, false),
            ("not_paths", &when.not_paths, Kind::Path, true),
            ("hosts", &when.hosts, Kind::Host, false),
            ("not_hosts", &when.not_hosts, Kind::Host, true),
            ("source_ips", &when.source_ips, Kind::SourceIp, false),
            ("not_source_ips", &when.not_source_ips, Kind::SourceIp, true),
        ];
        for (field, list, kind, negated) in lists {
            if let Some(values) = list {
                add(kind.compile(&format!("{key}.{field}"), values)?, negated);
            }
        }
        for (name, values) in when.claims.iter().flatten() {
            let field = format!("{key}.claims.{name}");
            if name.is_empty() || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(format!("{field}: {name:?} is not a claim name"));
            }
            if name.starts_with("auth.claim.") {
                return Err(format!(
                    "{field}: write the claim name without the `auth.claim.` prefix (the filter adds it)"
                ));
            }
            let slot = slot(&mut self.claim_keys, format!("auth.claim.{name}"));
            if slot == self.claim_list_keys.len() {
                self.claim_list_keys.push(format!("auth.claim_list.{name}"));
            }
            let patterns = patterns(&field, values, Ok)?;
            add(Test::Claim { slot, patterns }, false);
        }
        for (name, values) in when.headers.iter().flatten() {
            let field = format!("{key}.headers.{name}");
            if !is_header_name(name) {
                return Err(format!("{field}: {name:?} is not a valid header name"));
            }
            let lower = name.to_ascii_lowercase();
            if lower == "host" {
                return Err(format!("{field}: match the host with `hosts`"));
            }
            let slot = slot(&mut self.header_names, lower);
            let patterns = patterns(&field, values, Ok)?;
            add(Test::Header { slot, patterns }, false);
        }
        Ok(out)
    }
}

/// The slot of `key` in `slots`, added if new.
fn slot(slots: &mut Vec<String>, key: String) -> usize {
    match slots.iter().position(|k| *k == key) {
        Some(i) => i,
        None => {
            slots.push(key);
            slots.len() - 1
        }
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(format!("{name:?} must be 1 to {MAX_NAME_BYTES} bytes long"));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("{name:?} contains a control character"));
    }
    Ok(())
}

/// How the values of a list key are read and checked.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Principal,
    DnsName,
    Subject,
    Method,
    Path,
    Host,
    SourceIp,
}

impl Kind {
    fn compile(self, key: &str, values: &[String]) -> Result<Test, String> {
        Ok(match self {
            Kind::Principal => Test::Principals(patterns(key, values, principal)?),
            Kind::DnsName => Test::PeerDnsNames(patterns(key, values, |p| Ok(p.to_ascii_lowercase()))?),
            Kind::Subject => Test::Subjects(patterns(key, values, Ok)?),
            Kind::Path => Test::Paths(patterns(key, values, path)?),
            Kind::Host => Test::Hosts(patterns(key, values, host)?),
            Kind::Method => Test::Methods(each(key, values, method)?),
            Kind::SourceIp => Test::SourceIps(each(key, values, Cidr::parse)?),
        })
    }
}

/// Parse every value of a list with `parse`; errors read `key[j]: …`.
fn each<T>(key: &str, values: &[String], parse: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>, String> {
    if values.is_empty() {
        return Err(format!(
            "{key}: must not be empty (leave the key out to match any request)"
        ));
    }
    values
        .iter()
        .enumerate()
        .map(|(j, v)| parse(v).map_err(|e| format!("{key}[{j}]: {e}")))
        .collect()
}

/// Parse every value as a [`Pattern`], then check or adjust it with `check`.
fn patterns(
    key: &str,
    values: &[String],
    check: impl Fn(Pattern) -> Result<Pattern, String>,
) -> Result<Vec<Pattern>, String> {
    each(key, values, |v| Pattern::parse(v).and_then(&check))
}

/// A SPIFFE ID pattern: an exact or prefix pattern must begin with `spiffe://`.
fn principal(p: Pattern) -> Result<Pattern, String> {
    match p.head() {
        Some(head) if !head.starts_with("spiffe://") => Err(format!(
            "{head:?} is not a SPIFFE ID: write it in full (\"spiffe://{head}\"), or match DNS SANs with \
             `peer_dns_names`"
        )),
        _ => Ok(p),
    }
}

/// A path pattern: exact and prefix patterns start with `/`; no query.
fn path(p: Pattern) -> Result<Pattern, String> {
    if p.text().contains('?') {
        return Err(format!("{:?}: the query is not part of the path", p.text()));
    }
    match p.head() {
        Some(head) if !head.starts_with('/') => Err(format!("{head:?} must start with `/`")),
        _ => Ok(p),
    }
}

/// A host pattern, in lower case; a port would never match.
fn host(p: Pattern) -> Result<Pattern, String> {
    let text = p.text();
    if host_part(text) != text {
        return Err(format!("{text:?}: ports are ignored, leave the port out"));
    }
    Ok(p.to_ascii_lowercase())
}

/// A method: an upper-case token, matched exactly.
fn method(m: &str) -> Result<Box<str>, String> {
    if m == "*" {
        return Err("\"*\": methods match exactly; leave `methods` out to match any method".into());
    }
    if !is_header_name(m) {
        return Err(format!("{m:?} is not a valid HTTP method"));
    }
    if m.bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(format!(
            "{m:?}: methods are case-sensitive, write {:?}",
            m.to_ascii_uppercase()
        ));
    }
    Ok(m.into())
}
