//! The workers of one process (`kafka.workers`): each is its own consumer
//! in the group and owns the shops of its partitions, with no lock on the
//! hot path. What they share goes through here, between poll batches:
//!
//! * their category and platform reads, to the scope merge thread
//!   ([`run_merge`], over a [`ScopeMerge`]), which evaluates those rules
//!   over the sums and sends their alerts;
//! * in a catch-up run, when to stop: all together, once every worker is
//!   caught up (one leaving the group first would hand its partitions to
//!   the others in the middle of their backlog).
//!
//! With one worker there is no merge: its pipeline evaluates every rule.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Duration;

use tracing::{info, warn};

use crate::event::Millis;
use crate::metrics::Metrics;
use crate::pipeline::merge::{ScopeMerge, ScopeShare};
use crate::query::ReadView;
use crate::reload::RulesUpdate;
use crate::rules::Alert;

/// What a worker tells the scope merge.
#[derive(Debug)]
pub enum MergeMsg {
    /// A tick's category and platform reads.
    Share(usize, ScopeShare),
    /// Whether the worker has a watermark and is catching up on a backlog.
    Status { worker: usize, active: bool, holding: bool },
    /// The worker has stopped (its last share came before).
    Finished(usize),
}

/// One worker's place among the workers of its process.
#[derive(Clone, Debug)]
pub struct Team {
    /// 0..size: its part in the metrics and its mailbox in the read view.
    pub id: usize,
    pub size: usize,
    merge: Option<mpsc::Sender<MergeMsg>>,
    /// Workers done with a catch-up run (see [`Team::all_done`]).
    done: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    /// Where the workers subscribe together (see [`Team::start_together`]).
    start: Arc<Meeting>,
    /// A catch-up run's end (see [`Team::input_end`]).
    ends: Arc<Meeting>,
}

/// Where every worker of a process waits for the others (for at most a
/// while), each bringing a time; all leave with the newest.
#[derive(Debug, Default)]
struct Meeting {
    /// How many have come, and the newest time brought.
    state: Mutex<(usize, Option<Millis>)>,
    all_here: Condvar,
}

impl Meeting {
    /// The newest time, and whether every one of `size` came within `wait`.
    fn meet(&self, size: usize, mine: Option<Millis>, wait: Duration) -> (Option<Millis>, bool) {
        let Ok(mut state) = self.state.lock() else { return (mine, false) };
        state.0 += 1;
        state.1 = state.1.max(mine);
        self.all_here.notify_all();
        match self.all_here.wait_timeout_while(state, wait, |s| s.0 < size) {
            Ok((state, timeout)) => (state.1, !timeout.timed_out()),
            Err(_) => (mine, false),
        }
    }
}

impl Default for Team {
    fn default() -> Team {
        Team::new(1, None).remove(0)
    }
}

impl Team {
    /// `size` workers; `merge` when more than one.
    pub fn new(size: usize, merge: Option<mpsc::Sender<MergeMsg>>) -> Vec<Team> {
        let size = size.max(1);
        let (done, stop) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let (start, ends) = (Arc::new(Meeting::default()), Arc::new(Meeting::default()));
        (0..size)
            .map(|id| Team {
                id,
                size,
                merge: merge.clone(),
                done: done.clone(),
                stop: stop.clone(),
                start: start.clone(),
                ends: ends.clone(),
            })
            .collect()
    }

    /// Category and platform rules are the merge's.
    pub fn merged(&self) -> bool {
        self.merge.is_some()
    }

    pub(super) fn share(&self, share: ScopeShare) {
        if let Some(m) = &self.merge {
            let _ = m.send(MergeMsg::Share(self.id, share));
        }
    }

    pub(super) fn status(&self, active: bool, holding: bool) {
        if let Some(m) = &self.merge {
            let _ = m.send(MergeMsg::Status { worker: self.id, active, holding });
        }
    }

    /// A catch-up run: records whether this worker is done (`mine` is its
    /// last answer); true once every worker of the process is, and from
    /// then on.
    pub(super) fn finished(&self) {
        if let Some(m) = &self.merge {
            let _ = m.send(MergeMsg::Finished(self.id));
        }
    }

    /// The end of a catch-up run: offers the newest event time this worker
    /// read, and returns the newest any worker of the process read, so each
    /// can read its categories up to the process's last bucket (see
    /// `Pipeline::finish_at`). Waits up to `wait` for the others (a worker
    /// that failed never offers); alone, returns its own.
    pub(super) fn input_end(&self, mine: Option<Millis>, wait: Duration) -> Option<Millis> {
        let (last, all) = self.ends.meet(self.size, mine, wait);
        if !all {
            warn!(workers = self.size, "not every worker reached the end of the catch-up run");
        }
        last
    }

    /// Waits (up to `wait`) until every worker of the process is ready to
    /// subscribe, so they join the group in one round: one that joined
    /// alone would be given every partition and start on them, only to
    /// hand most back in the rebalance the next worker's join causes.
    pub(super) fn start_together(&self, wait: Duration) {
        if self.size > 1 && !self.start.meet(self.size, None, wait).1 {
            warn!(workers = self.size, "not every worker was ready to start; joining the group anyway");
        }
    }

    pub(super) fn all_done(&self, mine: &mut bool, done: bool) -> bool {
        if self.stop.load(Ordering::Acquire) {
            return true;
        }
        if done != *mine {
            *mine = done;
            if done {
                self.done.fetch_add(1, Ordering::AcqRel);
            } else {
                self.done.fetch_sub(1, Ordering::AcqRel);
            }
        }
        if self.done.load(Ordering::Acquire) >= self.size {
            self.stop.store(true, Ordering::Release);
            return true;
        }
        false
    }
}

/// Where the scope merge thread sends what it evaluates.
pub struct MergeOutput {
    /// Its part in the metrics (after the workers').
    pub part: usize,
    pub metrics: Arc<Metrics>,
    pub view: Arc<ReadView>,
    pub alerts_tx: tokio::sync::mpsc::Sender<Alert>,
    pub rules_update: Option<RulesUpdate>,
    /// A catch-up run: once every worker has finished, the last buckets are
    /// evaluated too (as one worker's end of input is).
    pub finish_at_end: bool,
}

/// Runs the scope merge until every worker has dropped its sender.
pub fn run_merge(rx: mpsc::Receiver<MergeMsg>, mut merge: ScopeMerge, out: MergeOutput) {
    let mut alerts = Vec::new();
    let (mut last_late, mut last_skipped) = (0, 0);
    if out.finish_at_end {
        merge.hold_to_end();
    }
    // Stopping (not a catch-up run): once one worker has stopped, the
    // others' shares alone would be a part of each category; nothing more
    // is evaluated (a restart resumes from the checkpoints).
    let mut frozen = false;
    loop {
        let received = rx.recv_timeout(Duration::from_millis(200));
        let idle = matches!(received, Err(mpsc::RecvTimeoutError::Timeout));
        let ended = match received {
            Ok(MergeMsg::Finished(worker)) => {
                if out.finish_at_end {
                    merge.status(worker, false, false, &mut alerts);
                } else {
                    frozen = true;
                }
                false
            }
            Ok(_) if frozen => false,
            Ok(MergeMsg::Share(worker, share)) => {
                merge.offer(worker, share, &mut alerts);
                false
            }
            Ok(MergeMsg::Status { worker, active, holding }) => {
                merge.status(worker, active, holding, &mut alerts);
                false
            }
            Err(mpsc::RecvTimeoutError::Timeout) => false,
            Err(mpsc::RecvTimeoutError::Disconnected) => true,
        };
        if ended && out.finish_at_end {
            merge.finish(&mut alerts);
        }
        let update = out.rules_update.as_ref().and_then(|slot| slot.lock().ok()?.take());
        let reloaded = update.is_some();
        if let Some(book) = update {
            let forgotten = merge.reload_rules(book);
            info!(forgotten, "category and platform rules reloaded");
        }
        let dropped = |reason: &str, now: u64, last: &mut u64| {
            let grew = now > *last;
            if grew {
                out.metrics.scope_merge_dropped.with_label_values(&[reason]).inc_by(now - *last);
                *last = now;
            }
            grew
        };
        if dropped("late_read", merge.late_reads(), &mut last_late) {
            warn!(
                reads = last_late,
                "a worker handed over category reads for buckets already evaluated (its partitions \
                 started behind the others'); they were not counted"
            );
        }
        if dropped("bucket_skipped", merge.skipped(), &mut last_skipped) {
            warn!(
                bucket_ends = last_skipped,
                "category and platform rules skipped bucket ends that a worker's reads jumped over (its \
                 watermark moved further than a tick reaches back); a sum without its share could page falsely"
            );
        }
        for a in alerts.drain(..) {
            out.view.record(&a);
            out.metrics.alerts.with_label_values(&[&a.rule, a.severity.as_str(), a.status.as_str()]).inc();
            if out.alerts_tx.blocking_send(a).is_err() {
                warn!("alert sink is gone; alert dropped");
            }
        }
        if !idle || reloaded {
            out.metrics.export_rules(out.part, merge.rules(), None, merge.gate());
        }
        if ended {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_stop_together() {
        let team = Team::new(3, None);
        let mut mine = [false; 3];
        assert!(!team[0].all_done(&mut mine[0], true));
        assert!(!team[1].all_done(&mut mine[1], true));
        // Worker 0 gets a partition with a backlog again.
        assert!(!team[0].all_done(&mut mine[0], false));
        assert!(!team[2].all_done(&mut mine[2], true));
        assert!(team[0].all_done(&mut mine[0], true));
        // Latched: a later rebalance does not undo it.
        assert!(team[1].all_done(&mut mine[1], false));
    }

    #[test]
    fn workers_agree_on_where_the_input_ends() {
        let team = Team::new(3, None);
        let wait = Duration::from_secs(10);
        let mine = [Some(1_000), None, Some(5_000)];
        let got: Vec<Option<Millis>> = std::thread::scope(|s| {
            let handles: Vec<_> = team.iter().zip(mine).map(|(t, m)| s.spawn(move || t.input_end(m, wait))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(got, [Some(5_000); 3]);
        // Alone: its own, at once.
        assert_eq!(Team::default().input_end(Some(7), wait), Some(7));
        // A worker that never offers holds the others back only so long.
        let team = Team::new(2, None);
        let started = std::time::Instant::now();
        assert_eq!(team[0].input_end(Some(3), Duration::from_millis(50)), Some(3));
        assert!(started.elapsed() >= Duration::from_millis(50));
    }
}
