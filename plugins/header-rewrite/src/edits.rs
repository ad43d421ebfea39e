//! Header edits for one message: remove, rename, set and append, with
//! values that may use variables (see `template`).

use crate::template::Template;
use serde::Deserialize;
use sluice_sdk::{Headers, HostError, Request};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// `[request]` or `[response]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditSettings {
    #[serde(default)]
    set: BTreeMap<String, String>,
    #[serde(default)]
    append: BTreeMap<String, String>,
    #[serde(default)]
    remove: Vec<String>,
    /// `old = "new"`: the values of `old` move to `new` (replacing it).
    #[serde(default)]
    rename: BTreeMap<String, String>,
    /// Path rewrite; request only.
    pub path: Option<crate::path::PathSettings>,
}

/// Validated edits, values parsed into templates.
#[derive(Debug, Default)]
pub struct Edits {
    remove: Vec<String>,
    rename: Vec<(String, String)>,
    set: Vec<(String, Template)>,
    append: Vec<(String, Template)>,
}

impl Edits {
    /// Validate `settings` found under `section`; `request_phase` tells
    /// whether request variables can be used.
    pub fn new(settings: &EditSettings, section: &str, request_phase: bool) -> Result<Self, String> {
        let check = |name: &str, key: String| -> Result<String, String> {
            if !sluice_sdk::is_header_name(name) {
                return Err(format!("{key}: `{name}` is not a valid header name"));
            }
            Ok(name.to_ascii_lowercase())
        };
        let template = |name: &str, value: &str, key: String| -> Result<(String, Template), String> {
            let name = check(name, key.clone())?;
            if value.bytes().any(|b| matches!(b, 0 | b'\r' | b'\n')) {
                return Err(format!("{key}: value contains CR, LF or NUL"));
            }
            let t = Template::parse(value).map_err(|e| format!("{key}: {e}"))?;
            if !request_phase && t.variables().any(|v| v.needs_request()) {
                return Err(format!(
                    "{key}: response values may use only ${{request_id}} and ${{context.<key>}}"
                ));
            }
            Ok((name, t))
        };
        let mut edits = Edits::default();
        for (i, name) in settings.remove.iter().enumerate() {
            edits.remove.push(check(name, format!("{section}.remove[{i}]"))?);
        }
        for (old, new) in &settings.rename {
            let key = format!("{section}.rename.{old}");
            edits.rename.push((check(old, key.clone())?, check(new, key)?));
        }
        for (name, value) in &settings.set {
            edits.set.push(template(name, value, format!("{section}.set.{name}"))?);
        }
        for (name, value) in &settings.append {
            edits
                .append
                .push(template(name, value, format!("{section}.append.{name}"))?);
        }
        Ok(edits)
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.append.is_empty() && self.remove.is_empty() && self.rename.is_empty()
    }

    /// Render every value first (variables see the message as it arrived at
    /// this filter), then apply remove, rename, set, append in that order.
    pub fn render(&self, req: Option<&Request>) -> Rendered<'_> {
        Rendered {
            edits: self,
            set: self.set.iter().map(|(_, t)| t.render(req)).collect(),
            append: self.append.iter().map(|(_, t)| t.render(req)).collect(),
        }
    }
}

/// Edits with their values rendered for one message.
pub struct Rendered<'a> {
    edits: &'a Edits,
    set: Vec<Cow<'a, str>>,
    append: Vec<Cow<'a, str>>,
}

impl Rendered<'_> {
    pub fn apply(&self, message: &mut dyn Headers) -> Result<(), HostError> {
        let e = self.edits;
        for name in &e.remove {
            message.remove_header(name)?;
        }
        for (old, new) in &e.rename {
            let values = message.header_all(old);
            if values.is_empty() {
                continue;
            }
            message.remove_header(old)?;
            message.remove_header(new)?;
            for v in &values {
                message.append_header(new, v)?;
            }
        }
        for ((name, _), value) in e.set.iter().zip(&self.set) {
            message.set_header(name, value.as_bytes())?;
        }
        for ((name, _), value) in e.append.iter().zip(&self.append) {
            message.append_header(name, value.as_bytes())?;
        }
        Ok(())
    }
}
