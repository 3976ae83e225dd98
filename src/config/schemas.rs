//! `[schemas]`: where writer and reader schemas come from (a local
//! directory, and optionally a Confluent Schema Registry).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchemasConfig {
    /// Directory with `ids.toml` and the `.avsc` files; the built-in copy of
    /// `schemas/` when absent. Its `<kind>.avsc` files are the reader schemas.
    pub dir: Option<PathBuf>,
    /// Confluent Schema Registry base URL: writer schemas of ids the
    /// directory does not list are fetched from it. Empty: directory only.
    pub registry_url: String,
    /// HTTP basic auth for the registry (Confluent Cloud: API key / secret).
    pub registry_username: String,
    pub registry_password: String,
    #[serde(with = "humantime_serde")]
    pub registry_timeout: Duration,
    /// Tries per schema id before its records are dead-lettered as
    /// `schema_registry_unavailable`.
    pub registry_attempts: u32,
}

impl Default for SchemasConfig {
    fn default() -> Self {
        SchemasConfig {
            dir: None,
            registry_url: String::new(),
            registry_username: String::new(),
            registry_password: String::new(),
            registry_timeout: Duration::from_secs(5),
            registry_attempts: 5,
        }
    }
}

impl SchemasConfig {
    /// The registry client's settings; `None` without a URL.
    pub fn registry(&self) -> Option<crate::codec::registry::RegistryConfig> {
        (!self.registry_url.is_empty()).then(|| crate::codec::registry::RegistryConfig {
            url: self.registry_url.clone(),
            username: self.registry_username.clone(),
            password: self.registry_password.clone(),
            timeout: self.registry_timeout,
            attempts: self.registry_attempts,
        })
    }
}

impl std::fmt::Debug for SchemasConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemasConfig")
            .field("dir", &self.dir)
            .field("registry_url", &self.registry_url)
            .field("registry_username", &self.registry_username)
            .field("registry_password", &if self.registry_password.is_empty() { "" } else { "<redacted>" })
            .field("registry_timeout", &self.registry_timeout)
            .field("registry_attempts", &self.registry_attempts)
            .finish()
    }
}
