//! The command line: `demo`, `run`, `replay`, `generate`, `bench`, `check`, `rules check`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::generator::GeneratorConfig;

#[derive(Parser, Debug)]
#[command(
    name = "peakguard",
    version,
    about = "After-sales health during peak sales: per-shop refund-rate alerts from Kafka"
)]
pub struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the whole system on librdkafka's in-process cluster with synthetic
    /// peak-sale traffic and an injected refund spike. No broker needed.
    Demo {
        /// Wall-clock length of the demo (e.g. 40s, 2m).
        #[arg(long, default_value = "40s", value_parser = humantime::parse_duration)]
        duration: Duration,
        #[command(flatten)]
        traffic: TrafficArgs,
        /// Partitions per topic.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(i32).range(1..))]
        partitions: i32,
        /// Address of /metrics.
        #[arg(long, default_value = "127.0.0.1:9464")]
        listen: String,
    },
    /// Consume a real Kafka cluster as configured in FILE.
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// Stop once every assigned partition has reached the end of its log
        /// (a catch-up job, or a test); the final checkpoint is written.
        #[arg(long)]
        exit_when_caught_up: bool,
    },
    /// Process a recorded event file (an Avro container file, or NDJSON: one
    /// event per line in the JSON mapping of the schemas) at full speed and
    /// print the alert timeline and a summary per rule. For tuning rules on
    /// last year's sale.
    Replay {
        #[arg(long, short)]
        input: PathBuf,
        /// Engine and rules; the defaults when absent.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Evaluate rules every this many events (and at the end).
        #[arg(long, default_value_t = 1000)]
        tick_every: usize,
    },
    /// Synthetic peak-sale traffic (with the injected spike): written as
    /// NDJSON to --output (e.g. to try `replay`), or produced as Avro to a
    /// Kafka cluster with --brokers (the peakguard.* topics), paced.
    Generate {
        #[arg(long, short, required_unless_present = "brokers", conflicts_with = "brokers")]
        output: Option<PathBuf>,
        /// bootstrap.servers of a cluster to produce to.
        #[arg(long)]
        brokers: Option<String>,
        /// With --brokers: simulated seconds per wall-clock second.
        #[arg(long, default_value_t = 60.0)]
        speed: f64,
        #[command(flatten)]
        traffic: TrafficArgs,
    },
    /// Measure the processor end to end: the whole hot path in-process
    /// (events/s, resident memory and bytes per shop, latency from arrival
    /// to fold and to alert at a fraction of the maximum rate) and, with
    /// --broker, the rate against a broker next to a raw consume loop's.
    Bench {
        /// Read this recorded file (NDJSON or Avro container) instead of
        /// generating traffic.
        #[arg(long, short)]
        input: Option<PathBuf>,
        /// Engine and rules; the defaults when absent.
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[command(flatten)]
        traffic: BenchTraffic,
        /// Records per batch (rules tick after each, as the worker does after
        /// each poll batch).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
        batch: u64,
        /// Offered load of the latency run, as a fraction of the measured
        /// maximum rate.
        #[arg(long, default_value_t = 0.8)]
        load: f64,
        /// Also run against a broker: the in-process cluster, or --brokers.
        #[arg(long)]
        broker: bool,
        /// bootstrap.servers of a real cluster for --broker (topics named
        /// peakguard-bench-* are created).
        #[arg(long, requires = "broker")]
        brokers: Option<String>,
        /// Partitions per event topic for --broker.
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(i32).range(1..))]
        partitions: i32,
        /// In-process runs read the records as one consumer of this many
        /// partitions per topic catching up on a backlog would (chunks per
        /// partition in turn, event time jumping between them); 0: in
        /// event-time order.
        #[arg(long, default_value_t = 0)]
        interleave: u64,
        /// With --broker: also read with one process of this many workers
        /// (`kafka.workers`, each its own consumer in one group) and report
        /// the scaling over one worker.
        #[arg(long, default_value_t = 1, requires = "broker", value_parser = clap::value_parser!(u64).range(1..=256))]
        workers: u64,
    },
    /// Validate a config file and print the settings in force (secrets redacted).
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Rules files: `peakguard rules check FILE`.
    Rules {
        #[command(subcommand)]
        action: RulesAction,
    },
}

#[derive(Subcommand, Debug)]
pub enum RulesAction {
    /// Validate a rules file ([[rules]] and [[phases]]) and print what it
    /// defines. Exits non-zero with the field, the value and the fix when
    /// it is not valid.
    Check {
        /// The rules file.
        file: PathBuf,
        /// The config whose windows the rules use; the default windows
        /// (5m, 1h, 24h, 30d) when absent.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

/// The synthetic traffic of `demo` and `generate`.
#[derive(Args, Debug, Clone)]
pub struct TrafficArgs {
    /// Simulated time covered (from 23:40 Beijing time on Double 11 eve).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub sim_duration: Duration,
    /// Number of shops.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub shops: u32,
    /// Orders paid per simulated second before the midnight surge.
    #[arg(long, default_value_t = 60.0)]
    pub orders_per_sec: f64,
    /// Random seed of the traffic.
    #[arg(long, default_value_t = 1111)]
    pub seed: u64,
}

impl TrafficArgs {
    pub fn generator_config(&self) -> GeneratorConfig {
        GeneratorConfig {
            shops: self.shops as usize,
            duration_ms: self.sim_duration.as_millis() as i64,
            base_orders_per_sec: self.orders_per_sec,
            seed: self.seed,
            ..GeneratorConfig::default()
        }
    }
}

/// The synthetic traffic of `bench`: the peak-sale generator, sized for 1M shops.
#[derive(Args, Debug, Clone)]
pub struct BenchTraffic {
    /// Simulated time covered (from 23:40 Beijing time on Double 11 eve).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub sim_duration: Duration,
    /// Number of shops (Zipf popularity: most see a few events).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub shops: u32,
    /// Orders paid per simulated second before the midnight surge.
    #[arg(long, default_value_t = 200.0)]
    pub orders_per_sec: f64,
    /// Random seed of the traffic.
    #[arg(long, default_value_t = 1111)]
    pub seed: u64,
    /// Only the generator's Zipf traffic: without it, every shop also pays
    /// one order in the first ten minutes, so that all --shops are held.
    #[arg(long)]
    pub zipf_only: bool,
}

impl BenchTraffic {
    pub fn generator_config(&self) -> GeneratorConfig {
        TrafficArgs {
            sim_duration: self.sim_duration,
            shops: self.shops,
            orders_per_sec: self.orders_per_sec,
            seed: self.seed,
        }
        .generator_config()
    }
}
