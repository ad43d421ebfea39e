//! Header values with variables: `${client_ip}`, `${host}`, `${method}`,
//! `${path}`, `${request_id}`, `${header.<name>}`, `${context.<key>}`;
//! `$$` is a literal `$`. Parsed once at load; rendering is a walk over
//! literal and variable pieces.

use sluice_sdk::{Request, context};
use std::borrow::Cow;

/// Context key holding the request id (set by the request-id feature or by
/// any filter that wants `${request_id}` to have a value).
pub const REQUEST_ID_KEY: &str = "request_id";

#[derive(Debug, Clone, PartialEq)]
pub enum Variable {
    ClientIp,
    Host,
    Method,
    Path,
    RequestId,
    Header(String),
    Context(String),
}

impl Variable {
    fn parse(name: &str) -> Result<Self, String> {
        Ok(match name {
            "client_ip" => Variable::ClientIp,
            "host" => Variable::Host,
            "method" => Variable::Method,
            "path" => Variable::Path,
            "request_id" => Variable::RequestId,
            _ => match name.split_once('.') {
                Some(("header", h)) if !h.is_empty() => Variable::Header(h.to_ascii_lowercase()),
                Some(("context", k)) if !k.is_empty() => Variable::Context(k.to_string()),
                _ => {
                    return Err(format!(
                        "unknown variable `${{{name}}}` (use client_ip, host, method, path, request_id, \
                         header.<name> or context.<key>)"
                    ));
                }
            },
        })
    }

    /// Whether the variable reads the request, which only the request phase has.
    pub fn needs_request(&self) -> bool {
        !matches!(self, Variable::RequestId | Variable::Context(_))
    }

    fn value(&self, req: Option<&Request>) -> Option<String> {
        match (self, req) {
            (Variable::RequestId, _) => context::get(REQUEST_ID_KEY),
            (Variable::Context(key), _) => context::get(key),
            (Variable::ClientIp, Some(r)) => Some(r.client_ip()),
            (Variable::Host, Some(r)) => r.authority(),
            (Variable::Method, Some(r)) => Some(r.method()),
            (Variable::Path, Some(r)) => Some(r.path()),
            (Variable::Header(name), Some(r)) => r.header(name),
            (_, None) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Literal(String),
    Var(Variable),
}

/// A parsed header value.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            literal.push_str(&rest[..at]);
            rest = &rest[at + 1..];
            if let Some(after) = rest.strip_prefix('$') {
                literal.push('$');
                rest = after;
            } else if let Some(after) = rest.strip_prefix('{') {
                let end = after.find('}').ok_or("unclosed `${` in value")?;
                if !literal.is_empty() {
                    pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                }
                pieces.push(Piece::Var(Variable::parse(&after[..end])?));
                rest = &after[end + 1..];
            } else {
                return Err("a `$` must start `${variable}` or be doubled as `$$`".into());
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Template { pieces })
    }

    pub fn variables(&self) -> impl Iterator<Item = &Variable> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Var(v) => Some(v),
            Piece::Literal(_) => None,
        })
    }

    /// Render against the request (request phase) or without it (response
    /// phase); absent values render as empty text.
    pub fn render(&self, req: Option<&Request>) -> Cow<'_, str> {
        match self.pieces.as_slice() {
            [] => Cow::Borrowed(""),
            [Piece::Literal(text)] => Cow::Borrowed(text),
            pieces => {
                let mut out = String::new();
                for piece in pieces {
                    match piece {
                        Piece::Literal(text) => out.push_str(text),
                        Piece::Var(v) => out.push_str(&v.value(req).unwrap_or_default()),
                    }
                }
                Cow::Owned(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_literals_variables_and_escapes() {
        let t = Template::parse("a-${method}-$$-${header.X-Id}").unwrap();
        assert_eq!(
            t.pieces,
            [
                Piece::Literal("a-".into()),
                Piece::Var(Variable::Method),
                Piece::Literal("-$-".into()),
                Piece::Var(Variable::Header("x-id".into())),
            ]
        );
        assert!(Template::parse("${nope}").unwrap_err().contains("nope"));
        assert!(Template::parse("${host").is_err());
        assert!(Template::parse("5$").is_err());
    }
}
