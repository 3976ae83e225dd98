//! Folds the bench's hot-shop mix once, for profiling with perf/callgrind:
//! `cargo run --release --example fold_profile [hot|zipf] [events, default 1000000]`.
#[path = "../benches/common.rs"]
mod common;

use peakguard::engine::{Engine, SourceId};

fn main() {
    let mix = std::env::args().nth(1).unwrap_or_else(|| "hot".into());
    let n: usize = std::env::args().nth(2).and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let events = if mix == "zipf" { common::zipf_mix(2 * n, 1_000_000, 3_600_000, 2) } else { common::hot_mix(n) };
    let mut engine = Engine::new(common::config());
    engine.watermark_mut().assign(SourceId(0), 0);
    let start = std::time::Instant::now();
    for e in &events {
        std::hint::black_box(engine.fold(SourceId(0), e, 0));
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{mix}: {} events in {:.3}s = {:.2} M events/s, {} shops",
        events.len(),
        secs,
        events.len() as f64 / secs / 1e6,
        engine.shop_count()
    );
}
