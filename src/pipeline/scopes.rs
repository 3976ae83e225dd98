//! Category- and platform-scope rules in a [`Pipeline`]: evaluated here
//! with one worker, or read and handed to the [`super::merge::ScopeMerge`]
//! with several ([`Pipeline::with_scope_merge`]).

use super::merge::{ScopeRead, ScopeShare};
use super::read::Read;
use super::Pipeline;
use crate::engine::ScopeView;
use crate::rules::{Alert, Scope};

impl Pipeline {
    /// One of several workers of a process: category and platform rules
    /// are evaluated by a [`merge::ScopeMerge`] over every worker's share,
    /// so this pipeline only collects what they read ([`Pipeline::take_scope_share`]).
    pub fn with_scope_merge(mut self) -> Pipeline {
        self.scope_share = Some(ScopeShare::default());
        self
    }

    /// What category and platform rules read since the last call, for the
    /// merge (`None` without [`Pipeline::with_scope_merge`] or when no
    /// bucket completed).
    pub fn take_scope_share(&mut self) -> Option<ScopeShare> {
        let share = self.scope_share.as_mut()?;
        if share.through.iter().all(Option::is_none) && share.end.is_none() {
            return None;
        }
        Some(std::mem::take(share))
    }

    /// With [`Pipeline::with_scope_merge`]: the bucket ends this tick's
    /// reads cover, per window (the merge evaluates a bucket end only once
    /// every worker has covered it).
    pub(super) fn share_spans(&mut self, spans: &[Option<(i64, i64)>]) {
        let Some(share) = self.scope_share.as_mut() else { return };
        share.through.resize(self.windows.len(), None);
        for (w, span) in spans.iter().enumerate() {
            if let Some((from, end)) = *span {
                share.through[w] = Some(share.through[w].map_or(end, |t| t.max(end)));
                share.spans.push((w, from, end));
            }
        }
    }

    /// Category- and platform-scope rules: every category (or the platform)
    /// at every bucket end of the tick; there are few of them.
    pub(super) fn evaluate_scopes(&mut self, spans: &[Option<(i64, i64)>], out: &mut Vec<Alert>) {
        let (engine, rules, windows) = (&self.engine, &mut self.rules, &self.windows);
        let phase_baselines = &self.phase_baselines;
        for r in 0..rules.rules().len() {
            let (scope, w) = (rules.rules()[r].scope, rules.rules()[r].window);
            let Some((from, end)) = spans[w] else { continue };
            let targets: Vec<(&str, ScopeView<'_>)> = match scope {
                Scope::Shop => continue,
                Scope::Category => engine.categories().collect(),
                Scope::Platform => engine.platform().map(|p| ("", p)).into_iter().collect(),
            };
            for k in from..=end {
                let end_ms = (k + 1) * windows[w].step_ms;
                for (name, view) in &targets {
                    let mut read = Read::default();
                    read.read_at(&rules.rules()[r], name, Some(*view), None, (windows, phase_baselines), k);
                    if let Some(share) = self.scope_share.as_mut() {
                        let rule = &rules.rules()[r];
                        let (rule, key) = (rule.name.as_str().into(), (*name).into());
                        share.reads.push(ScopeRead { rule, scope, window: w, k, key, read });
                        continue;
                    }
                    if let Some(a) = rules.evaluate(r, name, name, &read.inputs(), end_ms) {
                        out.push(a);
                    }
                }
            }
        }
    }
}
