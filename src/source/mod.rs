//! Where events come from.
//!
//! * [`kafka`]: the consumer-group worker that decodes, folds and evaluates.
//! * [`limiter`]: rate-limited logging of bad input.

pub mod kafka;
pub mod limiter;

pub use kafka::{run_worker, WorkerOptions, WorkerReport};
