//! Refusals: the status, the `WWW-Authenticate` challenges (RFC 6750 error
//! codes for bearer tokens) and a short text body. Reasons are fixed phrases
//! or names from the configuration, never credential text.

use sluice_sdk::{Action, LocalResponse};

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Denial {
    /// Neither a bearer token nor an API key: 401 with every challenge.
    NoCredentials,
    /// A malformed `Authorization: Bearer` header: 400 `invalid_request`.
    BadRequest(&'static str),
    /// A token that is malformed, expired, forged or not for us: 401 `invalid_token`.
    InvalidToken(&'static str),
    /// An API key that matches none configured: 401 with the ApiKey challenge.
    InvalidApiKey,
    /// A valid token without a required scope or claim: 403 `insufficient_scope`.
    Forbidden(String),
    /// The host refused to record the identity or strip the credentials.
    Internal,
    /// No key could check the token because the `jwt.jwks_uri` keys have
    /// not arrived yet: 503 with `retry-after`, no challenge. The text
    /// includes the host's reason.
    Unavailable(String),
}

impl Denial {
    pub(crate) fn status(&self) -> u16 {
        match self {
            Denial::NoCredentials | Denial::InvalidToken(_) | Denial::InvalidApiKey => 401,
            Denial::BadRequest(_) => 400,
            Denial::Forbidden(_) => 403,
            Denial::Internal => 500,
            Denial::Unavailable(_) => 503,
        }
    }

    /// The reason, for the log and the body.
    pub(crate) fn reason(&self) -> &str {
        match self {
            Denial::NoCredentials => "credentials required",
            Denial::BadRequest(r) | Denial::InvalidToken(r) => r,
            Denial::InvalidApiKey => "invalid API key",
            Denial::Forbidden(r) | Denial::Unavailable(r) => r,
            Denial::Internal => "could not apply the identity",
        }
    }
}

/// The challenges of one filter instance, built once from its configuration.
pub(crate) struct Challenges {
    /// `Bearer realm="…"`, when `jwt` is configured.
    bearer: Option<String>,
    /// `ApiKey realm="…", header="…"`, when `api_keys` is configured.
    api_key: Option<String>,
    /// The required scopes, space separated, for `insufficient_scope`.
    scope: Option<String>,
}

impl Challenges {
    /// `realm`, `api_key` (header and query parameter) and `scopes` have been
    /// checked to need no escaping inside a quoted-string.
    pub(crate) fn new(realm: &str, jwt: bool, api_key: Option<(&str, Option<&str>)>, scopes: &[String]) -> Self {
        Challenges {
            bearer: jwt.then(|| format!("Bearer realm=\"{realm}\"")),
            api_key: api_key.map(|(header, query)| {
                let mut c = format!("ApiKey realm=\"{realm}\", header=\"{header}\"");
                if let Some(q) = query {
                    c.push_str(&format!(", query=\"{q}\""));
                }
                c
            }),
            scope: (!scopes.is_empty()).then(|| scopes.join(" ")),
        }
    }

    /// The response for a refusal.
    pub(crate) fn respond(&self, denial: &Denial) -> Action {
        let mut challenges = Vec::new();
        let bearer = self.bearer.as_deref().unwrap_or("Bearer");
        let (prefix, code) = match denial.status() {
            400 => ("bad request", "invalid_request"),
            403 => ("forbidden", "insufficient_scope"),
            500 => ("internal error", ""),
            503 => ("auth", ""),
            _ => ("unauthorized", "invalid_token"),
        };
        match denial {
            Denial::NoCredentials => {
                // RFC 6750 §3.1: no error code when the request had no credentials.
                challenges.extend(self.bearer.clone());
                challenges.extend(self.api_key.clone());
            }
            Denial::InvalidApiKey => challenges.extend(self.api_key.clone()),
            Denial::BadRequest(reason) | Denial::InvalidToken(reason) => {
                challenges.push(format!("{bearer}, error=\"{code}\", error_description=\"{reason}\""));
            }
            Denial::Forbidden(_) => {
                let mut c = format!("{bearer}, error=\"{code}\"");
                if let Some(scope) = &self.scope {
                    c.push_str(&format!(", scope=\"{scope}\""));
                }
                challenges.push(c);
            }
            Denial::Internal | Denial::Unavailable(_) => {}
        }
        let mut response = LocalResponse::new(denial.status())
            .header("content-type", "text/plain; charset=utf-8")
            .header("cache-control", "no-store");
        if let Denial::Unavailable(_) = denial {
            response = response.header("retry-after", "1");
        }
        for challenge in challenges {
            response = response.header("www-authenticate", challenge);
        }
        Action::Respond(response.body(format!("{prefix}: {}\n", denial.reason())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(action: Action) -> (u16, Vec<String>, String) {
        let Action::Respond(r) = action else {
            panic!("expected a response")
        };
        let challenges = r
            .headers
            .iter()
            .filter(|(n, _)| n == "www-authenticate")
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect();
        (r.status, challenges, String::from_utf8_lossy(&r.body).into_owned())
    }

    #[test]
    fn formats_each_refusal() {
        let c = Challenges::new(
            "sluice",
            true,
            Some(("x-api-key", None)),
            &["a:read".into(), "b".into()],
        );
        let (status, ch, body) = parts(c.respond(&Denial::NoCredentials));
        assert_eq!(status, 401);
        assert_eq!(
            ch,
            [
                "Bearer realm=\"sluice\"",
                "ApiKey realm=\"sluice\", header=\"x-api-key\""
            ]
        );
        assert_eq!(body, "unauthorized: credentials required\n");

        let (status, ch, body) = parts(c.respond(&Denial::InvalidToken("token expired")));
        assert_eq!(status, 401);
        assert_eq!(
            ch,
            ["Bearer realm=\"sluice\", error=\"invalid_token\", error_description=\"token expired\""]
        );
        assert_eq!(body, "unauthorized: token expired\n");

        let (status, ch, _) = parts(c.respond(&Denial::BadRequest("empty bearer token")));
        assert_eq!(status, 400);
        assert!(ch[0].contains("error=\"invalid_request\""), "{ch:?}");

        let (status, ch, body) = parts(c.respond(&Denial::Forbidden("missing scope a:read".into())));
        assert_eq!(status, 403);
        assert_eq!(
            ch,
            ["Bearer realm=\"sluice\", error=\"insufficient_scope\", scope=\"a:read b\""]
        );
        assert_eq!(body, "forbidden: missing scope a:read\n");

        let (status, ch, _) = parts(c.respond(&Denial::InvalidApiKey));
        assert_eq!(status, 401);
        assert_eq!(ch, ["ApiKey realm=\"sluice\", header=\"x-api-key\""]);

        let (status, ch, _) = parts(c.respond(&Denial::Internal));
        assert_eq!((status, ch.len()), (500, 0));

        let unavailable = Denial::Unavailable("signing keys are not available yet (not fetched yet)".into());
        let (status, ch, body) = parts(c.respond(&unavailable));
        assert_eq!((status, ch.len()), (503, 0));
        assert_eq!(body, "auth: signing keys are not available yet (not fetched yet)\n");
    }

    #[test]
    fn only_configured_methods_are_challenged() {
        let c = Challenges::new("r", false, Some(("k", Some("api_key"))), &[]);
        let (_, ch, _) = parts(c.respond(&Denial::NoCredentials));
        assert_eq!(ch, ["ApiKey realm=\"r\", header=\"k\", query=\"api_key\""]);
        let c = Challenges::new("r", true, None, &[]);
        let (_, ch, _) = parts(c.respond(&Denial::NoCredentials));
        assert_eq!(ch, ["Bearer realm=\"r\""]);
        let (_, ch, _) = parts(c.respond(&Denial::Forbidden("claim tenant not accepted".into())));
        assert_eq!(ch, ["Bearer realm=\"r\", error=\"insufficient_scope\""]);
    }
}
