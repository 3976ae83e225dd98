//! The campaign calendar: named phases of a sale (pre-sale, deposit, balance
//! payment, main sale, after-sale), each able to mute rules or give them
//! other thresholds. A rule reads the phase its window end falls in, in event
//! time, so a replay of last year's sale sees last year's phases. Pure.

use std::collections::BTreeMap;

use crate::event::Millis;

/// One phase: `start <= t < end` (UTC ms).
#[derive(Clone, Debug, PartialEq)]
pub struct Phase {
    pub name: String,
    pub start: Millis,
    pub end: Millis,
    /// Rules silenced in this phase; `*` silences every rule.
    pub mute: Vec<String>,
    /// Rule name -> threshold in force during this phase.
    pub thresholds: BTreeMap<String, f64>,
}

/// The phases, sorted by start and not overlapping (checked at load).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Calendar {
    phases: Vec<Phase>,
}

/// What the calendar says about one rule at one time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Verdict<'a> {
    /// No phase (`None`), or a phase that leaves the rule alone.
    Normal {
        phase: Option<&'a str>,
    },
    Muted {
        phase: &'a str,
    },
    Threshold {
        phase: &'a str,
        threshold: f64,
    },
}

impl Calendar {
    pub fn new(mut phases: Vec<Phase>) -> Calendar {
        phases.sort_by_key(|p| p.start);
        Calendar { phases }
    }

    pub fn phases(&self) -> &[Phase] {
        &self.phases
    }

    pub fn is_empty(&self) -> bool {
        self.phases.is_empty()
    }

    /// The phase `t` falls in.
    pub fn phase_at(&self, t: Millis) -> Option<&Phase> {
        let i = self.phases.partition_point(|p| p.start <= t);
        self.phases[..i].last().filter(|p| t < p.end)
    }

    /// What rule `rule` must do at `t`.
    pub fn verdict(&self, rule: &str, t: Millis) -> Verdict<'_> {
        let Some(p) = self.phase_at(t) else { return Verdict::Normal { phase: None } };
        if p.mute.iter().any(|m| m == "*" || m == rule) {
            return Verdict::Muted { phase: &p.name };
        }
        match p.thresholds.get(rule) {
            Some(&threshold) => Verdict::Threshold { phase: &p.name, threshold },
            None => Verdict::Normal { phase: Some(&p.name) },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(name: &str, start: Millis, end: Millis) -> Phase {
        Phase { name: name.into(), start, end, mute: vec![], thresholds: BTreeMap::new() }
    }

    #[test]
    fn phase_lookup_is_half_open_and_gaps_are_normal() {
        let mut deposit = phase("deposit", 100, 200);
        deposit.mute.push("refund_spike".into());
        let mut sale = phase("main_sale", 300, 400);
        sale.thresholds.insert("refund_spike".into(), 0.2);
        let cal = Calendar::new(vec![sale, deposit]);
        assert_eq!(cal.verdict("refund_spike", 99), Verdict::Normal { phase: None });
        assert_eq!(cal.verdict("refund_spike", 100), Verdict::Muted { phase: "deposit" });
        assert_eq!(cal.verdict("other", 150), Verdict::Normal { phase: Some("deposit") });
        assert_eq!(cal.verdict("refund_spike", 200), Verdict::Normal { phase: None }, "end is exclusive; gap");
        assert_eq!(cal.verdict("refund_spike", 300), Verdict::Threshold { phase: "main_sale", threshold: 0.2 });
        assert_eq!(cal.verdict("refund_spike", 400), Verdict::Normal { phase: None });
        assert_eq!(cal.phase_at(350).map(|p| p.name.as_str()), Some("main_sale"));
    }

    #[test]
    fn star_mutes_every_rule() {
        let mut p = phase("freeze", 0, 10);
        p.mute.push("*".into());
        let cal = Calendar::new(vec![p]);
        assert_eq!(cal.verdict("anything", 5), Verdict::Muted { phase: "freeze" });
    }
}
