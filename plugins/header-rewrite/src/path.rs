//! Path rewriting: strip a prefix, replace a prefix, or a regular expression
//! with capture groups. The query string is kept as it is.

use regex_lite::Regex;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixRewrite {
    from: String,
    to: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegexRewrite {
    pattern: String,
    replacement: String,
}

/// `[request.path]` as written: exactly one of the three forms.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathSettings {
    strip_prefix: Option<String>,
    replace_prefix: Option<PrefixRewrite>,
    regex: Option<RegexRewrite>,
}

/// A validated path rewrite.
#[derive(Debug)]
pub enum PathRewrite {
    Prefix { from: String, to: String },
    Regex { pattern: Regex, replacement: String },
}

impl PathRewrite {
    pub fn from_settings(s: PathSettings) -> Result<Self, String> {
        let rewrite = match (s.strip_prefix, s.replace_prefix, s.regex) {
            (Some(from), None, None) => PathRewrite::Prefix {
                from: check_prefix(from, "strip_prefix")?,
                to: String::new(),
            },
            (None, Some(p), None) => {
                if !p.to.is_empty() && !p.to.starts_with('/') {
                    return Err("replace_prefix.to: must start with `/` or be empty".into());
                }
                PathRewrite::Prefix {
                    from: check_prefix(p.from, "replace_prefix.from")?,
                    to: p.to,
                }
            }
            (None, None, Some(r)) => PathRewrite::Regex {
                pattern: Regex::new(&r.pattern).map_err(|e| format!("regex.pattern: {e}"))?,
                replacement: r.replacement,
            },
            _ => return Err("give exactly one of strip_prefix, replace_prefix or regex".into()),
        };
        Ok(rewrite)
    }

    /// The rewritten path-with-query, or `None` when the rule does not apply.
    pub fn apply(&self, path_with_query: &str) -> Option<String> {
        let (path, query) = match path_with_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_with_query, None),
        };
        let mut out = match self {
            PathRewrite::Prefix { from, to } => {
                let rest = path.strip_prefix(from.as_str())?;
                // Only on a segment boundary: `/api` does not strip `/apix`.
                if !(rest.is_empty() || rest.starts_with('/') || from.ends_with('/')) {
                    return None;
                }
                let joined = format!("{}{}", to.trim_end_matches('/'), ensure_slash(rest));
                if joined.is_empty() { "/".to_string() } else { joined }
            }
            PathRewrite::Regex { pattern, replacement } => {
                if !pattern.is_match(path) {
                    return None;
                }
                pattern.replace(path, replacement.as_str()).into_owned()
            }
        };
        if !out.starts_with('/') {
            out.insert(0, '/');
        }
        if let Some(q) = query {
            out.push('?');
            out.push_str(q);
        }
        Some(out)
    }
}

fn ensure_slash(rest: &str) -> String {
    if rest.is_empty() || rest.starts_with('/') {
        rest.to_string()
    } else {
        format!("/{rest}")
    }
}

fn check_prefix(prefix: String, key: &str) -> Result<String, String> {
    if prefix.starts_with('/') && prefix.len() > 1 {
        Ok(prefix)
    } else {
        Err(format!("{key}: must start with `/` and not be `/` alone"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(toml_text: &str) -> PathRewrite {
        PathRewrite::from_settings(toml::from_str(toml_text).unwrap()).unwrap()
    }

    #[test]
    fn prefix_forms() {
        let strip = rule(r#"strip_prefix = "/api""#);
        assert_eq!(strip.apply("/api/users?x=1").as_deref(), Some("/users?x=1"));
        assert_eq!(strip.apply("/api").as_deref(), Some("/"));
        assert_eq!(strip.apply("/apix"), None);
        assert_eq!(strip.apply("/other"), None);
        let replace = rule(r#"replace_prefix = { from = "/api/v1", to = "/v2" }"#);
        assert_eq!(replace.apply("/api/v1/items/7").as_deref(), Some("/v2/items/7"));
        let slash = rule(r#"replace_prefix = { from = "/old/", to = "/new/" }"#);
        assert_eq!(slash.apply("/old/x").as_deref(), Some("/new/x"));
    }

    #[test]
    fn regex_with_captures() {
        let r = rule(r#"regex = { pattern = '^/users/(\d+)/profile$', replacement = "/profiles/$1" }"#);
        assert_eq!(r.apply("/users/42/profile?v=2").as_deref(), Some("/profiles/42?v=2"));
        assert_eq!(r.apply("/users/abc/profile"), None);
    }

    #[test]
    fn bad_rules_are_refused() {
        for (text, key) in [
            (r#"strip_prefix = "api""#, "strip_prefix"),
            (r#"regex = { pattern = "(", replacement = "" }"#, "regex.pattern"),
            ("", "give exactly one"),
            (
                r#"strip_prefix = "/a"
                regex = { pattern = "a", replacement = "b" }"#,
                "give exactly one",
            ),
        ] {
            let err = PathRewrite::from_settings(toml::from_str(text).unwrap()).unwrap_err();
            assert!(err.starts_with(key), "{text}: {err}");
        }
    }
}
