//! The categories an engine has seen: names interned to dense ids, and one
//! aggregate scope per category, indexed by id.
//!
//! Kept apart from the shops so that the fold can borrow a shop and its
//! category at the same time, and can reuse the shop's category id without
//! a hash lookup when the event names the same category.

use rustc_hash::FxHashMap;

use super::scope::{Layout, ScopeState};
use crate::event::Millis;

#[derive(Default)]
pub(super) struct Categories {
    pub(super) names: Vec<Box<str>>,
    ids: FxHashMap<Box<str>, u32>,
    pub(super) scopes: Vec<ScopeState>,
}

impl Categories {
    /// The id of `name`, interning it (with an empty scope whose first
    /// event is at `t`) when it is new.
    pub(super) fn id(&mut self, layout: &Layout, name: &str, t: Millis) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.into());
        self.ids.insert(name.into(), id);
        self.scopes.push(ScopeState::new(layout, t, true));
        id
    }

    /// The id of `name`, when it has been seen.
    pub(super) fn get(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }
}
