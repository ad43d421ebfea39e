//! `header-rewrite`: set, append and remove request and response headers
//! from the route configuration.
//!
//! ```toml
//! [routes.filters.config.request]
//! set = { "x-env" = "prod" }      # replace every value
//! append = { "x-trace" = "gw" }   # add a value, keep existing ones
//! remove = ["x-internal"]         # drop every value
//! [routes.filters.config.response]
//! set = { "x-served-by" = "sluice" }
//! ```

use serde::Deserialize;
use sluice_sdk::{Action, Config, Filter, Headers, HostError, Phases, Request, Response};
use std::collections::BTreeMap;

/// Edits for one message.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Edits {
    #[serde(default)]
    set: BTreeMap<String, String>,
    #[serde(default)]
    append: BTreeMap<String, String>,
    #[serde(default)]
    remove: Vec<String>,
}

impl Edits {
    fn is_empty(&self) -> bool {
        self.set.is_empty() && self.append.is_empty() && self.remove.is_empty()
    }

    fn validate(&self, section: &str) -> Result<(), String> {
        let names = self.set.keys().chain(self.append.keys()).chain(&self.remove);
        for name in names {
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(format!("{section}: `{name}` is not a valid header name"));
            }
        }
        for (name, value) in self.set.iter().chain(&self.append) {
            if value.bytes().any(|b| matches!(b, 0 | b'\r' | b'\n')) {
                return Err(format!("{section}.{name}: value contains CR, LF or NUL"));
            }
        }
        Ok(())
    }

    /// Apply the edits to one message, in the order remove, set, append.
    fn apply(&self, message: &mut dyn Headers) -> Action {
        let result = (|| {
            for name in &self.remove {
                message.remove_header(name)?;
            }
            for (name, value) in &self.set {
                message.set_header(name, value.as_bytes())?;
            }
            for (name, value) in &self.append {
                message.append_header(name, value.as_bytes())?;
            }
            Ok::<(), HostError>(())
        })();
        match result {
            Ok(()) => Action::Continue,
            Err(e) => Action::respond(500, format!("header-rewrite: {e}\n")),
        }
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    request: Edits,
    #[serde(default)]
    response: Edits,
}

pub struct HeaderRewrite {
    settings: Settings,
}

impl Filter for HeaderRewrite {
    fn create(config: &Config) -> Result<Self, String> {
        let settings: Settings = config.parse()?;
        settings.request.validate("request")?;
        settings.response.validate("response")?;
        if settings.request.is_empty() && settings.response.is_empty() {
            return Err("nothing to do: give `request` or `response` edits".into());
        }
        Ok(HeaderRewrite { settings })
    }

    fn phases(&self) -> Phases {
        Phases {
            request_headers: !self.settings.request.is_empty(),
            response_headers: !self.settings.response.is_empty(),
        }
    }

    fn on_request_headers(&mut self, req: &mut Request) -> Action {
        self.settings.request.apply(req)
    }

    fn on_response_headers(&mut self, resp: &mut Response) -> Action {
        self.settings.response.apply(resp)
    }
}

sluice_sdk::export_filter!(HeaderRewrite);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::mock::MockHost;

    #[test]
    fn edits_request_and_response() {
        let host = MockHost::new().config_toml(
            r#"
            [request]
            set = { "x-env" = "prod" }
            append = { "x-hop" = "gw" }
            remove = ["x-internal"]
            [response]
            set = { "x-served-by" = "sluice" }
            "#,
        );
        let mut f: HeaderRewrite = host.create().unwrap();
        assert_eq!(f.phases(), Phases::ALL);
        host.request_header("x-internal", "secret")
            .request_header("x-hop", "edge")
            .request_header("x-env", "dev");
        assert_eq!(host.on_request_headers(&mut f), Action::Continue);
        assert_eq!(host.get_request_header("x-internal"), None);
        assert_eq!(host.get_request_header("x-env").as_deref(), Some("prod"));
        let hops: Vec<_> = host
            .get_request_headers()
            .into_iter()
            .filter(|(n, _)| n == "x-hop")
            .map(|(_, v)| String::from_utf8(v).unwrap())
            .collect();
        assert_eq!(hops, ["edge", "gw"]);
        host.on_response_headers(&mut f);
        assert_eq!(host.get_response_header("x-served-by").as_deref(), Some("sluice"));
    }

    #[test]
    fn rejects_bad_names_and_empty_config() {
        let host = MockHost::new().config_toml(r#"request = { set = { "bad name" = "x" } }"#);
        let err = host.create::<HeaderRewrite>().err().unwrap();
        assert!(err.contains("bad name"), "{err}");
        let host = MockHost::new();
        assert!(host.create::<HeaderRewrite>().is_err());
        let host = MockHost::new().config_toml(r#"request = { sett = {} }"#);
        let err = host.create::<HeaderRewrite>().err().unwrap();
        assert!(err.contains("sett"), "{err}");
    }
}
