//! Exactly-once state across kills and rebalances: a generated stream is
//! consumed by `peakguard run` processes that are killed with SIGKILL at
//! random points and restarted (and, in the second test, by two processes in
//! one group, so partitions move between them mid-stream). At the end the
//! state in the checkpoints must equal, window by window and shop by shop,
//! the state of an engine that folded the whole stream once in-process: no
//! record lost, none counted twice (the stream has producer retries too,
//! which must count once however the kills fall).
//!
//! Each test runs on two brokers, both over real Kafka protocol on loopback:
//! librdkafka's in-process cluster (served from this test process to the
//! `peakguard` child processes, 64 partitions, a 1M-event stream) and Tansu,
//! a Kafka-compatible broker (4 partitions, so that each of two 2-worker
//! processes gets some; one record per batch: see
//! [`produce`]; 300k events: its fetches slow down as a log of one-record
//! batches grows, and at 1M its heartbeats time out). The in-process cluster
//! keeps at most 100,000 records or 5 MB per partition, and a shop's events
//! all go to one partition, so the stream's Zipf mix is flat enough that the
//! busiest shop has about 3% of them. The processes run one worker per core
//! (`kafka.workers` default), so partitions also move between the workers of
//! one process. [`all_kept`] fails the
//! test if a broker dropped records.
//!
//! The random kill points are printed; `EO_SEED=N` repeats a run,
//! `EO_EVENTS` / `EO_TANSU_EVENTS` change the stream sizes, `EO_WORKERS`
//! sets `kafka.workers` (default 0: one per core) and `EO_KEEP=1`
//! keeps the logs and checkpoints.

mod common;
#[path = "exactly_once_parts/state.rs"]
mod state;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use peakguard::codec::SchemaStore;
use peakguard::config::Config;
use peakguard::event::Event;
use peakguard::generator::{Generator, GeneratorConfig};
use rand::{Rng, SeedableRng};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

use common::tansu::Tansu;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use state::{assert_same_state, ends, from_checkpoints, reference};

/// Partitions of each event topic. The in-process cluster keeps at most
/// 100,000 records or 5 MB per partition (librdkafka's mock broker drops the
/// oldest beyond that), so it needs more partitions for the same stream:
/// with 64, the 1M-event stream puts at most about 30,000 records (3 MB) on
/// one (a shop's records all go to one partition).
const IN_PROCESS_PARTITIONS: i32 = 64;
const TANSU_PARTITIONS: i32 = 4;
const ORDERS: &str = "eo.orders";
const AFTER_SALES: &str = "eo.after-sales";

/// One record of the stream: topic index, partition, event.
type Rec = (usize, i32, Event);

/// About `n` events of a generated sale (every kind, Zipf shops, categories),
/// with a producer retry (the same event again) after every 97th.
fn stream(n: usize, partitions: i32) -> Vec<Rec> {
    let mut g = Generator::new(GeneratorConfig {
        // Zipf popularity, flatter than the generator's default so that the
        // busiest shop (about 3% of the events) fits one partition of the
        // in-process cluster at 1M events.
        shops: 20_000,
        zipf_exponent: 0.8,
        base_orders_per_sec: 150.0,
        duration_ms: 6 * 3_600_000,
        spike: None,
        ..GeneratorConfig::default()
    });
    let mut out = Vec::with_capacity(n + n / 90);
    let mut second = Vec::new();
    while out.len() < n && g.next_second(&mut second) {
        for e in second.drain(..) {
            let topic = usize::from(e.kind() != peakguard::event::EventKind::Order);
            let partition = (crc32fast::hash(e.shop_id.as_bytes()) % partitions as u32) as i32;
            let retry = out.len() % 97 == 0;
            if retry {
                out.push((topic, partition, e.clone()));
            }
            out.push((topic, partition, e));
        }
    }
    out
}

fn produce(brokers: &str, one_per_batch: bool, store: &SchemaStore, recs: &[Rec]) {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers).set("queue.buffering.max.messages", "200000");
    if one_per_batch {
        // Tansu 0.6 answers a fetch from an offset inside a record batch
        // with the *next* batch (and reports the high watermark as the last
        // batch's first offset + 1), so resuming at a checkpoint's offset
        // would skip the rest of that batch: records the broker never
        // delivers. Kafka and the in-process cluster return the whole batch
        // and the client drops what precedes the offset. peakguard counts
        // such skips in `peakguard_offset_gap_records_total` and logs them;
        // the tests fail on any. With one record per batch, Tansu's fetches
        // slow down as the log grows: at 1M records its heartbeats time out,
        // hence the smaller stream there.
        config.set("linger.ms", "0").set("batch.num.messages", "1");
    } else {
        config.set("linger.ms", "20");
    }
    let producer: BaseProducer = config.create().expect("producer");
    let topics = [ORDERS, AFTER_SALES];
    for (topic, partition, e) in recs {
        let bytes = store.encode(e).expect("encode");
        let mut record = BaseRecord::to(topics[*topic]).key(e.shop_id.as_str()).payload(&bytes).partition(*partition);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120)).expect("all records acknowledged");
}

/// How many lines of `log` contain `what`.
fn count_in(log: &Path, what: &str) -> usize {
    std::fs::read_to_string(log).map(|t| t.lines().filter(|l| l.contains(what)).count()).unwrap_or(0)
}

/// Restores of checkpoints that had read something (kills that fall before
/// any progress test nothing).
fn restores_with_progress(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .map(|t| {
            t.lines()
                .filter(|l| l.contains("state restored from checkpoints") && !l.contains(r#""offsets":"[]""#))
                .count()
        })
        .unwrap_or(0)
}

/// Waits (up to 60 s) until `log` satisfies `done`; `what` says what was
/// awaited when it fails.
fn wait_until(log: &Path, child: &mut Child, what: &str, done: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(&std::fs::read_to_string(log).unwrap_or_default()) {
        assert!(Instant::now() < deadline, "{what}: not within 60 s; see {}", log.display());
        assert!(child.try_wait().expect("wait").is_none(), "peakguard exited early; see {}", log.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Assignments in a log that gave the process at least one partition.
fn non_empty_assignments(text: &str) -> usize {
    text.lines().filter(|l| l.contains("partitions assigned") && !l.contains(r#""partitions":"[]""#)).count()
}

/// The broker delivered every offset: no run logged a gap.
fn no_offset_gaps(logs: &[&Path]) {
    for log in logs {
        let gaps = count_in(log, "offset gap");
        assert_eq!(gaps, 0, "the broker skipped offsets ({gaps} gap lines in {})", log.display());
    }
}

fn write_config(dir: &Path, brokers: &str) -> PathBuf {
    let workers: usize = std::env::var("EO_WORKERS").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let path = dir.join("peakguard.toml");
    let text = format!(
        r#"
[kafka]
brokers = "{brokers}"
group_id = "eo"
topics = ["{ORDERS}", "{AFTER_SALES}"]
workers = {workers}
alerts_topic = "eo.alerts"
dead_letter_topic = "eo.dead-letter"
[kafka.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"

[checkpoint]
dir = "checkpoints"
topic = "eo.checkpoints"
interval = "1s"

[http]
listen = "127.0.0.1:0"
"#
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// A `peakguard run` child, killed when dropped: a failing test must not
/// leave processes consuming (and loading the machine for later tests).
struct Proc(Child);

impl std::ops::Deref for Proc {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn spawn(config: &Path, log: &Path, exit_when_caught_up: bool) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_peakguard"));
    cmd.args(["--log-format", "json", "run", "--config"]).arg(config);
    if exit_when_caught_up {
        cmd.arg("--exit-when-caught-up");
    }
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
    // The run summary (stdout) goes to the log too.
    cmd.stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .env("RUST_LOG", "info,rdkafka=warn")
        .spawn()
        .map(Proc)
        .expect("spawn peakguard")
}

/// Runs one process to the end of every partition.
fn finish(config: &Path, log: &Path) {
    // Tansu may still count a SIGKILLed member when the final run joins and
    // give it every partition, leaving the final run an empty assignment
    // until some later join. Such a run is stopped and started again.
    for _attempt in 0..4 {
        let assigned_before = count_in(log, "partitions assigned");
        let mut child = spawn(config, log, true);
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut empty_since: Option<Instant> = None;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                assert!(status.success(), "final run failed ({status}); see {}", log.display());
                return;
            }
            if Instant::now() > deadline {
                // CI removes the directory: the log's end goes in the failure.
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(60).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                panic!("final run did not catch up within 10 min; the end of {}:\n{}", log.display(), tail.join("\n"));
            }
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let last = text.lines().filter(|l| l.contains("partitions assigned")).skip(assigned_before).last();
            let empty = last.is_some_and(|l| l.contains(r#""partitions":"[]""#));
            empty_since = if empty { empty_since.or(Some(Instant::now())) } else { None };
            if empty_since.is_some_and(|t| t.elapsed() > Duration::from_secs(15)) {
                eprintln!("final run got no partitions for 15 s (a dead member still holds them); joining again");
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    panic!("final run never got partitions; see {}", log.display());
}

/// `var` from the environment, else `default`.
fn events(var: &str, default: usize) -> usize {
    std::env::var(var).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// The broker still holds every record produced (a broker that drops old
/// records would make the comparison meaningless).
fn all_kept(brokers: &str, ends: &BTreeMap<(String, i32), i64>) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).create().expect("consumer");
    for (topic, p) in ends.keys() {
        let (low, _) = c.fetch_watermarks(topic, *p, Duration::from_secs(10)).expect("watermarks");
        assert_eq!(low, 0, "{topic}/{p}: the broker dropped records before offset {low}; use more partitions");
    }
}

/// The stream is valid: nothing may have been dead-lettered.
fn no_dead_letters(brokers: &str) {
    let dlq = common::read_all(brokers, "eo.dead-letter");
    let reasons: Vec<&String> = dlq.iter().filter_map(|(_, _, h)| h.get("peakguard.error")).take(5).collect();
    assert!(dlq.is_empty(), "{} records dead-lettered, e.g. {reasons:?}", dlq.len());
}

/// The broker a test runs on; stopped on drop.
enum Broker {
    InProcess(MockCluster<'static, DefaultProducerContext>),
    Tansu(Tansu),
}

impl Broker {
    fn in_process() -> Broker {
        let cluster = MockCluster::new(1).expect("in-process cluster");
        let n = IN_PROCESS_PARTITIONS;
        for (t, p) in [(ORDERS, n), (AFTER_SALES, n), ("eo.alerts", 1), ("eo.dead-letter", 1)] {
            cluster.create_topic(t, p, 1).expect("create topic");
        }
        Broker::InProcess(cluster)
    }

    async fn tansu() -> Broker {
        let broker = Tansu::start();
        broker
            .create_topics(&[
                (ORDERS, TANSU_PARTITIONS),
                (AFTER_SALES, TANSU_PARTITIONS),
                ("eo.alerts", 1),
                ("eo.dead-letter", 1),
            ])
            .await;
        Broker::Tansu(broker)
    }

    fn partitions(&self) -> i32 {
        match self {
            Broker::InProcess(_) => IN_PROCESS_PARTITIONS,
            Broker::Tansu(_) => TANSU_PARTITIONS,
        }
    }

    fn brokers(&self) -> String {
        match self {
            Broker::InProcess(c) => c.bootstrap_servers(),
            Broker::Tansu(t) => t.brokers.clone(),
        }
    }
}

struct Setup {
    _broker: Broker,
    brokers: String,
    dir: tempfile::TempDir,
    config: PathBuf,
    cfg: Config,
    recs: Vec<Rec>,
    partitions: i32,
    rng: rand::rngs::StdRng,
}

async fn setup(broker: Broker, n: usize) -> Setup {
    let _ = tracing_subscriber::fmt().with_env_filter("warn").with_test_writer().try_init();
    let brokers = broker.brokers();
    let partitions = broker.partitions();
    let recs = stream(n, partitions);
    let store = SchemaStore::embedded();
    let started = Instant::now();
    produce(&brokers, matches!(broker, Broker::Tansu(_)), &store, &recs);
    eprintln!("produced {} records in {:.1}s", recs.len(), started.elapsed().as_secs_f64());
    all_kept(&brokers, &ends(&recs));
    let mut dir = tempfile::Builder::new().prefix("peakguard-eo").tempdir().expect("tempdir");
    if std::env::var_os("EO_KEEP").is_some() {
        dir.disable_cleanup(true);
        eprintln!("keeping {}", dir.path().display());
    }
    let config = write_config(dir.path(), &brokers);
    let cfg = Config::load(&config).expect("config loads");
    let seed = std::env::var("EO_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random::<u64>);
    eprintln!("EO_SEED={seed}");
    let rng = rand::rngs::StdRng::seed_from_u64(seed);
    Setup { _broker: broker, brokers, dir, config, cfg, recs, partitions, rng }
}

/// SIGKILL at random points, four times, then a run to the end.
fn sigkill_at_random_points(mut s: Setup) {
    let log = s.dir.path().join("peakguard.log");
    for kill in 0..4 {
        let holding = |log: &Path| non_empty_assignments(&std::fs::read_to_string(log).unwrap_or_default());
        let assigned = holding(&log);
        let mut child = spawn(&s.config, &log, false);
        // Kill while it holds partitions: a run killed before its assignment
        // (the group waits for the killed member's session to end) tests
        // nothing. Empty assignments do not count: with several workers, one
        // that gets none logs its (empty) assignment too.
        let deadline = Instant::now() + Duration::from_secs(60);
        while holding(&log) == assigned {
            assert!(Instant::now() < deadline, "run {kill} got no partitions within 60 s; see {}", log.display());
            assert!(child.try_wait().expect("wait").is_none(), "peakguard exited early; see {}", log.display());
            std::thread::sleep(Duration::from_millis(100));
        }
        let after = Duration::from_millis(s.rng.random_range(2_000..8_000));
        std::thread::sleep(after);
        assert!(child.try_wait().expect("wait").is_none(), "peakguard exited early; see {}", log.display());
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        eprintln!("kill {kill}: SIGKILL {after:?} after its assignment");
    }
    // A killed member stays in the group until its session times out (6 s);
    // the final run must not share the partitions with a ghost.
    std::thread::sleep(Duration::from_secs(8));
    finish(&s.config, &log);
    let ends = ends(&s.recs);
    let got = from_checkpoints(&s.cfg, s.dir.path(), &ends, s.partitions);
    no_dead_letters(&s.brokers);
    no_offset_gaps(&[&log]);
    let restores = restores_with_progress(&log);
    assert!(restores >= 2, "later runs restored checkpoints ({restores} restores)");
    assert_same_state(&reference(&s.cfg, &s.recs, s.partitions), &got);
}

/// A, then B joins; A stops (SIGTERM) and B takes over; B is killed; then a
/// run to the end.
fn two_processes_and_a_rebalance(mut s: Setup) {
    let (log_a, log_b) = (s.dir.path().join("a.log"), s.dir.path().join("b.log"));
    let mut a = spawn(&s.config, &log_a, false);
    // A holds partitions and reads for a while: its checkpoints have progress.
    wait_until(&log_a, &mut a, "A gets partitions", |t| non_empty_assignments(t) >= 1);
    std::thread::sleep(Duration::from_millis(s.rng.random_range(3_000..5_000)));
    // B joins: the group rebalances and partitions move from A to B, which
    // restores them from A's checkpoints. (An eager rebalance on Tansu may
    // hand B an empty assignment first: wait for partitions, not a count.)
    let mut b = spawn(&s.config, &log_b, false);
    wait_until(&log_b, &mut b, "B gets partitions", |t| non_empty_assignments(t) >= 1);
    // Past its restore (about 2 s), and reading.
    std::thread::sleep(Duration::from_millis(s.rng.random_range(3_000..6_000)));
    // A is stopped (SIGTERM: final checkpoint, leave the group): B takes
    // A's partitions over from A's final checkpoints.
    let before = restores_with_progress(&log_b);
    let status = Command::new("kill").args(["-TERM", &a.id().to_string()]).status().expect("kill -TERM");
    assert!(status.success());
    let status = a.wait().expect("A exits");
    assert!(status.success(), "A stops cleanly on SIGTERM ({status}); see {}", log_a.display());
    wait_until(&log_b, &mut b, "B restores the partitions A checkpointed on SIGTERM", |_| {
        restores_with_progress(&log_b) > before
    });
    std::thread::sleep(Duration::from_millis(s.rng.random_range(3_000..7_000)));
    b.kill().expect("SIGKILL b");
    b.wait().expect("reaped");
    std::thread::sleep(Duration::from_secs(8));
    finish(&s.config, &log_a);
    let ends = ends(&s.recs);
    let got = from_checkpoints(&s.cfg, s.dir.path(), &ends, s.partitions);
    no_dead_letters(&s.brokers);
    no_offset_gaps(&[&log_a, &log_b]);
    assert_same_state(&reference(&s.cfg, &s.recs, s.partitions), &got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_nothing_and_counts_nothing_twice_in_process_cluster() {
    let s = setup(Broker::in_process(), events("EO_EVENTS", 1_000_000)).await;
    tokio::task::block_in_place(|| sigkill_at_random_points(s));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_and_a_rebalance_mid_stream_count_exactly_once_in_process_cluster() {
    let s = setup(Broker::in_process(), events("EO_EVENTS", 1_000_000)).await;
    tokio::task::block_in_place(|| two_processes_and_a_rebalance(s));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_nothing_and_counts_nothing_twice_on_tansu() {
    let s = setup(Broker::tansu().await, events("EO_TANSU_EVENTS", 300_000)).await;
    tokio::task::block_in_place(|| sigkill_at_random_points(s));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_and_a_rebalance_mid_stream_count_exactly_once_on_tansu() {
    let s = setup(Broker::tansu().await, events("EO_TANSU_EVENTS", 300_000)).await;
    tokio::task::block_in_place(|| two_processes_and_a_rebalance(s));
}
