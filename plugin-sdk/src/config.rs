//! The filter's per-route configuration, as the host hands it over.

use serde::de::DeserializeOwned;

/// The filter's table from the route configuration. The host parses the
/// TOML and passes it as JSON; `parse` turns it into the filter's own type.
#[derive(Debug, Clone)]
pub struct Config {
    value: serde_json::Value,
}

impl Config {
    /// Parse the JSON the host handed to `init`.
    pub fn from_json(json: &str) -> Result<Self, String> {
        let value = serde_json::from_str(json).map_err(|err| format!("configuration is not valid JSON: {err}"))?;
        Ok(Config { value })
    }

    /// Deserialize into the filter's configuration type. The error message
    /// names the offending key, for example `limits[1].rate: invalid type`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_path_to_error::deserialize(&self.value).map_err(|err| {
            let path = err.path().to_string();
            if path == "." {
                err.inner().to_string()
            } else {
                format!("{path}: {}", err.inner())
            }
        })
    }

    /// A top-level string value.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.value.get(key).and_then(|v| v.as_str())
    }

    /// Whether the route gave no configuration.
    pub fn is_empty(&self) -> bool {
        self.value.as_object().is_none_or(|map| map.is_empty())
    }

    /// The raw JSON value.
    pub fn value(&self) -> &serde_json::Value {
        &self.value
    }
}
