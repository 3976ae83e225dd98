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
use std::sync::{mpsc, Arc};
use std::time::Duration;

use tracing::{info, warn};

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
        (0..size).map(|id| Team { id, size, merge: merge.clone(), done: done.clone(), stop: stop.clone() }).collect()
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
    let mut last_late = 0;
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
        if merge.late_reads() > last_late {
            last_late = merge.late_reads();
            warn!(
                reads = last_late,
                "a worker handed over category reads for buckets already evaluated (its partitions \
                 started behind the others'); they were not counted"
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
}
