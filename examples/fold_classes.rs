//! Where the Zipf fold's time goes, by how busy each event's shop is:
//! `cargo run --release --example fold_classes`.
//!
//! Folds `fold/zipf_1m_shops_live`'s events (2M events, Zipf over 1M shops,
//! the watermark moving every `TICK_EVERY` events), reading the CPU's time
//! stamp counter around each fold, and sums the counts by the events its
//! shop had before: none (a new shop), 1-3 (cells held in the map entry),
//! 4-64 (a cold list on the heap), 65-1,000 (rings) and more (the hot
//! head). The counter reads add some 20-40 cycles to each fold and keep
//! folds from overlapping, so compare classes and builds, not totals with
//! the engine bench.
#[path = "../benches/common.rs"]
mod common;

#[cfg(target_arch = "x86_64")]
fn main() {
    use peakguard::engine::{Engine, SourceId};
    use std::collections::HashMap;

    const CLASSES: [&str; 5] = ["new shop", "1-3 before", "4-64 before", "65-1000 before", "over 1000 before"];
    let events = common::zipf_mix(2_000_000, 1_000_000, 3_600_000, 2);
    let mut seen: HashMap<&str, u64> = HashMap::new();
    let class: Vec<usize> = events
        .iter()
        .map(|e| {
            let before = seen.entry(e.shop_id.as_str()).or_default();
            let class = match *before {
                0 => 0,
                1..=3 => 1,
                4..=64 => 2,
                65..=1000 => 3,
                _ => 4,
            };
            *before += 1;
            class
        })
        .collect();
    drop(seen);

    let mut engine = Engine::new(common::config());
    engine.watermark_mut().assign(SourceId(0), 0);
    let (mut cycles, mut counts) = ([0u64; 5], [0u64; 5]);
    for (chunk, classes) in events.chunks(common::TICK_EVERY).zip(class.chunks(common::TICK_EVERY)) {
        for (e, &k) in chunk.iter().zip(classes) {
            // SAFETY: `_rdtsc` reads the time stamp counter, which every
            // x86_64 CPU has; it touches no memory.
            let start = unsafe { core::arch::x86_64::_rdtsc() };
            std::hint::black_box(engine.fold(SourceId(0), e, 0));
            let end = unsafe { core::arch::x86_64::_rdtsc() };
            cycles[k] += end.wrapping_sub(start);
            counts[k] += 1;
        }
        engine.update_watermark(0);
    }
    let total: u64 = cycles.iter().sum();
    println!("{} events, {:.0} TSC cycles a fold", events.len(), total as f64 / events.len() as f64);
    for (k, name) in CLASSES.iter().enumerate() {
        println!(
            "  {name:>16}: {:>9} events, {:>5.0} cycles each, {:>4.1}% of the cycles",
            counts[k],
            cycles[k] as f64 / counts[k].max(1) as f64,
            100.0 * cycles[k] as f64 / total.max(1) as f64
        );
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    eprintln!("fold_classes reads the x86_64 time stamp counter; this target has none");
}
