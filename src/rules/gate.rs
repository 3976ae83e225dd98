//! The notification gate between rule transitions and sinks: what makes a
//! restart, a replay of the backlog or a rebalance never page twice. Pure.
//!
//! * **Restored**: alerts the alerts topic says were firing when the last
//!   run stopped. When the same fingerprint fires again, the notification is
//!   marked `repeat` (the incident keeps its original `starts_at`): the
//!   Alertmanager sink re-sends it (Alertmanager deduplicates by labels),
//!   the webhook sink does not page again.
//! * **Holding**: while assigned partitions catch up on their backlog after
//!   a start or rebalance, firing notifications are held back. An alert that
//!   fires and resolves within the backlog is never sent; one still firing
//!   when the backlog is done is sent once, then. Resolutions of alerts
//!   notified earlier pass at once.
//! * At the end of a catch-up, restored alerts whose key is known again but
//!   is neither pending nor firing are resolved.

use std::collections::{BTreeMap, HashMap};

use super::{Alert, AlertStatus};
use crate::event::Millis;

#[derive(Debug, Default)]
pub struct NotifyGate {
    restored: HashMap<String, Alert>,
    holding: bool,
    held: HashMap<String, Alert>,
    /// Per rule: firing notifications held back (and later sent or dropped).
    held_total: BTreeMap<String, u64>,
}

impl NotifyGate {
    /// Alerts last seen on the alerts topic, oldest first; the firing ones
    /// (by their last record) are remembered.
    pub fn restore(&mut self, alerts: impl IntoIterator<Item = Alert>) {
        for a in alerts {
            match a.status {
                AlertStatus::Firing => self.restored.insert(a.fingerprint.clone(), a),
                AlertStatus::Resolved => self.restored.remove(&a.fingerprint),
            };
        }
    }

    pub fn restored_count(&self) -> usize {
        self.restored.len()
    }

    pub fn is_holding(&self) -> bool {
        self.holding
    }

    pub fn held_count(&self) -> usize {
        self.held.len()
    }

    /// Per rule name: firing notifications held back so far.
    pub fn held_total(&self) -> &BTreeMap<String, u64> {
        &self.held_total
    }

    pub fn hold(&mut self) {
        self.holding = true;
    }

    /// Filters `out[from..]` in place: holds, marks repeats, passes the rest.
    pub fn pass(&mut self, out: &mut Vec<Alert>, from: usize) {
        let fresh: Vec<Alert> = out.drain(from..).collect();
        for a in fresh {
            match a.status {
                AlertStatus::Firing if self.holding => {
                    *self.held_total.entry(a.rule.clone()).or_default() += 1;
                    self.held.insert(a.fingerprint.clone(), a);
                }
                AlertStatus::Firing => out.push(self.mark_repeat(a)),
                AlertStatus::Resolved => {
                    if self.held.remove(&a.fingerprint).is_some() {
                        continue; // fired and resolved within the backlog: never sent
                    }
                    self.restored.remove(&a.fingerprint);
                    out.push(a);
                }
            }
        }
    }

    fn mark_repeat(&mut self, mut a: Alert) -> Alert {
        if let Some(prev) = self.restored.remove(&a.fingerprint) {
            a.repeat = true;
            a.starts_at = prev.starts_at;
        }
        a
    }

    /// The catch-up is over at watermark `now`: sends what is held and still
    /// firing, and resolves restored alerts that `known(alert)` says this
    /// run has data for and `active(fingerprint)` says are neither pending
    /// nor firing.
    pub fn release(
        &mut self,
        now: Millis,
        known: impl Fn(&Alert) -> bool,
        active: impl Fn(&str) -> bool,
        out: &mut Vec<Alert>,
    ) {
        self.holding = false;
        let mut held: Vec<Alert> = self.held.drain().map(|(_, a)| a).collect();
        held.sort_by(|a, b| (a.window_end, &a.fingerprint).cmp(&(b.window_end, &b.fingerprint)));
        for a in held {
            let a = self.mark_repeat(a);
            out.push(a);
        }
        let mut stale: Vec<String> =
            self.restored.iter().filter(|(fp, a)| known(a) && !active(fp)).map(|(fp, _)| fp.clone()).collect();
        stale.sort();
        for fp in stale {
            if let Some(mut a) = self.restored.remove(&fp) {
                a.status = AlertStatus::Resolved;
                a.ends_at = Some(now.max(a.starts_at));
                a.window_end = now;
                a.repeat = false;
                out.push(a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(fp: &str, status: AlertStatus, t: Millis) -> Alert {
        let mut a: Alert = serde_json::from_value(serde_json::json!({
            "fingerprint": fp, "status": "firing", "rule": "r", "severity": "page", "scope": "shop",
            "shop_id": fp, "category": "c", "metric": "refund_rate", "window": "5m", "numerator": 5,
            "denominator": 30, "rate": 0.2, "wilson_lower_bound": 0.1, "threshold": 0.1,
            "starts_at": t, "ends_at": null, "window_end": t, "labels": {}, "annotations": {}
        }))
        .unwrap();
        a.status = status;
        a
    }

    #[test]
    fn held_alerts_resolved_within_the_backlog_are_never_sent() {
        let mut g = NotifyGate::default();
        g.hold();
        let mut out = vec![alert("a", AlertStatus::Firing, 1), alert("b", AlertStatus::Firing, 2)];
        g.pass(&mut out, 0);
        assert!(out.is_empty());
        out.push(alert("a", AlertStatus::Resolved, 3));
        g.pass(&mut out, 0);
        assert!(out.is_empty(), "a fired and resolved while held");
        g.release(10, |_| true, |fp| fp == "b", &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].fingerprint.as_str(), out[0].status, out[0].repeat), ("b", AlertStatus::Firing, false));
        assert_eq!(g.held_total()["r"], 2);
        out.clear();
        out.push(alert("c", AlertStatus::Firing, 11));
        g.pass(&mut out, 0);
        assert_eq!(out.len(), 1, "not holding any more");
    }

    #[test]
    fn restored_alerts_are_repeats_or_get_resolved() {
        let mut g = NotifyGate::default();
        // From the alerts topic: a fired then resolved, b and c fired, d fired (unknown shop).
        g.restore([
            alert("a", AlertStatus::Firing, 1),
            alert("a", AlertStatus::Resolved, 2),
            alert("b", AlertStatus::Firing, 3),
            alert("c", AlertStatus::Firing, 4),
            alert("d", AlertStatus::Firing, 5),
        ]);
        assert_eq!(g.restored_count(), 3);
        g.hold();
        let mut out = vec![alert("b", AlertStatus::Firing, 100)];
        g.pass(&mut out, 0);
        g.release(200, |a| a.shop_id != "d", |fp| fp == "b", &mut out);
        let got: Vec<(&str, AlertStatus, bool, Millis)> =
            out.iter().map(|a| (a.fingerprint.as_str(), a.status, a.repeat, a.starts_at)).collect();
        assert_eq!(
            got,
            vec![("b", AlertStatus::Firing, true, 3), ("c", AlertStatus::Resolved, false, 4)],
            "b keeps its first start and is a repeat; c is known and quiet: resolved; d unknown: left alone"
        );
        assert_eq!(out[1].ends_at, Some(200));
    }
}
