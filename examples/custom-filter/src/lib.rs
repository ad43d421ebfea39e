//! Example custom filter: put a route into maintenance. Requests get `503`
//! with `Retry-After` and a message, except those carrying a bypass header
//! (so operators can still check the service).
//!
//! ```toml
//! [[routes.filters]]
//! plugin = "maintenance"
//! config = { retry_after_secs = 120, message = "Back soon", bypass_header = "x-maintenance-bypass" }
//! ```
//!
//! Build: `cargo build -p maintenance --target wasm32-wasip2 --release`, then
//! copy `target/wasm32-wasip2/release/maintenance.wasm` into the plugins
//! directory.

use serde::Deserialize;
use sluice_sdk::{Action, Config, Filter, LocalResponse, Phases, Request, info};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default = "default_retry")]
    retry_after_secs: u32,
    #[serde(default = "default_message")]
    message: String,
    bypass_header: Option<String>,
}

fn default_retry() -> u32 {
    300
}

fn default_message() -> String {
    "This service is under maintenance.\n".into()
}

pub struct Maintenance {
    settings: Settings,
}

impl Filter for Maintenance {
    fn create(config: &Config) -> Result<Self, String> {
        let settings: Settings = config.parse()?;
        if settings.retry_after_secs == 0 {
            return Err("retry_after_secs: must be at least 1".into());
        }
        Ok(Maintenance { settings })
    }

    fn phases(&self) -> Phases {
        Phases::REQUEST
    }

    fn on_request_headers(&mut self, req: &mut Request) -> Action {
        if let Some(h) = &self.settings.bypass_header
            && req.header(h).is_some()
        {
            info!("maintenance bypassed by {} for {}", req.client_address(), req.path());
            return Action::Continue;
        }
        Action::Respond(
            LocalResponse::new(503)
                .header("retry-after", self.settings.retry_after_secs.to_string())
                .header("content-type", "text/plain; charset=utf-8")
                .body(self.settings.message.as_bytes()),
        )
    }
}

sluice_sdk::export_filter!(Maintenance);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::mock::MockHost;

    #[test]
    fn answers_503_unless_bypassed() {
        let host = MockHost::new().config_toml(
            r#"retry_after_secs = 60
bypass_header = "x-ops""#,
        );
        let mut f: Maintenance = host.create().unwrap();
        match host.on_request_headers(&mut f) {
            Action::Respond(r) => {
                assert_eq!(r.status, 503);
                assert!(r.headers.contains(&("retry-after".into(), b"60".to_vec())));
            }
            other => panic!("expected 503, got {other:?}"),
        }
        host.start_request().request_header("x-ops", "1");
        assert_eq!(host.on_request_headers(&mut f), Action::Continue);
        assert_eq!(host.logs().len(), 1);
    }

    #[test]
    fn rejects_zero_retry() {
        let host = MockHost::new().config_toml("retry_after_secs = 0");
        assert!(
            host.create::<Maintenance>()
                .err()
                .unwrap()
                .starts_with("retry_after_secs")
        );
    }
}
