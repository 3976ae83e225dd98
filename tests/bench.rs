//! `peakguard bench`: the workload it builds, the in-process runs, and the
//! whole command against librdkafka's in-process cluster (the figures
//! themselves are machine-dependent; what is checked is that every record
//! is accounted for and every figure is reported).

use std::process::Command;
use std::time::Duration;

use peakguard::bench::{self, Workload};
use peakguard::codec::SchemaStore;
use peakguard::config::Config;
use peakguard::generator::GeneratorConfig;

fn traffic(shops: usize, minutes: i64) -> GeneratorConfig {
    GeneratorConfig { shops, duration_ms: minutes * 60_000, base_orders_per_sec: 10.0, ..GeneratorConfig::default() }
}

/// With `every_shop`, every shop is in the workload (Zipf popularity alone
/// leaves most unseen); without it, only the generator's traffic.
#[test]
fn the_workload_holds_every_shop_when_asked() {
    let store = SchemaStore::embedded();
    let all = bench::build(&Workload::Generator { traffic: traffic(5_000, 3), every_shop: true }, &store).unwrap();
    let zipf = bench::build(&Workload::Generator { traffic: traffic(5_000, 3), every_shop: false }, &store).unwrap();
    assert_eq!(all.shops, 5_000);
    assert!(zipf.shops < 5_000, "{} shops from Zipf traffic alone", zipf.shops);
    assert_eq!(all.records.len(), zipf.records.len() + 5_000, "one warm-up order per shop");
    // Every record decodes back.
    for r in &all.records {
        assert!(peakguard::codec::decode(&store, &r.bytes).is_ok());
    }
}

/// A recorded NDJSON file: every valid line becomes a record, a bad one is
/// skipped and counted.
#[test]
fn a_recorded_file_is_a_workload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sale.ndjson");
    let status = Command::new(env!("CARGO_BIN_EXE_peakguard"))
        .args(["generate", "--shops", "300", "--sim-duration", "2m", "--orders-per-sec", "5", "--output"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    let lines = std::fs::read_to_string(&path).unwrap().lines().count();
    std::fs::write(&path, format!("{}not json\n", std::fs::read_to_string(&path).unwrap())).unwrap();
    let records = bench::build(&Workload::File(path), &SchemaStore::embedded()).unwrap();
    assert_eq!((records.records.len(), records.skipped), (lines, 1));
}

/// The in-process runs fold every record, hold every shop, and record one
/// latency sample per record.
#[test]
fn in_process_runs_account_for_every_record() {
    let store = SchemaStore::embedded();
    let cfg = Config::with_defaults();
    let w = bench::build(&Workload::Generator { traffic: traffic(2_000, 5), every_shop: true }, &store).unwrap();
    let full = bench::hot::full_speed(&w.records, &store, &cfg, 500);
    assert_eq!((full.records, full.stats.folded, full.undecodable), (w.records.len() as u64, full.records, 0));
    assert_eq!(full.shops, 2_000);
    // The warm-up ends with the batch of 500 in which the 1,980th shop
    // (99% of 2,000) first appears.
    let mut seen = std::collections::HashSet::new();
    let nth = w.records.iter().position(|r| seen.insert(r.key.clone()) && seen.len() == 1_980).unwrap();
    assert_eq!(full.warm_up.0, ((nth / 500 + 1) * 500).min(w.records.len()) as u64);
    assert!(full.warm_up.1 <= full.elapsed);
    let after = full.warm_up.0 as usize;
    let schedule = bench::hot::Schedule { after, warm_rate: 100_000.0, rate: 200_000.0 };
    let paced = bench::hot::paced(&w.records, &store, &cfg, 500, schedule);
    assert_eq!(paced.fold_us.len(), w.records.len() as u64);
    assert_eq!(paced.fold_after_us.len(), (w.records.len() - after) as u64);
    // Open loop: the run cannot end before the last record has arrived.
    let last_arrival = schedule.arrival(w.records.len() - 1).as_secs_f64();
    let last = w.records.len() - 1;
    let expected = last.min(after) as f64 / 100_000.0 + last.saturating_sub(after) as f64 / 200_000.0;
    assert!((last_arrival - expected).abs() < 1e-6, "{last_arrival} s, not {expected} s");
    assert!(paced.elapsed.as_secs_f64() >= last_arrival, "{:?} < {last_arrival} s", paced.elapsed);
}

/// A paced run's records arrive at one rate through the warm-up and at
/// another after it, and `arrived` counts exactly the records whose
/// arrival time has come.
#[test]
fn a_schedule_counts_the_records_that_have_arrived() {
    let s = bench::hot::Schedule { after: 1_000, warm_rate: 1_000.0, rate: 4_000.0 };
    assert_eq!(s.arrival(0), Duration::ZERO);
    assert_eq!(s.arrival(1_000), Duration::from_secs(1));
    assert_eq!(s.arrival(5_000), Duration::from_secs(2));
    for i in [0, 1, 999, 1_000, 1_001, 4_999, 5_000] {
        let at = s.arrival(i);
        assert_eq!(s.arrived(at), i + 1, "at the arrival of record {i}");
        if i > 0 {
            assert_eq!(s.arrived(at - Duration::from_nanos(1)), i, "just before record {i}");
        }
    }
}

/// The in-process cluster keeps 100,000 records a partition: a workload that
/// may not fit is refused up front, with the way out.
#[test]
fn a_workload_too_big_for_the_in_process_cluster_is_refused() {
    let store = SchemaStore::embedded();
    let w = bench::build(&Workload::Generator { traffic: traffic(1_000, 10), every_shop: false }, &store).unwrap();
    assert!(bench::broker::fits_in_process(&w.records, 8).is_ok());
    // Each partition may hold only a few records: the busiest shop alone does not fit.
    let many: Vec<bench::Record> = (0..100_001)
        .map(|i| bench::Record {
            kind: w.records[0].kind,
            source: 0,
            key: "shop-1".into(),
            bytes: vec![i as u8].into(),
        })
        .collect();
    let err = bench::broker::fits_in_process(&many, 64).unwrap_err().to_string();
    assert!(err.contains("--brokers") && err.contains("100000"), "{err}");
}

/// A workload the estimate lets through but the in-process cluster cannot
/// hold (here its 5 MB per partition: 80 records of 100 kB on one) fails
/// with the reason once produced, instead of the raw loop waiting 10 min
/// for records the cluster dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_the_in_process_cluster_dropped_are_reported_not_waited_for() {
    let store = SchemaStore::embedded();
    let w = bench::build(&Workload::Generator { traffic: traffic(100, 1), every_shop: false }, &store).unwrap();
    let big: Vec<bench::Record> = (0..80)
        .map(|i| bench::Record {
            kind: w.records[0].kind,
            source: 0,
            key: "shop-1".into(),
            bytes: vec![i as u8; 100_000].into(),
        })
        .collect();
    assert!(bench::broker::fits_in_process(&big, 1).is_ok(), "the estimate counts records only");
    let run =
        bench::broker::run(std::sync::Arc::new(big), std::sync::Arc::new(store), Config::with_defaults(), None, 1, 1);
    let err = run.await.err().expect("refused").to_string();
    assert!(err.contains("dropped the first") && err.contains("--brokers"), "{err}");
}

/// The whole command against the in-process cluster: every record is read by
/// the raw loop, by one worker and by two, and every figure is printed.
#[test]
fn bench_command_reports_every_figure() {
    let out = Command::new(env!("CARGO_BIN_EXE_peakguard"))
        .args(["bench", "--shops", "2000", "--orders-per-sec", "10", "--sim-duration", "5m"])
        .args(["--broker", "--partitions", "4", "--workers", "2"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "bench failed: {text}\n{}", String::from_utf8_lossy(&out.stderr));
    let records: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("workload: ")?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no workload line: {text}"));
    assert!(records > 2_000);
    for line in [
        format!("({records} records in"),
        format!("{records} folded, 0 undecodable"),
        "bytes/shop".to_string(),
        "shop tables: grow as shops arrive".to_string(),
        "arrival -> fold   p50".to_string(),
        format!("produced     {records} records"),
        "raw consume".to_string(),
        format!("({records} read in"),
        format!("{records} folded, 0 alerts)"),
        "% of the raw consume rate".to_string(),
        "2 workers".to_string(),
        "x one worker".to_string(),
    ] {
        assert!(text.contains(&line), "no {line:?} in:\n{text}");
    }
}

/// Interleaving keeps every record once and each shop's records in order
/// (a shop is in one partition), but breaks event-time order across shops.
#[test]
fn interleaving_keeps_every_record_and_each_shops_order() {
    let store = SchemaStore::embedded();
    let w = bench::build(&Workload::Generator { traffic: traffic(500, 5), every_shop: false }, &store).unwrap();
    let tagged: Vec<bench::Record> = w
        .records
        .iter()
        .enumerate()
        .map(|(i, r)| bench::Record {
            kind: r.kind,
            source: 0,
            key: r.key.clone(),
            bytes: (i as u64).to_le_bytes().to_vec().into(),
        })
        .collect();
    let n = tagged.len();
    let out = bench::interleave(tagged, 8, 50);
    let index = |r: &bench::Record| u64::from_le_bytes(r.bytes[..8].try_into().unwrap());
    let mut seen: Vec<u64> = out.iter().map(index).collect();
    let out_of_order = seen.windows(2).filter(|w| w[1] < w[0]).count();
    seen.sort_unstable();
    assert_eq!(seen, (0..n as u64).collect::<Vec<_>>(), "every record exactly once");
    assert!(out_of_order > 0, "event-time order across partitions is broken");
    let mut last: std::collections::HashMap<(String, usize), u64> = Default::default();
    for r in &out {
        let key = (r.key.to_string(), r.kind as usize);
        if let Some(prev) = last.insert(key, index(r)) {
            assert!(prev < index(r), "a shop's records stay in order");
        }
    }
}

/// The workload's records sit back to back in one buffer, in the order a run
/// reads them (as in a fetched batch), and `pack` keeps every record's bytes
/// when it lays them out again in a new order.
#[test]
fn records_are_packed_back_to_back_in_read_order() {
    let store = SchemaStore::embedded();
    let w = bench::build(&Workload::Generator { traffic: traffic(100, 1), every_shop: false }, &store).unwrap();
    let adjacent = |rs: &[bench::Record]| {
        rs.windows(2).all(|p| p[0].bytes.as_ptr().wrapping_add(p[0].bytes.len()) == p[1].bytes.as_ptr())
    };
    assert!(w.records.len() > 10 && adjacent(&w.records));
    let want: Vec<Vec<u8>> = w.records.iter().rev().map(|r| r.bytes.to_vec()).collect();
    let packed = bench::pack(w.records.into_iter().rev().collect());
    assert!(adjacent(&packed));
    assert_eq!(packed.iter().map(|r| r.bytes.to_vec()).collect::<Vec<_>>(), want);
}
