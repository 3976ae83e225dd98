//! Replay: a recorded event file (NDJSON in the JSON mapping of
//! [`crate::codec::json`]) through the same pipeline, rules included, at full
//! speed. This is how an after-sales lead tunes thresholds on last year's
//! sale. Event time comes from the events; the file is one partition, so the
//! watermark is the newest event time minus the allowed lateness, and rules
//! run every `tick_every` events and once more at the end of the file.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::time::{Duration, Instant};

use crate::codec::json;
use crate::config::Config;
use crate::engine::SourceId;
use crate::pipeline::{Pipeline, PipelineStats};
use crate::rules::Alert;

/// What a replay did.
#[derive(Debug)]
pub struct ReplayReport {
    pub lines: u64,
    pub events: u64,
    /// Undecodable lines by reason.
    pub errors: BTreeMap<&'static str, u64>,
    /// The first few undecodable lines: (line number, error).
    pub first_errors: Vec<(u64, String)>,
    pub stats: PipelineStats,
    /// Every alert transition, in event-time order of evaluation.
    pub alerts: Vec<Alert>,
    pub elapsed: Duration,
}

/// Replays `input` with the engine and rules of `cfg`.
pub fn replay(input: impl BufRead, cfg: &Config, tick_every: usize) -> std::io::Result<ReplayReport> {
    let started = Instant::now();
    let mut pipeline = Pipeline::new(cfg.engine_config(), cfg.rate_rules());
    let source = SourceId(0);
    pipeline.assign(source, 0);
    let mut report = ReplayReport {
        lines: 0,
        events: 0,
        errors: BTreeMap::new(),
        first_errors: Vec::new(),
        stats: PipelineStats::default(),
        alerts: Vec::new(),
        elapsed: Duration::ZERO,
    };
    let tick_every = tick_every.max(1) as u64;
    for line in input.lines() {
        let line = line?;
        report.lines += 1;
        let text = line.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        match json::from_json(text) {
            Ok(event) => {
                report.events += 1;
                // Processing time stands still: a replay is never idle.
                pipeline.ingest(source, &event, 0);
                if report.events.is_multiple_of(tick_every) {
                    pipeline.tick(0, &mut report.alerts);
                }
            }
            Err(e) => {
                *report.errors.entry(e.reason()).or_default() += 1;
                if report.first_errors.len() < 10 {
                    report.first_errors.push((report.lines, e.to_string()));
                }
            }
        }
    }
    pipeline.finish(&mut report.alerts);
    report.stats = pipeline.stats();
    report.elapsed = started.elapsed();
    Ok(report)
}
