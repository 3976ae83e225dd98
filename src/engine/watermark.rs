//! Event-time progress: one clock per source partition, combined into a
//! watermark that only moves forward.
//!
//! The watermark is `min(max event time of each active partition) - allowed
//! lateness`. A partition that has reached the end of its log (caught up) or
//! has been silent for `idle_timeout` of processing time does not hold the
//! watermark back; a partition that is assigned but has produced nothing yet
//! does, until it catches up or goes idle, so a slow topic cannot make a fast
//! one look like a spike. When every partition is caught up or idle, the
//! watermark advances with processing time so windows drain and alerts can
//! resolve on a quiet stream.

use crate::event::Millis;

/// A source partition, numbered by the worker that owns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId(pub u32);

#[derive(Clone, Debug)]
struct PartitionClock {
    max_event: Option<Millis>,
    last_event_proc: Millis,
    caught_up: bool,
}

#[derive(Clone, Debug)]
pub struct WatermarkTracker {
    lateness_ms: i64,
    idle_timeout_ms: i64,
    /// Indexed by `SourceId`; `None` for ids not assigned (or revoked).
    parts: Vec<Option<PartitionClock>>,
    max_seen: Option<Millis>,
    last_event_proc: Millis,
    current: Option<Millis>,
}

impl WatermarkTracker {
    pub fn new(lateness_ms: i64, idle_timeout_ms: i64) -> Self {
        WatermarkTracker {
            lateness_ms,
            idle_timeout_ms,
            parts: Vec::new(),
            max_seen: None,
            last_event_proc: 0,
            current: None,
        }
    }

    /// A partition was assigned; it holds the watermark until it reports.
    fn slot(&mut self, id: SourceId, proc_now: Millis) -> &mut PartitionClock {
        let i = id.0 as usize;
        if self.parts.len() <= i {
            self.parts.resize(i + 1, None);
        }
        self.parts[i].get_or_insert(PartitionClock { max_event: None, last_event_proc: proc_now, caught_up: false })
    }

    pub fn assign(&mut self, id: SourceId, proc_now: Millis) {
        self.slot(id, proc_now);
    }

    pub fn revoke(&mut self, id: SourceId) {
        if let Some(p) = self.parts.get_mut(id.0 as usize) {
            *p = None;
        }
    }

    /// An event was read from `id`.
    pub fn observe(&mut self, id: SourceId, event_time: Millis, proc_now: Millis) {
        let p = self.slot(id, proc_now);
        p.max_event = Some(p.max_event.map_or(event_time, |m| m.max(event_time)));
        p.last_event_proc = proc_now;
        p.caught_up = false;
        self.max_seen = Some(self.max_seen.map_or(event_time, |m| m.max(event_time)));
        self.last_event_proc = proc_now;
    }

    /// Puts back a source's clock from a checkpoint: the newest event time
    /// it had folded, and the watermark the checkpointing process had then
    /// (the watermark never moves back, so it is raised to that).
    pub fn restore_source(
        &mut self,
        id: SourceId,
        max_event: Option<Millis>,
        watermark: Option<Millis>,
        proc_now: Millis,
    ) {
        let p = self.slot(id, proc_now);
        p.max_event = max_event.max(p.max_event);
        if let Some(t) = max_event {
            self.max_seen = Some(self.max_seen.map_or(t, |m| m.max(t)));
        }
        if watermark.is_some() {
            self.current = self.current.max(watermark);
        }
    }

    /// `id` has no more records for now (end of its log).
    pub fn caught_up(&mut self, id: SourceId) {
        if let Some(Some(p)) = self.parts.get_mut(id.0 as usize) {
            p.caught_up = true;
        }
    }

    /// Newest event time read from `id`.
    pub fn source_max(&self, id: SourceId) -> Option<Millis> {
        self.parts.get(id.0 as usize)?.as_ref()?.max_event
    }

    /// Every assigned source that has read an event, with its newest event time.
    pub fn source_maxes(&self) -> impl Iterator<Item = (SourceId, Millis)> + '_ {
        self.parts.iter().enumerate().filter_map(|(i, p)| Some((SourceId(i as u32), p.as_ref()?.max_event?)))
    }

    /// Newest event time seen on any partition.
    pub fn max_seen(&self) -> Option<Millis> {
        self.max_seen
    }

    pub fn current(&self) -> Option<Millis> {
        self.current
    }

    /// Whether, at processing time `proc_now`, an assigned partition that is
    /// neither caught up nor idle has produced nothing yet: the watermark
    /// waits for its first event (see [`WatermarkTracker::update`]).
    pub fn awaiting_first(&self, proc_now: Millis) -> bool {
        self.parts.iter().flatten().any(|p| p.max_event.is_none() && !p.caught_up && !self.idle(p, proc_now))
    }

    fn idle(&self, p: &PartitionClock, proc_now: Millis) -> bool {
        proc_now - p.last_event_proc >= self.idle_timeout_ms
    }

    /// Recomputes the watermark at processing time `proc_now`.
    pub fn update(&mut self, proc_now: Millis) -> Option<Millis> {
        let mut min_active: Option<Millis> = None;
        let mut any_active = false;
        for p in self.parts.iter().flatten() {
            if p.caught_up || self.idle(p, proc_now) {
                continue;
            }
            any_active = true;
            match p.max_event {
                // Assigned, not yet heard from: hold everything back.
                None => return self.current,
                Some(t) => min_active = Some(min_active.map_or(t, |m| m.min(t))),
            }
        }
        let candidate = match (any_active, min_active, self.max_seen) {
            (true, Some(t), _) => Some(t - self.lateness_ms),
            (false, _, Some(max)) => {
                let quiet = (proc_now - self.last_event_proc).max(0);
                Some(max - self.lateness_ms + quiet)
            }
            _ => None,
        };
        if let Some(c) = candidate {
            self.current = Some(self.current.map_or(c, |w| w.max(c)));
        }
        self.current
    }

    /// End of input: every event has been read, so the watermark moves to the
    /// newest event time.
    pub fn finish(&mut self) -> Option<Millis> {
        self.current = self.end();
        self.current
    }

    /// Where [`WatermarkTracker::finish`] would move the watermark.
    pub fn end(&self) -> Option<Millis> {
        match (self.current, self.max_seen) {
            (Some(w), Some(max)) => Some(w.max(max)),
            (w, max) => w.or(max),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silent_partition_holds_until_caught_up_or_idle() {
        let mut w = WatermarkTracker::new(1_000, 10_000);
        w.assign(SourceId(0), 0);
        w.assign(SourceId(1), 0);
        w.observe(SourceId(0), 100_000, 1);
        assert_eq!(w.update(1), None, "partition 1 has not reported");
        assert!(w.awaiting_first(1));
        w.caught_up(SourceId(1));
        assert!(!w.awaiting_first(2), "caught up with nothing to read");
        assert_eq!(w.update(2), Some(99_000));
        w.observe(SourceId(1), 50_000, 3);
        assert_eq!(w.update(3), Some(99_000), "never moves back");
        w.observe(SourceId(1), 120_000, 4);
        w.observe(SourceId(0), 110_000, 4);
        assert_eq!(w.update(4), Some(109_000), "min of active partitions");
        // Partition 0 goes silent past the idle timeout.
        w.observe(SourceId(1), 130_000, 20_000);
        assert_eq!(w.update(20_000), Some(129_000));
    }

    #[test]
    fn a_silent_partition_is_awaited_only_until_its_idle_timeout() {
        let mut w = WatermarkTracker::new(1_000, 10_000);
        assert!(!w.awaiting_first(0), "nothing assigned");
        w.assign(SourceId(3), 5_000);
        assert!(w.awaiting_first(14_999));
        assert!(!w.awaiting_first(15_000));
        w.observe(SourceId(3), 100_000, 6_000);
        assert!(!w.awaiting_first(6_000), "heard from");
    }

    #[test]
    fn quiet_stream_advances_by_processing_time() {
        let mut w = WatermarkTracker::new(1_000, 10_000);
        w.assign(SourceId(0), 0);
        w.observe(SourceId(0), 100_000, 0);
        w.caught_up(SourceId(0));
        assert_eq!(w.update(0), Some(99_000));
        assert_eq!(w.update(5_000), Some(104_000));
        assert_eq!(w.finish(), Some(104_000));
    }
}
