//! Exactly-once tests: the state the final checkpoints describe, against
//! the reference engine that folded the whole stream once.

use std::collections::BTreeMap;
use std::path::Path;

use peakguard::checkpoint::local::LocalStore;
use peakguard::config::Config;
use peakguard::engine::{Counts, Engine, Fold, SourceId};

use super::{Rec, AFTER_SALES, ORDERS};

/// The engine that folded the whole stream once, partition by partition in
/// produce order (the order each partition is read in).
pub fn reference(cfg: &Config, recs: &[Rec], partitions: i32) -> Engine {
    let mut engine = Engine::new(cfg.engine_config());
    for topic in 0..2 {
        for p in 0..partitions {
            let id = SourceId((topic * partitions as usize) as u32 + p as u32);
            engine.set_source_shard(id, p as u32);
            engine.watermark_mut().assign(id, 0);
        }
    }
    let mut duplicates = 0;
    for (topic, p, e) in recs {
        let id = SourceId((topic * partitions as usize) as u32 + *p as u32);
        match engine.fold(id, e, 0) {
            Fold::Duplicate => duplicates += 1,
            Fold::Late | Fold::Future => panic!("the test stream has no late or future events"),
            Fold::Folded | Fold::Ignored => {}
        }
    }
    assert!(duplicates > recs.len() / 200, "the stream's retries are caught");
    engine
}

/// The engine the checkpoints describe; checks they stand at the end of
/// every partition.
pub fn from_checkpoints(cfg: &Config, dir: &Path, ends: &BTreeMap<(String, i32), i64>, partitions: i32) -> Engine {
    let store = LocalStore::open(&dir.join("checkpoints"), "eo").expect("checkpoint dir");
    let mut engine = Engine::new(cfg.engine_config());
    for p in 0..partitions {
        let c = store.read(p).expect("readable").unwrap_or_else(|| panic!("no checkpoint of partition {p}"));
        for topic in [ORDERS, AFTER_SALES] {
            assert_eq!(c.next_offset(topic), Some(ends[&(topic.to_string(), p)]), "{topic}/{p} read to its end");
        }
        engine.import_shard(c.state).expect("checkpoint imports");
    }
    engine
}

fn reads(engine: &Engine) -> BTreeMap<String, Vec<Counts>> {
    let newest = engine
        .platform()
        .map(|p| (0..engine.config().windows.len()).map(|w| p.head(w)).collect::<Vec<_>>())
        .expect("platform");
    let read_all = |scope: peakguard::engine::ScopeView<'_>| {
        let mut v = Vec::new();
        for (w, head) in newest.iter().enumerate() {
            for end in head - engine.slack(w) as i64..=head + 1 {
                v.push(scope.read(w, end));
            }
        }
        v
    };
    let mut out = BTreeMap::new();
    for (id, scope) in engine.shops() {
        out.insert(format!("shop {id}"), read_all(scope));
    }
    for (name, scope) in engine.categories() {
        out.insert(format!("category {name}"), read_all(scope));
    }
    out.insert("platform".into(), read_all(engine.platform().expect("platform")));
    out
}

/// The end offset of every partition: how many records were produced to it
/// (Tansu's reported high watermark trails the true end by the size of the
/// last batch, so it is not used).
pub fn ends(recs: &[Rec]) -> BTreeMap<(String, i32), i64> {
    let mut ends = BTreeMap::new();
    for (topic, p, _) in recs {
        *ends.entry(([ORDERS, AFTER_SALES][*topic].to_string(), *p)).or_insert(0) += 1;
    }
    ends
}

pub fn assert_same_state(expected: &Engine, got: &Engine) {
    let (e, g) = (reads(expected), reads(got));
    let missing: Vec<&String> = e.keys().filter(|k| !g.contains_key(*k)).collect();
    let extra: Vec<&String> = g.keys().filter(|k| !e.contains_key(*k)).collect();
    let differ: Vec<&String> = e.keys().filter(|k| g.get(*k).is_some_and(|gv| gv != &e[*k])).collect();
    let shops_differ = differ.iter().filter(|k| k.starts_with("shop ")).count();
    eprintln!("{shops_differ} shops differ; {} categories/platform differ", differ.len() - shops_differ);
    if let Some(key) = differ.iter().find(|k| k.starts_with("shop ")).or(differ.first()) {
        let (ev, gv) = (&e[*key], &g[*key]);
        let i = ev.iter().zip(gv).position(|(a, b)| a != b).expect("a difference");
        let fields: Vec<(usize, u64, u64)> =
            (0..ev[i].0.len()).filter(|&f| ev[i].0[f] != gv[i].0[f]).map(|f| (f, ev[i].0[f], gv[i].0[f])).collect();
        eprintln!("first difference: {key}, read #{i}, (counter, expected, checkpointed): {fields:?}");
    }
    assert!(
        missing.is_empty() && extra.is_empty() && differ.is_empty(),
        "checkpointed state differs from the reference: {} missing, {} extra, {} differ (of {}); first: {:?} {:?} {:?}",
        missing.len(),
        extra.len(),
        differ.len(),
        e.len(),
        missing.first(),
        extra.first(),
        differ.first()
    );
}
