//! Start-up checks of the topics a worker reads: the event topics must be
//! co-partitioned (same partition count, keyed by shop), because a shop's
//! state lives with partition *i* and range assignment gives partition *i* of
//! every topic to one worker only when the counts agree. Differing counts
//! stop the start with the counts and the fix; a topic that does not exist
//! yet, or a broker that does not answer, is only a warning.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use tracing::warn;

use super::partitions::RebalanceLog;
use super::SourceError;

/// Partition counts of `topics` as the broker reports them; `None` for a
/// topic it does not know.
fn partition_counts<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topics: &[String],
    timeout: Duration,
) -> Result<Vec<(String, Option<usize>)>, rdkafka::error::KafkaError> {
    let md = consumer.fetch_metadata(None, timeout)?;
    Ok(topics
        .iter()
        .map(|t| {
            let count = md
                .topics()
                .iter()
                .find(|m| m.name() == t && m.error().is_none())
                .map(|m| m.partitions().len())
                .filter(|n| *n > 0);
            (t.clone(), count)
        })
        .collect())
}

/// Fails when the existing event topics differ in partition count.
pub(super) fn check_co_partitioned(
    consumer: &BaseConsumer<RebalanceLog>,
    topics: &[String],
    timeout: Duration,
) -> Result<(), SourceError> {
    let counts = match partition_counts(consumer, topics, timeout) {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "cannot read topic metadata; co-partitioning of kafka.topics is not checked");
            return Ok(());
        }
    };
    for (topic, count) in &counts {
        if count.is_none() {
            warn!(topic = %topic, "event topic does not exist yet; it is read once created (with the same partition count as the others)");
        }
    }
    verdict(&counts)
}

/// How many partitions the event topics have (the most workers a process
/// can give work to), or `None` when the broker does not say; fails when
/// they are not co-partitioned.
pub fn partitions(cfg: &crate::config::Config, timeout: Duration) -> Result<Option<usize>, SourceError> {
    let consumer: BaseConsumer = super::client_config(cfg)
        .create()
        .map_err(|cause| SourceError::Consumer { brokers: cfg.kafka.brokers.clone(), cause })?;
    let Ok(counts) = partition_counts(&consumer, &cfg.kafka.topics, timeout) else { return Ok(None) };
    verdict(&counts)?;
    Ok(counts.iter().filter_map(|(_, c)| *c).max())
}

/// The decision, apart from the broker: an error naming every count.
fn verdict(counts: &[(String, Option<usize>)]) -> Result<(), SourceError> {
    let known: Vec<(&str, usize)> = counts.iter().filter_map(|(t, c)| c.map(|c| (t.as_str(), c))).collect();
    let Some(&(_, first)) = known.first() else { return Ok(()) };
    if known.iter().all(|(_, c)| *c == first) {
        return Ok(());
    }
    let listed = known.iter().map(|(t, c)| format!("{t} has {c}")).collect::<Vec<_>>().join(", ");
    let most = known.iter().map(|(_, c)| *c).max().unwrap_or(first);
    Err(SourceError::NotCoPartitioned { counts: listed, most })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(v: &[(&str, Option<usize>)]) -> Vec<(String, Option<usize>)> {
        v.iter().map(|(t, c)| (t.to_string(), *c)).collect()
    }

    #[test]
    fn equal_counts_and_missing_topics_pass() {
        assert!(verdict(&counts(&[("a", Some(4)), ("b", Some(4)), ("c", None)])).is_ok());
        assert!(verdict(&counts(&[("a", None)])).is_ok());
        assert!(verdict(&[]).is_ok());
    }

    #[test]
    fn differing_counts_name_every_topic_and_the_fix() {
        let e = verdict(&counts(&[("orders", Some(4)), ("refunds", Some(2)), ("x", None)])).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("orders has 4, refunds has 2"), "{text}");
        assert!(text.contains("--partitions 4"), "{text}");
    }
}
