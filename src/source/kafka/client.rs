//! librdkafka client settings built from `[kafka]`: the consumer's, and the
//! producers' (without the consumer-only properties they would warn about).

use rdkafka::ClientConfig;

use crate::config::Config;

/// librdkafka client settings shared by the consumer and producers.
pub fn client_config(cfg: &Config) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.kafka.brokers);
    for (k, v) in &cfg.kafka.properties {
        c.set(k, v);
    }
    c
}

/// Consumer-group settings a producer or admin client would only warn about.
const CONSUMER_ONLY: &[&str] = &[
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "group.instance.id",
    "group.protocol",
    "auto.offset.reset",
    "isolation.level",
    "fetch.min.bytes",
    "fetch.max.bytes",
    "fetch.wait.max.ms",
    "max.partition.fetch.bytes",
    "queued.min.messages",
    "queued.max.messages.kbytes",
];

/// [`client_config`] without consumer-only properties, for producers.
pub fn producer_config(cfg: &Config) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.kafka.brokers);
    for (k, v) in cfg.kafka.properties.iter().filter(|(k, _)| !CONSUMER_ONLY.contains(&k.as_str())) {
        c.set(k, v);
    }
    c
}
