//! What a worker shows between its batches: metrics and the query API's
//! read view (once a second), its status and its category and platform
//! reads to the scope merge of its process (`team.rs`), answers to the
//! query API's shop requests, and its alerts to the sink.

use rdkafka::consumer::BaseConsumer;
use tracing::warn;

use super::partitions::RebalanceLog;
use super::Worker;
use crate::query::RulesInfo;

impl Worker<'_> {
    /// Once a second: metrics of scopes, partitions and top-K, and the read
    /// view behind the query API.
    pub(super) fn publish(&mut self, consumer: &BaseConsumer<RebalanceLog>) {
        let _span = tracing::debug_span!("publish").entered();
        let id = self.team.id;
        if let Some(wm) = self.pipeline.watermark() {
            self.metrics.export_scopes(id, self.pipeline.engine(), wm);
        }
        self.export_partitions(consumer);
        let k = self.pipeline.top_k_len();
        let top = self.metrics.export_top(id, self.pipeline.top_k(), k);
        self.view.set_top(top);
        let mut rules = RulesInfo::of(self.pipeline.rules(), self.pipeline.watermark());
        if self.team.size > 1 {
            // Every worker's (and the merge's) firing and pending alerts.
            let totals = self.metrics.rule_totals();
            for r in &mut rules.rules {
                (r.firing, r.pending) = totals.get(&r.name).copied().unwrap_or_default();
            }
        }
        self.view.set_rules(rules);
        let assigned = self.has_partitions();
        let holding = self.pipeline.gate().is_holding();
        self.view.set_ready(id, assigned.then_some(!holding));
        self.report_status();
    }

    /// Tells the merge whether this worker holds it back
    /// ([`Pipeline::holds_merge`]: it has a watermark, or waits for a
    /// partition's first record) and whether it holds notifications. Says
    /// nothing while the group has not told it which partitions are its:
    /// the merge waits for a worker until it has spoken, and one told "no
    /// watermark" before its assignment came would let the others' shares
    /// be evaluated without its part (a worker given its partitions first
    /// can read them all before another's first fetch returns).
    ///
    /// [`Pipeline::holds_merge`]: crate::pipeline::Pipeline::holds_merge
    pub(super) fn report_status(&self) {
        let assigned = self.has_partitions();
        if assigned || self.assigned_once {
            self.team.status(self.pipeline.holds_merge(self.proc_now()), self.pipeline.gate().is_holding());
        }
    }

    /// Hands the category and platform reads of the last tick to the merge.
    pub(super) fn hand_over(&mut self) {
        if let Some(share) = self.pipeline.take_scope_share() {
            // Status first: the merge must hold notifications from the
            // first share of a backlog on.
            self.team.status(true, self.pipeline.gate().is_holding());
            self.team.share(share);
        }
    }

    /// Answers the query API's shop requests (between two batches).
    pub(super) fn answer_queries(&self) {
        for request in self.view.take_requests(self.team.id) {
            let report = crate::query::shop::report(self.pipeline.engine(), &request.shop);
            self.view.answer(&request, report);
        }
    }

    pub(super) fn flush_alerts(&mut self) {
        let m = self.metrics;
        for a in self.alerts.drain(..) {
            self.view.record(&a);
            m.alerts.with_label_values(&[&a.rule, a.severity.as_str(), a.status.as_str()]).inc();
            // Back-pressure rather than loss: the sink queue is bounded.
            if self.alerts_tx.blocking_send(a).is_err() {
                warn!("alert sink is gone; alert dropped");
            }
        }
        let (id, p) = (self.team.id, &self.pipeline);
        m.export_rules(id, p.rules(), p.watermark(), p.gate());
        m.export_worker(id, p.engine().shop_count(), p.watermark(), p.gate().is_holding());
    }
}
