//! A worker that takes over partitions at the end of their logs (a
//! rebalance or restart with nothing new to read) counts them as caught up,
//! on a real Kafka-protocol broker (Tansu). librdkafka has no position for a
//! partition before its first record, so the worker compares the group's
//! committed offset with the end of the log. Before, such a partition stayed
//! "catching up" until a new record arrived on it: alert notifications were
//! held and /readyz stayed unready for as long as a quiet topic (say
//! chargebacks) stayed quiet.
//!
//! `peakguard bench --workers 2` against Tansu makes that happen every time:
//! the first worker of the group reads every record and leaves before
//! Tansu's rebalance hands the second worker anything, so the second is
//! assigned every partition at its end, and must finish as caught up.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::tansu::Tansu;

#[test]
fn a_worker_assigned_partitions_at_their_end_is_caught_up() {
    let broker = Tansu::start();
    let mut child = Command::new(env!("CARGO_BIN_EXE_peakguard"))
        .args(["bench", "--shops", "2000", "--orders-per-sec", "10", "--sim-duration", "5m"])
        .args(["--broker", "--brokers", &broker.brokers, "--partitions", "4", "--workers", "2"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn peakguard bench");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("bench with 2 workers did not finish within 120 s: a worker never counted its partitions caught up");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut text = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().expect("stdout"), &mut text).expect("read stdout");
    assert!(status.success(), "bench failed: {text}");
    assert!(text.contains("2 workers") && text.contains("x one worker"), "no 2-worker figure in:\n{text}");
}
