//! Replay: a recorded event file through the same pipeline, rules included,
//! at full speed. Two formats, told apart by their first bytes: NDJSON in the
//! JSON mapping of [`crate::codec::json`], and Avro object container files
//! whose schema is one of ours or a union of them. This is how an after-sales lead tunes thresholds on last year's
//! sale. Event time comes from the events; the file is one partition, so the
//! watermark is the newest event time minus the allowed lateness, and rules
//! run every `tick_every` events and once more at the end of the file.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::time::{Duration, Instant};

use apache_avro::types::Value;
use apache_avro::Schema;

use crate::codec::{avro, json, DecodeError};
use crate::config::Config;
use crate::engine::SourceId;
use crate::pipeline::{Pipeline, PipelineStats};
use crate::rules::Alert;

/// What a replay did.
#[derive(Debug)]
pub struct ReplayReport {
    /// Lines (NDJSON) or records (container file) read.
    pub lines: u64,
    pub events: u64,
    /// Undecodable lines by reason.
    pub errors: BTreeMap<&'static str, u64>,
    /// The first few undecodable lines: (line number, error).
    pub first_errors: Vec<(u64, String)>,
    pub stats: PipelineStats,
    /// Every alert transition, in event-time order of evaluation.
    pub alerts: Vec<Alert>,
    /// Per rule: breaches the campaign calendar muted.
    pub muted: BTreeMap<String, u64>,
    pub elapsed: Duration,
}

/// Magic bytes of an Avro object container file.
const OCF_MAGIC: &[u8] = b"Obj\x01";

/// One record of the input: `None` for a line to skip (blank, comment).
pub type Record = Option<Result<crate::event::Event, crate::codec::DecodeError>>;

/// Replays `input` (NDJSON or an Avro container file) with the engine and rules of `cfg`.
pub fn replay(input: impl BufRead + 'static, cfg: &Config, tick_every: usize) -> std::io::Result<ReplayReport> {
    replay_records(records(input)?, cfg, tick_every)
}

/// The records of `input` (NDJSON or an Avro container file, told apart by
/// its first bytes), decoded; `None` for a line to skip (blank, comment).
pub fn records(
    mut input: impl BufRead + 'static,
) -> std::io::Result<Box<dyn Iterator<Item = std::io::Result<Record>>>> {
    if input.fill_buf()?.starts_with(OCF_MAGIC) {
        let reader = apache_avro::Reader::new(input).map_err(std::io::Error::other)?;
        let schema = reader.writer_schema().clone();
        return Ok(Box::new(reader.map(move |v| {
            Ok(Some(
                v.map_err(|e| DecodeError::Avro { schema_id: 0, message: e.to_string() })
                    .and_then(|v| from_container(&schema, v)),
            ))
        })));
    }
    Ok(Box::new(input.lines().map(|line| {
        let line = line?;
        let text = line.trim();
        Ok((!text.is_empty() && !text.starts_with('#')).then(|| json::from_json(text)))
    })))
}

/// An event from one container-file datum: a record of ours, or a union of them.
fn from_container(schema: &Schema, value: Value) -> Result<crate::event::Event, DecodeError> {
    let (record_schema, record) = match (schema, value) {
        (Schema::Union(u), Value::Union(i, inner)) => (u.variants().get(i as usize), *inner),
        (s, v) => (Some(s), v),
    };
    let kind = record_schema.and_then(avro::kind_of_schema).ok_or(DecodeError::MissingField { field: "<record>" })?;
    avro::event_from_value(kind, record)
}

fn replay_records(
    records: impl Iterator<Item = std::io::Result<Record>>,
    cfg: &Config,
    tick_every: usize,
) -> std::io::Result<ReplayReport> {
    let started = Instant::now();
    let mut pipeline = Pipeline::new(cfg.engine_config(), cfg.rule_book());
    let source = SourceId(0);
    pipeline.assign(source, 0);
    let mut report = ReplayReport {
        lines: 0,
        events: 0,
        errors: BTreeMap::new(),
        first_errors: Vec::new(),
        stats: PipelineStats::default(),
        alerts: Vec::new(),
        muted: BTreeMap::new(),
        elapsed: Duration::ZERO,
    };
    let tick_every = tick_every.max(1) as u64;
    // Also evaluate whenever event time moved one finest bucket: a sparse
    // file may cover minutes between two `tick_every` ticks.
    let finest = cfg.engine_config().windows.iter().map(|w| w.step_ms).min().unwrap_or(60_000);
    let mut tick_mark = i64::MIN;
    for record in records {
        report.lines += 1;
        let Some(decoded) = record? else { continue };
        match decoded {
            Ok(event) => {
                report.events += 1;
                // Processing time stands still: a replay is never idle.
                pipeline.ingest(source, &event, 0);
                let seen = pipeline.engine().watermark().max_seen().unwrap_or(i64::MIN);
                if report.events.is_multiple_of(tick_every) || seen >= tick_mark {
                    tick_mark = seen.saturating_add(finest);
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
    let rules = pipeline.rules();
    report.muted = rules.rules().iter().zip(rules.muted()).map(|(r, n)| (r.name.clone(), *n)).collect();
    report.elapsed = started.elapsed();
    Ok(report)
}
