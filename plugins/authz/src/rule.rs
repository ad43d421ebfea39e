//! Compiled rules and how a request is matched against them. A rule matches
//! when every one of its conditions holds; a condition holds when any of
//! its values matches (or, negated, when none does).

use crate::cidr::Cidr;
use crate::facts::{Claim, Facts};
use crate::pattern::Pattern;

/// What a matching rule decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Decision {
    Allow,
    Deny,
}

impl Decision {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }
}

/// One rule, ready for the request path.
#[derive(Debug)]
pub(crate) struct Rule {
    pub name: String,
    /// All must hold, cheapest first.
    pub conditions: Vec<Condition>,
}

impl Rule {
    pub(crate) fn matches(&self, facts: &Facts<'_>) -> bool {
        self.conditions.iter().all(|c| c.holds(facts))
    }
}

/// One `when` key: a test, possibly negated (`not_*`).
#[derive(Debug)]
pub(crate) struct Condition {
    pub test: Test,
    pub negated: bool,
}

impl Condition {
    /// A negated condition holds when the test fails, including when the
    /// request lacks the attribute (no peer, no subject, no header).
    fn holds(&self, facts: &Facts<'_>) -> bool {
        self.test.matches(facts) != self.negated
    }
}

/// What a condition looks at, with its values.
#[derive(Debug)]
pub(crate) enum Test {
    /// `methods`: exact, case-sensitive.
    Methods(Vec<Box<str>>),
    /// `paths`: the path without the query.
    Paths(Vec<Pattern>),
    /// `hosts`: the authority's host, ASCII case ignored (patterns lower case).
    Hosts(Vec<Pattern>),
    /// `source_ips`: the client's IP address.
    SourceIps(Vec<Cidr>),
    /// `headers.<name>`: any value of the header in this slot.
    Header { slot: usize, patterns: Vec<Pattern> },
    /// `subjects`: the `auth.subject` context value.
    Subjects(Vec<Pattern>),
    /// `claims.<name>`: the claim's context value in this slot.
    Claim { slot: usize, patterns: Vec<Pattern> },
    /// `principals`: the peer's SPIFFE ID; `*` is any verified peer.
    Principals(Vec<Pattern>),
    /// `peer_dns_names`: any DNS SAN of the peer, ASCII case ignored.
    PeerDnsNames(Vec<Pattern>),
}

impl Test {
    /// Relative cost of the host calls behind the test, for ordering: the
    /// request line first, then headers and context, the peer record last.
    pub(crate) fn cost(&self) -> u8 {
        match self {
            Test::Methods(_) | Test::Paths(_) | Test::Hosts(_) | Test::SourceIps(_) => 0,
            Test::Header { .. } | Test::Subjects(_) | Test::Claim { .. } => 1,
            Test::Principals(_) | Test::PeerDnsNames(_) => 2,
        }
    }

    /// Whether the request has the attribute and one of the values matches.
    fn matches(&self, facts: &Facts<'_>) -> bool {
        match self {
            Test::Methods(methods) => {
                let method = facts.method();
                methods.iter().any(|m| **m == *method)
            }
            Test::Paths(patterns) => any(patterns, facts.path().as_bytes()),
            Test::Hosts(patterns) => facts
                .host()
                .is_some_and(|host| any_ignore_case(patterns, host.as_bytes())),
            Test::SourceIps(blocks) => facts
                .client_ip()
                .is_some_and(|ip| blocks.iter().any(|b| b.contains(ip))),
            Test::Header { slot, patterns } => facts.header(*slot).iter().any(|value| any(patterns, value)),
            Test::Subjects(patterns) => facts.subject().is_some_and(|s| any(patterns, s.as_bytes())),
            Test::Claim { slot, patterns } => facts.claim(*slot).is_some_and(|value| claim_matches(patterns, value)),
            Test::Principals(patterns) => facts.peer().is_some_and(|peer| {
                let id = peer.spiffe_id.as_deref();
                patterns
                    .iter()
                    .any(|p| *p == Pattern::Any || id.is_some_and(|id| p.matches(id.as_bytes())))
            }),
            Test::PeerDnsNames(patterns) => facts
                .peer()
                .is_some_and(|peer| peer.dns_names.iter().any(|n| any_ignore_case(patterns, n.as_bytes()))),
        }
    }
}

fn any(patterns: &[Pattern], value: &[u8]) -> bool {
    patterns.iter().any(|p| p.matches(value))
}

fn any_ignore_case(patterns: &[Pattern], value: &[u8]) -> bool {
    patterns.iter().any(|p| p.matches_ignore_case(value))
}

/// A text claim matches as a whole; an array claim when any element does.
/// (A string claim that contains commas is not split: its value may be the
/// user's to choose.)
fn claim_matches(patterns: &[Pattern], value: &Claim) -> bool {
    match value {
        Claim::Text(text) => any(patterns, text.as_bytes()),
        Claim::List(items) => items.iter().any(|item| any(patterns, item.as_bytes())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_match_whole_text_or_any_element() {
        let patterns = [Pattern::Exact("admin".into()), Pattern::Prefix("team-".into())];
        let text = |t: &str| Claim::Text(t.into());
        let list = |items: &[&str]| Claim::List(items.iter().map(|i| i.to_string()).collect());
        assert!(claim_matches(&patterns, &text("admin")));
        assert!(claim_matches(&patterns, &list(&["dev", "admin"])));
        assert!(claim_matches(&patterns, &list(&["dev", "team-x"])));
        assert!(!claim_matches(&patterns, &list(&["dev", "ops"])));
        assert!(!claim_matches(&patterns, &text("administrator")));
        // A string claim with a comma is one value, not a list.
        assert!(!claim_matches(&patterns, &text("bob,admin")));
        assert!(claim_matches(&[Pattern::Exact("a,b".into())], &text("a,b")));
    }
}
