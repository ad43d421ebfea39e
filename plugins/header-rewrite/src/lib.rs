//! `header-rewrite`: edit request and response headers (set, append, remove,
//! rename, with variables in values), rewrite the request path, and give each
//! request an id. Full reference: `plugins/header-rewrite/README.md`.
//!
//! ```toml
//! [request]
//! set = { "x-client" = "${client_ip}" }
//! rename = { "x-old" = "x-new" }
//! path = { strip_prefix = "/api" }
//! [response]
//! set = { "x-served-by" = "sluice" }
//! [request_id]                      # generate x-request-id when absent, echo it
//! ```

mod edits;
mod path;
mod template;

use edits::{EditSettings, Edits};
use path::PathRewrite;
use serde::Deserialize;
use sluice_sdk::{Action, Config, Filter, HostError, Phases, Request, Response, context};
use template::REQUEST_ID_KEY;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestIdSettings {
    /// Header carrying the id.
    #[serde(default = "default_request_id_header")]
    header: String,
    /// Copy the id onto the response.
    #[serde(default = "yes")]
    echo: bool,
}

fn default_request_id_header() -> String {
    "x-request-id".into()
}

fn yes() -> bool {
    true
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    request: EditSettings,
    #[serde(default)]
    response: EditSettings,
    request_id: Option<RequestIdSettings>,
}

/// Longest incoming request id kept as it is; longer or odd ones are replaced.
const MAX_REQUEST_ID: usize = 128;

pub struct HeaderRewrite {
    request: Edits,
    path: Option<PathRewrite>,
    response: Edits,
    request_id: Option<RequestIdSettings>,
}

impl HeaderRewrite {
    fn request_phase(&self, req: &mut Request) -> Result<(), HostError> {
        if let Some(rid) = &self.request_id {
            let kept = req
                .header(&rid.header)
                .filter(|v| !v.is_empty() && v.len() <= MAX_REQUEST_ID && v.bytes().all(|b| b.is_ascii_graphic()));
            let id = match kept {
                Some(id) => id,
                None => {
                    let id = uuid_v4();
                    req.set_header(&rid.header, &id)?;
                    id
                }
            };
            context::set(REQUEST_ID_KEY, &id)?;
        }
        let rendered = self.request.render(Some(req));
        if let Some(rule) = &self.path
            && let Some(new_path) = rule.apply(&req.path())
        {
            req.set_path(&new_path)?;
        }
        rendered.apply(req)
    }

    fn response_phase(&self, resp: &mut Response) -> Result<(), HostError> {
        if let Some(rid) = self.request_id.as_ref().filter(|r| r.echo)
            && let Some(id) = context::get(REQUEST_ID_KEY)
        {
            resp.set_header(&rid.header, id)?;
        }
        self.response.render(None).apply(resp)
    }
}

/// A random (version 4) UUID in its usual text form.
fn uuid_v4() -> String {
    let mut b = sluice_sdk::random::bytes(16);
    b.resize(16, 0);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(36);
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            id.push('-');
        }
        id.push(char::from(DIGITS[usize::from(x >> 4)]));
        id.push(char::from(DIGITS[usize::from(x & 0x0f)]));
    }
    id
}

fn failed(e: HostError) -> Action {
    sluice_sdk::error!("header-rewrite: the host refused an edit: {e}");
    Action::respond(500, format!("header-rewrite: {e}\n"))
}

impl Filter for HeaderRewrite {
    fn create(config: &Config) -> Result<Self, String> {
        let mut settings: Settings = config.parse()?;
        let request = Edits::new(&settings.request, "request", true)?;
        let response = Edits::new(&settings.response, "response", false)?;
        if settings.response.path.is_some() {
            return Err("response.path: paths can be rewritten on the request only".into());
        }
        let path = settings
            .request
            .path
            .take()
            .map(|p| PathRewrite::from_settings(p).map_err(|e| format!("request.path: {e}")))
            .transpose()?;
        if let Some(rid) = &mut settings.request_id {
            if rid.header.is_empty() || !rid.header.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(format!(
                    "request_id.header: `{}` is not a valid header name",
                    rid.header
                ));
            }
            rid.header.make_ascii_lowercase();
        }
        let filter = HeaderRewrite {
            request,
            path,
            response,
            request_id: settings.request_id,
        };
        let phases = filter.phases();
        if phases.is_empty() {
            return Err("nothing to do: give `request`, `response` or `request_id`".into());
        }
        Ok(filter)
    }

    fn phases(&self) -> Phases {
        let request = !self.request.is_empty() || self.path.is_some() || self.request_id.is_some();
        let response = !self.response.is_empty() || self.request_id.as_ref().is_some_and(|r| r.echo);
        Phases::NONE
            .with(Phases::REQUEST, request)
            .with(Phases::RESPONSE, response)
    }

    fn on_request_headers(&mut self, req: &mut Request) -> Action {
        self.request_phase(req).map_or_else(failed, |()| Action::Continue)
    }

    fn on_response_headers(&mut self, resp: &mut Response) -> Action {
        self.response_phase(resp).map_or_else(failed, |()| Action::Continue)
    }
}

sluice_sdk::export_filter!(HeaderRewrite);

#[cfg(test)]
mod tests;
