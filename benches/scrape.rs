//! Cost of /metrics with 1,000,000 shops held (200 categories, the default
//! windows and rules, top-K on): the scrape itself (`Metrics::render`, what
//! a GET /metrics runs), and the worker's once-a-second publishing
//! (`export_scopes`: platform and category series; `top_k`: re-ranking the
//! candidates). The scrape does not depend on the number of shops: no series
//! carries a shop id except the bounded top-K.
//! Run: `cargo bench --bench scrape`.

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use peakguard::config::Config;
use peakguard::engine::SourceId;
use peakguard::metrics::Metrics;
use peakguard::pipeline::topk::TopKConfig;
use peakguard::pipeline::Pipeline;

fn bench(c: &mut Criterion) {
    let shops = 1_000_000;
    let mut events = common::every_shop_once(0..shops, 3_600_000, 7);
    events.extend(common::zipf_mix(2_000_000, shops, 3_600_000, 8));
    events.sort_by_key(|e| e.event_time);
    for e in &mut events {
        let shop: usize = e.shop_id[5..].parse().unwrap_or(0);
        e.category = format!("category-{:03}", shop % 200);
    }
    let cfg = Config::with_defaults();
    let mut p = Pipeline::new(cfg.engine_config(), cfg.rule_book()).with_top_k(TopKConfig::default());
    p.assign(SourceId(0), 0);
    let mut alerts = Vec::new();
    for (i, e) in events.iter().enumerate() {
        p.ingest(SourceId(0), e, 0);
        if i % 100_000 == 0 {
            p.tick(0, &mut alerts);
        }
    }
    p.finish(&mut alerts);
    drop(events);
    assert!(p.engine().shop_count() >= shops, "{} shops", p.engine().shop_count());
    let metrics = Metrics::new();
    let wm = p.watermark().expect("watermark");
    metrics.export_scopes(0, p.engine(), wm);
    let top = p.top_k();
    let k = p.top_k_len();
    let top = metrics.export_top(0, top, k);
    let body = metrics.render();
    let series = body.lines().filter(|l| !l.starts_with('#')).count();
    println!(
        "{} shops, {} categories: /metrics has {series} series, {} KiB; top-K lists: {}",
        p.engine().shop_count(),
        p.engine().categories().count(),
        body.len() / 1024,
        top.len()
    );

    let mut g = c.benchmark_group("scrape_1m_shops");
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    g.bench_function("render /metrics", |b| b.iter(|| black_box(metrics.render().len())));
    g.bench_function("export_scopes (worker, 1/s)", |b| b.iter(|| metrics.export_scopes(0, black_box(p.engine()), wm)));
    g.bench_function("top_k refresh (worker, 1/s)", |b| b.iter(|| black_box(p.top_k().len())));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
