//! `[shared_state]`: the per-plugin quota every plugin gets, and overrides
//! by plugin name (`[shared_state.plugins.rate-limit]`).

use super::ConfigError;
use super::raw::{RawQuota, RawSharedState};
use super::validate::{Locator, parse_bytes};
use crate::shared_state::{Quota, Quotas};

pub(super) fn quotas(loc: &Locator<'_>, raw: Option<&RawSharedState>) -> Result<Quotas, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Quotas::default());
    };
    let default = quota(loc, &raw.quota, Quota::default(), "shared_state")?;
    let mut plugins = std::collections::BTreeMap::new();
    for (name, q) in &raw.plugins {
        plugins.insert(
            name.clone(),
            quota(loc, q, default, &format!("shared_state.plugins.{name}"))?,
        );
    }
    Ok(Quotas { default, plugins })
}

fn quota(loc: &Locator<'_>, raw: &RawQuota, base: Quota, at: &str) -> Result<Quota, ConfigError> {
    let mut q = base;
    if let Some(n) = &raw.max_entries {
        q.max_entries = match usize::try_from(*n.get_ref()) {
            Ok(n) if n > 0 => n,
            _ => return loc.at(n, format!("{at}.max_entries"), "must be at least 1"),
        };
    }
    if let Some(b) = &raw.max_bytes {
        q.max_bytes = match parse_bytes(b.get_ref()) {
            Some(n) if n > 0 => n,
            _ => {
                return loc.at(
                    b,
                    format!("{at}.max_bytes"),
                    format!("`{}` is not a size like `16MiB`", b.get_ref()),
                );
            }
        };
    }
    Ok(q)
}
