//! A Confluent Schema Registry client: writer schemas by id
//! (`GET /schemas/ids/{id}`), fetched when a record names an id the local
//! schema store does not know, then cached for the life of the process
//! (Confluent ids are immutable). Transient failures (connection errors,
//! timeouts, 5xx, 429) are retried with backoff; an id the registry does not
//! have (404) is remembered for a minute so a stream of such records does not
//! hammer it. Fetched schemas are resolved against the local reader schema of
//! their kind ([`SchemaStore::writer_from_text`]), so older and newer
//! producer schemas both decode.
//!
//! Blocking: the worker calls it on its own thread, only on a cache miss.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tracing::{info, warn};

use super::avro::Writer;
use super::{DecodeError, SchemaStore};
use crate::event::Event;

/// How to reach the registry (`[schemas]` in the config).
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    pub url: String,
    pub username: String,
    pub password: String,
    pub timeout: Duration,
    pub attempts: u32,
}

/// Why a schema could not be had from the registry.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RegistryError {
    #[error("schema id {id} is not in the registry at {url}")]
    NotFound { id: u32, url: String },
    #[error("schema registry {url} failed for id {id} after {attempts} attempt(s): {cause}")]
    Unavailable { id: u32, url: String, attempts: u32, cause: String },
    #[error("schema id {id} from the registry cannot be used: {cause}")]
    Unusable { id: u32, cause: String },
}

impl RegistryError {
    /// The dead-letter reason: an id nobody knows is `unknown_schema_id`
    /// like one missing from the local store.
    pub fn reason(&self) -> &'static str {
        match self {
            RegistryError::NotFound { .. } => "unknown_schema_id",
            RegistryError::Unavailable { .. } => "schema_registry_unavailable",
            RegistryError::Unusable { .. } => "unusable_schema",
        }
    }
}

#[derive(Deserialize)]
struct SchemaById {
    schema: String,
    #[serde(rename = "schemaType", default)]
    schema_type: Option<String>,
}

enum Cached {
    Writer(Box<Writer>),
    /// Not found or unusable, until the instant given.
    Missing(RegistryError, Instant),
}

/// The client and its cache.
pub struct Registry {
    cfg: RegistryConfig,
    /// Told the result of every fetch (for a metric).
    on_fetch: Option<Box<dyn Fn(&'static str) + Send>>,
    http: reqwest::blocking::Client,
    cache: HashMap<u32, Cached>,
    /// How long a missing id is remembered.
    negative_ttl: Duration,
}

impl Registry {
    pub fn new(cfg: RegistryConfig) -> Result<Registry, String> {
        let http = reqwest::blocking::Client::builder()
            .timeout(cfg.timeout)
            .user_agent(concat!("peakguard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the schema registry HTTP client: {e}"))?;
        Ok(Registry { cfg, http, on_fetch: None, cache: HashMap::new(), negative_ttl: Duration::from_secs(60) })
    }

    /// Calls `f` with the result of every fetch from the registry:
    /// `fetched`, or the [`RegistryError::reason`] of the failure.
    pub fn on_fetch(mut self, f: impl Fn(&'static str) + Send + 'static) -> Registry {
        self.on_fetch = Some(Box::new(f));
        self
    }

    /// Decodes a body written with `schema_id`, fetching the schema first
    /// when it is not cached.
    pub fn decode(&mut self, store: &SchemaStore, schema_id: u32, body: &[u8]) -> Result<Event, DecodeError> {
        let mut event = Event::buffer();
        self.decode_into(store, schema_id, body, &mut event)?;
        Ok(event)
    }

    /// [`Registry::decode`] into `out`, reusing its strings' allocations.
    pub fn decode_into(
        &mut self,
        store: &SchemaStore,
        schema_id: u32,
        body: &[u8],
        out: &mut Event,
    ) -> Result<(), DecodeError> {
        let unknown =
            |e: RegistryError| DecodeError::Registry { schema_id, reason: e.reason(), message: e.to_string() };
        let writer = self.writer(store, schema_id).map_err(unknown)?;
        store.decode_with_into(writer, schema_id, body, out)
    }

    /// The writer schema of `id`, from the cache or the registry.
    pub fn writer(&mut self, store: &SchemaStore, id: u32) -> Result<&Writer, RegistryError> {
        let fresh = match self.cache.get(&id) {
            Some(Cached::Writer(_)) => false,
            Some(Cached::Missing(_, until)) => Instant::now() >= *until,
            None => true,
        };
        if fresh {
            let entry = match self.fetch(id) {
                Ok(text) => match store.writer_from_text(&text) {
                    Ok(w) => {
                        info!(schema_id = id, url = %self.cfg.url, "writer schema fetched from the schema registry");
                        Cached::Writer(Box::new(w))
                    }
                    Err(cause) => {
                        Cached::Missing(RegistryError::Unusable { id, cause }, Instant::now() + self.negative_ttl)
                    }
                },
                Err(e @ RegistryError::NotFound { .. }) => Cached::Missing(e, Instant::now() + self.negative_ttl),
                // Unavailable: not cached, the next record asks again.
                Err(e) => {
                    self.tell(e.reason());
                    return Err(e);
                }
            };
            self.tell(match &entry {
                Cached::Writer(_) => "fetched",
                Cached::Missing(e, _) => e.reason(),
            });
            self.cache.insert(id, entry);
        }
        match self.cache.get(&id) {
            Some(Cached::Writer(w)) => Ok(w),
            Some(Cached::Missing(e, _)) => Err(e.clone()),
            None => unreachable!("inserted above"),
        }
    }

    fn tell(&self, result: &'static str) {
        if let Some(f) = &self.on_fetch {
            f(result);
        }
    }

    fn fetch(&self, id: u32) -> Result<String, RegistryError> {
        let url = format!("{}/schemas/ids/{id}", self.cfg.url.trim_end_matches('/'));
        let mut cause = String::new();
        let mut backoff = Duration::from_millis(100);
        for attempt in 1..=self.cfg.attempts {
            let mut req = self.http.get(&url).header("Accept", "application/vnd.schemaregistry.v1+json");
            if !self.cfg.username.is_empty() {
                req = req.basic_auth(&self.cfg.username, Some(&self.cfg.password));
            }
            match req.send() {
                Ok(resp) if resp.status().is_success() => {
                    let body: SchemaById = resp
                        .json()
                        .map_err(|e| RegistryError::Unusable { id, cause: format!("unexpected response body: {e}") })?;
                    if let Some(t) = body.schema_type.filter(|t| t != "AVRO") {
                        return Err(RegistryError::Unusable { id, cause: format!("schema type {t}, not AVRO") });
                    }
                    return Ok(body.schema);
                }
                Ok(resp) if resp.status() == reqwest::StatusCode::NOT_FOUND => {
                    return Err(RegistryError::NotFound { id, url: self.cfg.url.clone() });
                }
                Ok(resp) if resp.status().is_server_error() || resp.status().as_u16() == 429 => {
                    cause = format!("HTTP {}", resp.status());
                }
                Ok(resp) => {
                    // 401/403 and other client errors will not improve by retrying.
                    return Err(RegistryError::Unavailable {
                        id,
                        url: self.cfg.url.clone(),
                        attempts: attempt,
                        cause: format!("HTTP {}", resp.status()),
                    });
                }
                Err(e) => cause = e.to_string(),
            }
            if attempt < self.cfg.attempts {
                warn!(schema_id = id, attempt, error = %cause, "schema registry request failed; retrying");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
        Err(RegistryError::Unavailable { id, url: self.cfg.url.clone(), attempts: self.cfg.attempts, cause })
    }
}
