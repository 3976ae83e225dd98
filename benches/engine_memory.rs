//! Memory of the window engine: bytes per shop with 1,000,000 shops held at
//! the default windows, for a Zipf (s = 1.1) popularity mix where most shops
//! see a few events. Heap bytes are counted by a global allocator wrapper,
//! so the figure is exact, not an RSS estimate.
//! Run: `cargo bench --bench engine_memory`.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use peakguard::engine::{Engine, SourceId};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new, Ordering::Relaxed);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn main() {
    let shops_target = 1_000_000usize;
    let zipf_events: usize =
        std::env::var("PEAKGUARD_MEMORY_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000_000);
    let mut cfg = common::config();
    // Dedup memory is bounded separately (engine.dedup_capacity); this
    // measures shop state.
    cfg.dedup_capacity = 1;
    let mut engine = Engine::new(cfg);
    engine.watermark_mut().assign(SourceId(0), 0);
    let before = LIVE.load(Ordering::Relaxed);
    let chunk = 500_000;
    let mut folded = 0usize;
    // Every shop sells at least once: one order (created, paid, dispatched,
    // in order) per shop, spread over the hour, interleaved with a Zipf
    // stream of every kind of event. Generated in chunks so that the event
    // lists do not count.
    for (i, start) in (0..zipf_events).step_by(chunk).enumerate() {
        let n = chunk.min(zipf_events - start);
        let offset = 3_600_000 * start as i64 / zipf_events as i64;
        let span = (3_600_000 * n as i64 / zipf_events as i64).max(1);
        let mut events = common::zipf_mix(n, shops_target, span, 100 + i as u64);
        let per_chunk = shops_target.div_ceil(zipf_events.div_ceil(chunk));
        let first = i * per_chunk;
        events.extend(common::every_shop_once(first..(first + per_chunk).min(shops_target), span, i as u64));
        events.sort_by_key(|e| e.event_time);
        for e in &mut events {
            e.event_time += offset;
        }
        for e in &events {
            engine.fold(SourceId(0), e, 0);
        }
        folded += events.len();
    }
    let held = LIVE.load(Ordering::Relaxed) - before;
    let shops = engine.shop_count();
    println!(
        "engine memory: {folded} events, {zipf_events} of them Zipf (s=1.1) over {shops_target} shops, 1 h of event time, windows 5m/1h/24h/30d"
    );
    println!("  shops held          {shops}");
    println!("  heap held           {:.1} MiB (shops, categories, platform)", held as f64 / (1 << 20) as f64);
    println!("  bytes per shop      {:.0}", held as f64 / shops as f64);
    println!(
        "  shop-state estimate {:.0} B/shop (Engine::shop_heap_bytes)",
        engine.shop_heap_bytes() as f64 / shops as f64
    );
}
