//! peakguard: after-sales health during peak sales.
//!
//! ```text
//!  Kafka (consumer group) ─┐                                                   ┌─> alert sinks (log, Kafka topic)
//!  embedded demo cluster ──┼─> decode ──> fold into shop, category ──> rules ──┤
//!  NDJSON replay file ─────┘   (Avro,     and platform windows         (volume └─> Prometheus /metrics
//!                               Confluent (event time, watermark,      floor,      (platform and category
//!                               framing;  dedup; activity and          Wilson      rates per window)
//!                               JSON)     cohort basis)                bound)
//! ```
//!
//! Module map:
//! * [`event`]: the domain event model.
//! * [`codec`]: Confluent wire format, Avro (schema store, decode, encode), JSON.
//! * [`engine`]: per-shop, per-category and platform event-time windows,
//!   watermarks, dedup (pure).
//! * [`rules`]: ratio, multi-window and spike rules, Wilson bound, campaign
//!   calendar, alert lifecycle (pure).
//! * [`pipeline`]: engine + rules driven by a worker (pure).
//! * [`cli`]: the command line (clap).
//! * [`config`]: the TOML configuration, rules files and their validation.
//! * [`reload`]: rules hot reload on SIGHUP or file change.
//! * [`source`]: the Kafka consumer worker and NDJSON replay.
//! * [`sink`]: alert delivery (log, Kafka alerts topic, webhook), a queue per sink.
//! * [`metrics`] and [`http`]: Prometheus registry and the HTTP endpoints.
//! * [`query`]: the read view behind the query API (alerts, top-K, shops, rules).
//! * [`report`]: the demo summary and replay timeline the CLI prints.
//! * [`generator`]: synthetic peak-sale traffic with an injected incident.
//! * [`demo`]: the one-command demo on librdkafka's in-process cluster.
//! * [`runtime`]: wires a worker, sinks and HTTP together for `run` and `demo`.
//! * [`bench`]: `peakguard bench`, the end-to-end figures (events/s, latency, memory, broker ratio).

pub mod bench;
pub mod checkpoint;
pub mod cli;
pub mod codec;
pub mod config;
pub mod demo;
pub mod engine;
pub mod event;
pub mod generator;
pub mod http;
pub mod metrics;
pub mod pipeline;
pub mod query;
pub mod reload;
pub mod report;
pub mod rules;
pub mod runtime;
pub mod sink;
pub mod source;
