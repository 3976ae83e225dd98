//! Where events come from.
//!
//! * [`kafka`]: the consumer-group worker that decodes, folds and evaluates.
//! * [`replay`]: a recorded NDJSON file through the same pipeline.
//! * [`limiter`]: rate-limited logging of bad input.

pub mod kafka;
pub mod limiter;
pub mod replay;

pub use kafka::{run_worker, WorkerOptions, WorkerReport};
