//! librdkafka client settings built from `[kafka]`: the consumer's, and the
//! producers' (without the consumer-only properties they would warn about).

use rdkafka::ClientConfig;

use crate::config::Config;

/// How long librdkafka waits before fetching a partition again once the
/// consumer's queue holds `queued.min.messages` (100,000 by default) records.
/// librdkafka's default is 1,000 ms; a worker drains 100,000 records in
/// well under that, and then sat idle for the rest of the second with its
/// queue empty (measured: 0.86 s of a 1.17 s read). `kafka.properties` can
/// still set it.
pub const FETCH_QUEUE_BACKOFF_MS: &str = "10";

/// How long a broker may hold a fetch that finds no new records. librdkafka
/// keeps one fetch in flight per broker, so a partition that becomes ready
/// to read while such a fetch is out (its start offset just resolved, after
/// an assignment) waits for it. At librdkafka's default of 500 ms, a worker
/// catching up sometimes sat half a second with nothing to read after its
/// first few thousand records, though its partitions held thousands more
/// (`peakguard bench --broker`: 3 runs of about 40; none of 30 at 100 ms,
/// and the group join 0.4 s shorter). An idle consumer then asks each
/// broker ten times a second instead of twice. `kafka.properties` can still
/// set it.
pub const FETCH_WAIT_MAX_MS: &str = "100";

/// librdkafka client settings shared by the consumers; `kafka.properties`
/// come last, so they override the defaults set here.
pub fn client_config(cfg: &Config) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.kafka.brokers);
    c.set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS);
    c.set("fetch.wait.max.ms", FETCH_WAIT_MAX_MS);
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
    "fetch.queue.backoff.ms",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumers_fetch_soon_unless_configured_otherwise() {
        let mut cfg = Config::default();
        for (key, ours) in
            [("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS), ("fetch.wait.max.ms", FETCH_WAIT_MAX_MS)]
        {
            assert_eq!(client_config(&cfg).get(key), Some(ours), "{key}");
            assert_eq!(producer_config(&cfg).get(key), None, "{key}");
            cfg.kafka.properties.insert(key.into(), "250".into());
            assert_eq!(client_config(&cfg).get(key), Some("250"), "{key}");
            assert_eq!(producer_config(&cfg).get(key), None, "{key}");
        }
    }
}
