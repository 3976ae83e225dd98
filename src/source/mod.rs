//! Where events come from.
//!
//! * [`kafka`]: the consumer-group worker that decodes, folds and evaluates.
//! * [`dead_letter`]: records that cannot be folded, with their reason.
//! * [`replay`]: a recorded NDJSON file through the same pipeline.
//! * [`restore`]: the alerts topic read back at start (no double pages).
//! * [`limiter`]: rate-limited logging of bad input.
//! * [`repartition`]: topics keyed otherwise, re-keyed by shop.

pub mod dead_letter;
pub mod kafka;
pub mod limiter;
pub mod repartition;
pub mod replay;
pub mod restore;

pub use kafka::{run_worker, WorkerOptions, WorkerReport};
