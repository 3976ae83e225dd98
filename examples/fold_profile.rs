//! Folds the bench's hot-shop mix once, for profiling with perf/callgrind:
//! `cargo run --release --example fold_profile [hot|zipf] [events, default 1000000] [live] [prefetch|N]`
//! (`live`: the watermark moves every `TICK_EVERY` events, as in the pipeline;
//! `prefetch`: each event's lookups prefetched 4 events ahead, `N`: N ahead).
#[path = "../benches/common.rs"]
mod common;

use peakguard::engine::{Engine, SourceId};

fn main() {
    let mix = std::env::args().nth(1).unwrap_or_else(|| "hot".into());
    let n: usize = std::env::args().nth(2).and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let events = if mix == "zipf" { common::zipf_mix(2 * n, 1_000_000, 3_600_000, 2) } else { common::hot_mix(n) };
    let mut engine = Engine::new(common::config());
    engine.watermark_mut().assign(SourceId(0), 0);
    let live = std::env::args().nth(3).is_some_and(|a| a == "live");
    let tick = if live { common::TICK_EVERY } else { usize::MAX };
    // `prefetch` (4th argument): each event's lookups prefetched 4 events
    // ahead, as the engine bench's `_prefetch` variant does; a number: that
    // many ahead.
    let ahead = std::env::args().nth(4).map_or(0, |a| if a == "prefetch" { 4 } else { a.parse().unwrap_or(0) });
    let start = std::time::Instant::now();
    for chunk in events.chunks(tick) {
        common::fold_prefetching(&mut engine, chunk, ahead);
        if live {
            engine.update_watermark(0);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{mix}{}: {} events in {:.3}s = {:.2} M events/s, {} shops",
        if live { " (live)" } else { "" },
        events.len(),
        secs,
        events.len() as f64 / secs / 1e6,
        engine.shop_count()
    );
}
