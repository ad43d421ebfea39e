//! String patterns: `value` (exact), `prefix*`, `*suffix`, or `*` alone
//! (any value, as long as the attribute is present). Parsed once when the
//! configuration loads; matching works on bytes and never allocates.

/// One parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pattern {
    /// `*`: any value of a present attribute.
    Any,
    /// The whole value.
    Exact(Box<str>),
    /// `text*`: values starting with `text` (including `text` itself).
    Prefix(Box<str>),
    /// `*text`: values ending with `text` (including `text` itself).
    Suffix(Box<str>),
}

impl Pattern {
    /// Parse a pattern. The error describes the problem; the caller adds the
    /// configuration key.
    pub(crate) fn parse(text: &str) -> Result<Pattern, String> {
        if text == "*" {
            return Ok(Pattern::Any);
        }
        if text.is_empty() {
            return Err("empty pattern (use \"*\" for any value)".into());
        }
        let leading = text.strip_prefix('*');
        let trailing = text.strip_suffix('*');
        let (pattern, core) = match (leading, trailing) {
            (Some(core), None) => (Pattern::Suffix(core.into()), core),
            (None, Some(core)) => (Pattern::Prefix(core.into()), core),
            (None, None) => (Pattern::Exact(text.into()), text),
            (Some(_), Some(_)) => return Err(wildcard_error(text)),
        };
        if core.contains('*') {
            return Err(wildcard_error(text));
        }
        Ok(pattern)
    }

    /// The same pattern in lower case, for attributes compared without
    /// regard to ASCII case (hosts, DNS names).
    pub(crate) fn to_ascii_lowercase(&self) -> Pattern {
        let lower = |s: &str| s.to_ascii_lowercase().into_boxed_str();
        match self {
            Pattern::Any => Pattern::Any,
            Pattern::Exact(s) => Pattern::Exact(lower(s)),
            Pattern::Prefix(s) => Pattern::Prefix(lower(s)),
            Pattern::Suffix(s) => Pattern::Suffix(lower(s)),
        }
    }

    /// The literal text of an exact or prefix pattern (what a value starts
    /// with), if it has one.
    pub(crate) fn head(&self) -> Option<&str> {
        match self {
            Pattern::Exact(s) | Pattern::Prefix(s) => Some(s),
            Pattern::Any | Pattern::Suffix(_) => None,
        }
    }

    /// Every literal character of the pattern.
    pub(crate) fn text(&self) -> &str {
        match self {
            Pattern::Any => "",
            Pattern::Exact(s) | Pattern::Prefix(s) | Pattern::Suffix(s) => s,
        }
    }

    /// Whether `value` matches, byte for byte.
    pub(crate) fn matches(&self, value: &[u8]) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Exact(s) => value == s.as_bytes(),
            Pattern::Prefix(s) => value.starts_with(s.as_bytes()),
            Pattern::Suffix(s) => value.ends_with(s.as_bytes()),
        }
    }

    /// Whether `value` matches ignoring ASCII case. The pattern must be in
    /// lower case (see [`Pattern::to_ascii_lowercase`]).
    pub(crate) fn matches_ignore_case(&self, value: &[u8]) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Exact(s) => value.eq_ignore_ascii_case(s.as_bytes()),
            Pattern::Prefix(s) => value
                .get(..s.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(s.as_bytes())),
            Pattern::Suffix(s) => value
                .len()
                .checked_sub(s.len())
                .and_then(|start| value.get(start..))
                .is_some_and(|tail| tail.eq_ignore_ascii_case(s.as_bytes())),
        }
    }
}

fn wildcard_error(text: &str) -> String {
    format!("{text:?}: `*` may only be the whole pattern, its first or its last character, not both")
}

#[cfg(test)]
mod tests {
    use super::Pattern;

    fn p(text: &str) -> Pattern {
        match Pattern::parse(text) {
            Ok(p) => p,
            Err(e) => panic!("{text}: {e}"),
        }
    }

    #[test]
    fn forms() {
        assert_eq!(p("*"), Pattern::Any);
        assert_eq!(p("a"), Pattern::Exact("a".into()));
        assert_eq!(p("a*"), Pattern::Prefix("a".into()));
        assert_eq!(p("*a"), Pattern::Suffix("a".into()));
        for bad in ["", "**", "*a*", "a*b", "a**", "**a"] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn matching() {
        assert!(p("/api/*").matches(b"/api/"));
        assert!(p("/api/*").matches(b"/api/v1"));
        assert!(!p("/api/*").matches(b"/api"));
        assert!(p("*/sa/admin").matches(b"spiffe://td/ns/x/sa/admin"));
        assert!(!p("*/sa/admin").matches(b"spiffe://td/ns/x/sa/admins"));
        assert!(p("exact").matches(b"exact") && !p("exact").matches(b"exactly"));
        assert!(p("*").matches(b""));
    }

    #[test]
    fn case_insensitive_matching() {
        let lower = |t: &str| p(t).to_ascii_lowercase();
        assert!(lower("*.Example.COM").matches_ignore_case(b"API.example.com"));
        assert!(!lower("*.example.com").matches_ignore_case(b"example.com"));
        assert!(!lower("*.example.com").matches_ignore_case(b"com"));
        assert!(lower("API.*").matches_ignore_case(b"api.example.com"));
        assert!(!lower("api.example.com*").matches_ignore_case(b"api"));
        assert!(lower("Host").matches_ignore_case(b"hOST"));
    }
}
